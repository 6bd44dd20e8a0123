"""The min-cut partition behind `--vertices-per-actor auto` (neurolocal/engines/ray/partition.py,
docs/placement.md), in one process: no Ray starts here.

On generated graphs (tiled, chain, random) and random DAGs: every vertex lands in exactly
one non-empty shard, the balance bound holds, the cut is the one reported, no larger than
equal contiguous chunking's whenever that chunking meets the same bound (and where it does
not, the partition is the better balanced one), and the dynamic program's contiguous split
is the best one by brute force. `--placement-from` turns a traffic log into edge weights:
a very heavy edge stays inside a shard; a missing, empty or foreign log is one line, exit 2.
"""

import itertools
import random
import re

import numpy as np
import pytest

from neurolocal.cli import main
from neurolocal.engines.config import EngineConfig
from neurolocal.engines.ray import partition as mc
from neurolocal.engines.ray.placement import cores_per_node, plan, weights_from_log
from neurolocal.errors import ConfigError, DataError
from neurolocal.generate import deep_chain, random_dag, random_graph, tiled_mlp
from neurolocal.topology import load_topology, topology_from_dict
from neurolocal.traffic.log import TrafficRecorder
from conftest import TOPOLOGIES

GENERATED = [tiled_mlp(vertices=60), tiled_mlp(vertices=300, fan_in=0), deep_chain(80),
             random_graph(40, seed=1), random_graph(150, seed=2)]
RANDOM_DAGS = [random_dag(seed, vertices=random.Random(seed).randint(8, 40)) for seed in range(12)]
KS = (2, 3, 4, 7, 16)


def graph_of(document):
    return topology_from_dict(document).graph


def cases():
    return [pytest.param(document, id=document["name"]) for document in GENERATED + RANDOM_DAGS]


def assert_valid(part: mc.Partition, weights: mc.Weights, k: int) -> None:
    flat = [v for shard in part.shards for v in shard]
    assert sorted(flat) == sorted(weights.order) and len(flat) == len(set(flat))
    assert len(part.shards) == min(k, len(weights.order)) and all(part.shards)
    position = {v: i for i, v in enumerate(weights.order)}
    for shard in part.shards:   # each shard in topological order, shards by their first vertex
        assert [position[v] for v in shard] == sorted(position[v] for v in shard)
    assert [position[s[0]] for s in part.shards] == sorted(position[s[0]] for s in part.shards)
    loads = [sum(weights.vertex[v] for v in shard) for shard in part.shards]
    assert max(loads) <= part.bound * (1 + 1e-12)
    np.testing.assert_allclose(part.loads, loads, rtol=1e-12)
    assert part.cut == pytest.approx(mc.cut_of(part.shards, weights), rel=1e-12)
    assert part.total == pytest.approx(sum(weights.edge.values()), rel=1e-12)


@pytest.mark.parametrize("document", cases())
def test_every_vertex_in_one_shard_within_the_bound_and_no_worse_than_equal_chunks(document):
    graph = graph_of(document)
    weights = mc.model_weights(graph, 32)
    compared = 0
    for k in KS:
        part = mc.min_cut(weights, k)
        assert_valid(part, weights, k)
        chunks = mc.contiguous(graph.order, k)
        chunk_loads = [sum(weights.vertex[v] for v in s) for s in chunks]
        if max(chunk_loads) <= part.bound:   # the same bound: never a larger cut
            assert part.cut <= mc.cut_of(chunks, weights)
            compared += 1
        else:                                # a smaller cut would come from imbalance
            assert max(part.loads) < max(chunk_loads)
    assert compared or len(graph.order) > 20 or graph.name.startswith("random")


def test_the_cut_is_well_below_equal_chunking_over_all_graphs():
    """Summed over every generated graph, random DAG and k above (and measured in
    docs/placement.md): the min-cut keeps far more bytes inside shards."""
    ours = chunked = 0.0
    for document in GENERATED + RANDOM_DAGS:
        graph = graph_of(document)
        weights = mc.model_weights(graph, 32)
        for k in KS:
            ours += mc.min_cut(weights, k).cut
            chunked += mc.cut_of(mc.contiguous(graph.order, k), weights)
    assert ours <= 0.85 * chunked, ours / chunked


def boundary_sum(cuts, edges, n):
    """Weight crossing each split point, summed (what the dynamic program minimises)."""
    return sum(x for a, b, x in edges for j in cuts if a < j <= b)


@pytest.mark.parametrize("seed", range(8))
def test_the_dynamic_program_finds_the_best_contiguous_split(seed):
    graph = graph_of(random_dag(seed, vertices=9))
    weights = mc.model_weights(graph, 4)
    n, index = len(graph.order), {v: i for i, v in enumerate(graph.order)}
    edges = [(min(index[a], index[b]), max(index[a], index[b]), x)
             for (a, b), x in weights.edge.items()]
    w = np.array([weights.vertex[v] for v in graph.order])
    prefix = np.concatenate([[0.0], np.cumsum(w)])
    for k in (2, 3, 4):
        bound = mc.balanced_bound(prefix, k) * (1 + mc.IMBALANCE)
        best = min(boundary_sum(cuts, edges, n)
                   for cuts in itertools.combinations(range(1, n), k - 1)
                   if max(np.diff(prefix[[0, *cuts, n]])) <= bound)
        # B* is the most balanced split's heaviest run: a brute force agrees
        assert mc.balanced_bound(prefix, k) == pytest.approx(
            min(max(np.diff(prefix[[0, *c, n]])) for c in itertools.combinations(range(1, n), k - 1)),
            rel=1e-9)
        part = mc._split_dp(prefix, sorted(edges), n, k, bound)
        cuts = [j for j in range(1, n) if part[j] != part[j - 1]]
        assert len(cuts) == k - 1 and boundary_sum(cuts, edges, n) == pytest.approx(best)
        assert mc.min_cut(weights, k).cut <= best + 1e-9   # refinement only lowers it


def test_the_same_graph_gives_the_same_shards_whatever_order_weights_come_in():
    graph = graph_of(random_graph(120, seed=5))
    weights = mc.model_weights(graph, 32)
    items = list(weights.edge.items())
    random.Random(1).shuffle(items)
    shuffled = mc.Weights(weights.order, dict(reversed(list(weights.vertex.items()))),
                          dict(items))
    for k in (3, 8):
        first = mc.min_cut(weights, k)
        assert mc.min_cut(weights, k) == first == mc.min_cut(shuffled, k)


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_k_at_least_the_vertex_count_gives_singletons_and_k_1_one_shard(path):
    graph = load_topology(path).graph
    weights = mc.model_weights(graph, 8)
    n = len(graph.order)
    for k in (n, n + 5):
        part = mc.min_cut(weights, k)
        assert part.shards == tuple((v,) for v in graph.order)
        assert part.cut == pytest.approx(part.total)
    whole = mc.min_cut(weights, 1)
    assert whole.shards == (tuple(graph.order),) and whole.cut == 0


def test_a_chain_is_cut_at_k_minus_1_links():
    graph = graph_of(deep_chain(50, width=8))
    weights = mc.model_weights(graph, 16)
    link = max(weights.edge.values())
    for k in (2, 5, 10):
        part = mc.min_cut(weights, k)
        assert part.cut <= (k - 1) * link


def test_cores_per_node_follows_the_cpus_and_is_capped_by_the_vertices():
    nodes, cpus = ["a", "b", "c"], {"a": 2.0, "b": 4.0, "c": 0.0}
    assert cores_per_node(nodes, cpus, "spread", "a", 100) == [2, 4, 0]
    assert cores_per_node(nodes, cpus, "pack", "b", 100) == [0, 4, 0]
    assert cores_per_node(nodes, cpus, "spread", "a", 3) == [1, 2, 0]
    assert cores_per_node(nodes, cpus, "spread", "a", 1) == [0, 1, 0]
    assert cores_per_node(["a"], {"a": 0.0}, "spread", "a", 9) == [1]   # no CPU offered
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    chosen = plan(graph, "auto", nodes, cpus, "spread", "a")
    assert len(chosen.shards) == 6 and chosen.nodes == ["a", "a"] + ["b"] * 4
    assert chosen.info["vertices_per_actor"] == "auto" and chosen.info["shards"] == 6
    assert chosen.info["partition"] == "min-cut" and chosen.info["cut_bytes"] > 0
    assert plan(graph, "auto", nodes, cpus, "spread", "a") == chosen   # deterministic
    fixed = plan(graph, 4, nodes, cpus, "spread", "a")    # K: as before, round-robin
    assert [len(s) for s in fixed.shards] == [4, 4, 3] and fixed.nodes == ["a", "b", "c"]
    assert fixed.info["partition"] == "contiguous"


# --- --placement-from: edge weights from a traffic log ---------------------------------------


def write_log(directory, graph, heavy=None, factor=1000, batches=3, graph_name=None,
              extra=()):
    """A synthetic log: per batch, one value and one error message per edge of `graph`
    (its bytes from the shapes), `heavy` (parent, child) `factor` times heavier."""
    recorder = TrafficRecorder(directory, "run1", "local", graph=graph_name or graph.name,
                               settings={"engine": "local", "batch_size": 8})
    for batch in range(batches):
        for parent, child in graph.edges:
            nbytes = 8 * 8 * int(np.prod(graph.shapes[parent]))
            if (parent, child) == heavy:
                nbytes *= factor
            recorder.record(batch, 0, parent, child, "value", nbytes, 0.0, 0.0)
            recorder.record(batch, 1, child, parent, "error", nbytes, 0.0, 0.0)
            recorder.record(batch, 0, "scheduler", parent, "control", 10 ** 9, 0.0, 0.0)
        for src, dst in extra:
            recorder.record(batch, 1, src, dst, "error", 8, 0.0, 0.0)
    recorder.close()
    return directory


def test_a_very_heavy_edge_in_the_log_stays_inside_a_shard(tmp_path):
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    model = plan(graph, "auto", ["n"], {"n": 3}, "spread", "n", batch_size=8)
    where = {v: i for i, s in enumerate(model.shards) for v in s}
    heavy = next(e for e in graph.edges if where[e[0]] != where[e[1]])   # cut by the model
    log = write_log(tmp_path / "log", graph, heavy=heavy)
    weights = weights_from_log(str(log), graph, 8)
    assert weights.edge[mc.pair(*heavy)] == pytest.approx(
        2 * 1000 * 8 * 8 * np.prod(graph.shapes[heavy[0]]))   # per batch, both directions
    measured = plan(graph, "auto", ["n"], {"n": 3}, "spread", "n", weights, 8, str(log))
    where = {v: i for i, s in enumerate(measured.shards) for v in s}
    assert where[heavy[0]] == where[heavy[1]] and len(measured.shards) == 3
    assert measured.info["partition"] == f"min-cut weighed by {log}"
    assert measured.info["cut_bytes"] < weights.edge[mc.pair(*heavy)]
    # the log's batch size (8) scales to the run's: bytes per batch double at 16
    assert weights_from_log(str(log), graph, 16).edge[mc.pair(*heavy)] == pytest.approx(
        2 * weights.edge[mc.pair(*heavy)])


@pytest.mark.parametrize("make, message", [
    (lambda d, g: d / "missing", "no such traffic-log directory"),
    (lambda d, g: (d / "empty").mkdir() or d / "empty", "no *.traffic files"),
    (lambda d, g: write_log(d / "other", g, graph_name="cnn"), "a traffic log of graph 'cnn'"),
    (lambda d, g: write_log(d / "alien", g, extra=[("ghost", "x")]), "names vertex 'ghost'"),
    (lambda d, g: write_log(d / "edge", g, extra=[("out", "x")]), "not an edge of graph"),
    (lambda d, g: write_log(d / "none", g, batches=0), "holds no message between vertices"),
])
def test_a_missing_empty_or_foreign_log_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    log = make(tmp_path, graph)
    with pytest.raises(DataError, match=re.escape(message)):
        weights_from_log(str(log), graph, 8)
    for command in (["run", TOPOLOGIES / "dag.yaml", "--engine", "ray", "--data",
                     "digits", "--out", tmp_path / "out"],
                    ["check-grad", TOPOLOGIES / "dag.yaml", "--engine", "ray"]):
        code = main([str(a) for a in command] + ["--placement-from", str(log)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert str(log) in err[0] and message in err[0] and "--placement-from" in err[0]
    assert not (tmp_path / "out").exists()   # refused before anything was written


def test_placement_from_needs_auto_and_the_ray_engine(tmp_path, capsys):
    graph = load_topology(TOPOLOGIES / "dag.yaml").graph
    log = write_log(tmp_path / "log", graph)
    with pytest.raises(ConfigError) as error:
        EngineConfig(engine="ray", vertices_per_actor=2, placement_from=str(log))
    assert error.value.field == "placement_from"
    assert EngineConfig().vertices_per_actor == "auto"
    for flags in (["--engine", "local"], ["--engine", "ray", "--vertices-per-actor", "3"]):
        code = main(["check-grad", str(TOPOLOGIES / "dag.yaml"), "--placement-from", str(log),
                     *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(
            "neurolocal: error: --placement-from: "), err
    with pytest.raises(SystemExit) as stop:   # argparse: one line, exit 2
        main(["check-grad", str(TOPOLOGIES / "dag.yaml"), "--vertices-per-actor", "none"])
    assert stop.value.code == 2
    assert "expected auto or a whole number >= 1, got 'none'" in capsys.readouterr().err
