"""`neurolocal check-grad --engine ray` end to end, in a subprocess with its own Ray.

This module starts no Ray of its own. The CLI's Ray runs under a private RAY_TMPDIR,
which every raylet / gcs_server / worker of that session names on its command line,
so the check for leftovers cannot confuse them with another test's Ray.
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

from neurolocal import procs
from neurolocal.engines.ray import check_reachable
from neurolocal.errors import ConfigError
from neurolocal.topology import load_topology
from conftest import REPO_ROOT, run_cli


def processes_mentioning(text: str) -> list[int]:
    return [pid for pid in procs.pids()
            if pid != os.getpid() and text in (procs.cmdline(pid) or "")]


def test_check_grad_on_ray_is_exact_and_leaves_no_ray_behind(tmp_path):
    depth = load_topology(REPO_ROOT / "topologies/dag.yaml").graph.depth
    temp = tempfile.mkdtemp(prefix="nlr")  # short: Ray's socket paths must stay < 108 bytes
    try:
        env = dict(os.environ, RAY_TMPDIR=temp)
        proc = run_cli("check-grad", "topologies/dag.yaml", "--engine", "ray", "--eta", "1",
                       "--iterations", depth, "--json", "--vertices-per-actor", 2,
                       "--traffic-log", tmp_path / "log", env=env, popen=True)
        seen_ray = False
        while proc.poll() is None:  # the detector must see the session's processes live
            seen_ray = seen_ray or any(pid != proc.pid for pid in processes_mentioning(temp))
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        report = json.loads(stdout)
        assert report["max_rel_error"] <= 1e-10
        assert report["engine"] == "ray" and report["iterations"] == depth
        assert len(report["actors"]) == 6  # 11 vertices, 2 per actor
        assert seen_ray
        deadline = time.time() + 20
        while processes_mentioning(temp) and time.time() < deadline:
            time.sleep(0.5)
        assert processes_mentioning(temp) == []
        # the run's traffic log: one stream per actor and the scheduler's; counts as implied
        assert len(list((tmp_path / "log").glob("*.traffic"))) == 6 + 1
        audited = run_cli("traffic", "audit", tmp_path / "log", "topologies/dag.yaml")
        assert audited.returncode == 0, audited.stdout
        assert audited.stdout.startswith("PASS") and "per-edge counts" in audited.stdout
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_schedule_the_mode_cannot_run_is_one_line_and_exit_2():
    result = run_cli("check-grad", "topologies/mlp.yaml", "--engine", "ray", "--mode", "strict",
                     "--schedule", "event")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "neurolocal: error: --schedule: the event schedule needs fixed predictions (fixed mode): "
        "in strict mode every value moves every round"]



def test_an_unreachable_address_fails_fast_in_one_line():
    # fast: Ray's own retries would take minutes; the subprocess is given 30 s
    result = run_cli("check-grad", "topologies/mlp.yaml", "--engine", "ray",
                     "--address", "127.0.0.1:1", timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "neurolocal: error: --address: cannot reach Ray at '127.0.0.1:1'"), result.stderr


def test_a_port_that_answers_but_is_not_ray_is_refused_at_once():
    """An HTTP/1 server where a Ray GCS (gRPC) was expected: ray.init would retry for
    minutes; the HTTP/2 preface check says so in one line, without starting Ray."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer_once():
        connection, _ = server.accept()
        with connection:
            connection.recv(64)
            connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    with pytest.raises(ConfigError, match="answers but is not a Ray cluster"):
        check_reachable(address)
    thread.join(timeout=10)
    server.close()
