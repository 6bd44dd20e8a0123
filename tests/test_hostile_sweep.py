"""Issue 28: a sweep's size is bounded before any job is listed, and a damaged sweep
folder is one line (or, for a result file that is merely wrong, a job run again). Real
processes under the hostile harness's limits (tests/hostile_cases.py)."""

from __future__ import annotations

import json
import os

import pytest

import hostile_cases as H
from neurolocal.sweep.grid import MAX_RUNS, jobs, parse_vary
from neurolocal.sweep.runner import point_path

TINY = H.small_digits(units=4, batch_size=1024, iterations=None, engine=None)
VARY = "staleness=0,1"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def sweep(tiny, out, *flags) -> dict:
    record = H.run_cli(["sweep", str(tiny), "--vary", VARY, "--seeds", "1", "--jobs", "1",
                        "--quiet", "--out", str(out), *flags], wall_timeout=180)
    assert H.broken(**record) is None, record
    return record


@pytest.mark.parametrize("flags", [
    ["--seeds", "10000000"],
    ["--vary", "eta=" + ",".join(f"0.{i:02d}" for i in range(1, 40)),
     "--vary", "lr=" + ",".join(f"0.{i:02d}" for i in range(1, 40)),
     "--vary", "batch_size=" + ",".join(str(i) for i in range(1, 40)),
     "--vary", "iterations=" + ",".join(str(i) for i in range(1, 40))],
])
def test_a_huge_sweep_is_refused(tiny, tmp_path, flags):
    record = sweep(tiny, tmp_path / "out", *flags)
    assert record["code"] == 2 and str(MAX_RUNS) in record["stderr"], record
    assert not (tmp_path / "out").exists()


def first_point(out):
    return point_path(out, jobs(parse_vary([VARY]), 1)[0])


def damage(out, how: str) -> None:
    (out / "points").mkdir(parents=True)
    point = first_point(out)
    if how == "fifo":
        os.mkfifo(point)
    elif how == "zero-link":
        point.symlink_to("/dev/zero")
    elif how == "directory":
        point.mkdir()
    elif how == "huge":
        point.write_bytes(b" " * (2 << 20))
    elif how == "points-is-a-file":
        (out / "points").rmdir()
        (out / "points").write_text("x")
    elif how == "sweep-json-is-a-directory":
        (out / "sweep.json").mkdir()


@pytest.mark.parametrize("how", ["fifo", "zero-link", "directory", "huge", "points-is-a-file",
                                 "sweep-json-is-a-directory"])
def test_a_damaged_sweep_folder_is_one_line(tiny, tmp_path, how):
    out = tmp_path / "out"
    damage(out, how)
    record = sweep(tiny, out)
    assert record["code"] == 2, record


def test_a_wrong_result_file_is_run_again(tiny, tmp_path):
    """Result files of the wrong shape (a list, strings for numbers, another job's point)
    are run again and replaced; a FIFO where the CSV goes is replaced, not written into."""
    out = tmp_path / "out"
    (out / "points").mkdir(parents=True)
    first, second = (point_path(out, j) for j in jobs(parse_vary([VARY]), 1))
    first.write_text(json.dumps([1, 2]))
    second.write_text(json.dumps({"point": [["staleness", 7]], "seed": 0,
                                  "results": {"test_accuracy": "abc"}}))
    os.mkfifo(out / "sweep.csv")
    record = sweep(tiny, out)
    assert record["code"] == 0, record
    for path in (first, second):
        assert isinstance(json.loads(path.read_text())["results"]["test_accuracy"], float)
    assert (out / "sweep.csv").is_file()
