"""Issue 28: `cluster down` trusts cluster.json only as far as it can prove it.

No Ray here: a record is written by hand, as a damaged or hostile one would be. A
record naming a foreign directory or a foreign process (with its true start time and
command line) deletes and kills nothing; the same kind of record describing what `up`
would have made (a marked `nl-ray-*` temp dir of ours, a process naming it) is
stopped and deleted, so the test also shows the proof accepts the real thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hostile_cases as H
from neurolocal import procs
from neurolocal.engines.ray import standing

TOKEN = "ab" * 32


def sleeper(*extra: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *extra])
    deadline = time.monotonic() + 10
    while procs.cmdline(process.pid) in (None, "") or "time.sleep" not in procs.cmdline(
            process.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process


def write_record(state: Path, temp_dir: Path, process: subprocess.Popen,
                 command: str | None = None) -> None:
    state.mkdir(parents=True, exist_ok=True)
    pid = process.pid
    record = {"address": "127.0.0.1:1", "temp_dir": str(temp_dir), "log": "x", "started": 0.0,
              "cpus": 1, "processes": [[pid, procs.start_time(pid)]],
              "commands": {str(pid): command or procs.cmdline(pid)}}
    (state / standing.RECORD).write_text(json.dumps(record))
    (state / standing.TOKEN).write_text(TOKEN)


def down(state: Path) -> dict:
    env = {**H.child_env(), standing.STATE_ENV: str(state)}
    done = subprocess.run([sys.executable, "-m", "neurolocal", "cluster", "down"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=H.REPO)
    assert H.broken(done.returncode, done.stderr) is None, done
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def ours_dir(marked: bool = True, digest: str | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=standing.PREFIX,
                                 dir=os.path.realpath(tempfile.gettempdir())))
    (path / "n0").mkdir()
    if marked:
        (path / standing.MARKER).write_text(digest or standing._digest(TOKEN))
    return path


def down_with_one_process(tmp_path, cleanup, temp_dir):
    """A record of `temp_dir` and one process naming it on its command line, then down."""
    process = sleeper(f"--temp-dir={temp_dir}/n0")
    cleanup[0].append(process)
    write_record(tmp_path / "state", temp_dir, process)
    return process, down(tmp_path / "state")


@pytest.fixture
def cleanup():
    started, dirs = [], []
    yield started, dirs
    for process in started:
        process.kill()
        process.wait()
    import shutil

    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("case", ["foreign-dir", "unmarked-nl-ray-dir", "wrong-marker",
                                  "link-to-ours"])
def test_a_temp_dir_it_cannot_prove_is_kept_and_its_processes_live(tmp_path, cleanup, case):
    """The record names a directory `up` did not create (and a process naming it)."""
    started, dirs = cleanup
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    if case == "foreign-dir":
        temp_dir = precious
    elif case == "unmarked-nl-ray-dir":
        temp_dir = ours_dir(marked=False)
    elif case == "wrong-marker":
        temp_dir = ours_dir(digest="0" * 64)
    else:
        real = ours_dir()
        dirs.append(real)
        temp_dir = Path(os.path.realpath(tempfile.gettempdir())) / \
            f"{standing.PREFIX}link-{os.getpid()}"
        temp_dir.symlink_to(real)
    dirs.append(temp_dir)
    process, result = down_with_one_process(tmp_path, cleanup, temp_dir)
    assert result["code"] == 0 and "0 processes" in result["stdout"], result
    assert process.poll() is None
    assert (precious / "data").read_text() == "keep me"
    assert os.path.lexists(temp_dir) and (case != "link-to-ours" or real.exists())


@pytest.mark.parametrize("case", ["foreign-pid", "forged-command"])
def test_a_process_it_cannot_prove_lives(tmp_path, cleanup, case):
    """The temp dir is provably ours, the recorded pid is not: someone else's process
    recorded with its true start time and command line, or with a forged command line."""
    started, dirs = cleanup
    temp_dir = ours_dir()
    dirs.append(temp_dir)
    victim = sleeper()
    started.append(victim)
    forged = f"ray start --block --head --temp-dir={temp_dir}/n0"
    write_record(tmp_path / "state", temp_dir, victim,
                 forged if case == "forged-command" else None)
    result = down(tmp_path / "state")
    assert result["code"] == 0 and "0 processes" in result["stdout"], result
    assert victim.poll() is None


def test_a_record_it_can_prove_is_stopped_and_deleted(tmp_path, cleanup):
    started, dirs = cleanup
    temp_dir = ours_dir()
    dirs.append(temp_dir)
    process, result = down_with_one_process(tmp_path, cleanup, temp_dir)
    assert result["code"] == 0 and "1 processes" in result["stdout"], result
    process.wait(timeout=10)
    assert not temp_dir.exists()


@pytest.mark.parametrize("content", ["{", "[]", '{"processes": 5}', "x" * (2 << 20)])
def test_a_damaged_record_is_one_line(tmp_path, content):
    state = tmp_path / "state"
    state.mkdir()
    (state / standing.RECORD).write_text(content)
    env = {**H.child_env(), standing.STATE_ENV: str(state)}
    done = subprocess.run([sys.executable, "-m", "neurolocal", "cluster", "down"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=H.REPO)
    assert done.returncode == 2 and H.broken(2, done.stderr) is None, done
