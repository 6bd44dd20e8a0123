"""A real Ray cluster on this machine: `ray start --head` on loopback plus one worker node.

Must show (issue 9): `neurolocal check-grad --engine ray --address HOST:PORT` joins the
cluster with Ray's token authentication on, runs a generated >= 1,000-vertex graph packed
64 vertices per actor to the exact result (eta = 1, T = depth), with actors on both nodes;
a driver without the token gets one line and exit 2; and the test stops exactly the
processes it started (`ray stop` would stop every Ray on the machine).

The cluster has its own fresh token (RAY_AUTH_TOKEN in the nodes' and the driver's
environment), so ~/.ray/auth_token is neither read nor written.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from neurolocal.engines.ray.cluster import LocalCluster
from neurolocal.procs import alive, descendants
from neurolocal.generate import tiled_mlp, topology_yaml

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    nodes = LocalCluster(workers=1, ray=str(Path(sys.executable).with_name("ray")))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(nodes.base_dir or "", ignore_errors=True)  # the nodes' logs


def run(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "neurolocal", *map(str, args)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def last_json_line(stdout: str) -> dict:
    """Ray's raylet may print warnings on the driver's stdout before the report."""
    return json.loads(stdout.strip().splitlines()[-1])


def test_check_grad_on_a_two_node_cluster_is_exact_with_actors_on_both(cluster, tmp_path):
    path = tmp_path / "tiled.yaml"
    path.write_text(topology_yaml(tiled_mlp(vertices=1000, layers=4)))
    done = run(["check-grad", path, "--engine", "ray", "--address", cluster.address,
                "--vertices-per-actor", 64, "--placement", "spread", "--batch-size", 4,
                "--json", "--max-rel-error", 1e-10], env=cluster.driver_env())
    assert done.returncode == 0, done.stderr[-2000:]
    report = last_json_line(done.stdout)
    assert report["engine"] == "ray"
    assert report["eta"] == 1.0 and report["iterations"] == report["depth"] == 5
    assert report["max_rel_error"] <= 1e-10
    assert len(report["actors"]) == -(-999 // 64) == 16
    assert sum(len(a["vertices"]) for a in report["actors"]) == 999
    nodes = {a["node_id"] for a in report["actors"]}
    assert len(nodes) == report["nodes"] == 2  # vertices ran on the head and on the worker


@pytest.mark.parametrize("token_env", [{}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong"}],
                         ids=["no-token", "wrong-token"])
def test_a_driver_without_the_token_gets_one_line_and_exit_2(cluster, tmp_path, token_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), **token_env)  # no ~/.ray/auth_token to fall back on
    done = run(["check-grad", REPO_ROOT / "topologies/dag.yaml", "--engine", "ray",
                "--address", cluster.address], env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("neurolocal: error: ")
    assert "RAY_AUTH_MODE=token" in done.stderr and "RAY_AUTH_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_where_nothing_listens_is_one_line(cluster):
    from neurolocal.engines.ray.cluster import free_port

    done = run(["check-grad", REPO_ROOT / "topologies/dag.yaml", "--engine", "ray",
                "--address", f"127.0.0.1:{free_port()}"], env=cluster.driver_env(), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "nothing answers at 127.0.0.1:" in done.stderr


def test_stop_ends_exactly_the_processes_the_cluster_started(cluster):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = [p.pid for p in cluster.processes]
        tree = set(started) | {pid for pid in started for pid in descendants(pid)}
        assert len(tree) > len(started)  # raylets, GCS, agents, Ray workers under them
        signalled = set(cluster.stop())
        assert tree <= signalled
        assert not any(alive(pid) for pid in signalled)
        assert bystander.poll() is None  # a process it did not start is untouched
    finally:
        bystander.kill()
        bystander.wait()
