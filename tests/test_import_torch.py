"""`neurolocal.from_torch`: PyTorch modules traced by torch.fx into graphs.

The must-show: check-grad of each imported model (a residual CNN, a 2-block transformer
encoder, an MLP-mixer block, an embedding + mean-pool classifier) equals torch autograd
of the original module within 1e-10 (float64, fixed mode, eta 1, default T), on the
local and sim engines, bit for bit alike (the Ray engine: test_import_torch_ray.py).
Modules that use anything else are refused in one line naming the fx node."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import neurolocal
from neurolocal.errors import TopologyError
from neurolocal.imports.torch_fx import UnsupportedModel, from_torch
from import_reference import pc_updates, torch_gradients, worst_relative_error
from torch_models import Encoder, examples

MODELS = {name: (m, x, y) for name, m, x, y in examples()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_check_grad_of_an_imported_model_equals_torch_autograd(name):
    module, x, labels = MODELS[name]
    imported = neurolocal.from_torch(module, x)
    reference = torch_gradients(module, x, labels)
    results = {}
    for engine in ("local", "sim"):
        updates, relaxation = pc_updates(imported, x, labels, engine)
        assert set(updates) == set(reference)       # every parameter of the module
        worst, errors = worst_relative_error(updates, reference)
        assert worst < 1e-10, (engine, max(errors, key=errors.get), worst)
        results[engine] = relaxation
    for vertex, grads in results["local"].dtheta.items():   # the engines bit for bit alike
        for k, g in grads.items():
            np.testing.assert_array_equal(g, results["sim"].dtheta[vertex][k])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_imported_graph_computes_what_the_module_computes(name):
    module, x, _ = MODELS[name]
    graph, params = neurolocal.from_torch(module, x)
    values, _ = graph.forward(params, {graph.inputs[0]: x.numpy().astype(np.float64)})
    np.testing.assert_allclose(values[graph.output], module(x).detach().numpy(),
                               rtol=0, atol=1e-12)


def test_weights_come_from_the_module_in_neurolocal_layouts():
    module, x, _ = MODELS["encoder"]
    imported = from_torch(module, x)
    state = module.state_dict()
    assert {key for key, _ in imported.state_keys.values()} == set(state)
    for (vertex, param), (key, layout) in imported.state_keys.items():
        value = state[key].numpy()
        np.testing.assert_array_equal(imported.params[vertex][param],
                                      value.T if layout == "transpose" else value)
    assert imported.notes == ["nn.Dropout is imported as the identity "
                              "(predictive coding here has no dropout)"]


def test_a_module_called_twice_is_a_tied_group():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)
            self.out = nn.Linear(4, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.layer(torch.tanh(self.layer(x)))))

    torch.manual_seed(0)
    module = Twice().double()
    x, labels = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    imported = from_torch(module, x)
    assert len(imported.graph.tied) == 2           # weight and bias
    worst, _ = worst_relative_error(pc_updates(imported, x, labels)[0],
                                    torch_gradients(module, x, labels))
    assert worst < 1e-10


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.out(h[:, -1])


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        h.relu_()
        return self.out(h)


class SharedInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.fc(x)
        return self.act(h) + h


@pytest.mark.parametrize("module,x,pattern", [
    (WithLSTM(), torch.randn(2, 3, 4), r"^fx node 'lstm' \(call_module LSTM 'lstm'\) at "
                                       r"test_import_torch\.py:\d+: this module has no neurolocal vertex$"),
    (InPlace(), torch.randn(2, 4), r"^fx node 'relu_' \(call_method relu_\) at "
                                   r"test_import_torch\.py:\d+: an in-place op"),
    (SharedInPlace(), torch.randn(2, 4), r"^fx node 'act' \(call_module ReLU 'act'\) at "
                                         r"test_import_torch\.py:\d+: an in-place op whose input"),
])
def test_unsupported_modules_are_refused_in_one_line(module, x, pattern):
    with pytest.raises(UnsupportedModel, match=pattern) as info:
        from_torch(module, x)
    assert "\n" not in str(info.value)
    line = int(str(info.value).split(".py:")[1].split(":")[0])
    source = open(__file__).read().splitlines()[line - 1]
    assert ("lstm" in source) or ("relu_" in source) or ("act" in source)


def _refused(forward, x, match):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(x.shape[-1], 4)

        def forward(self, x):
            return forward(self, x)

    with pytest.raises(UnsupportedModel, match=match):
        from_torch(M(), x)


def test_batch_axis_rules():
    x = torch.randn(3, 2, 6)
    _refused(lambda s, x: s.fc(x.reshape(6, -1)), x, "keep the batch axis first")
    _refused(lambda s, x: s.fc(x.reshape(-1, 6)).mean(0), x, "batch axis")
    _refused(lambda s, x: s.fc(x) * x.shape[0], x, "batch size")
    _refused(lambda s, x: s.fc(x).softmax(dim=0), x, "batch axis")
    _refused(lambda s, x: s.fc(x)[:, 0], x, "indexing or slicing")
    _refused(lambda s, x: s.fc(x) + 1.0, x, "constant has no vertex")
    _refused(lambda s, x: s.fc(x).permute(1, 0, 2), x, "batch axis first")


def test_accepted_reshape_forms():
    x = torch.randn(3, 2, 6, dtype=torch.float64)
    for reshape in (lambda h: h.reshape(h.shape[0], -1), lambda h: h.view(-1, 8),
                    lambda h: h.reshape(h.size(0), 8), lambda h: torch.flatten(h, 1),
                    lambda h: h.flatten(1)):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(6, 4)
                self.out = nn.Linear(8, 2)

            def forward(self, x):
                return self.out(reshape(self.fc(x)))

        module = M().double()
        graph, params = from_torch(module, x)
        values, _ = graph.forward(params, {graph.inputs[0]: x.numpy()})
        np.testing.assert_allclose(values[graph.output], module(x).detach().numpy(), atol=1e-13)


def test_without_torch_the_call_says_so_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TopologyError, match=r"^from_torch needs PyTorch: pip install "
                                            r"'neurolocal\[torch\]'"):
        from_torch(object(), None)


def test_bad_arguments():
    with pytest.raises(TopologyError, match="takes a torch.nn.Module"):
        from_torch(lambda x: x, torch.randn(2, 3))
    with pytest.raises(TopologyError, match="batch axis"):
        from_torch(Encoder(), torch.randn(5))


def test_cli_import_writes_a_topology_and_parameters_that_check_grad_takes(tmp_path, cli):
    out = tmp_path / "sub" / "cnn.yaml"
    done = cli("import", "examples/models.py:SmallCNN", "--input-shape", "1,8,8", "-o", out)
    assert done.returncode == 0, done.stderr
    params = tmp_path / "sub" / "cnn.params.npz"
    assert out.exists() and params.exists()
    # the file is a topology like any other, and the parameters are the module's
    from neurolocal.params_file import load_params
    from neurolocal.limits import default_budget
    from neurolocal.topology import load_topology
    sys.path.insert(0, "examples")
    from models import SmallCNN
    graph = load_topology(out).graph
    loaded = load_params(params, graph, default_budget())
    assert set(loaded) == {"conv1", "conv2", "head"}
    assert loaded["head"]["weight"].shape == (6, 10)
    check = cli("check-grad", out, "--params", params, "--json", "--max-rel-error", "1e-10")
    assert check.returncode == 0, check.stderr
    import json
    assert json.loads(check.stdout)["max_rel_error"] < 1e-10
    del SmallCNN


def test_cli_import_refuses_in_one_line_and_writes_nothing(tmp_path, cli):
    out = tmp_path / "lstm.yaml"
    done = cli("import", "examples/models.py:WithLSTM", "--input-shape", "4,8", "-o", out)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "fx node 'lstm' (call_module LSTM 'lstm') at models.py:" in done.stderr
    assert list(tmp_path.iterdir()) == []
    bad = cli("import", "examples/models.py:Nothing", "--input-shape", "4,8", "-o", out)
    assert bad.returncode == 2 and "defines no 'Nothing'" in bad.stderr


def test_a_parameter_file_that_does_not_fit_the_graph_is_one_line(tmp_path):
    from neurolocal.errors import DataError
    from neurolocal.limits import default_budget
    from neurolocal.params_file import load_params, save_params
    module, x, _ = MODELS["text"]
    imported = from_torch(module, x)
    path = tmp_path / "p.npz"
    save_params(path, imported.params)
    loaded = load_params(path, imported.graph, default_budget())
    np.testing.assert_array_equal(loaded["embed"]["weight"], imported.params["embed"]["weight"])
    wrong = {**imported.params, "hidden": {"weight": np.zeros((2, 2))}}
    save_params(path, wrong)
    with pytest.raises(DataError, match="expected a float array of shape"):
        load_params(path, imported.graph, default_budget())
    save_params(path, {**imported.params, "extra": {"w": np.zeros(1)}})
    with pytest.raises(DataError, match="'extra/w', which is no parameter"):
        load_params(path, imported.graph, default_budget())
