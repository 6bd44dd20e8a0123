#!/usr/bin/env python
"""Ray compiled graphs (`ray.dag`, `experimental_compile`) against classic actor calls for
one synchronous round between two actors (issue 25, docs/rounds.md §7).

    python scripts/compiled_graphs.py [--rounds 200] [--shape 32 128]

A "round" is what a 2-shard chain does per round: the driver hands a batch to actor A,
A's message (a float64 array) goes to actor B, B answers. Classic: `b.step.remote(
a.step.remote(x))` and a `ray.get` (Ray passes A's result to B without the driver);
compiled: the same two calls bound into a DAG once and executed per round. Prints the
median per round of each, with the load average.

Measured 2026-12-06 on the shared 2-core machine (load average 18.8), Ray 2.60.0,
32x128 float64: classic 3.09 ms a round, compiled 5.68 ms (0.54x: slower; its channels
poll, and two busy readers on an oversubscribed 2-core machine cost more than the
classic path saves). With a 128x1024 float64 payload (1 MiB) the compiled graph did not
finish a round within 10 minutes (its default channel buffer is smaller than the
payload). So the engine keeps the classic path for every round (docs/rounds.md §7).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import ray


@ray.remote(num_cpus=0)
class Stage:
    def step(self, x):
        return x * 1.0   # a touch of every element, like a vertex's sum


def timed(fn, rounds: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=2, default=(32, 128))
    args = parser.parse_args()
    ray.init(address="local", include_dashboard=False, logging_level="error")
    try:
        a, b = Stage.remote(), Stage.remote()
        x = np.random.default_rng(0).standard_normal(args.shape)
        classic = timed(lambda: ray.get(b.step.remote(a.step.remote(x))), args.rounds)
        from ray.dag import InputNode

        with InputNode() as given:
            dag = b.step.bind(a.step.bind(given))
        compiled = dag.experimental_compile()
        try:
            fast = timed(lambda: ray.get(compiled.execute(x)), args.rounds)
        finally:
            compiled.teardown()
        load = os.getloadavg()[0]
        print(f"two-actor round, {args.shape[0]}x{args.shape[1]} float64, median of "
              f"{args.rounds} (load average {load:.1f}, ray {ray.__version__}):")
        print(f"  classic actor calls   {classic * 1e3:8.3f} ms")
        print(f"  compiled graph        {fast * 1e3:8.3f} ms   ({classic / fast:.2f}x faster)")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
