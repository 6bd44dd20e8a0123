"""scripts/depth_cost.py (issue 26's cost goals): its torch baseline is the same net as
neurolocal's (the same loss and gradients from the same parameters), and its text says
met / not met by the goals' own limits. No timing is asserted."""

import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from neurolocal import graph_from_dict
from neurolocal.backprop import backprop
from neurolocal.generate import resnet

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import depth_cost  # noqa: E402


@pytest.mark.parametrize("parameterization,activation,skips", [
    ("mupc", "relu", True), ("standard", "tanh", True), ("standard", "gelu", False)])
def test_torch_baseline_is_the_same_net(parameterization, activation, skips):
    graph = graph_from_dict(resnet(depth=4, width=6, parameterization=parameterization,
                                   activation=activation, input_width=5, output_width=3,
                                   skips=skips))
    params = graph.init_params(1)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((7, 5)), rng.standard_normal((7, 3))
    forward, leaves = depth_cost.torch_model(graph, params)
    loss = depth_cost.mse(forward(torch.tensor(x)), torch.tensor(y))
    loss.backward()
    ours = backprop(graph, params, {"x": x}, y)
    assert abs(float(loss) - ours.loss) <= 1e-12 * abs(ours.loss)
    for vertex, grads in ours.params.items():
        for name, grad in grads.items():
            theirs = leaves[vertex][name].grad.numpy()
            assert np.linalg.norm(theirs - grad) <= 1e-10 * np.linalg.norm(grad), vertex


def test_torch_baseline_refuses_what_it_cannot_compute():
    graph = graph_from_dict({"vertices": [
        {"name": "x", "op": "input", "shape": [4]},
        {"name": "a", "op": "dense", "parents": ["x"], "units": 3},
        {"name": "b", "op": "dense", "parents": ["x"], "units": 3},
        {"name": "out", "op": "add", "parents": ["a", "b"]}], "output": "out",
        "loss": "mse"})
    with pytest.raises(ValueError, match="out: the torch baseline reads dense vertices"):
        depth_cost.torch_model(graph, graph.init_params(0))


def timing(fixed, torch_s, cpu):
    return {"load_before": "1.0, 1.0, 1.0", "load_after": "1.0, 1.0, 1.0",
            "depths": [128, 64], "blas_threads": "openblas 2",
            "d128": {"pc": {"seconds": fixed, "accuracy": 0.9},
                     "bp": {"seconds": 5.0, "accuracy": 0.9},
                     "torch": {"seconds": torch_s, "cpu": torch_s, "accuracy": 0.9,
                               "threads": 2}},
            "mupc_d64": {"seconds": 30.0, "process_wall": 31.0, "process_cpu": cpu}}


def test_the_goals_are_met_by_their_own_limits():
    met = depth_cost.text(timing(fixed=15.0, torch_s=10.0, cpu=35.0))
    assert "1.50x (goal <= 1.5x: met)" in met and "(goal: within it: met)" in met
    missed = depth_cost.text(timing(fixed=15.1, torch_s=10.0, cpu=35.1))
    assert "(goal <= 1.5x: not met)" in missed and "(goal: within it: not met)" in missed
    old = timing(fixed=15.0, torch_s=10.0, cpu=35.0)
    del old["d128"]["torch"], old["depths"]   # a timing.json from before the torch baseline
    assert "torch backprop, the goal's baseline, was not measured" in depth_cost.text(old)
