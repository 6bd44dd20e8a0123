"""Pipelined training on Ray (`--pipeline K`, docs/rounds.md §7, engines/lanes.py): K
batches in flight across the actors end bit for bit where the local engine's
`--pipeline K` ends (parameters, Adam state, losses, weight staleness) for the digits
MLP, a CNN and a compute-heavy tanh chain, K = 1..4, packed or one vertex per actor;
an actor killed mid-pipeline ends bit for bit where an uninterrupted run ends. Real
local Ray, no mocks."""

import numpy as np
import pytest

from neurolocal import graph_from_dict
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.ray import RayEngine
from neurolocal.engines.rounds import Learning
from neurolocal.errors import ConfigError
from neurolocal.gradcheck import synthetic_batch
from neurolocal.optimizers import make_optimizer
from neurolocal.topology import load_topology
from conftest import REPO_ROOT, module_ray

LEARNING = Learning("adam", 0.01, factory=make_optimizer)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    with module_ray():
        yield


def chain(widths=(64, 96, 96, 96, 96, 10), activation="tanh"):
    """The issue's compute-heavy chain 64-1024-1024-1024-1024-10 tanh, narrower (CI)."""
    vertices = [{"name": "x", "op": "input", "shape": [widths[0]]}]
    for i, width in enumerate(widths[1:], 1):
        last = i == len(widths) - 1
        vertex = {"name": "y" if last else f"h{i}", "op": "dense", "units": width,
                  "parents": ["x" if i == 1 else f"h{i - 1}"]}
        if not last:
            vertex["activation"] = activation
        vertices.append(vertex)
    return graph_from_dict({"name": "chain", "vertices": vertices, "output": "y",
                            "loss": "softmax_cross_entropy"})


GRAPHS = {
    "mlp": lambda: load_topology(REPO_ROOT / "topologies" / "mlp.yaml").graph,
    "cnn": lambda: load_topology(REPO_ROOT / "topologies" / "cnn.yaml").graph,
    "chain": chain,
    "rnn": lambda: load_topology(REPO_ROOT / "topologies" / "rnn.yaml").graph,
}


def train(engine, graph, batches, pipeline, iterations=3):
    engine.restore(graph.init_params(0), None, LEARNING)
    engine.weight_staleness = []
    losses = [s.loss for s in engine.train_batches(batches, eta=0.5, iterations=iterations,
                                                   pipeline=pipeline)]
    return losses, engine.snapshot(), numbered(engine.weight_staleness)


def numbered(records):
    """(batch, vertex, staleness) with the batches numbered 0.. in order (each engine
    has its own batch ids)."""
    rank = {b: i for i, b in enumerate(sorted({b for b, _, _ in records}))}
    return sorted((rank[b], v, s) for b, v, s in records)


def assert_same(a, b):
    (pa, oa), (pb, ob) = a, b
    assert pa.keys() == pb.keys() and oa.keys() == ob.keys()
    for v in pa:
        for k in pa[v]:
            np.testing.assert_array_equal(pa[v][k], pb[v][k], err_msg=f"{v}/{k}")
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)


def local_run(graph, batches, pipeline, mode="fixed", schedule="jacobi", iterations=3):
    engine = LocalEngine(graph, graph.init_params(0), mode=mode, schedule=schedule)
    return train(engine, graph, batches, pipeline, iterations)


@pytest.mark.parametrize("name,mode,schedule,per_actor", [
    ("mlp", "fixed", "jacobi", 1), ("mlp", "strict", "jacobi", 2), ("mlp", "fixed", "event", 2),
    ("cnn", "fixed", "jacobi", 2), ("chain", "fixed", "jacobi", 3),
    ("rnn", "fixed", "backward-in-time", 12),
])
def test_ray_pipeline_equals_the_local_engine_bit_for_bit(name, mode, schedule, per_actor):
    graph = GRAPHS[name]()
    size = 4 if name in ("cnn", "rnn") else 8
    batches = [synthetic_batch(graph, size, seed=s) for s in range(7)]
    with RayEngine(graph, graph.init_params(0), mode=mode, schedule=schedule,
                   vertices_per_actor=per_actor) as ray_engine:
        for pipeline in (1, 2, 3, 4):
            want = local_run(graph, batches, pipeline, mode, schedule)
            got = train(ray_engine, graph, batches, pipeline)
            assert got[0] == want[0], (pipeline, got[0], want[0])
            assert_same(got[1], want[1])
            if pipeline > 1:
                assert got[2] == want[2]
                assert max(s for _, _, s in got[2]) == pipeline - 1
    one = local_run(graph, batches, 1, mode, schedule)
    assert one[0] != local_run(graph, batches, 3, mode, schedule)[0]


def test_an_actor_killed_mid_pipeline_ends_as_an_uninterrupted_run():
    """K = 3, the middle actor of three killed under the group of batch 4 (after a
    snapshot at batch 3): restored, the groups since replayed as groups, the group
    posted again; the run ends bit for bit where the local engine's ends."""
    graph = chain()
    batches = [synthetic_batch(graph, 8, seed=s) for s in range(9)]
    want = local_run(graph, batches[:3], 3)
    rest = LocalEngine(graph, graph.init_params(0))
    rest.restore(*want[1], LEARNING)
    rest_losses = [s.loss for s in rest.train_batches(batches[3:], eta=0.5, iterations=3,
                                                      pipeline=3)]
    with RayEngine(graph, graph.init_params(0), vertices_per_actor=2,
                   fault=(1, 7)) as engine:
        engine.restore(graph.init_params(0), None, LEARNING)
        first = [s.loss for s in engine.train_batches(batches[:3], eta=0.5, iterations=3,
                                                      pipeline=3)]
        params, optimizer = engine.snapshot()
        steps = list(engine.train_batches(batches[3:], eta=0.5, iterations=3, pipeline=3))
        assert first == want[0]
        assert [s.loss for s in steps] == rest_losses
        assert sum(len(s.restarts) for s in steps) >= 1
        assert_same(engine.snapshot(), rest.snapshot())
        # a replay of the groups since the snapshot: kill again, with a group behind it
    with RayEngine(graph, graph.init_params(0), vertices_per_actor=2,
                   fault=(0, 5)) as engine:
        engine.restore(graph.init_params(0), None, LEARNING)
        steps = list(engine.train_batches(batches, eta=0.5, iterations=3, pipeline=3))
        assert any(s.restarts for s in steps)
        whole = local_run(graph, batches, 3)
        assert [s.loss for s in steps] == whole[0]
        assert_same(engine.snapshot(), whole[1])


def test_asynchronous_pipelines_are_refused_on_ray():
    graph = chain()
    with pytest.raises(ConfigError, match="synchronous rounds only"):
        RayEngine(graph, config=EngineConfig(engine="ray", staleness=1, pipeline=2))


def test_run_with_pipeline_on_ray_ends_with_the_local_checkpoint(tmp_path):
    """`neurolocal run --engine ray --pipeline 3` (auto placement, traffic log on) ends
    with the parameters and Adam state of `--engine local --pipeline 3`; the log passes
    the audit."""
    from conftest import cli_code
    from neurolocal.traffic import read_traffic
    from neurolocal.traffic.audit import audit

    mlp = REPO_ROOT / "topologies" / "mlp.yaml"
    common = ["--epochs", 1, "--batch-size", 256, "--pipeline", 3, "--seed", 2, "--quiet"]
    assert cli_code("run", mlp, *common, "--engine", "local", "--out", tmp_path / "local",
                    "--no-traffic-log") == 0
    assert cli_code("run", mlp, *common, "--engine", "ray", "--vertices-per-actor", 2,
                    "--out", tmp_path / "ray") == 0
    with np.load(tmp_path / "local" / "checkpoint-pc.npz") as a, \
            np.load(tmp_path / "ray" / "checkpoint-pc.npz") as b:
        keys = [k for k in a.files if k.startswith(("param/", "optimizer/"))]
        assert keys
        for key in keys:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    result = audit(read_traffic(tmp_path / "ray" / "traffic"), GRAPHS["mlp"]())
    assert result.ok and result.counts_checked, result.violations
