"""Issue 28: SIGTERM at random moments of a Ray training: exit 143, exactly one line,
nothing of the command left running, and the checkpoint it names resumes.

Economical: one Ray cluster (engines/ray/cluster.py's LocalCluster, a head alone) is
started once for the module and every run attaches to it with --address, so a moment
costs a run, not a Ray start-up. A few random moments run in CI (half of them right
after the first checkpoint, where the issue saw the default action); the full 30 are
marked slow. Moments count from the command's first line (its handlers installed:
before that the interpreter itself is starting)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from neurolocal import procs

MLP = REPO_ROOT / "topologies" / "mlp.yaml"
RUN = ["run", MLP, "--engine", "ray", "--data", "digits", "--epochs", 2, "--batch-size", 32,
       "--seed", 5, "--quiet", "--no-traffic-log"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from neurolocal.engines.ray.cluster import LocalCluster

    head = LocalCluster(workers=0, cpus_per_node=2,
                        base_dir=str(tmp_path_factory.mktemp("nl-ray")))
    head.start(timeout=180)
    try:
        yield head
    finally:
        head.stop()


def moments(count: int, seed: int) -> list[tuple[str, float]]:
    """(after what, seconds): half from the handlers' installation, half from the first
    checkpoint."""
    rng = random.Random(seed)
    return [("start", rng.uniform(0, 6)) if i % 2 else ("checkpoint", rng.uniform(0, 1.2))
            for i in range(count)]


def sigterm_run(cluster, out, after: str, delay: float):
    command = [sys.executable, "-m", "neurolocal", *map(str, RUN), "--out", str(out),
               "--address", cluster.address]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=cluster.driver_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None and not procs.catches(process.pid, signal.SIGTERM):
        time.sleep(0.001)
    if after == "checkpoint":
        while process.poll() is None and not (out / "checkpoint-pc.npz").exists():
            assert time.monotonic() < deadline, "epoch 1 did not end"
            time.sleep(0.02)
    time.sleep(delay)
    below = procs.descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err, below


def check_moment(cluster, tmp_path, after, delay):
    out = tmp_path / "run"
    code, err, below = sigterm_run(cluster, out, after, delay)
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"\nSIGTERM {delay:.2f} s after {after}: exit {code}, {len(lines)} line(s)")
    if code == 0:                  # it finished before the signal
        return
    assert code == 143 and len(lines) == 1, (code, err)
    assert lines[0].startswith("neurolocal: terminated (SIGTERM)"), lines
    deadline = time.monotonic() + 30
    while any(procs.alive(pid) for pid in below):       # nothing of the command left
        assert time.monotonic() < deadline, [p for p in below if procs.alive(p)]
        time.sleep(0.1)
    if "--resume" in lines[0]:
        done = subprocess.run([sys.executable, "-m", "neurolocal", "run", str(MLP), "--resume",
                               str(out), "--quiet", "--no-traffic-log", "--address",
                               cluster.address], cwd=REPO_ROOT, env=cluster.driver_env(),
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("after,delay", moments(4, 28))
def test_sigterm_at_a_random_moment_of_a_ray_training(cluster, tmp_path, after, delay):
    check_moment(cluster, tmp_path, after, delay)


@pytest.mark.slow
@pytest.mark.parametrize("after,delay", moments(30, 2828))
def test_sigterm_at_30_random_moments_of_a_ray_training(cluster, tmp_path, after, delay):
    check_moment(cluster, tmp_path, after, delay)
