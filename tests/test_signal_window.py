"""Issue 28: no window in which a stop signal meets the default action (exit 143 and no
line). The handlers are installed before `python -m neurolocal` imports anything else,
and kept across every phase: C code that replaces Python's handler at the C level (as
Ray's core worker does for SIGTERM) is undone by the keeper thread. And a local run
SIGTERMed at random moments always ends in exactly one line (local engine; the Ray
engine's random moments are tests/test_ray_sigterm_moments.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import hostile_cases as H
from neurolocal import procs

#: a child that starts the way `python -m neurolocal` does, then lets C code replace the
#: SIGTERM handler (sigaction to SIG_DFL, what a library's C core might do mid-run),
#: waits, and signals itself: the keeper must have put Python's handler back
REPLACED = r"""
import ctypes, os, signal, sys, time
from neurolocal import signals
signals.install_early()
from neurolocal.cli import main
import neurolocal.cli as cli

def command(args):
    libc = ctypes.CDLL(None)
    dfl = signals._SigAction()           # SIG_DFL: handler 0
    assert libc.sigaction(signal.SIGTERM, ctypes.byref(dfl), None) == 0
    time.sleep(0.5)                       # the keeper checks every 20 ms
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    return 0

class Parser:                             # the command line names `command`
    def parse_args(self, argv):
        import argparse
        return argparse.Namespace(run=command, json=False)
cli.build_parser = Parser
sys.exit(main([]))
"""


def test_a_handler_replaced_in_c_is_put_back():
    done = subprocess.run([sys.executable, "-c", REPLACED], env=H.child_env(), cwd=H.REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done
    assert done.stderr.strip() == "neurolocal: terminated (SIGTERM)", done


#: a child whose command's SIGTERM is handled inside a finalizer (a weakref callback, as
#: the garbage collector runs them at any moment): Python drops what a finalizer raises,
#: printing "Exception ignored", and the command used to run on to exit 0
IN_FINALIZER = r"""
import os, signal, sys, time, weakref
from neurolocal import signals
signals.install_early()
from neurolocal.cli import main
import neurolocal.cli as cli

def finalizer(_):
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:    # Python runs the handler here, in the callback
        pass

class Anything:
    pass

def command(args):
    thing = Anything()
    ref = weakref.ref(thing, finalizer)
    del thing                             # the callback runs now
    time.sleep(5)
    print("ran on")
    return 0

class Parser:
    def parse_args(self, argv):
        import argparse
        return argparse.Namespace(run=command, json=False)
cli.build_parser = Parser
sys.exit(main([]))
"""


def test_a_stop_raised_inside_a_finalizer_still_stops_the_command():
    done = subprocess.run([sys.executable, "-c", IN_FINALIZER], env=H.child_env(),
                          cwd=H.REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done
    assert done.stderr.strip() == "neurolocal: terminated (SIGTERM)", done
    assert "ran on" not in done.stdout


def test_a_signal_while_importing_is_one_line():
    """SIGTERM the moment `python -m neurolocal` has a handler: still importing the CLI
    (numpy, the ops...), it already ends in one line."""
    process = subprocess.Popen([sys.executable, "-m", "neurolocal", "validate",
                                str(H.TOPOLOGIES / "dag.yaml")], env=H.child_env(),
                               cwd=H.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    while not procs.catches(process.pid, signal.SIGTERM) and process.poll() is None:
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (process.returncode, err)
    assert err.strip() == "neurolocal: terminated (SIGTERM)", err


TOPOLOGY = H.small_digits(units=32, epochs=3, batch_size=64)


def sigterm_at(argv, moment: float) -> tuple[int, str, float]:
    """SIGTERM `moment` seconds after the command has its handlers; (exit, stderr, s)."""
    process = subprocess.Popen([sys.executable, "-m", "neurolocal", *map(str, argv)],
                               env=H.child_env(), cwd=H.REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = time.monotonic()
    # from neurolocal's first line on (before it, Python itself is starting: no program
    # can take a signal there, ~0.1 s)
    while not procs.catches(process.pid, signal.SIGTERM) and process.poll() is None:
        time.sleep(0.001)
    time.sleep(moment)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    return process.returncode, err, time.monotonic() - started


def moments(count: int, seed: int, high: float) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.0, high) for _ in range(count))


@pytest.mark.parametrize("moment", moments(8, 28, 4.0))
def test_sigterm_at_a_random_moment_of_a_local_run(tmp_path, moment):
    _sigterm_local(tmp_path, moment)


@pytest.mark.slow
@pytest.mark.parametrize("moment", moments(30, 280, 6.0))
def test_sigterm_at_30_random_moments_of_a_local_run(tmp_path, moment):
    _sigterm_local(tmp_path, moment)


def _sigterm_local(tmp_path, moment):
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY)
    out = tmp_path / "out"
    code, err, _ = sigterm_at(["run", topology, "--out", out, "--quiet"], moment)
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:                     # it finished first
        return
    assert code == 143 and len(lines) == 1 and "terminated (SIGTERM)" in lines[0], (code, err)
    if "--resume" in lines[0]:        # the checkpoint it names resumes
        record = H.run_cli(["run", topology, "--resume", out, "--quiet"], wall_timeout=120)
        assert record["code"] == 0, record
