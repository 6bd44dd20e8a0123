"""Shared test helpers: run the CLI as a user would, from the repository root."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli():
    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "neurolocal", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout)
    return run
