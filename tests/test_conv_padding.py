"""conv2d takes any padding, as torch's does; pooling keeps torch's half-the-kernel rule."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch_graph import max_relative_error, torch_gradients

from neurolocal import LocalEngine, graph_from_dict
from neurolocal.gradcheck import synthetic_batch


def conv_graph(padding, stride=1, kernel=3):
    return graph_from_dict({
        "name": "padded",
        "vertices": [
            {"name": "x", "op": "input", "shape": [2, 5, 6]},
            {"name": "conv", "op": "conv2d", "parents": ["x"], "out_channels": 3,
             "kernel_size": kernel, "stride": stride, "padding": padding,
             "activation": "tanh"},
            {"name": "flat", "op": "flatten", "parents": ["conv"]},
            {"name": "out", "op": "dense", "parents": ["flat"], "units": 4},
        ],
        "output": "out", "loss": "mse"})


@pytest.mark.parametrize("padding,stride,kernel", [(2, 1, 3), (4, 2, 3), ([3, 1], 1, 2),
                                                   ([1, 5], 3, [2, 3])])
def test_padding_beyond_half_the_kernel_matches_torch(padding, stride, kernel):
    graph = conv_graph(padding, stride, kernel)
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 4, seed=1)
    op = graph.vertices["conv"].op
    expected = torch.tanh(F.conv2d(torch.from_numpy(inputs["x"]),
                                   torch.from_numpy(params["conv"]["weight"]),
                                   torch.from_numpy(params["conv"]["bias"]),
                                   stride=op.stride, padding=op.padding)).numpy()
    value, _ = op.forward(params["conv"], [inputs["x"]])
    assert graph.shapes["conv"] == expected.shape[1:]
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0)
    _, reference = torch_gradients(graph, params, inputs, target)
    assert max_relative_error(relaxation.dtheta, reference)[0] <= 1e-10


def test_pooling_padding_beyond_half_the_kernel_is_one_line(tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_text("""\
vertices:
  - {name: x, op: input, shape: [1, 6, 6]}
  - {name: pool, op: maxpool2d, parents: [x], kernel_size: 2, padding: 2}
  - {name: flat, op: flatten, parents: [pool]}
  - {name: out, op: dense, parents: [flat], units: 2}
output: out
loss: mse
""")
    done = run_cli("validate", path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "more than half the kernel" in done.stderr and "padding" in done.stderr
