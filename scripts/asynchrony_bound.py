"""Check the round bound of docs/asynchrony.md §3 on random DAGs and print a table.

Fixed mode, eta = 1, staleness S (no feedback older than S rounds): every parameter
update equals backprop's after T* = 1 + (depth - 1)(S + 1) rounds. For each of N
random DAGs (the ones tests/test_sim_engine.py draws), with a random delay model and a
straggler, this prints the error at T*, at the synchronous bound T = depth, and the
first T at which the run is exact (<= 1e-10) on the sim engine.

    python scripts/asynchrony_bound.py [--dags 20]
"""

from __future__ import annotations

import argparse

import numpy as np

from neurolocal import graph_from_dict
from neurolocal.engines.sim import SimEngine
from neurolocal.asynchrony.config import parse_section
from neurolocal.generate import random_dag
from neurolocal.gradcheck import compare, synthetic_batch

MODELS = ["exp:1", "uniform:0,3", "lognormal:1,1", "const:2", "exp:4"]


def bound(depth: int, staleness: int) -> int:
    return 0 if depth == 0 else 1 + (depth - 1) * (staleness + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    print("| DAG | vertices | depth | S | delay | T* | error at T* | error at T = depth "
          "| first exact T | oldest feedback |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.dags):
        graph = graph_from_dict(random_dag(seed, vertices=int(rng.integers(6, 14))))
        params = graph.init_params(seed)
        inputs, target = synthetic_batch(graph, 5, seed=seed)
        S = int(rng.integers(1, 4))
        model = MODELS[seed % len(MODELS)]
        straggler = {graph.hidden[int(rng.integers(len(graph.hidden)))]: {"slow": 2.5}}
        spec = parse_section({"delay": model, "vertices": straggler, "reorder": bool(seed % 2)})

        def error(T):
            engine = SimEngine(graph, params, staleness=S, seed=seed, asynchrony=spec)
            r = engine.relax(inputs, target, eta=1.0, iterations=T)
            check = compare(graph, params, r, inputs, target, mode="fixed", eta=1.0,
                            iterations=T)
            return check.max_relative_error, r.extras["report"]["max_feedback_age"]

        top = bound(graph.depth, S)
        at_bound, age = error(top)
        first = next((T for T in range(top + 1) if error(T)[0] <= 1e-10), None)
        print(f"| {seed} | {len(graph.order)} | {graph.depth} | {S} | {model} | {top} | "
              f"{at_bound:.1e} | {error(graph.depth)[0]:.1e} | {first} | {age} |")


if __name__ == "__main__":
    main()
