"""Issue 19: every entry of a real checkpoint (and every setting inside it) damaged, then
`run --resume`: exit 0 or 2, one stderr line on 2, no traceback, within 10 s of CPU and
1 GB, and a refused checkpoint is left as it was. In-process (hostile_driver.py) for
every case; real subprocesses for a stratified sample, plus bytes-level damage."""

from __future__ import annotations

import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import hostile_cases as H

SEED = 1990
MLP = str(H.TOPOLOGIES / "mlp.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-checkpoint")
    rng = np.random.default_rng(SEED)
    data = root / "data.npz"
    np.savez(data, x=rng.random((40, 64)), y=np.arange(40) % 10)
    out = root / "run"
    made = H.run_cli(["run", MLP, "--engine", "local", "--epochs", "1", "--data", str(data),
                      "--out", str(out), "--quiet", "--no-traffic-log"])
    assert made["code"] == 0, made
    with np.load(out / "checkpoint-pc.npz", allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return out, arrays


def damaged_copies(finished, root):
    out, arrays = finished
    cases = []
    for i, (cid, changed, pickle) in enumerate(H.checkpoint_mutations(arrays)):
        copy = root / f"c{i}"
        shutil.copytree(out, copy)
        H.write_npz(copy / "checkpoint-pc.npz", changed, allow_pickle=pickle)
        cases.append((cid, copy))
    valid = (out / "checkpoint-pc.npz").read_bytes()
    rng = random.Random(SEED)
    for j, cut in enumerate(sorted(rng.sample(range(1, len(valid)), 20))):
        copy = root / f"cut{j}"
        shutil.copytree(out, copy)
        (copy / "checkpoint-pc.npz").write_bytes(valid[:cut])
        cases.append((f"truncated-{cut}", copy))
    for j in range(30):
        copy = root / f"flip{j}"
        shutil.copytree(out, copy)
        (copy / "checkpoint-pc.npz").write_bytes(H.flip_bits(valid, rng, 1 + j % 3))
        cases.append((f"bitflip-{j}", copy))
    return cases


def resume(case):
    cid, directory = case
    return {"id": cid, "argv": ["run", MLP, "--resume", str(directory), "--epochs", "2",
                                "--engine", "local", "--quiet", "--no-traffic-log"]}


def test_every_damaged_checkpoint_resumes_or_fails_in_one_line(finished, tmp_path):
    cases = damaged_copies(finished, tmp_path)
    jobs = [resume(c) for c in cases]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda ic: H.run_driver(ic[1], tmp_path / f"driver{ic[0]}"),
                              enumerate([jobs[0::2], jobs[1::2]])))
    records = [r for part in parts for r in part]
    broken = H.failures(records)
    assert len(records) == len(cases) > 600
    assert not broken, f"{len(broken)} of {len(records)}:\n" + "\n".join(broken[:40])
    by_id = {r["id"]: r for r in records}
    for must_fail in ("optimizer/step=1-d", "settings.batch_size=batch-size-0",
                      "history/train_loss=strings", "settings.lr=text", "param/hidden1/weight=nan",
                      "settings=not-json", "rng=3x3", "epoch=negative"):
        assert by_id[must_fail]["code"] == 2, by_id[must_fail]
    refused = [c for c in cases if by_id[c[0]]["code"] == 2]
    assert all(not (directory / "checkpoint-bp.npz").exists() for _, directory in refused)


def test_damaged_checkpoints_through_the_real_cli(finished, tmp_path):
    cases = damaged_copies(finished, tmp_path)
    picked = H.stratified(cases, 1, key=lambda c: c[0].split("=")[-1].split("-")[0], seed=SEED)
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = list(pool.map(lambda c: {"id": c[0], **H.run_cli(resume(c)["argv"])}, picked))
    assert len(records) >= 15
    assert not H.failures(records), H.failures(records)
