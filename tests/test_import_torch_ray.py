"""Imported PyTorch models on the Ray engine: check-grad equals torch autograd of the
original module within 1e-10 and the local engine's updates bit for bit (one Ray for
the module, as the house rule says)."""

from __future__ import annotations

import numpy as np
import pytest

import neurolocal
from conftest import module_ray
from import_reference import pc_updates, torch_gradients, worst_relative_error
from torch_models import examples

MODELS = {name: (m, x, y) for name, m, x, y in examples()}


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray():
        yield


@pytest.mark.parametrize("name,per_actor", [("residual_cnn", 3), ("encoder", "auto"),
                                            ("mixer", "auto"), ("text", 2)])
def test_imported_model_on_ray_equals_torch_and_the_local_engine(name, per_actor):
    module, x, labels = MODELS[name]
    imported = neurolocal.from_torch(module, x)
    reference = torch_gradients(module, x, labels)
    updates, relaxation = pc_updates(imported, x, labels, "ray", vertices_per_actor=per_actor)
    worst, errors = worst_relative_error(updates, reference)
    assert worst < 1e-10, (max(errors, key=errors.get), worst)
    _, local = pc_updates(imported, x, labels, "local")
    for vertex, grads in local.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_array_equal(g, relaxation.dtheta[vertex][k])
