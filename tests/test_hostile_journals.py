"""Issue 28: `neurolocal replay` checks a journal against its topology before anything runs.

Journals made from a real recording (tests/journal_cases.py), in the sim engine's format
and as a Ray run's streams, broken at every field (wrong types, NaN/inf, huge, negative,
deleted, unknown keys, wrong dtypes/shapes/data), cut and bit-flipped, or not regular
files: each replay ends with exit 0, 1 (the documented "DIFFERS", nothing on stderr)
or 2 with one stderr line, no traceback, within the hostile harness's CPU and memory
bounds; plus the issue's reproductions one by one in real processes."""

from __future__ import annotations

import copy
import os
import random

import msgpack
import pytest

import hostile_cases as H
import journal_cases as J


def kept(record: dict) -> str | None:
    """The promise for replay: "DIFFERS" is exit 1, held to exit 0's rules (warnings
    allowed, no traceback)."""
    code = 0 if record.get("code") == 1 else record.get("code")
    return H.broken(code, record.get("stderr", ""), record.get("error"),
                    record.get("timeout", False))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return J.record_sim(tmp_path_factory.mktemp("recorded"))


def write_sim(directory, document) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.sim.replay").write_bytes(msgpack.packb(document, use_bin_type=True))
    return str(directory)


def write_streams(directory, streams: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, objects in streams.items():
        (directory / name).write_bytes(J.pack(objects))
    return str(directory)


def test_the_unbroken_journals_replay(recorded, tmp_path, capsys):
    from neurolocal.cli import main

    assert main(["replay", write_sim(tmp_path / "sim", recorded)]) == 0
    streams = J.as_streams(recorded)
    assert main(["replay", write_streams(tmp_path / "ray", streams)]) == 1   # training digest
    out = capsys.readouterr()
    assert "DIFFERS from the recorded run at batch 1" in out.out and not out.err, out
    only_relaxing = {n: objs[:2] for n, objs in streams.items()}
    assert main(["replay", write_streams(tmp_path / "relax", only_relaxing)]) == 0


def test_every_field_of_a_journal_broken(recorded, tmp_path):
    rng = random.Random(28)
    cases = []
    for cid, objects, _ in J.mutations([recorded], "sim", rng):
        cases.append({"id": cid, "argv": ["replay", write_sim(tmp_path / f"c{len(cases)}",
                                                               objects[0])]})
    for name, objects in J.as_streams(recorded).items():
        for cid, broken, _ in J.mutations(objects, name.split(".")[1], rng, per_node=3):
            streams = {**J.as_streams(recorded), name: broken}
            cases.append({"id": cid, "argv": ["replay", write_streams(
                tmp_path / f"c{len(cases)}", streams)]})
    records = H.run_driver(cases, tmp_path / "driver")
    bad = [f"{r['id']}: {why}" for r in records if (why := kept(r))]
    assert len(records) == len(cases) > 130
    assert not bad, f"{len(bad)} of {len(cases)}:\n" + "\n".join(bad[:40])
    refused = sum(r["code"] == 2 for r in records)
    assert refused > len(cases) // 2, refused


def test_cut_and_flipped_files(recorded, tmp_path):
    rng = random.Random(7)
    cases = []
    sim = msgpack.packb(recorded, use_bin_type=True)
    streams = J.as_streams(recorded)
    for cid, data in J.file_cases(sim, rng):
        d = tmp_path / f"s{len(cases)}"
        d.mkdir()
        (d / "run.sim.replay").write_bytes(data)
        cases.append({"id": f"sim {cid}", "argv": ["replay", str(d)]})
    for name in streams:
        for cid, data in J.file_cases(J.pack(streams[name]), rng):
            d = tmp_path / f"s{len(cases)}"
            write_streams(d, streams)
            (d / name).write_bytes(data)
            cases.append({"id": f"{name} {cid}", "argv": ["replay", str(d)]})
    records = H.run_driver(cases, tmp_path / "driver")
    bad = [f"{r['id']}: {why}" for r in records if (why := kept(r))]
    assert len(records) == len(cases)
    assert not bad, "\n".join(bad[:40])


def reproduce(tmp_path, document=None, streams=None, setup=None) -> dict:
    d = tmp_path / "journal"
    if document is not None:
        write_sim(d, document)
    if streams is not None:
        write_streams(d, streams)
    if setup is not None:
        setup(d)
    record = H.run_cli(["replay", str(d)], wall_timeout=60)
    assert H.broken(**record) is None, record
    assert record["code"] == 2, record
    return record


def _batch(document):
    return document["batches"][0]


def test_a_shape_mismatch_is_one_line(recorded, tmp_path):
    doc = copy.deepcopy(recorded)
    w = _batch(doc)["params"]["trunk"]["weight"]
    w["shape"] = w["shape"][::-1]
    record = reproduce(tmp_path, doc)
    assert "params.trunk.weight" in record["stderr"] and "shape" in record["stderr"], record


def test_a_string_where_a_number_belongs(recorded, tmp_path):
    doc = copy.deepcopy(recorded)
    _batch(doc)["reads"][0][1] = "3"
    record = reproduce(tmp_path, doc)
    assert "reads[0]" in record["stderr"], record


@pytest.mark.parametrize("rename", [False, True])
def test_a_journal_of_another_topology(recorded, tmp_path, rename):
    """The issue's `KeyError: 'image'`: the journal's data against the CNN's graph (under
    its own name, or renamed to match)."""
    import yaml

    doc = copy.deepcopy(recorded)
    doc["topology"] = str(H.TOPOLOGIES / "cnn.yaml")
    if rename:
        doc["graph"] = yaml.safe_load((H.TOPOLOGIES / "cnn.yaml").read_text())["name"]
    record = reproduce(tmp_path, doc)
    assert ("params" if rename else "graph") in record["stderr"], record


def test_optimizer_state_of_the_wrong_type(recorded, tmp_path):
    streams = J.as_streams(recorded)
    streams[f"{J.RUN}.scheduler.replay"][2]["optimizer"] = [1, 2]
    record = reproduce(tmp_path, streams=streams)
    assert "optimizer" in record["stderr"], record


def test_an_object_dtype_parameter(recorded, tmp_path):
    doc = copy.deepcopy(recorded)
    _batch(doc)["params"]["trunk"]["bias"]["dtype"] = "|O"
    record = reproduce(tmp_path, doc)
    assert "dtype" in record["stderr"], record


def test_a_restore_without_learning(recorded, tmp_path):
    streams = J.as_streams(recorded)
    del streams[f"{J.RUN}.scheduler.replay"][2]["learning"]
    record = reproduce(tmp_path, streams=streams)
    assert "learning" in record["stderr"] and "missing" in record["stderr"], record


@pytest.mark.parametrize("updates", [10 ** 9, 1e9])
def test_a_billion_updates_is_refused(recorded, tmp_path, updates):
    streams = J.as_streams(recorded)
    streams[f"{J.RUN}.scheduler.replay"][2]["learning"]["updates_per_batch"] = updates
    record = reproduce(tmp_path, streams=streams)
    assert "updates_per_batch" in record["stderr"], record


def test_a_billion_iterations_is_refused(recorded, tmp_path):
    doc = copy.deepcopy(recorded)
    _batch(doc)["iterations"] = 10 ** 9
    record = reproduce(tmp_path, doc)
    assert "iterations" in record["stderr"], record


def test_an_alias_bomb_in_the_recorded_topology(recorded, tmp_path):
    streams = J.as_streams(recorded)
    streams[f"{J.RUN}.scheduler.replay"][0]["topology_text"] = H.dump(H.laughs())
    record = reproduce(tmp_path, streams=streams)
    assert "nodes" in record["stderr"], record


@pytest.mark.parametrize("kind", ["fifo", "zero-link"])
def test_a_journal_that_is_not_a_regular_file(tmp_path, kind):
    def setup(d):
        d.mkdir()
        if kind == "fifo":
            os.mkfifo(d / "run.sim.replay")
        else:
            (d / "run.sim.replay").symlink_to("/dev/zero")
    record = reproduce(tmp_path, setup=setup)
    assert "regular" in record["stderr"], record
