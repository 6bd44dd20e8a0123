"""topologies/transformer.yaml and topologies/resnet.yaml: check-grad of each equals
torch autograd of the same graph written in torch primitives (tests/torch_graph.py),
float64, fixed mode, eta 1, default T; and both validate with their training section."""

from __future__ import annotations

import json

import pytest

from neurolocal.engines import EngineConfig, relax_once
from neurolocal.gradcheck import default_iterations, synthetic_batch
from neurolocal.topology import load_topology
from conftest import TOPOLOGIES, cli_code
from torch_graph import max_relative_error, torch_gradients


@pytest.mark.parametrize("name", ["transformer", "resnet"])
def test_check_grad_equals_torch_autograd(name):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 6, 0)
    relaxation = relax_once(EngineConfig(engine="local"), graph, params, inputs, target,
                            eta=1.0, iterations=default_iterations(graph))
    _, reference = torch_gradients(graph, params, inputs, target)
    worst, errors = max_relative_error(relaxation.dtheta, reference)
    assert set(errors) == {f"{v}.{k}" for v, ps in params.items() for k in ps}
    # an attention key's bias has a zero gradient in exact arithmetic: skip its ratio
    real = {k: e for k, e in errors.items() if k != "k.bias"}
    assert max(real.values()) < 1e-10, max(real, key=real.get)


@pytest.mark.parametrize("name", ["transformer", "resnet"])
def test_cli_check_grad_and_validate(name, capsys):
    path = TOPOLOGIES / f"{name}.yaml"
    assert cli_code("validate", path) == 0
    capsys.readouterr()
    assert cli_code("check-grad", path, "--json", "--max-rel-error", "1e-10") == 0
    assert json.loads(capsys.readouterr().out)["converged"]
