"""Issue 19: every field of every file in topologies/ mutated (hostile_cases.HOSTILE_VALUES,
deletion, unknown keys, aliases and alias bombs, nesting 40 / 2,000 / 100,000 deep),
then `validate`, `check-grad` and a one-batch `run --engine local` on it. Every case ends
in exit 0 or 2, one stderr line on 2, no traceback, within 10 s of CPU and 1 GB of
address space (RLIMIT_AS / RLIMIT_CPU on the child, a CPU alarm per case in the driver).

All validate cases run in-process (hostile_driver.py, two drivers in parallel); check-grad
runs on every case validate accepted plus a stratified sample of the rest; the one-batch
run and the real subprocesses on stratified samples (one per mutation kind and file)."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import hostile_cases as H

SEED = 19


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The mutated topologies on disk: (id, path, mutated path, topology stem)."""
    root = tmp_path_factory.mktemp("hostile-topologies")
    cases = []
    for i, (cid, text, path) in enumerate(H.all_topology_mutations()):
        file = root / f"t{i}.yaml"
        file.write_text(text)
        cases.append((cid, file, path, cid.split(":")[0]))
    return cases


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A few samples fitting each topology, so a one-batch run is one batch."""
    root = tmp_path_factory.mktemp("hostile-data")
    rng = np.random.default_rng(SEED)
    files = {}
    np.savez(root / "mlp.npz", x=rng.random((40, 64)), y=np.arange(40) % 10)
    np.savez(root / "cnn.npz", x=rng.random((40, 1, 8, 8)), y=np.arange(40) % 10)
    np.savez(root / "dag.npz", x=rng.random((40, 12)), y=rng.random((40, 4)))
    np.savez(root / "tokens.npz", x=rng.random((40, 8, 8)), y=np.arange(40) % 10)
    text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz .,"), size=600))
    (root / "text.txt").write_text(text)
    files.update(mlp=root / "mlp.npz", cnn=root / "cnn.npz", dag=root / "dag.npz",
                 rnn=root / "text.txt", lstm=root / "text.txt",
                 transformer=root / "tokens.npz", resnet=root / "cnn.npz")
    return files


def kind(cid: str) -> str:
    """The mutation, without the path: 'nan', 'alias-bomb', 'nested-2000', ..."""
    label = cid.split("=", 1)[1] if "=" in cid else cid.split(":", 1)[1]
    return label.split("-of-")[0]


def run_argv(case, small_data, out) -> list[str]:
    cid, file, path, stem = case
    argv = ["run", str(file), "--engine", "local", "--epochs", "1", "--batch-size", "64",
            "--out", str(out), "--quiet", "--no-traffic-log"]
    if path[:2] != ("training", "data"):
        argv += ["--data", str(small_data[stem])]
    return argv


def in_parallel(chunks, work):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda ic: H.run_driver(ic[1], work / f"driver{ic[0]}"),
                                enumerate(chunks)))
    return [r for part in results for r in part]


@pytest.fixture(scope="module")
def validated(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-validate")
    cases = [{"id": cid, "argv": ["validate", str(file)]} for cid, file, _, _ in corpus]
    records = in_parallel([cases[0::2], cases[1::2]], work)
    return {r["id"]: r for r in records}


def test_every_mutation_validates_or_fails_in_one_line(corpus, validated):
    broken = H.failures(list(validated.values()))
    assert len(validated) == len(corpus) > 5000
    assert not broken, f"{len(broken)} of {len(corpus)} cases:\n" + "\n".join(broken[:40])
    codes = collections.Counter(r["code"] for r in validated.values())
    assert codes[0] > 100 and codes[2] > 4000, codes     # both outcomes are exercised


def test_check_grad_and_one_batch_run_on_mutations(corpus, validated, small_data,
                                                   tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-check-grad")
    accepted = [c for c in corpus if validated[c[0]]["code"] == 0]
    rejected = [c for c in corpus if validated[c[0]]["code"] != 0]
    sample = H.stratified(rejected, 1, key=lambda c: (c[3], kind(c[0])), seed=SEED)
    grad_cases = [{"id": f"check-grad {c[0]}", "argv": ["check-grad", str(c[1])]}
                  for c in accepted + sample]
    runs = H.stratified(accepted, 2, key=lambda c: (c[3], kind(c[0])), seed=SEED) + \
        H.stratified(accepted, 1, key=lambda c: (c[3], c[2][:2]), seed=SEED) + \
        H.stratified(rejected, 1, key=lambda c: c[3], seed=SEED)
    run_cases = [{"id": f"run {c[0]}", "argv": run_argv(c, small_data, work / f"out{i}")}
                 for i, c in enumerate(runs)]
    records = in_parallel([grad_cases + run_cases[0::2], run_cases[1::2]], work)
    broken = H.failures(records)
    assert len(records) == len(grad_cases) + len(run_cases)
    assert not broken, f"{len(broken)} of {len(records)} cases:\n" + "\n".join(broken[:40])
    finished = [r for r in records if r["id"].startswith("run ") and r["code"] == 0]
    assert finished, "no mutated topology trained: the run half is not exercised"


def test_mutations_through_the_real_cli(corpus, validated, small_data, tmp_path):
    """The exit-code/stderr promise of real processes, on one case per mutation kind
    (commands rotating validate, check-grad, run)."""
    picked = H.stratified(corpus, 1, key=lambda c: kind(c[0]), seed=SEED)
    jobs = []
    for i, case in enumerate(picked):
        command = ("validate", "check-grad", "run")[i % 3]
        argv = [command, str(case[1])] if command != "run" else \
            run_argv(case, small_data, tmp_path / f"out{i}")
        jobs.append((f"{command} {case[0]}", argv))
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = list(pool.map(lambda job: {"id": job[0], **H.run_cli(job[1])}, jobs))
    broken = H.failures(records)
    assert len(records) >= 20
    assert not broken, "\n".join(broken)


def test_validate_and_run_agree_on_every_training_section(corpus, validated, small_data,
                                                          tmp_path):
    """One set of checks: a `training:` mutation `validate` refuses, `run` refuses; one it
    accepts, `run` trains (one epoch on a few samples; the flags the test passes override
    only epochs, batch size, engine and data)."""
    overridden = {"epochs", "batch_size", "engine", "data"}
    training = [c for c in corpus if c[2][:1] == ("training",)
                and not (len(c[2]) > 1 and c[2][1] in overridden)]
    picked = H.stratified(training, 3, key=lambda c: (c[3], c[2][:2],
                                                      validated[c[0]]["code"]), seed=SEED)
    cases = [{"id": c[0], "argv": run_argv(c, small_data, tmp_path / f"out{i}")}
             for i, c in enumerate(picked)]
    records = H.run_driver(cases, tmp_path / "driver")
    assert not H.failures(records), H.failures(records)
    # a run may still diverge (an lr of 1e300 is a valid setting): that is not a check
    disagree = [f"{r['id']}: validate {validated[r['id']]['code']}, run {r['code']} "
                f"{r['stderr'].strip()[:200]}" for r in records
                if r["code"] != validated[r["id"]]["code"]
                and "training diverged" not in r["stderr"]]
    assert len(records) > 50
    assert not disagree, "\n".join(disagree)
