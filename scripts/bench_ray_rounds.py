"""Median time of one synchronous relaxation round: local engine vs Ray engine.

    python scripts/bench_ray_rounds.py [topology] [--batch 32] [--rounds 64] [--repeats 7]

A round's time is (time of a batch with R rounds - time of a batch with 0 rounds) / R,
so the forward pass and the scheduler's per-batch calls cancel out; the median over
repeats is printed for: the local engine, Ray with one vertex per actor, and Ray
with every vertex in one actor. Ray runs embedded on this machine (no cluster).

BLAS threads: Ray starts its workers with OMP_NUM_THREADS=1; this driver process
(the local engine) uses whatever the environment says. On a busy 2-core machine a
multi-threaded OpenBLAS makes a 32x128 @ 128x128 product ~100x slower, so compare
with OPENBLAS_NUM_THREADS=1 (the printout names the setting used).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurolocal.engines.local import LocalEngine  # noqa: E402
from neurolocal.engines.ray import RayEngine, worker_runtime_env  # noqa: E402
from neurolocal.gradcheck import synthetic_batch  # noqa: E402
from neurolocal.topology import load_topology  # noqa: E402


def per_round_ms(relax, rounds: int, repeats: int) -> float:
    relax(rounds)  # warm up: numba kernels, Ray's object store, workers
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        relax(0)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        relax(rounds)
        full = time.perf_counter() - start
        samples.append((full - forward) / rounds * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default="topologies/mlp.yaml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    graph = load_topology(args.topology).graph
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, args.batch, 0)

    def timed(engine):
        return per_round_ms(lambda r: engine.relax(inputs, target, eta=0.5, iterations=r),
                            args.rounds, args.repeats)

    rows = [("local engine", timed(LocalEngine(graph, params)))]
    ray.init(address="local", include_dashboard=False, logging_level="warning",
             runtime_env=worker_runtime_env())
    try:
        n = len(graph.order)
        for label, k in ((f"ray, 1 vertex per actor ({n} actors)", 1),
                         (f"ray, all {n} vertices in 1 actor", n)):
            with RayEngine(graph, params, vertices_per_actor=k) as engine:
                rows.append((label, timed(engine)))
    finally:
        ray.shutdown()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"{graph.name}: batch {args.batch}, {args.rounds} rounds, median of {args.repeats}, "
          f"driver OPENBLAS_NUM_THREADS={threads}")
    for label, ms in rows:
        print(f"  {label:<40} {ms:8.3f} ms/round")


if __name__ == "__main__":
    main()
