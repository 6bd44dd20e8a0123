"""Traffic logs of the local engine: exact message counts, locality audit, tolerant reading.

For a batch relaxed with T synchronous rounds on a graph with edge set E (fixed mode):
    values:  |E| messages, all in round 0 (one per edge, parent -> child)
    errors:  one per edge (p, c) whose parent p is not an input, in each round 1..T
             (child -> parent) — except that the output's error is fixed, so an edge
             into the output carries it once, in round 1; inputs are clamped and hear
             nothing. Total: T * |relaxing edges| - (T - 1) * |edges into the output|.
    plus, with read_inputs: one error per input edge in round T + 1.
"""

import json
import time
from collections import Counter

import msgpack
import pytest

from neurolocal import LocalEngine, load_topology
from neurolocal.gradcheck import synthetic_batch
from neurolocal.traffic import TrafficRecorder, read_traffic
from neurolocal.traffic.audit import audit
from conftest import TOPOLOGIES

T = 9


@pytest.fixture
def dag():
    return load_topology(TOPOLOGIES / "dag.yaml").graph


def run_logged(graph, directory, iterations=T, batches=2, mode="fixed", read_inputs=False):
    settings = {"engine": "local", "mode": mode, "schedule": "jacobi", "eta": 1.0,
                "iterations": iterations, "read_inputs": read_inputs}
    recorder = TrafficRecorder(directory, "run1", "local", graph=graph.name, settings=settings)
    engine = LocalEngine(graph, graph.init_params(0), mode=mode, recorder=recorder)
    for b in range(batches):
        inputs, target = synthetic_batch(graph, 4, b)
        engine.relax(inputs, target, eta=1.0 if mode == "fixed" else 0.2,
                     iterations=iterations, read_inputs=read_inputs)
    return read_traffic(directory)


def test_dag_logs_exactly_the_messages_the_algorithm_implies(dag, tmp_path):
    log = run_logged(dag, tmp_path, batches=2)
    edges = dag.edges
    relaxing = [(p, c) for p, c in edges if not dag.is_input(p)]
    kinds = Counter(log.columns["kind"].tolist())
    assert kinds["value"] == 2 * len(edges)
    into_output = [(p, c) for p, c in relaxing if c == dag.output]
    assert kinds["error"] == 2 * (T * len(relaxing) - (T - 1) * len(into_output))
    per_edge = Counter(zip(log.columns["batch"].tolist(), log.columns["round"].tolist(),
                           log.columns["src"].tolist(), log.columns["dst"].tolist(),
                           log.columns["kind"].tolist()))
    for batch in range(2):
        for p, c in edges:
            assert per_edge[(batch, 0, p, c, "value")] == 1
        for p, c in relaxing:
            for round_ in range(1, T + 1):
                sends = c != dag.output or round_ == 1
                assert per_edge[(batch, round_, c, p, "error")] == int(sends)
    assert set(per_edge.values()) == {1}
    assert (log.columns["bytes"] > 0).all()
    assert len(log.energy[0]) == T + 1
    result = audit(log, dag)
    assert result.ok and result.counts_checked, result.violations


def test_strict_and_read_inputs_counts_pass_audit(dag, tmp_path):
    log = run_logged(dag, tmp_path / "strict", iterations=4, mode="strict", batches=1)
    assert audit(log, dag).ok
    log = run_logged(dag, tmp_path / "read", iterations=4, read_inputs=True, batches=1)
    result = audit(log, dag)
    assert result.ok, result.violations
    assert Counter(log.columns["round"].tolist())[5] == 1  # trunk -> x, once


def forge(directory, records):
    path = next(directory.glob("*.traffic"))
    with open(path, "ab") as f:
        for r in records:
            f.write(msgpack.packb(r))


def test_audit_fails_on_a_forged_non_neighbour_message(dag, tmp_path, cli):
    run_logged(dag, tmp_path, batches=1)
    ok = cli("traffic", "audit", tmp_path, TOPOLOGIES / "dag.yaml")
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout + ok.stderr
    now = time.time()
    # `out` and `trunk` are not neighbours: out may only talk to head
    forge(tmp_path, [[0, 3, "out", "trunk", "error", 128, now, now, "h", "h", "", ""]])
    bad = cli("traffic", "audit", tmp_path, TOPOLOGIES / "dag.yaml")
    assert bad.returncode == 1
    assert "out -> trunk" in bad.stdout and "FAIL" in bad.stdout


def test_audit_fails_on_a_duplicated_message(dag, tmp_path):
    run_logged(dag, tmp_path, batches=1)
    now = time.time()
    forge(tmp_path, [[0, 2, "head", "joined", "error", 256, now, now, "h", "h", "", ""]])
    result = audit(read_traffic(tmp_path), dag)
    assert not result.ok
    assert any("2 messages, the algorithm sends 1" in v for v in result.violations)


def test_truncated_log_reads_whole_records_with_a_warning(dag, tmp_path, cli):
    full = run_logged(dag, tmp_path, batches=1)
    path = next(tmp_path.glob("*.traffic"))
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.warns(UserWarning, match="truncated"):
        cut = read_traffic(tmp_path)
    assert len(cut) == len(full) - 1
    assert cut.truncated == [str(path)]
    result = cli("traffic", "summary", tmp_path)
    assert result.returncode == 0
    assert "truncated" in result.stdout


def test_garbage_log_is_one_line_exit_2(tmp_path, cli):
    (tmp_path / "x.traffic").write_bytes(b"\xc1\xc1not msgpack")
    result = cli("traffic", "summary", tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    missing = cli("traffic", "summary", tmp_path / "nope")
    assert missing.returncode == 2 and "no such" in missing.stderr


def test_timeline_is_a_chrome_trace_with_a_track_per_vertex(dag, tmp_path, cli):
    log = run_logged(dag, tmp_path / "log", batches=1)
    out = tmp_path / "trace.json"
    result = cli("traffic", "timeline", tmp_path / "log", "-o", out)
    assert result.returncode == 0, result.stderr
    trace = json.loads(out.read_text())
    events = trace["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert tracks == set(dag.order)
    assert sum(e["ph"] == "s" for e in events) == len(log)
    assert sum(e["ph"] == "f" for e in events) == len(log)
    assert sum(e["ph"] == "X" for e in events) == 2 * len(log)


def test_cli_check_grad_writes_a_log_the_tools_read(tmp_path, cli):
    logdir = tmp_path / "traffic"
    result = cli("check-grad", TOPOLOGIES / "dag.yaml", "--traffic-log", logdir,
                 "--schedule", "jacobi")
    assert result.returncode == 0, result.stderr
    summary = cli("traffic", "summary", logdir, "--json")
    data = json.loads(summary.stdout)
    assert data["by_kind"]["value"]["messages"] == 13
    assert data["by_kind"]["error"]["messages"] == 7 * 12 - 6  # out -> head once
    edges = cli("traffic", "edges", logdir, "--csv")
    assert edges.stdout.splitlines()[0].startswith("src,dst,kind,messages,bytes")
    assert len(edges.stdout.splitlines()) == 1 + 13 + 12
    plot = cli("traffic", "plot", logdir, "-o", tmp_path / "traffic.png")
    assert plot.returncode == 0 and (tmp_path / "traffic.png").stat().st_size > 10_000
    assert cli("traffic", "audit", logdir, TOPOLOGIES / "dag.yaml").returncode == 0


def test_tied_partials_are_logged_member_to_owner_and_audited(tmp_path, cli):
    rnn = load_topology(TOPOLOGIES / "rnn.yaml").graph
    log = run_logged(rnn, tmp_path, iterations=rnn.depth, batches=1)
    partials = [(s, d) for s, d, k in zip(log.columns["src"], log.columns["dst"],
                                          log.columns["kind"]) if k == "partial"]
    members = {(v, g.owner[0]) for g in rnn.tied for v, _ in g.members}
    assert set(partials) == members and len(partials) == len(members)
    assert audit(log, rnn).ok
    now = time.time()
    forge(tmp_path, [[0, rnn.depth + 1, "x@0", "y@1", "partial", 8, now, now, "h", "h", "", ""]])
    result = cli("traffic", "audit", tmp_path, TOPOLOGIES / "rnn.yaml")
    assert result.returncode == 1 and "outside a tied group" in result.stdout
