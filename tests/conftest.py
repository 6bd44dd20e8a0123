import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT = REPO_ROOT
TOPOLOGIES = REPO_ROOT / "topologies"


def run_cli(*args, timeout=300, env=None, popen=False, cwd=REPO_ROOT):
    """`python -m neurolocal ARGS` from the repo root (the checkout's package, not an install).

    `env` entries are added to this process's environment.
    """
    command = [sys.executable, "-m", "neurolocal", *map(str, args)]
    full_env = {**os.environ, **(env or {})}
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=full_env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
