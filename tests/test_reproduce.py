"""scripts/reproduce.py --quick: its files exist and are well formed; the paper's
backward-in-time schedule for recurrent nets matches PyTorch autograd."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, TOPOLOGIES
from neurolocal import load_topology
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.timewise import time_blocks
from neurolocal.gradcheck import synthetic_batch
from torch_graph import max_relative_error, torch_gradients

ETAS = {0.05, 0.1, 0.2, 0.5, 1.0}
NETS = ("mlp", "cnn", "rnn", "lstm")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    done = subprocess.run([sys.executable, "scripts/reproduce.py", "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_divergence_csv_covers_every_net_and_eta_and_is_exact_at_depth(quick_run):
    out, _ = quick_run
    with open(out / "divergence.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["topology", "eta", "iteration", "max_rel_error", "mean_rel_error"]
    for name in NETS:
        depth = load_topology(TOPOLOGIES / f"{name}.yaml").graph.depth
        mine = [r for r in rows if r["topology"] == name]
        assert {float(r["eta"]) for r in mine} == ETAS
        for eta in ETAS:
            iterations = [int(r["iteration"]) for r in mine if float(r["eta"]) == eta]
            assert iterations == list(range(iterations[-1] + 1)) and iterations[-1] >= depth
        for r in mine:
            assert 0 <= float(r["mean_rel_error"]) <= float(r["max_rel_error"])
        at = {int(r["iteration"]): float(r["max_rel_error"]) for r in mine
              if float(r["eta"]) == 1.0}
        assert at[depth] <= 1e-10, (name, at[depth])
        assert at[depth - 1] > 1e-6, (name, at[depth - 1])   # and not exact one round early


def test_figure_and_results_markdown_are_well_formed(quick_run):
    out, stdout = quick_run
    assert (out / "divergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "RESULTS.md").read_text()
    assert "python scripts/reproduce.py --quick" in text and "machine:" in text
    training, divergence = text.split("## Divergence")
    assert "| mlp | 2 |" in divergence                       # one row per net, with its depth
    table = [line for line in training.splitlines() if line.startswith("| ")]
    header = table[0].split("|")
    body = [line for line in table[2:] if line.split("|")[1].strip() in NETS]
    assert len(body) == 2 * len(NETS)                     # eta = 1 and eta = 0.1 per net
    for line in body:
        assert len(line.split("|")) == len(header)          # no stray pipes
        assert "±" in line
    assert "(b) 42/42" in stdout                              # progress output


def test_backward_in_time_schedule_matches_autograd():
    graph = load_topology(TOPOLOGIES / "rnn.yaml").graph
    params = graph.init_params(3)
    inputs, target = synthetic_batch(graph, 6, 3)
    _, reference = torch_gradients(graph, params, inputs, target)
    blocks = time_blocks(graph)
    assert [b[0] for b in blocks] == [f"xh@{t}" for t in range(7, -1, -1)]
    engine = LocalEngine(graph, params, schedule="backward-in-time")
    # eta = 1: exact once every block has run its longest inner path (xh -> h -> y: 3)
    exact = engine.relax(inputs, target, eta=1.0, iterations=3)
    assert max_relative_error(exact.dtheta, reference)[0] < 1e-10
    assert len(exact.energy) == 1 + 3 * len(blocks)
    early = engine.relax(inputs, target, eta=1.0, iterations=2)
    assert max_relative_error(early.dtheta, reference)[0] > 1e-2
    # the paper's setting: eta = 0.1, 100 iterations per step
    paper = engine.relax(inputs, target, eta=0.1, iterations=100)
    assert max_relative_error(paper.dtheta, reference)[0] < 1e-2
    assert np.isfinite(paper.energy).all()
