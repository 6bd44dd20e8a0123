"""Issue 28: asynchrony files and flags are bounded (docs/asynchrony.md §2, §4).

`--asynchrony FILE` is read as a topology file is (regular file, document budget: no
alias bomb, /dev/zero or FIFO), every number of a model is bounded (`slow: 1e308` was
`Infinity` in check-grad --json and a crash in `run`), and retransmission gives up
after MAX_SENDS sends, so a drop probability near 1 ends, counting the messages lost.
Each reproduction runs as a real process under the hostile harness's limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hostile_cases as H
from neurolocal.asynchrony.models import MAX_SENDS

DAG = H.TOPOLOGIES / "dag.yaml"


def check_grad(*flags, topology=DAG) -> dict:
    record = H.run_cli(["check-grad", str(topology), "--engine", "sim", "--json", *flags],
                       wall_timeout=90)
    assert H.broken(**record) is None, record
    return record


def refused(record: dict, *words: str) -> None:
    assert record["code"] == 2, record
    assert all(w in record["stderr"] for w in words), record


@pytest.fixture
def side_files(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(H.dump({"asynchrony": {"vertices": {"trunk": {"pause": H.laughs()}}}}))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    return {"alias-bomb": (bomb, "nodes"), "fifo": (fifo, "FIFO"),
            "/dev/zero": (zero, "device"), "device": ("/dev/zero", "device")}


@pytest.mark.parametrize("kind", ["alias-bomb", "fifo", "/dev/zero", "device"])
def test_a_hostile_side_file_is_one_line(side_files, kind):
    path, word = side_files[kind]
    refused(check_grad("--asynchrony", str(path)), word)


def test_an_alias_bomb_in_the_section_is_one_line(tmp_path):
    text = DAG.read_text() + "\n" + H.dump({"asynchrony": {"edges": H.laughs()}})
    topology = tmp_path / "t.yaml"
    topology.write_text(text)
    refused(check_grad(topology=topology), "nodes")


@pytest.mark.parametrize("section", [
    {"vertices": {"trunk": {"slow": 1e308}}},
    {"vertices": {"trunk": {"pause": {"at": 1, "for": 1e300}}}},
    {"delay": "exp:1e300"},
    {"timeout": 1e300},
    {"round_ms": 1e-300},
])
def test_huge_numbers_in_the_section_are_refused(tmp_path, section):
    topology = tmp_path / "t.yaml"
    topology.write_text(DAG.read_text() + "\nasynchrony: " + H.flow(section) + "\n")
    refused(check_grad(topology=topology), "asynchrony.")


@pytest.mark.parametrize("flag", ["trunk:1e308", "trunk:inf", "trunk:pause:0:1e300"])
def test_a_huge_straggler_flag_is_refused(flag):
    refused(check_grad("--straggler", flag), "straggler")


@pytest.mark.parametrize("how", ["flag", "edge"])
def test_retransmission_gives_up_and_reports_lost(tmp_path, how):
    """`--drop 0.999999 --retransmit` never ended: now each message is sent at most
    MAX_SENDS times, then counted lost, and the run completes."""
    if how == "flag":
        flags = ["--drop", "0.999999", "--retransmit"]
    else:
        side = tmp_path / "a.yaml"
        side.write_text(H.flow({"retransmit": True,
                                "edges": {"x->trunk": {"drop": 0.999999},
                                          "trunk->gate": {"drop": 0.999999}}}))
        flags = ["--asynchrony", str(side)]
    done = subprocess.run([sys.executable, "-m", "neurolocal", "check-grad", str(DAG),
                           "--engine", "sim", "--json", *flags], env=H.child_env(),
                          capture_output=True, text=True, timeout=90, cwd=H.REPO,
                          preexec_fn=H.limit_child())
    assert H.broken(done.returncode, done.stderr) is None and done.returncode == 0, done
    report = _find(json.loads(done.stdout), "messages_lost")
    assert report is not None and report["messages_lost"] > 0, done.stdout
    assert report["messages_retransmitted"] >= (MAX_SENDS - 1) * report["messages_lost"], report


def _find(node, key):
    if isinstance(node, dict):
        if key in node:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = _find(item, key)
            if found is not None:
                return found
    return None
