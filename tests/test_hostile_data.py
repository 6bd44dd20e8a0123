"""Issue 19: hostile data files — .npz (pickled or non-.npy members, damaged headers, a zip
bomb, every array's dtype/shape/values mutated, truncations, bit flips), CSV (a field over
131,072 characters, labels of int64 minimum or 1e20, ragged rows...), text, and things
that are not regular files (FIFOs, /dev/zero, /dev/urandom, directories, dangling links).

Every case: exit 0 or 2, one stderr line on 2, no traceback, within 10 s of CPU and 1 GB
of address space. All cases go through `check-grad --data` in-process (hostile_driver.py);
a stratified sample through a one-batch `run`, and the special files and the zip bomb
as real subprocesses."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

import hostile_cases as H

SEED = 1919
MLP = str(H.TOPOLOGIES / "mlp.yaml")
RNN = str(H.TOPOLOGIES / "rnn.yaml")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(id, path, topology) of every hostile data file."""
    root = tmp_path_factory.mktemp("hostile-data")
    rng = random.Random(SEED)
    cases = []
    for i, (cid, suffix, data) in enumerate([*H.npz_cases(rng), *H.csv_cases(rng)]):
        path = root / f"d{i}{suffix}"
        path.write_bytes(data)
        cases.append((cid, str(path), MLP))
    for i, (cid, suffix, data) in enumerate(H.text_cases(rng)):
        path = root / f"text{i}{suffix}"
        path.write_bytes(data)
        cases.append((cid, str(path), RNN))
    bomb = root / "bomb.npz"
    H.zip_bomb(bomb)
    cases.append(("npz:zip-bomb-300MB", str(bomb), MLP))
    for cid, path in H.special_files(root):
        cases.append((cid, path, RNN if path.endswith(".txt") else MLP))
    return cases


def check_grad(case):
    cid, path, topology = case
    return {"id": f"check-grad {cid}",
            "argv": ["check-grad", topology, "--data", path, "--engine", "local"]}


def run(case, out):
    cid, path, topology = case
    return {"id": f"run {cid}", "argv": ["run", topology, "--data", path, "--engine", "local",
                                         "--epochs", "1", "--batch-size", "100000", "--out",
                                         str(out), "--quiet", "--no-traffic-log"]}


def test_every_data_file_loads_or_fails_in_one_line(corpus, tmp_path):
    cases = [check_grad(c) for c in corpus]
    sample = H.stratified(corpus, 2, key=lambda c: c[0].split(":")[1].split("-")[0], seed=SEED)
    cases += [run(c, tmp_path / f"out{i}") for i, c in enumerate(sample)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda ic: H.run_driver(ic[1], tmp_path / f"driver{ic[0]}"),
                              enumerate([cases[0::2], cases[1::2]])))
    records = [r for part in parts for r in part]
    broken = H.failures(records)
    assert len(records) == len(cases) > 400
    assert not broken, f"{len(broken)} of {len(records)}:\n" + "\n".join(broken[:40])
    by_id = {r["id"]: r for r in records}
    for valid in ("npz:valid", "csv:valid", "text:valid"):
        assert by_id[f"check-grad {valid}"]["code"] == 0, by_id[f"check-grad {valid}"]


EXPECTED = {
    "special:fifo.npz": "FIFO", "special:/dev/zero": "device", "special:/dev/urandom": "device",
    "npz:zip-bomb-300MB": "inflates", "npz:pickled-member": "pickled",
    "npz:member-not-npy": "not a .npy", "csv:feature=huge-field": "CSV",
    "csv:label=int64-min": "labels", "csv:label=1e20": "labels", "csv:three-rows": "4 samples",
}


def test_hostile_data_through_the_real_cli(corpus, tmp_path):
    """Real processes: the named classes of the issue, each saying what is wrong, in one line."""
    picked = [c for c in corpus if c[0] in EXPECTED]
    assert len(picked) == len(EXPECTED)
    jobs = [(c, ["run", c[2], "--data", c[1], "--engine", "local", "--epochs", "1",
                 "--out", tmp_path / f"out{i}", "--quiet", "--no-traffic-log"])
            for i, c in enumerate(picked)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = list(pool.map(lambda job: {"id": job[0][0], **H.run_cli(job[1])}, jobs))
    assert not H.failures(records), H.failures(records)
    for (case, _), record in zip(jobs, records):
        assert record["code"] == 2, record
        assert EXPECTED[case[0]].lower() in record["stderr"].lower(), record
        assert case[1] in record["stderr"], record            # names the file
    assert not any((tmp_path / f"out{i}").exists() for i in range(len(jobs)))
