"""The Python API: every public name docs/python.md lists is importable as written,
`neurolocal.__all__` lists nothing the doc leaves out, and the examples/ scripts run
(one imports a small PyTorch CNN, trains it by PC on a Ray engine for two epochs and
reads its traffic as a table)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

import neurolocal
from conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "python.md").read_text()
#: the first cell of each row of the doc's table(s) that starts with a neurolocal name
NAMES = sorted({name for line in DOC.splitlines() if line.startswith("| `neurolocal.")
                for name in re.findall(r"`(neurolocal(?:\.[A-Za-z_]+)+)", line.split("|")[1])})


def test_the_doc_lists_names():
    assert len(NAMES) >= 20
    for must in ("neurolocal.from_torch", "neurolocal.export_state_dict", "neurolocal.train",
                 "neurolocal.open_engine", "neurolocal.EngineConfig", "neurolocal.check_grad",
                 "neurolocal.load_topology", "neurolocal.traffic.read_table",
                 "neurolocal.traffic.query"):
        assert must in NAMES


@pytest.mark.parametrize("dotted", NAMES)
def test_each_documented_name_is_importable_as_written(dotted):
    code = f"import neurolocal; obj = {dotted}; print(type(obj).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    module, _, name = dotted.rpartition(".")
    assert getattr(importlib.import_module(module), name) is not None


def test_every_public_name_is_documented():
    documented = {n.split(".")[1] for n in NAMES}
    assert set(neurolocal.__all__) <= documented, set(neurolocal.__all__) - documented


def test_open_engine_is_a_context_manager_that_stops_its_engine():
    import numpy as np

    graph, params = neurolocal.from_torch(*_tiny())
    inputs = {graph.inputs[0]: np.zeros((2, 3))}
    with neurolocal.open_engine(neurolocal.EngineConfig(), graph, params) as engine:
        relaxation = engine.relax(inputs, np.array([0, 1]), eta=1.0, iterations=graph.depth)
    assert relaxation.dtheta
    check = neurolocal.check_grad(graph, params)
    assert check.max_relative_error < 1e-12 and check.converged


def _tiny():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return module.double(), torch.zeros(2, 3, dtype=torch.float64)


def test_train_returns_the_history_and_the_trained_parameters():
    graph, params = neurolocal.from_torch(*_tiny())
    before = params["_2"]["weight"].copy() if "_2" in params else None
    import numpy as np
    data = {"x": np.random.default_rng(0).standard_normal((40, 3)),
            "y": np.arange(40) % 2}
    path = REPO_ROOT / ".pytest_cache" / "api-data.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez(path, **data)
    history = neurolocal.train(graph, str(path), {"epochs": 2, "batch_size": 8}, params=params)
    assert history.epochs_done == 2 and len(history.train_loss) == 2
    if before is not None:
        assert not np.array_equal(before, params["_2"]["weight"])
    with pytest.raises(neurolocal.ConfigError, match="unknown key"):
        neurolocal.train(graph, str(path), {"epoch": 2})


@pytest.mark.parametrize("script,expect", [
    ("train_cnn_on_ray.py", r"test accuracy after 2 epochs: [0-9.]+\n\d+ messages, columns: "
                            r"run, writer"),
    ("check_an_imported_transformer.py", r"max relative error \d\.\de-1[5-7]"),
])
def test_the_examples_run(script, expect):
    done = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          cwd=REPO_ROOT / "examples", timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(expect, done.stdout), done.stdout
