"""`neurolocal check-grad --engine ray` end to end, in a subprocess with its own Ray.

This module starts no Ray of its own. The CLI's Ray runs under a private RAY_TMPDIR,
which every raylet / gcs_server / worker of that session names on its command line,
so the check for leftovers cannot confuse them with another test's Ray.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from neurolocal.topology import load_topology
from conftest import REPO_ROOT, run_cli


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # exited while we looked
            pass
    return [pid for pid in found if pid != os.getpid()]


def test_check_grad_on_ray_is_exact_and_leaves_no_ray_behind():
    depth = load_topology(REPO_ROOT / "topologies/dag.yaml").graph.depth
    temp = tempfile.mkdtemp(prefix="nlr")  # short: Ray's socket paths must stay < 108 bytes
    try:
        env = dict(os.environ, RAY_TMPDIR=temp)
        proc = run_cli("check-grad", "topologies/dag.yaml", "--engine", "ray", "--eta", "1",
                       "--iterations", depth, "--json", env=env, popen=True)
        seen_ray = False
        while proc.poll() is None:  # the detector must see the session's processes live
            seen_ray = seen_ray or any(pid != proc.pid for pid in processes_mentioning(temp))
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        report = json.loads(stdout)
        assert report["max_rel_error"] <= 1e-10
        assert report["engine"] == "ray" and report["iterations"] == depth
        assert len(report["actors"]) == len(load_topology(REPO_ROOT / "topologies/dag.yaml")
                                            .graph.order)
        assert seen_ray
        deadline = time.time() + 20
        while processes_mentioning(temp) and time.time() < deadline:
            time.sleep(0.5)
        assert processes_mentioning(temp) == []
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_strict_mode_on_ray_is_one_line_and_exit_2():
    result = run_cli("check-grad", "topologies/mlp.yaml", "--engine", "ray", "--mode", "strict")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "neurolocal: error: mode: the ray engine runs fixed mode only (strict mode would add a "
        "value exchange to every round); use --engine local for strict"]

