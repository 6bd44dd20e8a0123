#!/usr/bin/env python
"""neurolocal benchmarks: every figure is a ratio to a baseline measured in the same run.

    python scripts/bench.py --quick          # about a minute
    python scripts/bench.py                  # the full table in BENCHMARKS.md
    python scripts/bench.py --only local     # one section: local, ray, logging, placement

Machines are noisy: each row is the median over repeats, and every time is printed
next to its baseline (PyTorch backprop for the local engine; Ray's own no-op
messaging floor for the Ray engine; logging off for the logging overhead).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# one thread per process, for both numpy's BLAS and torch: the comparison is per core
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurolocal.graph import Graph, VertexSpec  # noqa: E402

ROWS: list[dict] = []


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(section: str, name: str, value: float, baseline: float, unit: str = "ms",
           note: str = "") -> None:
    ratio = value / baseline if baseline else float("nan")
    ROWS.append({"section": section, "name": name, "value": value, "baseline": baseline,
                 "ratio": ratio, "unit": unit, "note": note})
    print(f"  {name:<52} {value * 1e3:>9.3f} {unit}  baseline {baseline * 1e3:>9.3f} {unit}"
          f"  ratio {ratio:>6.2f}x  {note}", flush=True)


def mlp(widths: list[int], name: str) -> Graph:
    vertices = [VertexSpec.make("x", "input", shape=[widths[0]])]
    parent = "x"
    for k, width in enumerate(widths[1:]):
        last = k == len(widths) - 2
        vertices.append(VertexSpec.make(f"d{k}", "dense", [parent], units=width,
                                        activation="identity" if last else "tanh"))
        parent = f"d{k}"
    return Graph(vertices, output=parent, loss="softmax_cross_entropy", name=name)


# --- 1. local engine vs torch backprop ---------------------------------------------------


def bench_local(quick: bool) -> None:
    import torch

    from neurolocal.engines.local import LocalEngine

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    print("1. local engine vs PyTorch backprop (float64, batch 64, one thread, SGD step)")
    repeats = 15 if quick else 60
    for widths in ([64, 128, 128, 10], [784, 1024, 1024, 10]):
        label = "-".join(map(str, widths))
        graph = mlp(widths, label)
        params = graph.init_params(0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, widths[0]))
        y = rng.integers(0, widths[-1], size=64)

        layers = []
        for k in range(len(widths) - 1):
            linear = torch.nn.Linear(widths[k], widths[k + 1])
            with torch.no_grad():
                linear.weight.copy_(torch.tensor(params[f"d{k}"]["weight"].T))
                linear.bias.copy_(torch.tensor(params[f"d{k}"]["bias"]))
            layers += [linear] + ([torch.nn.Tanh()] if k < len(widths) - 2 else [])
        model = torch.nn.Sequential(*layers)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        tx, ty = torch.tensor(x), torch.tensor(y)

        def torch_step():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tx), ty)
            loss.backward()
            optimizer.step()

        def pc_step(engine, eta, iterations):
            def step():
                relaxation = engine.relax(x, y, eta=eta, iterations=iterations)
                for vertex, updates in relaxation.dtheta.items():
                    for name, update in updates.items():
                        params[vertex][name] += 1e-3 * update
            return step

        reps = repeats if widths[0] < 500 else max(5, repeats // 4)
        baseline = median_time(torch_step, reps)
        engine = LocalEngine(graph, params)
        report("local", f"PC eta=1 T=depth({graph.depth}) step, {label}",
               median_time(pc_step(engine, 1.0, graph.depth), reps), baseline)
        event = LocalEngine(graph, params, schedule="event")
        report("local", f"PC eta=1 T=depth event-driven step, {label}",
               median_time(pc_step(event, 1.0, graph.depth), reps), baseline)
        report("local", f"PC eta=0.1 T=100 step, {label}",
               median_time(pc_step(engine, 0.1, 100), max(3, reps // 5)), baseline)


SECTIONS = {"local": bench_local}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections ({', '.join(SECTIONS)})")
    args = parser.parse_args()
    for name in args.only.split(","):
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}")
    print(f"neurolocal bench: {os.cpu_count()} cores, numpy {np.__version__}, "
          f"{'quick' if args.quick else 'full'} run")
    for name in args.only.split(","):
        SECTIONS[name](args.quick)


if __name__ == "__main__":
    main()
