"""Issue 28, scope 7: the hostile harness reaches every field of every format the project
reads. For each format the field names come from the code that reads it (never a hand
list here), the hostile mutations are generated from a real file of that format, and the
test fails naming any field no mutation reaches:

    topology sections   tests/test_hostile_schemas.py (loss, training, asynchrony)
    replay journals     journal_check.SCHEMAS        (mutations run: test_hostile_journals)
    checkpoints         checkpoint_check + History + Settings (run: test_hostile_checkpoints)
    asynchrony files    asynchrony/config.py's keys  (mutations run here)
    traffic logs        traffic/log.py's header keys and FIELDS (mutations run here)
"""

from __future__ import annotations

import copy
import dataclasses
import random
from pathlib import Path

import msgpack
import numpy as np
import pytest

import hostile_cases as H
import journal_cases as J
import schema_walk as S


def missing(required, reached) -> list[str]:
    return sorted(set(map(str, required)) - set(map(str, reached)))


def test_every_journal_field_is_mutated(tmp_path):
    from neurolocal.engines.journal_check import SCHEMAS

    recorded = J.record_sim(tmp_path)
    reached = set()
    rng = random.Random(28)
    for objects, name in [([recorded], "sim"), *((o, n) for n, o in
                                                J.as_streams(recorded).items())]:
        for _, _, path in J.mutations(objects, name, rng):
            reached |= {p for p in path if isinstance(p, str)}
    required = {key for schema in SCHEMAS.values() for key in schema}
    assert not missing(required, reached), f"journal fields no mutation reaches: " \
                                           f"{missing(required, reached)}"


def test_every_checkpoint_field_is_mutated(tmp_path):
    from neurolocal.training.checkpoint_check import SCALARS
    from neurolocal.training.history import History
    from neurolocal.training.settings import Settings

    out = tmp_path / "run"
    made = H.run_cli(["run", str(H.TOPOLOGIES / "mlp.yaml"), "--engine", "local", "--epochs",
                      "1", "--out", str(out), "--quiet", "--no-traffic-log"])
    assert made["code"] == 0, made
    with np.load(out / "checkpoint-pc.npz", allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    reached = {cid.split("=", 1)[0] for cid, _, _ in H.checkpoint_mutations(arrays)}
    required = (set(SCALARS) | {f"history/{c}" for c in History.COLUMNS}
                | {f"settings.{f.name}" for f in dataclasses.fields(Settings)} | set(arrays))
    assert not missing(required, reached), f"checkpoint fields no mutation reaches: " \
                                           f"{missing(required, reached)}"


@pytest.fixture(scope="module")
def every_field_topology(tmp_path_factory) -> Path:
    name, doc = S.every_field_topologies()[0]
    doc = {k: v for k, v in doc.items() if k != "asynchrony"}
    path = tmp_path_factory.mktemp("topology") / f"{name}.yaml"
    path.write_text(H.flow(doc))
    return path


def test_every_asynchrony_file_field_is_mutated_and_kept(every_field_topology, tmp_path):
    """The side file `--asynchrony FILE`: every key at every level, broken the harness's
    ways (two of them per node, drawn by seed), then check-grad on the sim engine."""
    from neurolocal.asynchrony.config import EDGE_KEYS, KEYS, PAUSE_KEYS, VERTEX_KEYS

    side = {"asynchrony": S._asynchrony()}
    mutations = list(H.topology_mutations("asynchrony-file", H.flow(side)))
    reached = {p for _, _, path in mutations for p in path if isinstance(p, str)}
    required = set(KEYS) | set(EDGE_KEYS) | set(VERTEX_KEYS) | set(PAUSE_KEYS)
    assert not missing(required, reached), missing(required, reached)
    chosen = H.stratified(mutations, 2, key=lambda m: m[2], seed=28)
    cases = []
    for i, (cid, text, _) in enumerate(chosen):
        file = tmp_path / f"a{i}.yaml"
        file.write_text(text)
        cases.append({"id": cid, "argv": ["check-grad", str(every_field_topology), "--engine",
                                          "sim", "--asynchrony", str(file)]})
    records = H.run_driver(cases, tmp_path / "driver")
    broken = H.failures(records)
    assert len(records) == len(cases) > 40
    assert not broken, f"{len(broken)} of {len(cases)}:\n" + "\n".join(broken[:30])


def test_every_traffic_field_is_mutated_and_kept(tmp_path):
    """Every header key and every record field of a real log, broken by the harness's
    hostile values, then `traffic summary` and `traffic audit`."""
    from neurolocal.cli import main
    from neurolocal.traffic.log import FIELDS, HEADER_KEYS

    log = tmp_path / "log"
    assert main(["check-grad", str(H.TOPOLOGIES / "dag.yaml"), "--traffic-log", str(log),
                 "--json"]) == 0
    path = next(log.glob("*.traffic"))
    items = list(msgpack.Unpacker(open(path, "rb"), raw=False))
    index = next(i for i, o in enumerate(items) if isinstance(o, list))
    values = [(label, v) for label, v in H.HOSTILE_VALUES
              if not isinstance(v, int) or -2 ** 63 <= v < 2 ** 64]
    cases, reached = [], set()
    for where, keys in (("header", HEADER_KEYS), ("record", FIELDS)):
        for k, key in enumerate(keys):
            reached.add(key)
            for label, value in values + [("deleted", None)]:
                changed = copy.deepcopy(items)
                if where == "header":
                    if label == "deleted":
                        del changed[0][key]
                    else:
                        changed[0][key] = value
                elif label == "deleted":
                    del changed[index][k]
                else:
                    changed[index][k] = value
                d = tmp_path / f"t{len(cases)}"
                d.mkdir()
                packer = msgpack.Packer(use_bin_type=True)
                (d / path.name).write_bytes(b"".join(packer.pack(o) for o in changed))
                cases.append({"id": f"{where}.{key}={label}", "argv": ["traffic", "summary",
                                                                       str(d)]})
    assert not missing(set(HEADER_KEYS) | set(FIELDS), reached)
    records = H.run_driver(cases, tmp_path / "driver")
    broken = H.failures(records)
    assert len(records) == len(cases) > 300
    assert not broken, f"{len(broken)} of {len(cases)}:\n" + "\n".join(broken[:30])
