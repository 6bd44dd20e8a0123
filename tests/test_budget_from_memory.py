"""The default budget scales with the memory the process may use (neurolocal/limits.py):
2^22 parameters under a 1 GB address space (the old fixed default, which the fuzz tests'
1 GB children rely on), far more on a large machine, clamped for any machine, and still
checked before anything is allocated."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT, run_cli
from neurolocal import limits


def test_derived_size_per_gigabyte_and_its_clamps():
    assert limits.derived_size(1 << 30) == 1 << 22
    assert limits.derived_size(24 << 30) == 24 << 22
    assert limits.derived_size(1 << 10) == limits.MIN_DERIVED
    assert limits.derived_size(1 << 60) == limits.MAX_DERIVED


def test_machine_memory_is_the_least_limit():
    memory = limits.machine_memory()
    import os
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < memory <= physical


def test_an_address_space_limit_lowers_the_budget_in_a_child():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from neurolocal.limits import default_budget; b = default_budget(); "
            "print(b.parameters, b.activations)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert done.stdout.split() == [str(1 << 22)] * 2, done.stderr


def test_the_environment_and_the_flag_still_win(monkeypatch):
    monkeypatch.setenv(limits.ENVIRONMENT, "parameters=1000")
    assert limits.default_budget().parameters == 1000
    assert limits.default_budget().activations == limits.derived_size()
    assert limits.budget_from("parameters=2000").parameters == 2000


def test_a_tiled_graph_of_4_3m_parameters_loads_without_budget_when_memory_allows(tmp_path):
    if limits.derived_size() < 5_000_000:
        import pytest
        pytest.skip("this machine's memory gives a smaller budget")
    out = tmp_path / "big.yaml"
    done = run_cli("generate", "tiled", "--vertices", "40", "--layers", "4", "--width", "256",
                   "-o", out)
    assert done.returncode == 0, done.stderr
    assert run_cli("validate", out).returncode == 0
    # still refused before allocation when the budget says so, in one line
    small = run_cli("validate", out, "--budget", "parameters=1000000")
    assert small.returncode == 2 and "more than the budget of 1000000" in small.stderr
    assert small.stderr.count("\n") == 1
