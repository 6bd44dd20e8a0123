"""`neurolocal cluster up|status|down` (issue 15): a standing local Ray that
`--address auto` attaches to, and that `down` stops exactly.

One real Ray head for the module, in a state directory of the test's own
(NEUROLOCAL_CLUSTER_DIR), so neither ~/.neurolocal nor ~/.ray/auth_token nor
another Ray on the machine is read or touched. The driver's environment carries no
token and no RAY_ADDRESS: it must find both through `--address auto`.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, TOPOLOGIES
from neurolocal import procs
from neurolocal.engines.ray import standing

pytestmark = pytest.mark.cluster


def clean_env(state) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env[standing.STATE_ENV] = str(state)
    return env


def neurolocal(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "neurolocal", *map(str, args)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def record_in(state) -> standing.Record:
    saved = os.environ.get(standing.STATE_ENV)
    os.environ[standing.STATE_ENV] = str(state)
    try:
        return standing.read_record()
    finally:
        if saved is None:
            del os.environ[standing.STATE_ENV]
        else:
            os.environ[standing.STATE_ENV] = saved


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster-state")
    env = clean_env(state)
    up = neurolocal(env, "cluster", "up", "--cpus", 2)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        yield env, state, up
    finally:
        record = record_in(state)
        if record is not None:  # the test that stops it failed before it did
            standing.stop_processes(standing.tree_of(record.processes))


def test_up_records_its_processes_and_a_private_token(cluster):
    env, state, up = cluster
    record = record_in(state)
    assert "started at" in up.stdout and record.address in up.stdout
    assert record.running() and len(record.processes) >= 3  # ray start, GCS, raylet, ...
    token = state / standing.TOKEN
    assert len(token.read_text()) == 64 and (token.stat().st_mode & 0o077) == 0
    again = neurolocal(env, "cluster", "up")
    assert again.returncode == 0 and "already running" in again.stdout
    assert record_in(state).processes == record.processes  # nothing new was started


def test_status_says_what_runs(cluster):
    env, state, _ = cluster
    done = neurolocal(env, "cluster", "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["address"] == record_in(state).address
    assert report["nodes"] == 1 and report["cpus"] == 2
    assert report["processes"] >= 3 and report["rss_bytes"] > 0 and report["uptime_s"] >= 0
    text = neurolocal(env, "cluster", "status").stdout
    assert "1 node(s), 2 CPUs" in text and report["address"] in text


def test_check_grad_with_address_auto_attaches_and_is_exact(cluster):
    env, _, _ = cluster
    node_ids = json.loads(neurolocal(env, "cluster", "status", "--json").stdout)["node_ids"]
    done = neurolocal(env, "check-grad", TOPOLOGIES / "mlp.yaml", "--engine", "ray",
                      "--address", "auto", "--json", "--max-rel-error", 1e-10)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["engine"] == "ray" and report["max_rel_error"] <= 1e-10
    assert len(report["actors"]) == 4
    assert {a["node_id"] for a in report["actors"]} <= set(node_ids)  # ours, not embedded


def test_without_a_cluster_up_auto_is_left_to_ray(tmp_path):
    env = {**clean_env(tmp_path), "RAY_ADDRESS": "127.0.0.1:1"}  # nothing listens there
    done = neurolocal(env, "check-grad", TOPOLOGIES / "dag.yaml", "--engine", "ray",
                      "--address", "auto", timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    status = neurolocal(env, "cluster", "status")
    assert status.returncode == 0 and "no neurolocal cluster is running" in status.stdout


def test_down_stops_exactly_what_up_started(cluster):
    env, state, _ = cluster
    record = record_in(state)
    tree = standing.tree_of(record.processes)
    assert {pid for pid, _ in record.processes} <= {pid for pid, _ in tree}
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        done = neurolocal(env, "cluster", "down")
        assert done.returncode == 0, done.stderr
        assert f"{len(tree)} processes" in done.stdout
        assert not any(standing.still_ours(pid, t) for pid, t in tree)
        assert bystander.poll() is None  # a process it did not start is untouched
        assert record_in(state) is None and not (state / standing.TOKEN).exists()
        assert not os.path.exists(record.temp_dir)
        assert "no neurolocal cluster is running" in neurolocal(env, "cluster", "status").stdout
        assert "no neurolocal cluster was running" in neurolocal(env, "cluster", "down").stdout
    finally:
        bystander.kill()
        bystander.wait()


def test_down_after_a_kill_of_the_head_stops_its_orphaned_agents(tmp_path):
    """`kill -9` of the head (`ray start`): the raylet's agents, started after `up`
    recorded the head and renamed (`ray::...`), are orphans below no recorded process
    and ran on for 20-85 s. `down` finds them by the files they hold open in its temp
    dir; a process of ours holding one with no Ray process title is left alone."""
    state = tmp_path / "state"
    env = clean_env(state)
    up = neurolocal(env, "cluster", "up", "--cpus", 1)
    assert up.returncode == 0, up.stderr[-2000:]
    record = record_in(state)
    root = record.root[0]
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); "
                               "time.sleep(120)", record.log])   # a log in the temp dir
    agents: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(agents) < 2:
            assert time.monotonic() < deadline, "the head's agents did not start"
            time.sleep(0.2)
            agents = {p: t for p in procs.descendants(root)
                      if (procs.cmdline(p) or "").startswith("ray::")
                      and (t := procs.start_time(p)) is not None}
        os.kill(root, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while procs.alive(root):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        done = neurolocal(env, "cluster", "down")
        assert done.returncode == 0, done.stderr
        # `down` returns once what it stopped is gone (standing.stop_processes)
        running = [p for p, t in agents.items() if standing.still_ours(p, t)]
        assert not running, [procs.cmdline(p) for p in running]
        assert reader.poll() is None
    finally:
        reader.kill()
        reader.wait()
        standing.stop_processes(standing.tree_of(record.processes) + list(agents.items()))
