"""Event-driven relaxation: a vertex speaks only when its error changed.

It must give exactly (bit for bit) the Jacobi sweep's errors and updates, for any
eta and T, while sending far fewer messages when eta = 1: on a layered graph one
message per relaxing edge, i.e. one backward pass of work.
"""

import numpy as np
import pytest

from neurolocal import LocalEngine, load_topology
from neurolocal.generate import random_dag
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import graph_from_dict
from neurolocal.traffic import TrafficRecorder, read_traffic
from neurolocal.traffic.audit import audit, path_lengths
from conftest import TOPOLOGIES

GRAPHS = {
    **{name: (lambda name=name: load_topology(TOPOLOGIES / f"{name}.yaml").graph)
       for name in ("mlp", "dag", "cnn", "rnn")},
    **{f"random-{s}": (lambda s=s: graph_from_dict(random_dag(s, vertices=14))) for s in (1, 2, 3)},
}


def both(graph, eta, iterations, seed=0):
    params = graph.init_params(seed)
    inputs, target = synthetic_batch(graph, 4, seed)
    return [LocalEngine(graph, params, schedule=s).relax(inputs, target, eta=eta,
                                                        iterations=iterations)
            for s in ("jacobi", "event")]


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("eta, extra", [(1.0, 0), (1.0, -1), (1.0, 5), (0.5, 3)])
def test_event_schedule_equals_jacobi_bit_for_bit(name, eta, extra):
    graph = GRAPHS[name]()
    iterations = max(0, graph.depth + extra)
    jacobi, event = both(graph, eta, iterations)
    for n in jacobi.errors:
        np.testing.assert_array_equal(event.errors[n], jacobi.errors[n])
    for v in jacobi.dtheta:
        for k in jacobi.dtheta[v]:
            np.testing.assert_array_equal(event.dtheta[v][k], jacobi.dtheta[v][k])
    np.testing.assert_array_equal(event.energy, jacobi.energy)


def test_layered_graph_sends_one_message_per_edge():
    graph = GRAPHS["mlp"]()
    forward = len(graph.edges)
    relaxing = [(p, c) for p, c in graph.edges if not graph.is_input(p)]
    jacobi, event = both(graph, 1.0, graph.depth)
    assert event.messages == forward + len(relaxing)
    # many more rounds cost nothing more: the relaxation went quiet after `depth`
    _, late = both(graph, 1.0, 50)
    assert late.messages == event.messages
    assert jacobi.messages == forward + graph.depth * len(relaxing) - (graph.depth - 1)


def test_branching_graph_sends_once_per_path_length():
    """A vertex with paths of several lengths to the output changes once per length."""
    graph = GRAPHS["dag"]()
    lengths = path_lengths(graph)
    bound = sum(len(lengths[c]) for p, c in graph.edges if not graph.is_input(p))
    _, event = both(graph, 1.0, graph.depth)
    assert event.messages - len(graph.edges) == bound


def test_event_log_passes_audit_and_is_lighter(tmp_path):
    graph = GRAPHS["dag"]()
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 4, 0)
    counts = {}
    for schedule in ("jacobi", "event"):
        directory = tmp_path / schedule
        recorder = TrafficRecorder(directory, "r", "local", graph=graph.name, settings={
            "schedule": schedule, "mode": "fixed", "eta": 1.0, "iterations": 12,
            "read_inputs": False})
        LocalEngine(graph, params, recorder=recorder, schedule=schedule).relax(
            inputs, target, eta=1.0, iterations=12)
        log = read_traffic(directory)
        result = audit(log, graph)
        assert result.ok and result.counts_checked, result.violations
        counts[schedule] = len(log)
    assert counts["event"] < counts["jacobi"] / 3
