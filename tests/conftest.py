import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=300, env=None, popen=False):
    """`python -m neurolocal ARGS` from the repo root (the worktree's package, not an install)."""
    command = [sys.executable, "-m", "neurolocal", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
