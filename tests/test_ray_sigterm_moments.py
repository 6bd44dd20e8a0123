"""Issue 28: SIGTERM at random moments of a Ray training: exit 143, exactly one line,
nothing of the command left running, and the checkpoint it names resumes.

Economical: one Ray cluster (engines/ray/cluster.py's LocalCluster, a head alone) is
started once for the module and every run attaches to it with --address, so a moment
costs a run, not a Ray start-up. A reference run, attached too, measures the span the
moments are drawn from: how long after its handlers were installed the first
checkpoint appeared and the command returned (from then on it ignores stop signals:
`signals.exiting`, seen as the handler gone from /proc/PID/status). Half the moments
count from the handlers' installation, half from the first checkpoint (where the
issue saw the default action). A run varies in length (the machine's load), so a
moment may still come after its command returned (exit 0, no line: it does not
count, and the span it was drawn from shrinks to it); moments are drawn, a bounded
number of them, until enough have landed while the command ran, and the test fails
if fewer did. CI lands 3 (at most 6 draws); the slow test lands 30 (at most 45)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import REPO_ROOT
from neurolocal import procs

MLP = REPO_ROOT / "topologies" / "mlp.yaml"
RUN = ["run", MLP, "--engine", "ray", "--data", "digits", "--epochs", 2, "--batch-size", 32,
       "--seed", 5, "--quiet", "--no-traffic-log"]
TIMEOUT = 300
CHECKPOINT = "checkpoint-pc.npz"
ACTOR = "ray::ShardActor"      # the process title of the run's actors (and their calls)


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


class Span(NamedTuple):
    """Seconds from a run's handlers' installation to its first checkpoint and to the
    last moment its command still caught SIGTERM (it returned just after)."""
    checkpoint: float
    returned: float


def start(cluster, out: Path) -> tuple[subprocess.Popen, float]:
    """A training attached to the cluster, and the moment its handlers were installed."""
    command = [sys.executable, "-m", "neurolocal", *map(str, RUN), "--out", str(out),
               "--address", cluster.address]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=cluster.driver_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None and not procs.catches(process.pid, signal.SIGTERM):
        time.sleep(0.001)
    return process, time.monotonic()


@pytest.fixture(scope="module")
def span(cluster, tmp_path_factory) -> Span:
    out = tmp_path_factory.mktemp("reference") / "run"
    process, installed = start(cluster, out)
    checkpoint = caught = None
    while process.poll() is None:
        if procs.catches(process.pid, signal.SIGTERM):
            caught = time.monotonic() - installed
        if checkpoint is None and (out / CHECKPOINT).exists():
            checkpoint = time.monotonic() - installed
        time.sleep(0.005)
    _, err = process.communicate()
    assert process.returncode == 0 and err == "", err
    assert checkpoint is not None and caught is not None and caught > checkpoint
    print(f"\nreference run: first checkpoint {checkpoint:.2f} s, returned {caught:.2f} s "
          "after its handlers were installed")
    return Span(checkpoint, caught)


def actors_in(cluster) -> list[int]:
    """The run's actor processes in the cluster (idle Ray workers are `ray::IDLE`)."""
    return [pid for pid in procs.below([p.pid for p in cluster.processes])
            if (procs.cmdline(pid) or "").startswith(ACTOR)]


def sigterm_run(cluster, out: Path, after: str, delay: float):
    """One run, SIGTERM `delay` s after its handlers' installation or its first checkpoint:
    (exit code, stderr, the processes below it when the signal was sent)."""
    process, _ = start(cluster, out)
    deadline = time.monotonic() + TIMEOUT
    if after == "checkpoint":
        while process.poll() is None and not (out / CHECKPOINT).exists():
            assert time.monotonic() < deadline, "epoch 1 did not end"
            time.sleep(0.005)
    time.sleep(delay)
    below = procs.descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err, below


def landed(cluster, out: Path, after: str, delay: float) -> bool:
    """One moment: False when the command had returned before the signal (exit 0, no line,
    a finished run); True when it landed, after checking exit 143, the one line, that
    nothing of the command runs on (its processes, its actors in the cluster) and that
    the checkpoint the line names resumes."""
    code, err, below = sigterm_run(cluster, out, after, delay)
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"SIGTERM {delay:.2f} s after {after}: exit {code}, {len(lines)} line(s)")
    if code == 0:
        assert lines == [] and (out / "metrics.json").exists(), err
        return False
    assert code == 143 and len(lines) == 1, (code, err)
    assert lines[0].startswith("neurolocal: terminated (SIGTERM)"), lines
    deadline = time.monotonic() + 30
    while any(procs.alive(pid) for pid in below) or actors_in(cluster):
        assert time.monotonic() < deadline, ([p for p in below if procs.alive(p)],
                                             actors_in(cluster))
        time.sleep(0.1)
    if "--resume" in lines[0]:
        assert lines[0].endswith(f"--resume {out}"), lines
        done = subprocess.run([sys.executable, "-m", "neurolocal", "run", str(MLP), "--resume",
                               str(out), "--quiet", "--no-traffic-log", "--address",
                               cluster.address], cwd=REPO_ROOT, env=cluster.driver_env(),
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr[-2000:]
    return True


def land(cluster, span: Span, tmp_path: Path, landings: int, draws: int, seed: int) -> None:
    """Draw moments within the reference span, alternately from the handlers'
    installation and from the first checkpoint, until `landings` have landed (at most
    `draws` moments). The load on the machine changes a run's length: a moment that
    came after its command returned shortens that anchor's span to it, so a reference
    run measured on a busier machine does not keep sending moments past the end."""
    rng = random.Random(seed)
    spans = {"start": span.returned, "checkpoint": span.returned - span.checkpoint}
    count = 0
    for i in range(draws):
        after = "start" if i % 2 else "checkpoint"
        delay = rng.uniform(0, spans[after])
        if landed(cluster, tmp_path / f"run{i}", after, delay):
            count += 1
        else:
            spans[after] = delay
        if count == landings:
            print(f"{landings} landed in {i + 1} moments")
            return
    pytest.fail(f"only {count} of {draws} moments landed while the command ran")


def test_sigterm_at_random_moments_of_a_ray_training(cluster, span, tmp_path):
    land(cluster, span, tmp_path, landings=3, draws=6, seed=28)


@pytest.mark.slow
def test_sigterm_at_30_random_moments_of_a_ray_training(cluster, span, tmp_path):
    land(cluster, span, tmp_path, landings=30, draws=45, seed=2828)
