"""`neurolocal sweep` (docs/asynchrony.md §5): a tiny grid on the sim engine writes one
CSV row per point and seed and the plots; a second call resumes (runs nothing again);
bad grids end in one line, exit 2."""

import csv
import json

import numpy as np
import pytest

from neurolocal.cli import main
from neurolocal.sweep.grid import parse_vary

TINY = """
name: tiny-digits
vertices:
  - {name: image, op: input, shape: [64]}
  - {name: hidden, op: dense, parents: [image], units: 8, activation: tanh}
  - {name: logits, op: dense, parents: [hidden], units: 10}
output: logits
loss: softmax_cross_entropy
training: {data: digits, epochs: 1, batch_size: 512, optimizer: {name: adam, lr: 0.01}}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


def read_rows(out):
    with open(out / "sweep.csv") as handle:
        return list(csv.DictReader(handle))


def test_a_tiny_grid_writes_the_csv_and_plots_and_resumes(tiny, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", tiny, "--vary", "staleness=0,2", "--vary", "drop=0,0.1",
            "--vary", "iterations=depth",
            "--delay", "exp:1", "--seeds", "2", "--jobs", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    rows = read_rows(out)
    assert len(rows) == 8
    assert all(r["iterations"] == "depth" for r in rows)
    assert [(r["staleness"], r["drop"], r["seed"]) for r in rows][:3] == [
        ("0", "0.0", "0"), ("0", "0.0", "1"), ("0", "0.1", "0")]
    for r in rows:
        assert 0 <= float(r["test_accuracy"]) <= 1 and int(r["messages"]) > 0
        assert int(r["rounds_T"]) == 1
        if r["drop"] == "0.0":
            assert int(r["messages_lost"]) == 0
        if r["staleness"] == "0" and r["drop"] == "0.0":   # synchronous: exact at T = depth
            assert float(r["grad_rel_error"]) < 1e-12
    assert sum(int(r["messages_lost"]) for r in rows if r["drop"] == "0.1") > 0
    for name in ("staleness.png", "drop.png", "iterations.png", "messages.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable: every job's result is kept; a second call reads them back, runs none
    points = sorted((out / "points").glob("*.json"))
    assert len(points) == 8
    marked = json.loads(points[0].read_text())
    marked["results"]["test_accuracy"] = 0.123
    points[0].write_text(json.dumps(marked))
    assert main(argv) == 0
    assert "0.123" in [r["test_accuracy"] for r in read_rows(out)]


def test_the_sweeps_own_seeds_reproduce(tiny, tmp_path):
    """The same grid twice in fresh directories gives the same numbers (all but time)."""
    tables = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["sweep", tiny, "--vary", "delay=exp:0.5,exp:2", "--staleness", "1",
                     "--seeds", "1", "--jobs", "1", "--out", str(out), "--quiet"]) == 0
        tables.append([{k: v for k, v in r.items() if k != "wall_seconds"}
                       for r in read_rows(out)])
    assert tables[0] == tables[1]
    assert tables[0][0]["sim_time"] != tables[0][1]["sim_time"]


def test_vary_parsing():
    grid = parse_vary(["staleness=0,1,2", "delay=uniform:0,2,exp:1", "drop=0,0.01",
                       "iterations=2,bound", "retransmit=false,true"])
    assert grid["staleness"] == [0, 1, 2]
    assert grid["delay"] == ["uniform:0,2", "exp:1"]
    assert grid["drop"] == [0.0, 0.01] and grid["iterations"] == [2, "bound"]
    assert grid["retransmit"] == [False, True]
    assert np.isclose(grid["drop"][1], 0.01)


@pytest.mark.parametrize("vary,message", [
    ("colour=red", "cannot vary 'colour'"),
    ("staleness=-1", "vary.staleness: expected a whole number"),
    ("delay=fast:1", "unknown distribution"),
    ("drop=1.5", "vary.drop: expected a probability"),
    ("staleness", "expected KEY=V1,V2"),
])
def test_bad_grids_end_in_one_line(tiny, tmp_path, capsys, vary, message):
    assert main(["sweep", tiny, "--vary", vary, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_point_the_engine_cannot_run_is_refused_before_any_job(tiny, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["sweep", tiny, "--vary", "staleness=0,2", "--mode", "strict",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "point staleness=2" in err and "fixed mode only" in err and err.count("\n") == 1
    assert not out.exists()
