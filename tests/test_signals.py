"""Stop signals on the local engine (neurolocal/signals.py, docs/lifecycle.md): SIGHUP
and SIGTERM stop a run like SIGINT, in one line with exit 128 + the signal, keeping
the last epoch's checkpoint; a signal the command was started ignoring (`nohup`)
stays ignored. The Ray engine's cases are in test_ray_signals.py."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REPO_ROOT

MLP = REPO_ROOT / "topologies" / "mlp.yaml"
#: long enough that a signal lands mid-run (the test stops it after epoch 1)
RUN = ["run", MLP, "--engine", "local", "--data", "digits", "--epochs", 50, "--batch-size", 32,
       "--seed", 3, "--quiet", "--no-traffic-log"]


def launch(out, ignore=()):
    def signals_as_asked():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN if signum in ignore else signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "neurolocal", *map(str, RUN), "--out", out],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=signals_as_asked)


def wait_for_epoch_one(process, out) -> None:
    while not (out / "checkpoint-pc.npz").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)


def test_sighup_stops_a_local_run_in_one_line_with_exit_129(tmp_path):
    out = tmp_path / "run"
    process = launch(out)
    wait_for_epoch_one(process, out)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 129
    assert stderr.splitlines() == [f"neurolocal: hung up (SIGHUP); the last epoch's checkpoint "
                                   f"is kept, continue with --resume {out}"]
    with np.load(out / "checkpoint-pc.npz") as archive:
        assert 1 <= int(archive["epoch"]) < 50
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # no half-written file


def test_a_signal_ignored_at_start_stays_ignored(tmp_path):
    """As under `nohup`: SIGHUP changes nothing; SIGTERM still stops the run."""
    out = tmp_path / "run"
    process = launch(out, ignore=(signal.SIGHUP,))
    wait_for_epoch_one(process, out)
    process.send_signal(signal.SIGHUP)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143
    assert stderr.splitlines() == [f"neurolocal: terminated (SIGTERM); the last epoch's "
                                   f"checkpoint is kept, continue with --resume {out}"]
