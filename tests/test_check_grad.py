"""check-grad: rounds enough for the staleness given, an honest `converged`, synthetic
batches of each input's kind, `--data`, the energy's change per round, summaries.

The staleness bound (neurolocal/gradcheck.py, docs/design.md §7) is checked
empirically with shards driven in-process, their calls delivered in random orders
(any order is a schedule the Ray engine may see), on random DAGs; and once on Ray.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT, run_cli
from shuffled import drive
from torch_graph import max_relative_error, torch_gradients

from neurolocal import graph_from_dict
from neurolocal.engines.base import prepare_batch
from neurolocal.engines.ray.placement import partition, shard_of
from neurolocal.engines.rounds import RunSettings, Shard
from neurolocal.generate import random_dag
from neurolocal.gradcheck import (
    CONVERGENCE_TOLERANCE,
    default_iterations,
    fixed_point_residual,
    synthetic_batch,
)
from neurolocal.topology import load_topology

DAG = REPO_ROOT / "topologies" / "dag.yaml"

#: an embedding reading an input of ids, next to a dense reading an input of values
EMBEDDING_TOPOLOGY = """\
name: ids
vertices:
  - {name: tokens, op: input, shape: [5]}
  - {name: extra,  op: input, shape: [3]}
  - {name: embed,  op: embedding, parents: [tokens], vocab: 7, units: 4}
  - {name: flat,   op: flatten, parents: [embed]}
  - {name: side,   op: dense, parents: [extra], units: 6, activation: tanh}
  - {name: both,   op: concat, parents: [flat, side]}
  - {name: logits, op: dense, parents: [both], units: 3}
output: logits
loss: softmax_cross_entropy
"""


def relax_on_shards(graph, params, inputs, target, settings, shards_count, rng):
    """Every shard begun and every call delivered in a random order; the merged result."""
    inputs, target = prepare_batch(graph, inputs, target)
    groups = partition(graph, shards_count)
    shards = [Shard(graph, names, shard_of(groups)) for names in groups]
    merged = {"dtheta": {}, "errors": {}}
    for result in drive(shards, graph, settings, params, inputs, target, rng):
        for key, part in merged.items():
            part.update(result[key])
    return merged


def test_default_iterations_is_the_depth_when_synchronous_and_grows_with_staleness():
    graph = load_topology(DAG).graph
    assert default_iterations(graph, 0) == graph.depth
    for s in range(1, 5):
        assert default_iterations(graph, s) == 1 + (graph.depth - 1) * (s + 1)


@pytest.mark.parametrize("seed", range(12))
def test_the_staleness_bound_makes_every_update_exact_under_any_delivery_order(seed):
    """T(S) = 1 + (depth - 1)(S + 1) rounds at eta = 1: PC's updates equal autograd's
    gradients whatever the order messages arrive in, for S = 1..3 and 1, 3 or one
    vertex per shard; and the relaxation reports converged."""
    graph = graph_from_dict(random_dag(seed, vertices=10 + seed % 8))
    params = graph.init_params(seed)
    inputs, target = synthetic_batch(graph, 3, seed)
    _, reference = torch_gradients(graph, params, inputs, target)
    for staleness in (1, 2, 3):
        rounds = default_iterations(graph, staleness)
        for shards in (1, 3, len(graph.order)):
            rng = random.Random(1000 * seed + 10 * staleness + shards)
            got = relax_on_shards(graph, params, inputs, target,
                                  RunSettings(1, 1.0, rounds, staleness, False), shards, rng)
            assert max_relative_error(got["dtheta"], reference)[0] <= 1e-10, (staleness, shards)
            assert fixed_point_residual(graph, params, inputs, target, got["errors"],
                                        "fixed") <= 1e-12


def test_the_staleness_bound_is_reached():
    """One round fewer than T(S) is not enough in general: with every vertex in one shard
    a parent runs S rounds ahead on its children's round-0 errors (zero). The
    residual notices, so check-grad would say "not converged"."""
    inexact = 0
    for seed in range(6):
        graph = graph_from_dict(random_dag(seed, vertices=12))
        params = graph.init_params(seed)
        inputs, target = synthetic_batch(graph, 3, seed)
        _, reference = torch_gradients(graph, params, inputs, target)
        for staleness in (1, 2):
            rounds = default_iterations(graph, staleness) - 1
            got = relax_on_shards(graph, params, inputs, target,
                                  RunSettings(1, 1.0, rounds, staleness, False), 1,
                                  random.Random(seed))
            error = max_relative_error(got["dtheta"], reference)[0]
            residual = fixed_point_residual(graph, params, inputs, target, got["errors"],
                                            "fixed")
            if error > 1e-6:
                inexact += 1
                assert residual > CONVERGENCE_TOLERANCE
    assert inexact >= 6


@pytest.mark.slow
def test_check_grad_with_staleness_on_ray_converges_by_default_and_says_when_not():
    depth = load_topology(DAG).graph.depth
    done = run_cli("check-grad", DAG, "--engine", "ray", "--vertices-per-actor", "3",
                   "--staleness", "2", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["iterations"] == 1 + (depth - 1) * 3 and report["staleness"] == 2
    assert report["converged"] is True and report["max_rel_error"] <= 1e-10
    assert "not converged" not in done.stderr

    done = run_cli("check-grad", DAG, "--engine", "ray", "--vertices-per-actor", "3",
                   "--staleness", "2", "--iterations", str(depth), "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["converged"] is False and report["max_rel_error"] > 1e-3
    assert report["residual"] > CONVERGENCE_TOLERANCE
    warning = [line for line in done.stderr.splitlines() if "has not converged" in line]
    assert len(warning) == 1 and warning[0].startswith("neurolocal: warning: ")


def test_an_unsettled_relaxation_says_so_on_the_local_engine_too():
    done = run_cli("check-grad", DAG, "--eta", "0.1")
    assert done.returncode == 0
    assert "has not converged after" in done.stderr and "NOT converged" in done.stdout
    done = run_cli("check-grad", DAG, "--eta", "0.1", "--iterations", "300", "--json")
    report = json.loads(done.stdout)
    assert report["converged"] is True and report["max_rel_error"] < 1e-6
    assert done.stderr == ""


# --- item 10: synthetic batches of each input's kind, and --data ----------------------------


def test_synthetic_batch_fills_id_inputs_with_whole_numbers_below_the_vocabulary():
    graph = graph_from_dict(yaml.safe_load(EMBEDDING_TOPOLOGY))
    inputs, _ = synthetic_batch(graph, 50, seed=3)
    ids = inputs["tokens"]
    assert np.array_equal(ids, np.round(ids)) and ids.min() >= 0 and ids.max() <= 6
    assert len(np.unique(ids)) == 7  # every id drawn: the whole table gets an update
    assert not np.array_equal(inputs["extra"], np.round(inputs["extra"]))


def test_check_grad_runs_a_graph_whose_embedding_reads_an_input(tmp_path):
    path = tmp_path / "ids.yaml"
    path.write_text(EMBEDDING_TOPOLOGY)
    done = run_cli("check-grad", path, "--json", "--max-rel-error", "1e-10")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {r["vertex"] for r in report["parameters"]} == {"embed", "side", "logits"}
    assert report["converged"] is True


def test_check_grad_takes_data_like_run(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.random((40, 64)), y=np.arange(40) % 10)
    for spec in (str(data), "digits"):
        done = run_cli("check-grad", REPO_ROOT / "topologies" / "mlp.yaml", "--data", spec,
                       "--json", "--max-rel-error", "1e-10")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["converged"] is True
    done = run_cli("check-grad", REPO_ROOT / "topologies" / "mlp.yaml", "--data",
                   str(tmp_path / "missing.npz"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "missing.npz" in done.stderr and "Traceback" not in done.stderr


# --- item 11: what the energy shows, and what settles -----------------------------------------


def test_energy_rises_while_its_change_per_round_settles_to_zero():
    """At eta = 1 the errors settle at round `depth` (the last round of the default T):
    the change is zero from round depth + 1 on. At eta = 0.5 it decays geometrically."""
    depth = load_topology(DAG).graph.depth
    done = run_cli("check-grad", DAG, "--json", "--iterations", str(depth + 2))
    report = json.loads(done.stdout)
    energy, change = report["energy"], report["energy_change"]
    assert len(energy) == depth + 3 and len(change) == depth + 2
    assert energy[-1] > energy[0]  # hidden errors start at zero and grow
    assert change[depth - 1] > 0 and change[depth:] == [0.0, 0.0]
    change = json.loads(run_cli("check-grad", DAG, "--json", "--eta", "0.5", "--iterations",
                                "60").stdout)["energy_change"]
    assert change[-1] < 1e-6 * max(change)


# --- papercut: a 1,000-vertex graph gets a summary --------------------------------------------


def test_a_large_check_grad_prints_a_summary_and_the_full_table_on_request(tmp_path):
    path = tmp_path / "t1k.yaml"
    assert run_cli("generate", "tiled", "--vertices", "1000", "--layers", "4", "-o",
                   path).returncode == 0
    summary = run_cli("check-grad", path)
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert len(lines) <= 16 and "every row: --all or --json" in summary.stdout
    assert lines[-1].startswith("max relative error")
    full = run_cli("check-grad", path, "--all")
    report = json.loads(run_cli("check-grad", path, "--json").stdout)
    assert len(full.stdout.splitlines()) == len(report["parameters"]) + 3
