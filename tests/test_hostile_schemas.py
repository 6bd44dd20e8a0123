"""Issue 28, scope 1 and 7: every field of the loss, training and asynchrony sections of a
topology (topologies built from the schemas, tests/schema_walk.py) mutated every way the
hostile harness knows (tests/hostile_cases.py: wrong types, NaN/inf, huge, negative,
empty, deleted, unknown keys, alias bombs, deep nesting), then `validate` and `check-grad`
on it: exit 0 or 2, one stderr line on 2, no traceback, within 10 s of CPU and 1 GB of
address space. The test names any schema field the mutations did not reach."""

from __future__ import annotations

import collections

import pytest

import hostile_cases as H
import schema_walk as S

SECTIONS = ("loss", "training", "asynchrony")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-schemas")
    cases = []
    for name, doc in S.every_field_topologies():
        for cid, text, path in H.topology_mutations(name, H.flow(doc)):
            if path[:1] and path[0] in SECTIONS:
                file = root / f"t{len(cases)}.yaml"
                file.write_text(text)
                cases.append((cid, file, path))
    return cases


def test_the_unmutated_topologies_are_valid(tmp_path):
    cases = []
    for name, doc in S.every_field_topologies():
        file = tmp_path / f"{name}.yaml"
        file.write_text(H.flow(doc))
        cases += [{"id": f"validate {name}", "argv": ["validate", str(file)]},
                  {"id": f"check-grad {name}", "argv": ["check-grad", str(file)]}]
    records = H.run_driver(cases, tmp_path / "driver")
    assert [(r["id"], r["code"]) for r in records] == [(c["id"], 0) for c in cases], records


def test_every_schema_field_is_mutated(corpus):
    reached = {str(p) for _, _, path in corpus for p in path if isinstance(p, str)}
    missing = sorted(S.schema_fields() - reached)
    assert not missing, f"fields no mutation reaches: {missing}"


def test_every_field_mutation_validates_or_fails_in_one_line(corpus, tmp_path):
    cases = [{"id": cid, "argv": ["validate", str(file)]} for cid, file, _ in corpus]
    records = H.run_driver(cases, tmp_path / "validate")
    broken = H.failures(records)
    assert len(records) == len(cases) > 1000
    assert not broken, f"{len(broken)} of {len(cases)} cases:\n" + "\n".join(broken[:40])
    codes = collections.Counter(r["code"] for r in records)
    assert codes[0] > 50 and codes[2] > 500, codes


def test_check_grad_on_loss_and_training_mutations(corpus, tmp_path):
    """check-grad builds the loss and runs it (the issue's regression: `scale: abc` was a
    traceback from ops/losses.py there): every loss mutation, a sample of the rest."""
    loss = [c for c in corpus if c[2][0] == "loss"]
    rest = H.stratified([c for c in corpus if c[2][0] != "loss"], 1,
                        key=lambda c: (c[2][:2], c[0].rsplit("=", 1)[-1][:6]), seed=28)
    cases = [{"id": f"check-grad {c[0]}", "argv": ["check-grad", str(c[1])]}
             for c in loss + rest]
    records = H.run_driver(cases, tmp_path / "check-grad")
    broken = H.failures(records)
    assert len(records) == len(cases)
    assert not broken, f"{len(broken)} of {len(cases)} cases:\n" + "\n".join(broken[:40])


@pytest.mark.parametrize("value", ["abc", "-1", "0", ".nan", ".inf", "1.0e+308", "true",
                                   "[1]", "{a: 1}", "''"])
@pytest.mark.parametrize("command", ["validate", "check-grad"])
def test_loss_scale_regression_is_one_line(tmp_path, command, value):
    """The issue's reproduction, in a real process: `loss: {type: mse, scale: abc}`."""
    text = (H.TOPOLOGIES / "dag.yaml").read_text().replace("loss: mse",
                                                          f"loss: {{type: mse, scale: {value}}}")
    assert f"scale: {value}" in text
    file = tmp_path / "t.yaml"
    file.write_text(text)
    record = H.run_cli([command, str(file)])
    assert H.broken(**record) is None, record
    assert record["code"] == 2 and "loss.scale" in record["stderr"], record
