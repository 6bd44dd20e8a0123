"""Import -> train by PC -> export back into the module.

PC training of an imported model (SGD, fixed mode, eta 1, T = depth) and torch backprop
of the original module from the same weights give the same parameters after one epoch
(to 1e-8), and after two epochs of PC the exported module computes what neurolocal
predicts on the test set (to 1e-10)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import neurolocal
from neurolocal.errors import TopologyError
from neurolocal.training.data import load_for_graph
from neurolocal.training.loop import predict
from torch_models import Encoder, ResidualCNN

SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.0}
BATCH = 64


@pytest.fixture(scope="module")
def imported():
    torch.manual_seed(3)
    module = ResidualCNN().double()
    original = copy.deepcopy(module)
    graph, params = neurolocal.from_torch(module, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    return module, original, graph, params, load_for_graph("digits", graph)


def _torch_epoch(module, data, name, seed=0):
    """One epoch of torch SGD in the order neurolocal's loop draws (PCG64(seed))."""
    x = torch.tensor(data.train_inputs[name])
    y = torch.tensor(data.train_target).long()
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(y))
    optimizer = torch.optim.SGD(module.parameters(), lr=SGD["lr"])
    for start in range(0, len(y), BATCH):
        idx = torch.tensor(order[start:start + BATCH])
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x[idx]), y[idx]).backward()
        optimizer.step()


def test_one_epoch_of_pc_equals_torch_backprop_from_the_same_weights(imported):
    module, original, graph, params, data = imported
    trained = {v: {k: a.copy() for k, a in ps.items()} for v, ps in params.items()}
    history = neurolocal.train(graph, data, {"epochs": 1, "batch_size": BATCH, "optimizer": SGD},
                               params=trained)
    assert history.epochs_done == 1
    reference = copy.deepcopy(original)
    _torch_epoch(reference, data, graph.inputs[0])
    exported = neurolocal.export_state_dict(graph, trained, copy.deepcopy(original))
    for key, value in reference.state_dict().items():
        scale = float(value.abs().max())
        assert float((exported[key] - value).abs().max()) <= 1e-8 * scale, key
    assert any(not torch.equal(reference.state_dict()[k], original.state_dict()[k])
               for k in original.state_dict())   # training moved the weights


def test_after_two_epochs_the_exported_module_computes_neurolocals_predictions(imported):
    module, original, graph, params, data = imported
    trained = {v: {k: a.copy() for k, a in ps.items()} for v, ps in params.items()}
    neurolocal.train(graph, data, {"epochs": 2, "batch_size": BATCH, "optimizer": SGD},
                     params=trained)
    target = copy.deepcopy(original)
    neurolocal.export_state_dict(graph, trained, target)
    name = graph.inputs[0]
    ours = predict(graph, trained, {name: data.test_inputs[name]})
    with torch.no_grad():
        theirs = target(torch.tensor(data.test_inputs[name])).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-10)
    assert not np.allclose(theirs, original(torch.tensor(data.test_inputs[name])).detach().numpy())


def test_export_into_a_module_the_graph_was_not_imported_from(imported):
    _, _, graph, params, _ = imported
    with pytest.raises(TopologyError, match="was not imported from this module"):
        neurolocal.export_state_dict(graph, params, Encoder())


def test_cli_import_run_export_round_trip(tmp_path, cli):
    """neurolocal import -> run --params (2 epochs by PC) -> export --to torch FILE.pt:
    the module loaded from the file computes the run's predictions."""
    import sys

    from neurolocal.limits import default_budget
    from neurolocal.params_file import load_params
    from neurolocal.topology import load_topology
    from neurolocal.training import checkpoint_path, load_checkpoint, read_checkpoint_settings
    topo = tmp_path / "cnn.yaml"
    assert cli("import", "examples/models.py:SmallCNN", "--input-shape", "1,8,8",
               "-o", topo).returncode == 0
    run = tmp_path / "run"
    done = cli("run", topo, "--params", tmp_path / "cnn.params.npz", "--engine", "local",
               "--epochs", "2", "--out", run, "--quiet", "--no-traffic-log")
    assert done.returncode == 0, done.stderr
    weights = tmp_path / "w.pt"
    done = cli("export", run, "--to", "torch", weights)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, "examples")
    from models import SmallCNN
    module = SmallCNN().double()
    module.load_state_dict(torch.load(weights))
    graph = load_topology(topo).graph
    path = checkpoint_path(run, "pc")
    trained = load_checkpoint(path, graph, read_checkpoint_settings(path)).params
    initial = load_params(tmp_path / "cnn.params.npz", graph, default_budget())
    assert not np.array_equal(trained["head"]["weight"], initial["head"]["weight"])
    data = load_for_graph("digits", graph)
    ours = predict(graph, trained, {"x": data.test_inputs["x"]})
    with torch.no_grad():
        theirs = module(torch.tensor(data.test_inputs["x"])).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-10)
    # a run whose topology was not imported: one line, nothing written
    other = cli("export", tmp_path, "--to", "torch", tmp_path / "x.pt")
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()
