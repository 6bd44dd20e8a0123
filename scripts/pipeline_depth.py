"""Batches per simulated second against depth, with and without pipelining
(docs/asynchrony.md §7), printed as a markdown table.

    python scripts/pipeline_depth.py [--batches 24] [--vertices 4,8,16,32,64]

`neurolocal generate chain` graphs (x -> c0 -> ... -> out, dense tanh links of width 32)
train on synthetic batches of 2 samples on the sim engine: event schedule, eta = 1,
T = depth, unit compute time per update, no delay or exp:1 (mean one round), Adam.
For each pipeline depth K (1: batch after batch; K = the graph's depth) the table gives
the simulated rounds per batch in the steady state (3K + `--batches` batches are
trained; measured over `--batches` completions from the 2K-th on, once the pipeline has
filled and turned over and before it drains) and the mean latency of a batch (from
entering the graph to its last vertex's update).
Batches per simulated second = 1000 / (rounds per batch x round_ms), round_ms = 1.
Simulated time is deterministic: the numbers do not depend on the machine.
"""

from __future__ import annotations

import argparse

import numpy as np

from neurolocal import graph_from_dict
from neurolocal.engines.rounds import Learning
from neurolocal.engines.sim import SimEngine
from neurolocal.asynchrony.config import parse_section
from neurolocal.generate import deep_chain
from neurolocal.gradcheck import synthetic_batch
from neurolocal.optimizers import make_optimizer

DELAYS = ("0", "exp:1")


def measure(vertices: int, delay: str, pipeline: int, batches: int, seed: int = 1) -> dict:
    """One chain trained on `batches` batches with `pipeline` in flight: steady rounds
    per batch, mean latency, largest weight staleness."""
    graph = graph_from_dict(deep_chain(vertices))
    data = [synthetic_batch(graph, 2, seed=s) for s in range(batches)]
    engine = SimEngine(graph, graph.init_params(0), mode="fixed", schedule="event", seed=seed,
                       asynchrony=parse_section({"delay": delay}))
    engine.restore(graph.init_params(0), None,
                   Learning("adam", 0.001, factory=make_optimizer))
    steps = list(engine.train_batches(data, eta=1.0, iterations=max(1, graph.depth),
                                      pipeline=pipeline))
    done = np.cumsum([s.report["sim_time"] for s in steps])   # completion times
    latency = [s.report.get("latency", s.report["sim_time"]) for s in steps]
    # steady state: from the 2K-th completion (the pipeline has filled and turned over)
    # to the (N - K)-th (before the last K drain with nothing entering behind them)
    start, end = 2 * pipeline - 1, batches - pipeline - 1
    return {"depth": graph.depth, "steady": (done[end] - done[start]) / (end - start),
            "total": engine.clock / batches, "latency": float(np.mean(latency)),
            "staleness": max(engine.staleness_histogram, default=0)}


def table(vertices=(4, 8, 16, 32, 64), batches: int = 24, pipelines=(1, 4)) -> str:
    head = (["vertices", "depth", "delay"] + [f"K={k}" for k in pipelines]
            + ["K=depth", "batches / sim. s, K=1", "batches / sim. s, K=depth",
               "latency K=1", "latency K=depth", "max weight staleness K=depth"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for n in vertices:
        for delay in DELAYS:
            depth = graph_from_dict(deep_chain(n)).depth
            # the steady state: from the 2K-th completion on (those batches entered
            # after the first K were out), over K + `batches` completions
            runs = {k: measure(n, delay, k, 3 * k + batches)
                    for k in (*pipelines, max(1, depth))}
            one, deep = runs[1], runs[max(1, depth)]
            lines.append("| " + " | ".join(
                [str(n), str(depth), "none" if delay == "0" else delay]
                + [f"{runs[k]['steady']:.1f}" for k in pipelines]
                + [f"{deep['steady']:.1f}", f"{1000 / one['steady']:.0f}",
                   f"{1000 / deep['steady']:.0f}", f"{one['latency']:.1f}",
                   f"{deep['latency']:.1f}", str(deep["staleness"])]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--vertices", default="4,8,16,32,64")
    args = parser.parse_args()
    print(table(tuple(int(v) for v in args.vertices.split(",")), args.batches))


if __name__ == "__main__":
    main()
