"""Issue 28: an `--out` directory belongs to the run using it (a second run is refused in
one line), and a full disk is one line, exit 2, with the last checkpoint kept and
resumable. The disk is a 3 MB tmpfs (root only: skipped where mounting is not allowed)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_cases as H
from neurolocal.files import directory_lock

TOPOLOGY = H.small_digits(units=48)


@pytest.fixture
def topology(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(TOPOLOGY)
    return path


def run(*argv) -> dict:
    record = H.run_cli(["run", *map(str, argv), "--quiet"], wall_timeout=180)
    assert H.broken(**record) is None, record
    return record


def test_a_second_run_into_a_busy_out_is_refused(topology, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with directory_lock(out, "--out"):           # a run holding it
        record = run(topology, "--out", out)
        assert record["code"] == 2 and "in use by another run" in record["stderr"], record
        resumed = run(topology, "--resume", out)
        assert resumed["code"] == 2, resumed
    assert not (out / "checkpoint-pc.npz").exists()   # the refused run wrote nothing
    record = run(topology, "--out", out)            # once it is free, it runs
    assert record["code"] == 0, record


def test_the_lock_is_exclusive_in_one_process_too(tmp_path):
    from neurolocal.errors import ConfigError

    with directory_lock(tmp_path, "--out"):
        with pytest.raises(ConfigError, match="in use by another run"):
            with directory_lock(tmp_path, "--out"):
                pass
    with directory_lock(tmp_path, "--out"):      # released on the way out
        pass


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "3m"):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:100]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_disk_is_one_line_and_the_checkpoint_resumes(topology, tmp_path):
    with tmpfs(tmp_path / "small") as disk:
        out = disk / "run"
        assert run(topology, "--out", out)["code"] == 0       # epoch 1 and its checkpoint
        checkpoint = (out / "checkpoint-pc.npz").read_bytes()
        filler = disk / "filler"
        with open(filler, "wb") as handle:                    # leave ~16 KB free
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
        os.truncate(filler, filler.stat().st_size - (16 << 10))
        record = run(topology, "--resume", out, "--epochs", "3")
        assert record["code"] == 2, record
        assert "no space left" in record["stderr"] and "--resume" in record["stderr"], record
        assert (out / "checkpoint-pc.npz").read_bytes() == checkpoint   # kept, whole
        filler.unlink()
        resumed = run(topology, "--resume", out, "--epochs", "3")
        assert resumed["code"] == 0, resumed
        epochs = json.loads((out / "metrics.json").read_text())["runs"]["pc"]["epochs"]
        assert epochs[-1]["epoch"] == 3
