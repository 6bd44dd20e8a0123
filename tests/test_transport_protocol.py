"""A fourth transport in fifty lines (issue 23): implementing only the `Transport`
protocol is enough for the one `Engine` to relax and train on it. This one keeps every
vertex in its own shard and delivers messages last in, first out — an order no real
transport uses — and must still give the local engine's numbers bit for bit, on every
schedule (the round machine, not the transport, makes them deterministic)."""

import numpy as np
import pytest

from neurolocal.engines.capabilities import Capabilities
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.engine import Engine
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.rounds import Learning, Shard
from neurolocal.engines.transport import Outcome, Transport
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from conftest import TOPOLOGIES


class StackTransport:
    """Every vertex its own shard; the newest message is delivered first."""

    capabilities = Capabilities()
    recorder = None

    def __init__(self, graph, mode):
        self.graph, self.batches = graph, 0
        where = {n: i for i, n in enumerate(graph.order)}
        self.shards = [Shard(graph, (n,), where, mode) for n in graph.order]

    def load(self, params):
        for shard in self.shards:
            shard.load_params(params)

    def restore_vertices(self, params, optimizer, learning):
        for shard in self.shards:
            shard.restore(params, optimizer, learning)

    def run(self, batch):
        if batch.params is not None:
            self.load(batch.params)
        settings = batch.settings.with_batch(self.batches)
        self.batches += 1
        stack = []
        for shard, name in zip(self.shards, self.graph.order):
            out = shard.begin(settings, None, {k: v for k, v in batch.inputs.items() if k == name},
                              batch.target if name == self.graph.output else None)
            stack.extend(out.items())
        while stack:
            destination, messages = stack.pop()
            stack.extend(self.shards[destination].deliver(list(reversed(messages))).items())
        assert all(shard.done for shard in self.shards)
        return Outcome([shard.result() for shard in self.shards], settings.batch)

    def run_many(self, batches, pipeline):
        for batch in batches:
            yield batch, self.run(batch)

    def snapshot_parts(self):
        return [shard.snapshot() for shard in self.shards]

    def keep_snapshot(self, params, optimizer):
        pass

    def completed(self, batch, outcome, result):
        pass

    def report(self):
        return {"shards": len(self.shards)}

    def close(self):
        pass


def stack_engine(graph, params, mode, schedule):
    config = EngineConfig(engine="local", mode=mode, schedule=schedule)
    Engine.check(config, graph, StackTransport)
    return Engine(config, graph, params, StackTransport(graph, mode))


CASES = [("mlp", "fixed", "jacobi", 0.5, 4), ("dag", "fixed", "event", 1.0, None),
         ("dag", "strict", "jacobi", 0.3, 5), ("cnn", "strict", "ipc", 0.2, 3),
         ("rnn", "fixed", "backward-in-time", 1.0, 2), ("lstm", "fixed", "jacobi", 1.0, None)]


def test_the_stack_transport_is_a_transport():
    assert isinstance(StackTransport(load_topology(TOPOLOGIES / "mlp.yaml").graph, "fixed"),
                      Transport)


@pytest.mark.parametrize("name, mode, schedule, eta, rounds", CASES)
def test_a_fourth_transport_relaxes_every_schedule_as_the_local_engine(name, mode, schedule,
                                                                        eta, rounds):
    graph = load_topology(TOPOLOGIES / f"{name}.yaml").graph
    params = graph.init_params(3)
    x, y = synthetic_batch(graph, 3, seed=1)
    want = LocalEngine(graph, params, mode=mode, schedule=schedule).relax(
        x, y, eta=eta, iterations=rounds, read_inputs=True)
    with stack_engine(graph, params, mode, schedule) as engine:
        got = engine.relax(x, y, eta=eta, iterations=rounds, read_inputs=True)
    assert got.energy == want.energy and got.messages == want.messages
    for v in want.dtheta:
        for k in want.dtheta[v]:
            np.testing.assert_array_equal(got.dtheta[v][k], want.dtheta[v][k])
    for v in want.input_feedback:
        np.testing.assert_array_equal(got.input_feedback[v], want.input_feedback[v])


@pytest.mark.parametrize("schedule, mode", [("event", "fixed"), ("ipc", "strict")])
def test_a_fourth_transport_trains_as_the_local_engine(schedule, mode):
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    learning = Learning("adam", 1e-3)
    runs = []
    for make in (lambda p: LocalEngine(graph, p, mode=mode, schedule=schedule),
                 lambda p: stack_engine(graph, p, mode, schedule)):
        params = graph.init_params(4)
        engine = make(params)
        engine.restore(params, None, learning)
        steps = list(engine.train_batches([synthetic_batch(graph, 4, seed=b) for b in range(3)],
                                          eta=0.5, iterations=3))
        runs.append(([(s.loss, s.energy) for s in steps], engine.snapshot()))
    (a, (pa, oa)), (b, (pb, ob)) = runs
    assert a == b
    for v in pa:
        for k in pa[v]:
            np.testing.assert_array_equal(pa[v][k], pb[v][k])
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k])
