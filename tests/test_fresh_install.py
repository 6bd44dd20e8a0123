"""The README's two set-up commands, run in order in one brand-new virtual environment.

    pip install . && neurolocal run topologies/mlp.yaml
    pip install -e '.[test]' && pytest

This is the sequence a new user types. It once broke the `neurolocal` command: the
first run made numba write its kernel cache into the *installed* package
(site-packages/neurolocal/__pycache__), `pip install -e` then removed the package
but not those files, and the leftover folder was imported as a namespace package
("cannot import name '__version__' from 'neurolocal' (unknown location)"). The test
runs the sequence on a copy of this checkout, in a venv of its own, with the
README's real command (Ray engine) kept short by a 40-sample data file and one epoch,
plus the tour's `check-grad` (local engine: the kernels run in the installed package,
which is what left the cache behind; before the fix this test fails at
`neurolocal --version` with that ImportError), and checks after each step. It needs the package index pip is configured with (no
other network). Slow: two installs, torch among them, and two embedded Ray runs;
`.ci/run` runs it (about 3-4 minutes on the 2-core CI machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

#: what a clean clone holds that the install and the README's command need
SOURCES = ("pyproject.toml", "README.md", "neurolocal", "topologies")


def _copy_checkout(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "*.egg-info")
    for name in SOURCES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """This environment minus anything that would make the venv see another neurolocal
    or another kernel cache (PYTHONPATH, an active venv, NUMBA_CACHE_DIR)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "NUMBA_CACHE_DIR")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.update(extra)
    return env


def _run(command: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return done


def _describe(step: str, done: subprocess.CompletedProcess) -> str:
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    return f"{step} exited {done.returncode}:\n{tail}"


def _kernel_cache_files(site_packages: Path) -> list[Path]:
    package = site_packages / "neurolocal"
    if not package.exists():
        return []
    return [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")]


def test_readme_install_sequence_in_a_fresh_venv(tmp_path):
    src, venv, cache = tmp_path / "checkout", tmp_path / "venv", tmp_path / "cache"
    src.mkdir()
    _copy_checkout(src)
    # 40 labelled 64-pixel samples: 30 train (one batch of the topology's 32), 10 test
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x=rng.random((40, 64)), y=np.arange(40) % 10)

    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    site_packages = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    # pip keeps its own (user) cache; neurolocal's commands get a cache home of their own,
    # so numba compiles afresh as on a new machine
    pip_env = _clean_env(venv)
    run_env = _clean_env(venv, XDG_CACHE_HOME=str(cache))
    neurolocal = str(venv / "bin" / "neurolocal")
    short_run = [neurolocal, "run", "topologies/mlp.yaml", "--data", str(tmp_path / "tiny.npz"),
                 "--epochs", "1", "--quiet"]
    check_grad = [neurolocal, "check-grad", "topologies/mlp.yaml", "--max-rel-error", "1e-10"]

    # the README's first line: a regular (non-editable) install and the real command
    done = _run([python, "-m", "pip", "install", "."], src, pip_env, 1200)
    assert done.returncode == 0, _describe("pip install .", done)
    done = _run(short_run + ["--out", str(tmp_path / "run1")], src, run_env, 900)
    assert done.returncode == 0, _describe("neurolocal run (installed)", done)
    assert (tmp_path / "run1" / "metrics.json").is_file()
    # the tour's next command runs every vertex in this process (local engine), so numba
    # compiles the installed package's kernels here (Ray workers put the driver's working
    # directory first on their path: in a checkout they run its source tree instead)
    done = _run(check_grad, src, run_env, 300)
    assert done.returncode == 0, _describe("neurolocal check-grad (installed)", done)
    in_package = _kernel_cache_files(site_packages)  # checked last: the symptom comes first

    # the README's second line's install, in the same venv: editable, with the test extra
    # --no-compile: no bytecode for torch's thousands of modules (a minute here); the
    # editable neurolocal itself is never byte-compiled by pip anyway
    done = _run([python, "-m", "pip", "install", "--no-compile", "-e", ".[test]"], src, pip_env,
                1800)
    assert done.returncode == 0, _describe("pip install -e '.[test]'", done)
    done = _run([neurolocal, "--version"], src, run_env, 120)
    assert done.returncode == 0, _describe("neurolocal --version (after pip install -e)", done)
    assert done.stdout.strip() == "neurolocal 0.1.0"
    located = _run([python, "-c", "import neurolocal; print(neurolocal.__file__)"], tmp_path,
                   run_env, 120)
    assert located.stdout.strip() == str(src / "neurolocal" / "__init__.py"), located.stderr
    done = _run(short_run + ["--out", str(tmp_path / "run2")], src, run_env, 900)
    assert done.returncode == 0, _describe("neurolocal run (editable)", done)
    assert (tmp_path / "run2" / "metrics.json").is_file()
    done = _run(check_grad, src, run_env, 300)
    assert done.returncode == 0, _describe("neurolocal check-grad (editable)", done)

    # the cause: numba's cache belongs in the user's cache directory, never in the package
    assert in_package == [], f"numba cached kernels inside the installed package: {in_package}"
    assert not [p for p in (src / "neurolocal").rglob("*") if p.suffix in (".nbi", ".nbc")], \
        "numba cached kernels inside the editable source tree"
    assert list(cache.glob("neurolocal/numba/**/*kernels*.nbi")), \
        "numba's kernel cache is not in $XDG_CACHE_HOME/neurolocal/numba"
