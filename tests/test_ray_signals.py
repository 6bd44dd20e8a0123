"""Stopping and dying well (issue 18, docs/lifecycle.md): a `neurolocal run` on the Ray
engine receiving SIGTERM, SIGINT during Ray's start-up, or losing its raylet, its GCS or
itself to SIGKILL. Each test asserts the exit status, the one stderr line, that the last
epoch's checkpoint resumes bitwise to the final parameters of one shared undisturbed
run, and that no process of the run survives it (polled with a deadline).

Real Ray, real signals, sent by process id. The processes of a run are found as
descendants of the command under test, never by name: this pytest process makes itself
a child subreaper (prctl PR_SET_CHILD_SUBREAPER) for the module, so a process orphaned by
a dying parent (a Ray worker whose raylet was killed) is re-parented to it and stays in
view; each check compares against the processes that were already there.

Small: the digits MLP, 2 epochs of 90 batches of 16; the kills land in epoch 2, right
after the epoch-1 checkpoint appears.
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from neurolocal import procs

MLP = REPO_ROOT / "topologies" / "mlp.yaml"
RUN = ["run", MLP, "--engine", "ray", "--data", "digits", "--epochs", 2, "--batch-size", 16,
       "--seed", 5, "--quiet", "--no-traffic-log"]
PR_SET_CHILD_SUBREAPER = 36
#: seconds a command may take before the test fails (a hang, not a timing assert)
COMMAND_TIMEOUT = 300
#: seconds the leftovers of a run may take to be gone after it returned
LEFTOVER_DEADLINE = 30


def prctl_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def process_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state, start time), from /proc (neurolocal/procs.py)."""
    return {pid: (e.parent, e.state, e.started) for pid, e in procs.table().items()}


def below(root: int) -> dict[int, tuple[int, str, int]]:
    table = procs.table()
    return {pid: (table[pid].parent, table[pid].state, table[pid].started)
            for pid in procs.descendants(root, table)}


def reap_orphans() -> None:
    """Collect the exit status of adopted orphans that have exited (zombies)."""
    me = os.getpid()
    for pid, (parent, state, _) in process_table().items():
        if parent == me and state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def executable(pid: int) -> str:
    return procs.executable(pid) or ""


@pytest.fixture(scope="module", autouse=True)
def adopt_orphans():
    prctl_subreaper(True)
    try:
        yield
    finally:
        prctl_subreaper(False)
        reap_orphans()


def default_stop_signals() -> None:
    """As in a terminal: a test runner started in the background may ignore SIGINT, and
    a command started ignoring a signal keeps ignoring it (as `nohup` wants)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Command:
    """`python -m neurolocal ARGS` in a session (and process group) of its own."""

    def __init__(self, tmp_path: Path, *args):
        self.before = {(pid, start) for pid, (_, _, start) in below(os.getpid()).items()}
        self.stderr_file = tmp_path / f"stderr-{time.monotonic_ns()}"
        with open(self.stderr_file, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "neurolocal", *map(str, args)], cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                preexec_fn=default_stop_signals)
        self.pid = self.process.pid

    def descendants(self) -> dict[int, tuple[int, str, int]]:
        return {pid: row for pid, row in below(self.pid).items() if row[1] != "Z"}

    def wait_until(self, condition, what: str) -> None:
        while not condition():
            assert self.process.poll() is None, f"the run ended before {what}: {self.stderr()}"
            time.sleep(0.05)

    def wait(self) -> int:
        return self.process.wait(timeout=COMMAND_TIMEOUT)

    def stderr(self) -> str:
        return self.stderr_file.read_text()

    def stderr_lines(self) -> list[str]:
        return self.stderr().splitlines()

    def survivors(self) -> list[str]:
        reap_orphans()
        return [f"{pid} {executable(pid)} (parent {parent})"
                for pid, (parent, state, start) in below(os.getpid()).items()
                if state != "Z" and (pid, start) not in self.before]

    def assert_nothing_left(self) -> None:
        """No process of this run is alive, once a bounded wait is over."""
        deadline = time.monotonic() + LEFTOVER_DEADLINE
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.survivors() == []


def final_params(out_dir: Path) -> dict[str, np.ndarray]:
    with np.load(out_dir / "checkpoint-pc.npz", allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files if k.startswith("param/")}


def checkpoint_epoch(out_dir: Path) -> int:
    with np.load(out_dir / "checkpoint-pc.npz", allow_pickle=False) as archive:
        return int(archive["epoch"])


def run_to_the_end(tmp_path: Path, *args) -> None:
    command = Command(tmp_path, *args)
    assert command.wait() == 0, command.stderr()
    assert command.stderr_lines() == []
    command.assert_nothing_left()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    """The run no test disturbs; it too must leave nothing behind and say nothing."""
    out = tmp_path_factory.mktemp("undisturbed") / "run"
    run_to_the_end(out.parent, *RUN, "--out", out)
    return final_params(out)


def started_epoch_two(command: Command, out: Path) -> None:
    """Wait for the epoch-1 checkpoint: the run is in epoch 2 from then on."""
    command.wait_until(lambda: (out / "checkpoint-pc.npz").exists(), "epoch 1 ended")


def assert_resumes_bitwise(tmp_path: Path, out: Path, undisturbed: dict) -> None:
    assert checkpoint_epoch(out) == 1
    run_to_the_end(tmp_path, "run", MLP, "--resume", out, "--quiet", "--no-traffic-log")
    got = final_params(out)
    assert got.keys() == undisturbed.keys()
    for key, value in undisturbed.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("to", ["the driver", "its process group"])
def test_sigterm_stops_at_a_safe_point_keeps_the_checkpoint_and_leaves_nothing(
        tmp_path, undisturbed, to):
    out = tmp_path / "run"
    command = Command(tmp_path, *RUN, "--out", out)
    started_epoch_two(command, out)
    if to == "the driver":
        os.kill(command.pid, signal.SIGTERM)
    else:  # what a terminal's job control or a container runtime may do
        os.killpg(command.pid, signal.SIGTERM)
    assert command.wait() == 143, command.stderr()
    assert command.stderr_lines() == [
        f"neurolocal: terminated (SIGTERM); the last epoch's checkpoint is kept, continue "
        f"with --resume {out}"]
    command.assert_nothing_left()
    assert_resumes_bitwise(tmp_path, out, undisturbed)


@pytest.mark.parametrize("moment", ["first Ray process", "raylet's agents"])
def test_sigint_during_ray_start_up_exits_130_and_leaves_nothing(tmp_path, moment):
    """The first moment: the driver has started its watchdog and Ray's first process;
    the second: below one of its children run more processes (the raylet's agents),
    the window in which Ray's agents used to outlive the command by a minute."""
    out = tmp_path / "run"
    command = Command(tmp_path, *RUN, "--out", out)
    if moment == "first Ray process":
        command.wait_until(lambda: len(command.descendants()) >= 2, moment)
    else:
        command.wait_until(lambda: any(parent != command.pid for parent, _, _
                                       in command.descendants().values()), moment)
    os.kill(command.pid, signal.SIGINT)
    assert command.wait() == 130, command.stderr()
    assert command.stderr_lines() == ["neurolocal: interrupted"]
    command.assert_nothing_left()
    assert not (out / "checkpoint-pc.npz").exists()  # no epoch ended: nothing to resume


@pytest.mark.parametrize("victim, named", [
    ("raylet", "the embedded Ray's raylet (the local node's scheduler and object store)"),
    ("gcs_server", "the embedded Ray's GCS server (gcs_server, the cluster's metadata store)"),
])
def test_a_killed_raylet_or_gcs_ends_the_run_in_one_line_naming_it(
        tmp_path, undisturbed, victim, named):
    out = tmp_path / "run"
    command = Command(tmp_path, *RUN, "--out", out)
    started_epoch_two(command, out)
    pids = [pid for pid in command.descendants() if executable(pid) == victim]
    assert len(pids) == 1, command.descendants()
    os.kill(pids[0], signal.SIGKILL)
    assert command.wait() == 2, command.stderr()
    assert command.stderr_lines() == [
        f"neurolocal: error: {named}, pid {pids[0]} died; the last epoch's checkpoint is "
        f"kept, continue with --resume {out}"]
    command.assert_nothing_left()
    assert_resumes_bitwise(tmp_path, out, undisturbed)


def test_a_driver_killed_with_sigkill_leaves_no_ray_behind(tmp_path, undisturbed):
    """SIGKILL cannot be caught: the watchdog, in a session of its own, sees the
    driver's pipe close and stops the embedded Ray's processes."""
    out = tmp_path / "run"
    command = Command(tmp_path, *RUN, "--out", out)
    started_epoch_two(command, out)
    assert len(command.descendants()) > 2  # Ray is running under it
    os.kill(command.pid, signal.SIGKILL)
    assert command.wait() == -signal.SIGKILL
    assert command.stderr_lines() == []  # it had no chance to say anything
    command.assert_nothing_left()
    assert_resumes_bitwise(tmp_path, out, undisturbed)
