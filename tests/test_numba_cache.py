"""numba's kernel cache lives in a per-user directory, never inside the package
(neurolocal/numba_cache.py; the sequence that broke an install is tests/test_fresh_install.py)."""

import os
import subprocess
import sys

from conftest import REPO_ROOT, run_cli

from neurolocal import numba_cache


def test_candidates_in_order_numba_cache_dir_then_xdg_then_home():
    env = {"NUMBA_CACHE_DIR": "/a", "XDG_CACHE_HOME": "/x"}
    found = numba_cache.candidates(env)
    assert found[:3] == ["/a", "/x/neurolocal/numba",
                         os.path.join(os.path.expanduser("~"), ".cache", "neurolocal", "numba")]
    assert numba_cache.candidates({})[0].endswith(os.path.join(".cache", "neurolocal", "numba"))


def test_an_unwritable_choice_falls_back_to_the_next(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"NUMBA_CACHE_DIR": str(blocker / "cache"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    chosen = numba_cache.configure(env)
    assert chosen == str(tmp_path / "xdg" / "neurolocal" / "numba") == env["NUMBA_CACHE_DIR"]


def test_kernels_compile_into_the_user_cache_and_workers_are_told(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    probe = ("import os, numba.core.config as c, neurolocal; "
             "from neurolocal.engines.ray.connection import worker_runtime_env; "
             "print(os.environ['NUMBA_CACHE_DIR'], c.CACHE_DIR, "
             "worker_runtime_env()['env_vars']['NUMBA_CACHE_DIR'])")
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    expected = str(tmp_path / "neurolocal" / "numba")
    assert done.stdout.split() == [expected] * 3
    cached = run_cli("check-grad", REPO_ROOT / "topologies" / "cnn.yaml",
                     env={"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": ""})
    assert cached.returncode == 0, cached.stderr
    index = {p.name.split(".")[0] for p in (tmp_path / "neurolocal" / "numba").rglob("*.nbi")}
    assert {"kernels", "spatial_kernels"} <= index
