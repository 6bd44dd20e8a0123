import contextlib
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


@contextlib.contextmanager
def module_ray(num_cpus: int = 2, **options):
    """One embedded Ray for a test module (the house rule: one per module), stopped at its
    end. The workers run this checkout (worker_runtime_env); their logs stay off the
    driver unless `log_to_driver=True`."""
    import ray

    from neurolocal.engines.ray import worker_runtime_env

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             logging_level="warning", runtime_env=worker_runtime_env(),
             **{"log_to_driver": False, **options})
    try:
        yield
    finally:
        ray.shutdown()


def cli_code(*args) -> int:
    """`neurolocal ARGS` in this process; its exit code (argparse's SystemExit included)."""
    from neurolocal.cli import main

    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
