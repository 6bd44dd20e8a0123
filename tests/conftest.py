"""Shared test helpers: run the CLI as a user would, from the repository root."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_cli():
    def run(*args, timeout=300):
        return subprocess.run([sys.executable, "-m", "neurolocal", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)
    return run
