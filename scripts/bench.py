#!/usr/bin/env python
"""neurolocal benchmarks: every figure is a ratio to a baseline measured in the same run.

    python scripts/bench.py --quick          # every section, fewer repeats (~5-10 min)
    python scripts/bench.py                  # the full table in BENCHMARKS.md
    python scripts/bench.py --only local     # one section: local, ray, scale, placement,
                                             # logging, traffic, startup, memory, epoch,
                                             # planned
    python scripts/bench.py --only traffic   # reading 10 million traffic records

Machines are noisy: each row is the median over repeats, and every time is printed
next to its baseline (PyTorch backprop for the local engine; Ray's own no-op
messaging floor for the Ray engine; logging off for the logging overhead).
Every run ends with issue 15's summary table: each goal measured in that run (row,
measured, baseline, ratio, goal, met / not met), the baselines of the issue's table,
and the load average at the run's start and end (BENCHMARKS.md §0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
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
#: the summary table printed last: issue 15's goals, each measured in this run, and the
#: baselines of its table (goal None)
GOALS: list[dict] = []


def goal(row: str, value: float, baseline: float, unit: str, limit: float | None,
         at_least: bool = False, goal_text: str = "", within: float | None = None) -> None:
    """One row of the summary: ratio = value / baseline, met when ratio <= limit (or
    >= limit with `at_least`, or within `within` of 1 either way: a prediction's
    error); limit None: a baseline of the issue's table, no goal."""
    ratio = value / baseline if baseline else float("nan")
    if within is not None:
        met = abs(ratio - 1) <= within if ratio == ratio else None   # nan: not measured
        goal_text = goal_text or f"1 ± {within:g}"
    else:
        met = None if limit is None else (ratio >= limit if at_least else ratio <= limit)
    GOALS.append({"row": row, "value": value, "baseline": baseline, "unit": unit,
                  "ratio": ratio, "goal": goal_text or ("" if limit is None else
                                                       f"{'>=' if at_least else '<='} {limit:g}x"),
                  "met": met})


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value * 1e3:.3f} ms"
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    return f"{value:,.0f} {unit}"


def print_summary(load_before: tuple) -> None:
    """The issues' goals (15, 24, 25) and the baselines of their tables, measured in
    this run."""
    if not GOALS:
        return
    load_after = os.getloadavg()
    print(f"\nsummary (goals of issues 15, 24 and 25): load average {load_before[0]:.1f} at the start, "
          f"{load_after[0]:.1f} at the end ({os.cpu_count()} cores)")
    print(f"| {'row':<68} | {'measured':>15} | {'baseline':>15} | {'ratio':>8} | {'goal':>8} "
          f"| {'met':<7} |")
    print(f"| {'-' * 68} | {'-' * 15}: | {'-' * 15}: | {'-' * 7}: | {'-' * 8} | {'-' * 7} |")
    for g in GOALS:
        met = "" if g["met"] is None else ("met" if g["met"] else "not met")
        print(f"| {g['row']:<68} | {_amount(g['value'], g['unit']):>15} | "
              f"{_amount(g['baseline'], g['unit']):>15} | {g['ratio']:>7.2f}x | {g['goal']:>8} "
              f"| {met:<7} |")


#: CPU seconds (this process's, or a contender's own) of the last `interleaved` steps:
#: what a step costs whatever the load, next to its wall time
CPU: dict[str, float] = {}


def median_time(fn, repeats: int, warmup: int = 2, cpu: list | None = None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        own = fn()   # a contender timing itself (another process): (seconds, CPU seconds)
        if isinstance(own, tuple):
            times.append(own[0])
            if cpu is not None:
                cpu.append(own[1])
            continue
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(times)


def interleaved(steps: dict, chunks: int = 3) -> dict[str, float]:
    """Median time of each step, measured in alternating chunks so that a noisy
    machine's drift falls on every contender alike. `steps`: name -> (fn, repeats).
    The median CPU seconds of each step go to `CPU`."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(chunks):
        for name, (fn, repeats) in steps.items():
            samples[name].append(median_time(fn, max(1, repeats // chunks), warmup=1,
                                             cpu=cpu[name]))
    CPU.update({name: statistics.median(values) for name, values in cpu.items()})
    return {name: statistics.median(values) for name, values in samples.items()}


def report(section: str, name: str, value: float, baseline: float, unit: str = "ms",
           note: str = "") -> None:
    ratio = value / baseline if baseline else float("nan")
    ROWS.append({"section": section, "name": name, "value": value, "baseline": baseline,
                 "ratio": ratio, "unit": unit, "note": note})
    scale = 1e3 if unit == "ms" else 1.0  # values in seconds print as ms; others as given
    print(f"  {name:<52} {value * scale:>9.3f} {unit}  baseline {baseline * scale:>9.3f} {unit}"
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
    try:
        import torch
    except ImportError:
        print("1. local engine vs PyTorch backprop: skipped, torch is not installed "
              "(pip install -e '.[test]' brings torch==2.13.0)")
        return

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

        reps = repeats if widths[0] < 500 else max(6, repeats // 4)
        jacobi = LocalEngine(graph, params, schedule="jacobi")
        event = LocalEngine(graph, params, schedule="event")
        steps = {"torch": (torch_step, reps),
                 "jacobi": (pc_step(jacobi, 1.0, graph.depth), reps),
                 "event": (pc_step(event, 1.0, graph.depth), reps),
                 "slow": (pc_step(jacobi, 0.1, 100), max(3, reps // 5))}
        times = interleaved(steps)
        baseline = times["torch"]
        report("local", f"PC eta=1 T=depth({graph.depth}) Jacobi step, {label}",
               times["jacobi"], baseline)
        report("local", f"PC eta=1 T=depth event-driven step, {label}", times["event"], baseline)
        report("local", f"PC eta=0.1 T=100 step, {label}", times["slow"], baseline)


# --- 2-4. Ray engine: round cost against Ray's own floor -----------------------------------


def per_round(relax, rounds: int, repeats: int) -> tuple[float, float]:
    """(seconds per round, seconds per batch of `rounds` rounds): the batch with R rounds
    minus the batch with 0 rounds, over R, so the forward pass and the scheduler's
    per-batch calls cancel out. Medians over repeats."""
    relax(rounds)  # warm up: numba kernels, object store, workers
    rounds_only, whole = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        relax(0)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        relax(rounds)
        full = time.perf_counter() - start
        rounds_only.append((full - forward) / rounds)
        whole.append(full)
    return statistics.median(rounds_only), statistics.median(whole)


def ray_floor(quick: bool) -> dict[str, float]:
    """Ray's own costs on this machine: a pipelined no-op call, one hop of a
    fire-and-forget relay between actors (what a message between vertices costs)."""
    import asyncio

    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def noop(self, payload=None):
            return None

    @ray.remote(num_cpus=0)
    class Hop:
        def __init__(self):
            self.next = None
            self.done = asyncio.Event()

        def link(self, other):
            self.next = other

        async def forward(self, payload, remaining):
            if remaining == 0:
                self.done.set()
            else:
                self.next.forward.remote(payload, remaining - 1)

        async def wait(self):
            await self.done.wait()
            self.done.clear()

    echo = Echo.remote()
    ray.get(echo.noop.remote())
    calls = 300 if quick else 2000
    start = time.perf_counter()
    ray.get([echo.noop.remote() for _ in range(calls)])
    pipelined = (time.perf_counter() - start) / calls

    ring = [Hop.remote() for _ in range(4)]
    ray.get([a.link.remote(ring[(i + 1) % 4]) for i, a in enumerate(ring)])
    payload = np.zeros((32, 128))
    hops = 400 if quick else 2000
    samples = []
    for _ in range(3):
        last = ring[hops % 4]
        start = time.perf_counter()
        ring[0].forward.remote(payload, hops)
        ray.get(last.wait.remote())
        samples.append((time.perf_counter() - start) / hops)
    for actor in [echo, *ring]:
        ray.kill(actor)
    return {"pipelined no-op call": pipelined, "fire-and-forget hop, 32x128 f64": min(samples)}


def silent(document: dict) -> dict:
    """The same topology with every dense vertex's arithmetic taken out (`silent_dense`)."""
    vertices = []
    for v in document["vertices"]:
        v = dict(v)
        if v.get("op") == "dense":
            v["op"] = "silent_dense"
            v.pop("init", None)
            v.pop("bias", None)
        vertices.append(v)
    return {**document, "vertices": vertices, "name": document.get("name", "graph") + "-silent"}


def bench_ray(quick: bool) -> None:
    import math

    import ray
    import yaml

    from neurolocal.engines.local import LocalEngine
    from neurolocal.engines.ray import RayEngine, worker_runtime_env
    from neurolocal.gradcheck import synthetic_batch
    from neurolocal.topology import graph_from_dict

    print("2-3. Ray engine (embedded, this machine): time per synchronous round (fixed mode, "
          "batch 32, R-round batch minus 0-round batch)")
    ray.init(address="local", include_dashboard=False, logging_level="error",
             runtime_env=worker_runtime_env())
    try:
        floor = ray_floor(quick)
        for name, seconds in floor.items():
            print(f"  floor: {name:<45} {seconds * 1e3:9.3f} ms")
        hop = floor["fire-and-forget hop, 32x128 f64"]
        repeats, rounds = (3, 16) if quick else (7, 64)
        root = Path(__file__).resolve().parents[1] / "topologies"
        for name in ("mlp", "cnn"):
            document = yaml.safe_load((root / f"{name}.yaml").read_text())
            graph = graph_from_dict(document)
            params = graph.init_params(0)
            inputs, target = synthetic_batch(graph, 32, 0)
            n = len(graph.order)

            def timed(engine):
                return per_round(lambda r: engine.relax(inputs, target, eta=0.5, iterations=r),
                                 rounds, repeats)

            local_round, local_batch = timed(LocalEngine(graph, params, schedule="jacobi"))
            with RayEngine(graph, params, vertices_per_actor=1) as engine:
                one_round, one_batch = timed(engine)
                report_messages = engine.relax(inputs, target, eta=0.5, iterations=rounds)
            quiet = graph_from_dict(silent(document))
            with RayEngine(quiet, quiet.init_params(0), vertices_per_actor=1) as engine:
                silent_round, _ = per_round(
                    lambda r: engine.relax(inputs, target, eta=0.5, iterations=r), rounds, repeats)
            per_core = math.ceil(n / 2)
            with RayEngine(graph, params, vertices_per_actor=per_core) as engine:
                packed_round, packed_batch = timed(engine)
            if name == "mlp":   # the same packed batch, every message in the traffic log
                import tempfile

                with tempfile.TemporaryDirectory(prefix="nl-bench-log-") as log, \
                        RayEngine(graph, params, vertices_per_actor=per_core,
                                  traffic_log=log) as engine:
                    _, logged_batch = timed(engine)
                report("logging", f"Ray {name}: packed batch of {rounds} rounds, logging on vs off",
                       logged_batch, packed_batch)
                goal(f"logging overhead: Ray MLP packed batch, {rounds} rounds", logged_batch,
                     packed_batch, "ms", 1.05)
            report("ray", f"{name}: round, 1 vertex/actor ({n} actors) vs math removed",
                   one_round, silent_round)
            report("ray", f"{name}: round, 1 vertex/actor vs one fire-and-forget hop",
                   one_round, hop)
            report("ray", f"{name}: batch of {rounds} rounds, packed 1 shard/core vs local",
                   packed_batch, local_batch)
            report("ray", f"{name}: round, packed 1 shard/core vs local round",
                   packed_round, local_round)
            counts = report_messages.extras["report"]["message_counts"]
            logical = counts["local_messages"] + counts["remote_messages"]
            print(f"    {name}: {logical} logical messages per {rounds}-round batch "
                  f"({counts['remote_messages']} crossed actors)")
    finally:
        ray.shutdown()


def bench_scale(quick: bool) -> None:
    """Generated tiled graphs: round cost and logical message rate as the vertex count grows."""
    import ray

    from neurolocal.engines.ray import RayEngine, worker_runtime_env
    from neurolocal.generate import tiled_mlp
    from neurolocal.gradcheck import synthetic_batch
    from neurolocal.topology import graph_from_dict

    print("3. generated tiled graphs (tile width 4, fan-in 3, batch 32): time per round, "
          "logical messages/s (baseline: one fire-and-forget hop)")
    ray.init(address="local", include_dashboard=False, logging_level="error",
             runtime_env=worker_runtime_env())
    try:
        hop = ray_floor(True)["fire-and-forget hop, 32x128 f64"]
        cases = ([(16, 1), (1024, 512)] if quick else
                 [(16, 1), (64, 1), (256, 32), (1024, 64), (1024, 512)])
        rounds, repeats = (8, 3) if quick else (16, 5)
        best = (0.0, 0, 0, 0)   # the best 1k-vertex rate: (msg/s, vertices, actors, K)
        for vertices, per_actor in cases:
            graph = graph_from_dict(tiled_mlp(vertices=vertices, layers=4))
            params = graph.init_params(0)
            inputs, target = synthetic_batch(graph, 32, 0)
            with RayEngine(graph, params, vertices_per_actor=per_actor) as engine:
                round_time, _ = per_round(
                    lambda r: engine.relax(inputs, target, eta=0.5, iterations=r), rounds, repeats)
                counts = [engine.relax(inputs, target, eta=0.5, iterations=r)
                          .extras["report"]["message_counts"] for r in (0, rounds)]
                actors = len(engine.actors)
            logical = [c["local_messages"] + c["remote_messages"] for c in counts]
            per_round_messages = (logical[1] - logical[0]) / rounds
            rate = per_round_messages / round_time
            bytes_per_message = 32 * 4 * 8  # a tile's J^T eps: batch x tile width, float64
            report("scale", f"{len(graph.order)} vertices, {actors} actors (K={per_actor}): round",
                   round_time, hop,
                   note=f"{rate:,.0f} logical msg/s, {rate * bytes_per_message / 2 / 1e6:.1f} "
                        "MB/s per core")
            if vertices >= 1024:
                best = max(best, (rate, len(graph.order), actors, per_actor))
        if best[0]:
            rate, n, actors, per_actor = best
            goal(f"logical messages/s, {n}-vertex tiled graph ({actors} actors of {per_actor})",
                 rate, 1e6, "msg/s", 1.0, at_least=True)
    finally:
        ray.shutdown()


# --- 12. the planned path (issue 24): rounds at the speed of their arithmetic -----------------


def tiled_graph(vertices: int, layers: int = 4):
    """The issue's tiled graphs: width-4 tiles, fan-in 3, 64 inputs, 10 outputs."""
    from dataclasses import replace

    from neurolocal.generate import tiled_mlp
    from neurolocal.limits import default_budget
    from neurolocal.topology import topology_from_dict

    budget = default_budget()   # 100k vertices: the budget docs/limits.md states
    budget = replace(budget, vertices=max(budget.vertices, vertices + 10),
                     vertex_rounds=max(budget.vertex_rounds, 20 * vertices))
    return topology_from_dict(tiled_mlp(vertices=vertices, layers=layers, fan_in=3,
                                        input_width=64, output_width=10), budget=budget).graph


def bench_planned(quick: bool) -> None:
    """Planned against message path, measured side by side: time per vertex-round as the
    vertex count grows, a training batch of the 1k and 10k tiled graphs on the local and
    Ray engines, logical messages per second, and what a traffic log costs."""
    import tempfile

    import ray

    from neurolocal.engines import EngineConfig
    from neurolocal.engines.local import LocalEngine
    from neurolocal.engines.ray import RayEngine, worker_runtime_env
    from neurolocal.engines.rounds import Learning
    from neurolocal.gradcheck import synthetic_batch
    from neurolocal.traffic import TrafficRecorder

    print("12. the planned path (issue 24): tiled graphs (width-4 tiles, fan-in 3, batch 32); "
          "baseline: the message path, same graph, same run")
    repeats = 3 if quick else 5

    def relax_time(graph, rounds: str, recorder=None) -> tuple[float, int, int]:
        """(seconds per relaxed batch, vertex-rounds, logical messages) on the local engine."""
        params = graph.init_params(0)
        x, y = synthetic_batch(graph, 32, 0)
        engine = LocalEngine(graph, params, recorder=recorder,
                             config=EngineConfig(engine="local", rounds=rounds))
        result = engine.relax(x, y, eta=0.5)
        seconds = median_time(lambda: engine.relax(x, y, eta=0.5), repeats, warmup=1)
        engine.close()
        return seconds, len(graph.order) * len(result.energy), result.messages

    # time per vertex-round against vertex count
    sizes = [100, 1000, 10000] if quick else [100, 1000, 10000, 100000]
    per_vertex_round = {}
    for n in sizes:
        graph = tiled_graph(n)
        planned, vertex_rounds, messages = relax_time(graph, "auto")
        per_vertex_round[n] = planned / vertex_rounds
        if n <= (1000 if quick else 10000):
            message, _, _ = relax_time(graph, "message")
            report("planned", f"{len(graph.order)} vertices, relax: per vertex-round",
                   planned / vertex_rounds, message / vertex_rounds, unit="ms",
                   note=f"{messages / planned:,.0f} logical msg/s (message path "
                        f"{messages / message:,.0f})")
        else:
            report("planned", f"{len(graph.order)} vertices, relax: per vertex-round",
                   planned / vertex_rounds, per_vertex_round[1000], unit="ms",
                   note=f"baseline: the 1k graph's planned round (message path not run: "
                        f"{messages / planned:,.0f} logical msg/s)")
        if n == 1000:
            goal("logical messages/s, 1k-vertex tiled graph, one process", messages / planned,
                 500_000, "msg/s", 1.0, at_least=True)
    flat = max(per_vertex_round.values()) / min(per_vertex_round.values())
    goal(f"time per vertex-round, {min(sizes)} to {max(sizes)} vertices: max/min",
         max(per_vertex_round.values()), min(per_vertex_round.values()), "ms", 1.5)
    print(f"  per vertex-round flat within {flat:.2f}x from {min(sizes)} to {max(sizes)} "
          "vertices")

    # a training batch, local engine
    def train_time(engine, graph) -> float:
        params = graph.init_params(0)
        engine.restore(params, None, Learning("adam", 1e-3))
        x, y = synthetic_batch(graph, 32, 0)
        return median_time(lambda: engine.train_step(x, y, eta=1.0), repeats, warmup=1)

    graphs = {"1k": tiled_graph(1000, 4), "10k": tiled_graph(10000, 10)}
    for label, graph in graphs.items():
        times = {}
        for rounds in ("auto", "message"):
            if rounds == "message" and label == "10k" and quick:
                continue
            engine = LocalEngine(graph, graph.init_params(0),
                                 config=EngineConfig(engine="local", rounds=rounds))
            times[rounds] = train_time(engine, graph)
        baseline = times.get("message", float("nan"))
        report("planned", f"{label} tiled graph ({len(graph.order)} vertices), local: "
               "training batch", times["auto"], baseline, unit="ms",
               note="baseline: the message path" if "message" in times else "")
        if label == "10k":
            goal("training batch, 10k-vertex tiled graph, local engine (s)", times["auto"],
                 0.3, "s", 1.0)

    # the same on Ray (default packing: about one actor per core)
    ray.init(address="local", include_dashboard=False, logging_level="error",
             runtime_env=worker_runtime_env())
    try:
        for label, graph in graphs.items():
            times, rates = {}, {}
            for rounds in ("auto", "message"):
                if rounds == "message" and label == "10k" and quick:
                    continue
                with RayEngine(graph, graph.init_params(0),
                               config=EngineConfig(engine="ray", rounds=rounds)) as engine:
                    times[rounds] = train_time(engine, graph)
                    actors = len(engine.actors)
                    x, y = synthetic_batch(graph, 32, 0)
                    relaxed = engine.relax(x, y, eta=0.5)
                    rates[rounds] = relaxed.messages / median_time(
                        lambda: engine.relax(x, y, eta=0.5), repeats, warmup=0)
            baseline = times.get("message", float("nan"))
            report("planned", f"{label} tiled graph, Ray ({actors} actors): training batch",
                   times["auto"], baseline, unit="ms",
                   note=f"{rates['auto']:,.0f} logical msg/s relaxing")
            if label == "1k":
                goal(f"logical messages/s, 1k-vertex tiled graph, Ray ({actors} actors)",
                     rates["auto"], 1_000_000, "msg/s", 1.0, at_least=True)
    finally:
        ray.shutdown()

    # what a traffic log costs on the planned path
    for label, graph in graphs.items():
        with tempfile.TemporaryDirectory() as directory:
            off, _, _ = relax_time(graph, "auto")
            recorder = TrafficRecorder(directory, "bench", "local", graph=graph.name)
            on, _, _ = relax_time(graph, "auto", recorder)
        report("planned", f"{label} tiled graph, relax with a traffic log", on, off, unit="ms",
               note="baseline: no log")
        goal(f"logging overhead: planned relax, {label} tiled graph", on, off, "ms", 1.05)


def bench_placement(quick: bool) -> None:
    """The same graph over 1, 2 and 3 simulated nodes (ray.cluster_utils.Cluster); the
    1-node round is the baseline. The nodes share this machine's 2 cores."""
    import ray
    from ray.cluster_utils import Cluster

    from neurolocal.engines.ray import RayEngine, worker_runtime_env
    from neurolocal.generate import tiled_mlp
    from neurolocal.gradcheck import synthetic_batch
    from neurolocal.topology import graph_from_dict

    print("4. placement: one graph spread over 1, 2, 3 simulated nodes (round time; 1 node = "
          "baseline)")
    graph = graph_from_dict(tiled_mlp(vertices=64, layers=4))
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 32, 0)
    rounds, repeats = (8, 3) if quick else (16, 5)
    baseline = None
    for nodes in (1, 2, 3):
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {"node_0": 1}, "include_dashboard": False})
        for k in range(1, nodes):
            cluster.add_node(num_cpus=1, resources={f"node_{k}": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="error",
                 runtime_env=worker_runtime_env())
        try:
            with RayEngine(graph, params, vertices_per_actor=8, placement="spread") as engine:
                round_time, _ = per_round(
                    lambda r: engine.relax(inputs, target, eta=0.5, iterations=r), rounds, repeats)
                used = {a["node_id"] for a in engine.relax(inputs, target, eta=0.5, iterations=1)
                        .extras["report"]["actors"]}
        finally:
            ray.shutdown()
            cluster.shutdown()
        baseline = baseline or round_time
        report("placement", f"{len(graph.order)} vertices, 8 actors over {nodes} node(s)",
               round_time, baseline, note=f"actors on {len(used)} node(s)")


# --- 5. traffic-logging overhead ------------------------------------------------------------


def bench_logging(quick: bool) -> None:
    import tempfile

    from neurolocal.engines.local import LocalEngine
    from neurolocal.traffic import TrafficRecorder

    print("5. traffic-logging overhead, local engine (time per relaxed batch, logging off = baseline)")
    repeats = 30 if quick else 200
    for widths, schedule, eta, iterations, mode in (
            ([64, 128, 128, 10], "jacobi", 0.1, 20, "fixed"),
            ([64, 128, 128, 10], "event", 1.0, 2, "fixed"),
            ([64, 256, 256, 256, 10], "jacobi", 0.1, 20, "fixed"),
            ([64, 128, 128, 10], "jacobi", 0.1, 20, "strict")):
        label = "-".join(map(str, widths))
        graph = mlp(widths, label)
        params = graph.init_params(0)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((32, widths[0])), rng.integers(0, widths[-1], size=32)
        with tempfile.TemporaryDirectory() as directory:
            settings = {"schedule": schedule, "eta": eta, "iterations": iterations}
            engines = {
                "off": LocalEngine(graph, params, mode=mode, schedule=schedule),
                "on": LocalEngine(graph, params, mode=mode, schedule=schedule,
                                  recorder=TrafficRecorder(directory, "bench", "local",
                                                           graph=label, settings=settings)),
            }
            times = interleaved({key: (lambda e=engine: e.relax(x, y, eta=eta,
                                                                iterations=iterations), repeats)
                                 for key, engine in engines.items()})
            row = f"{label} {mode} {schedule} eta={eta} T={iterations}"
            report("logging", f"logging on, {row}", times["on"], times["off"],
                   note="strict: the planned rounds, recording every message"
                   if mode == "strict" else "")
            goal(f"logging overhead: local {row}", times["on"], times["off"], "ms", 1.05)


# --- 7. traffic logs at scale: summary, audit, export of 10 million records -------------

def write_traffic_log(directory: Path, records: int, graph: Graph, iterations: int) -> int:
    """An honest Jacobi log of `graph` (what the Ray engine writes: one stream per actor,
    the receiver records, the scheduler's control replies and energy), `records` long."""
    import struct

    import msgpack

    from neurolocal.traffic.log import FIELDS, FORMAT, VERSION

    actors = 8
    relaxing = [(p, c) for p, c in graph.edges if not graph.is_input(p)]
    template = [(0, p, c, "value") for p, c in graph.edges]
    for r in range(1, iterations + 1):
        template += [(r, c, p, "error") for p, c in relaxing if c != graph.output or r == 1]
    index = {n: i for i, n in enumerate(graph.order)}
    actor = {n: f"actor-{index[n] % actors}" for n in graph.order}
    host = {n: f"node-{index[n] % 2}" for n in graph.order}
    settings = {"engine": "ray", "mode": "fixed", "schedule": "jacobi", "eta": 1.0,
                "iterations": iterations, "read_inputs": False}
    files = {}
    for w in [f"actor-{i}" for i in range(actors)] + ["scheduler"]:
        f = open(directory / f"bench.{w}.traffic", "wb")  # noqa: SIM115 - closed below
        f.write(msgpack.packb({"format": FORMAT, "version": VERSION, "run": "bench",
                               "writer": w, "fields": list(FIELDS), "graph": graph.name,
                               "settings": settings}))
        files[w] = f
    tails = []  # everything but the batch id and the two times, packed once
    for round_, src, dst, kind in template:
        middle = msgpack.packb(round_) + b"".join(msgpack.packb(x) for x in (src, dst, kind,
                                                                               4096))
        tail = b"".join(msgpack.packb(x) for x in (host[src], host[dst], actor[src],
                                                   actor[dst]))
        tails.append((actor[dst], middle, tail, round_))
    per_batch = len(template) + actors
    batches = max(1, records // per_batch)
    t = 1.8e9
    pending = {w: [] for w in files}
    for b in range(batches):
        head = b"\x9c" + msgpack.packb(b)
        for writer, middle, tail, round_ in tails:
            t_send = t + b * 0.05 + round_ * 1e-3
            pending[writer].append(head + middle + b"\xcb" + struct.pack(">d", t_send)
                                   + b"\xcb" + struct.pack(">d", t_send + 2e-4) + tail)
        for i in range(actors):
            pending["scheduler"].append(msgpack.packb(
                [b, 0, f"actor-{i}", "scheduler", "control", 65536, t + b * 0.05,
                 t + b * 0.05 + 1e-3, "node-0", "node-0", f"actor-{i}", "scheduler"]))
        pending["scheduler"].append(msgpack.packb({"energy": [b, [1.0 / (r + 1) for r in
                                                                 range(iterations + 1)]]}))
        if b % 200 == 199 or b == batches - 1:
            for w, chunks in pending.items():
                files[w].write(b"".join(chunks))
                chunks.clear()
    for f in files.values():
        f.close()
    return batches * per_batch


def traffic_child(task: str, directory: str, topology: str) -> None:
    """One measurement in a fresh process: records/s and this process's peak RSS."""
    import json as _json
    import resource
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    from neurolocal.traffic.stream import LogStream

    LogStream(directory)  # compiled kernels warm (numba's cache) before the clock starts
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    if task == "reference":  # the reader before issue 17: one Python list per record
        import msgpack

        records = []
        for path in sorted(Path(directory).glob("*.traffic")):
            with open(path, "rb") as f:
                unpacker = msgpack.Unpacker(f, raw=False)
                next(unpacker)
                records += [item for item in unpacker if isinstance(item, list)]
        columns = {i: np.array([r[i] for r in records], dtype=object if i in (2, 3, 4, 8, 9,
                                                                            10, 11) else None)
                   for i in range(12)}
        count = len(columns[0])
    elif task == "decode":
        count = sum(len(c) for c in LogStream(directory).chunks())
    elif task == "summary":
        from neurolocal.traffic.report import summary

        count = summary(directory)["messages"]
    elif task == "audit":
        from neurolocal.topology import load_topology
        from neurolocal.traffic.audit import audit

        result = audit(directory, load_topology(topology).graph)
        assert result.ok and result.counts_checked, result.violations[:3]
        count = result.messages
    elif task in ("parquet", "csv"):
        from neurolocal.traffic.table import export

        with tempfile.TemporaryDirectory() as tmp:
            count = export(directory, Path(tmp) / f"messages.{task}")
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0  # load-independent: CPU time this work took
    print(_json.dumps({"records": count, "seconds": seconds, "cpu_seconds": cpu,
                       "peak_mb": usage.ru_maxrss / 1024}))


def bench_traffic(quick: bool) -> None:
    import json as _json
    import subprocess
    import tempfile

    from neurolocal.generate import tiled_mlp, topology_yaml
    from neurolocal.topology import load_topology

    records = 1_000_000 if quick else 10_000_000
    print(f"7. traffic logs at scale: {records:,} records, each step in a fresh process "
          f"(records/s, peak resident memory); load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="nl-bench-traffic-") as tmp:
        topology = Path(tmp) / "tiled.yaml"
        topology.write_text(topology_yaml(tiled_mlp(vertices=200, layers=4)))
        graph = load_topology(topology).graph
        for part, (size, tasks) in enumerate(((1_000_000, ("reference",)),
                                              (records, ("decode", "summary", "audit",
                                                         "parquet", "csv")))):
            directory = Path(tmp) / f"log{part}"
            directory.mkdir()
            written = write_traffic_log(directory, size, graph, iterations=graph.depth)
            megabytes = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
            print(f"  log of {written:,} records, {megabytes:,.0f} MB on disk")
            for task in tasks:
                out = subprocess.run([sys.executable, __file__, "--traffic-child", task,
                                      str(directory), str(topology)], capture_output=True,
                                     text=True, check=True)
                m = _json.loads(out.stdout.strip().splitlines()[-1])
                rate = m["records"] / m["seconds"]
                ROWS.append({"section": "traffic", "name": task, **m, "rate": rate})
                per_cpu = m["records"] / max(m["cpu_seconds"], 1e-9)
                print(f"  {task:<10} {m['records']:>11,} records {m['seconds']:>8.2f} s "
                      f"{rate / 1e6:>6.2f} M records/s ({per_cpu / 1e6:.2f} M per CPU-second)"
                      f"  peak {m['peak_mb']:>7.0f} MB  load {os.getloadavg()[0]:.1f}",
                      flush=True)
            for path in directory.iterdir():
                path.unlink()


# --- 8. start-up: time to first batch -------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def neurolocal_command(*args) -> list[str]:
    return [sys.executable, "-m", "neurolocal", *map(str, args)]


def first_batch(extra_args: list, env: dict, out: Path) -> dict:
    """Run `neurolocal run topologies/mlp.yaml` for one epoch; seconds from the command's
    start to its first batch's dispatch and to that batch's end, read from the run's
    traffic log (the driver stamps each batch's calls and the actors' replies)."""
    from neurolocal.traffic import read_traffic

    start = time.time()
    done = subprocess.run(neurolocal_command("run", ROOT / "topologies/mlp.yaml", "--epochs", 1,
                                             "--quiet", "--out", out, *extra_args),
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        raise RuntimeError(f"neurolocal run failed: {done.stderr.strip()[-500:]}")
    columns = read_traffic(out / "traffic").columns
    batch = np.asarray(columns["batch"])
    first = batch == batch.min()
    return {"dispatch": float(np.min(np.asarray(columns["t_send"])[first])) - start,
            "done": float(np.max(np.asarray(columns["t_recv"])[first])) - start, "wall": wall}


def bench_startup(quick: bool) -> None:
    import shutil
    import tempfile

    print("8. start-up: seconds from the command's start to its first batch's end, "
          "`neurolocal run topologies/mlp.yaml` (auto placement); baseline: the goal")
    repeats = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for key in ("RAY_ADDRESS",):
        env.pop(key, None)
    try:
        start = time.perf_counter()
        subprocess.run(neurolocal_command("--version"), cwd=ROOT, env=env, check=True,
                       capture_output=True)
        floor = time.perf_counter() - start
        print(f"  floor: python -m neurolocal --version {floor:.2f} s")
        # numba's cache: a fresh directory for the cold run, the same one after it
        cache = {**env, "NUMBA_CACHE_DIR": str(work / "numba-cache")}
        cold = first_batch([], cache, work / "cold")
        warm = [first_batch([], cache, work / f"warm{k}") for k in range(repeats)]
        embedded = statistics.median(w["done"] for w in warm)
        dispatch = statistics.median(w["dispatch"] for w in warm)
        goal("time to first batch, embedded Ray (numba cache warm)", embedded, 5.0, "s", 1.0,
             goal_text="<= 5 s")
        report("startup", "embedded Ray: first batch done (numba cache warm)", embedded, 5.0,
               unit="s", note=f"goal 5 s (issue 25); Ray + actors up at {dispatch:.1f} s; whole command "
                              f"{statistics.median(w['wall'] for w in warm):.1f} s")
        report("startup", "embedded Ray, numba cache cold vs warm", cold["done"], embedded,
               unit="s", note="first batch, empty NUMBA_CACHE_DIR vs the same after one run")
        state = {**cache, "NEUROLOCAL_CLUSTER_DIR": str(work / "cluster")}
        start = time.perf_counter()
        subprocess.run(neurolocal_command("cluster", "up"), cwd=ROOT, env=state, check=True,
                       capture_output=True)
        up = time.perf_counter() - start
        try:
            attached = [first_batch(["--address", "auto"], state, work / f"attached{k}")
                        for k in range(repeats + 1)][1:]  # the first warms the cluster's pool
        finally:
            subprocess.run(neurolocal_command("cluster", "down"), cwd=ROOT, env=state,
                           capture_output=True)
        attached_done = statistics.median(a["done"] for a in attached)
        goal("time to first batch, attached to `neurolocal cluster up`", attached_done, 1.5, "s",
             1.0, goal_text="<= 1.5 s")
        report("startup", "attached (--address auto): first batch done", attached_done, 1.5,
               unit="s",
            note=f"goal 1.5 s (issue 25); actors up at {statistics.median(a['dispatch'] for a in attached):.1f}"
                 f" s; `neurolocal cluster up` took {up:.1f} s once")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- 9. memory of a whole Ray run -----------------------------------------------------------


def bench_memory(quick: bool) -> None:
    import json
    import shutil
    import tempfile
    from collections import defaultdict

    import proctree

    print("9. memory: `neurolocal run topologies/mlp.yaml` on an embedded Ray, the whole "
          "process tree (driver, GCS, raylet, agents, actors) at its peak; baseline: the goal")
    work = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    epochs = 2 if quick else 5
    try:
        code, peak = proctree.run_and_sample(
            neurolocal_command("run", ROOT / "topologies/mlp.yaml", "--epochs", epochs,
                               "--quiet", "--out", work / "ray"), cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if code != 0:
            raise RuntimeError(f"neurolocal run exited {code}")
        mb = 1 << 20
        actors = [m for m in peak["processes"] if proctree.kind(m["name"]) == "actor"]
        report("memory", f"whole run, sum of RSS ({len(peak['processes'])} processes)",
               peak["rss"] / mb, 600, unit="MB",
               note=f"goal 600 MB (issue 25); PSS {peak['pss'] / mb:.0f} MB; shared pages once "
                    f"{peak['unique'] / mb:.0f} MB")
        report("memory", "whole run, shared pages counted once", peak["unique"] / mb, 600,
               unit="MB", note="private pages + each shared file once")
        goal(f"whole-run memory, MLP on Ray, sum of RSS ({len(peak['processes'])} processes)",
             peak["rss"] / mb, 600, "MB", 1.0, goal_text="<= 600 MB")
        goal("whole-run memory, MLP on Ray, shared pages once", peak["unique"] / mb, 600, "MB",
             1.0, goal_text="<= 600 MB")
        if actors:
            report("memory", f"one actor, RSS (median of {len(actors)})",
                   statistics.median(a["rss"] for a in actors) / mb,
                   statistics.median(a["private"] for a in actors) / mb, unit="MB",
                   note="baseline: its private pages (the rest is shared: numba's LLVM, Ray)")
        by_kind = defaultdict(list)
        for m in peak["processes"]:
            by_kind[proctree.kind(m["name"])].append(m)
        print("    " + "; ".join(f"{k} x{len(v)} {sum(m['rss'] for m in v) / mb:.0f} MB"
                                  for k, v in sorted(by_kind.items(),
                                                     key=lambda kv: -sum(m['rss'] for m in kv[1]))))
        # the same command's epoch time, against the local engine's
        ray_epoch = [e["seconds"] for e in json.loads(
            (work / "ray" / "metrics.json").read_text())["runs"]["pc"]["epochs"]][1:]
        subprocess.run(neurolocal_command("run", ROOT / "topologies/mlp.yaml", "--epochs", epochs,
                                          "--quiet", "--engine", "local",
                                          "--out", work / "local"),   # both: run's defaults
                       cwd=ROOT, env=env, check=True, capture_output=True)
        local_epoch = [e["seconds"] for e in json.loads(
            (work / "local" / "metrics.json").read_text())["runs"]["pc"]["epochs"]][1:]
        report("memory", "Ray `run` per epoch (default packing) vs local engine",
               statistics.median(ray_epoch), statistics.median(local_epoch), unit="s",
               note="goal <= 2x (issue 15; epochs after the first)")
        goal("Ray `run` per epoch, digits MLP, default packing, vs local `run`",
             statistics.median(ray_epoch), statistics.median(local_epoch), "s", 2.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- 10. standard (strict) PC per epoch: neurolocal, pcx, torch backprop ---------------------

PCX_PYTHON = os.environ.get("PCX_PYTHON", "/work/venv-pcx/bin/python")
PCX_SETUP = ("python -m venv /work/venv-pcx && /work/venv-pcx/bin/pip install pcx==0.6.3 "
             "'jax[cpu]>=0.4.33,<0.5' (or set PCX_PYTHON to a python that has pcx)")


def digits_batches(batch_size: int = 32):
    """The digits split neurolocal trains on, in one shuffled order, cut into batches."""
    from neurolocal.training.data import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.y_train))
    bounds = list(range(0, len(order), batch_size)) + [len(order)]
    return data, data.x_train[order], data.y_train[order], bounds


class Pcx:
    """pcx (scripts/pcx_digits.py --serve) in its own environment, one epoch per request,
    so that its epochs alternate with neurolocal's in `interleaved`. `error`: why not."""

    def __init__(self, data, x, y, bounds, dtype: str):
        import json
        import tempfile

        self.process = None
        self.error = ""
        self.result: dict = {}
        if not Path(PCX_PYTHON).exists():
            self.error = f"skipped, no {PCX_PYTHON}. Make it: {PCX_SETUP}"
            return
        self.directory = tempfile.TemporaryDirectory()
        path = Path(self.directory.name) / "digits.npz"
        np.savez(path, x_train=x, y_train=y, x_test=data.x_test, y_test=data.y_test,
                 batches=np.array(bounds))
        self.process = subprocess.Popen(
            [PCX_PYTHON, str(Path(__file__).with_name("pcx_digits.py")), str(path), "--serve",
             "--iterations", "20", "--eta", "0.1", "--dtype", dtype],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            self.error = f"failed: {self.process.stderr.read().strip().splitlines()[-1:]}"
            self.process = None
            return
        self.first = json.loads(line)["ready"]

    def epoch(self) -> float:
        import json

        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return answer["seconds"], answer["cpu_seconds"]

    def close(self) -> dict:
        import json

        if self.process is not None:
            out, _ = self.process.communicate(timeout=600)
            self.result = json.loads(out.strip().splitlines()[-1])
            self.directory.cleanup()
        return self.result


def bench_epoch(quick: bool) -> None:
    from neurolocal.engines.local import LocalEngine

    print("10. one epoch of the digits MLP (64-128-128-10 tanh, batch 32, 43 batches, one "
          "thread); baseline: torch backprop, float64, Adam")
    epochs = 3 if quick else 8
    data, x, y, bounds = digits_batches()
    graph = mlp([64, 128, 128, 10], "digits-mlp")
    batches = list(zip(bounds[:-1], bounds[1:]))

    def pc_epoch(mode, eta, iterations, dtype="float64", planned=True):
        engine = LocalEngine(graph, graph.init_params(0), mode=mode, schedule="jacobi",
                             dtype=dtype)
        for shard in engine.shards:
            shard.use_plan = planned
        params = engine.params   # float32: the engine's own copy

        def epoch():
            for lo, hi in batches:
                relaxation = engine.relax(x[lo:hi], y[lo:hi], eta=eta, iterations=iterations)
                for vertex, updates in relaxation.dtheta.items():
                    for name, update in updates.items():
                        params[vertex][name] += 0.01 / (hi - lo) * update
        return epoch

    steps = {"fixed": (pc_epoch("fixed", 1.0, graph.depth), epochs),
             "strict": (pc_epoch("strict", 0.1, 20), epochs),
             "strict32": (pc_epoch("strict", 0.1, 20, "float32"), epochs),
             "message": (pc_epoch("strict", 0.1, 20, planned=False), epochs)}
    try:
        import torch
    except ImportError:
        torch = None
        print("  torch is not installed (pip install -e '.[test]'): PC rows are printed "
              "against the strict row instead")
    if torch is not None:
        torch.set_num_threads(1)
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),
                                    torch.nn.Linear(128, 128), torch.nn.Tanh(),
                                    torch.nn.Linear(128, 10)).double()
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        tx, ty = torch.tensor(x), torch.tensor(y)

        def torch_epoch():
            for lo, hi in batches:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(tx[lo:hi]), ty[lo:hi]).backward()
                optimizer.step()
        steps["torch"] = (torch_epoch, epochs)
    pcx = {dtype: Pcx(data, x, y, bounds, dtype) for dtype in ("float32", "float64")}
    for dtype, server in pcx.items():
        if server.process is not None:
            steps[f"pcx-{dtype}"] = (server.epoch, epochs)
    try:
        times = interleaved(steps)
    finally:
        results = {dtype: server.close() for dtype, server in pcx.items()}
    baseline = times.get("torch", times["strict"])
    if torch is not None:
        goal("torch 2.13 backprop, float64, Adam, one thread (s/epoch)", times["torch"], baseline,
             "s", None)
    for key, row in (("fixed", "neurolocal local, fixed PC eta=1 T=2, float64"),
                     ("strict", "neurolocal local, strict PC eta=0.1 T=20, float64"),
                     ("strict32", "neurolocal local, strict PC eta=0.1 T=20, float32"),
                     ("message", "neurolocal local, strict PC T=20, float64, message path")):
        report("epoch", row, times[key], baseline, unit="s",
               note="the rounds as messages (the planned path off)" if key == "message" else "")
        goal(row + " (s/epoch)", times[key], baseline, "s", None)
    report("epoch", "strict float64: planned rounds vs the message path", times["strict"],
           times["message"], unit="s")
    for dtype, mine in (("float32", times["strict32"]), ("float64", times["strict"])):
        if pcx[dtype].error:
            print(f"  pcx {dtype}: {pcx[dtype].error}")
            GOALS.append({"row": f"strict PC T=20 vs pcx, {dtype}: pcx absent (see above)",
                          "value": mine, "baseline": float("nan"), "unit": "s",
                          "ratio": float("nan"), "goal": "<= 1x", "met": None})
            continue
        theirs, result = times[f"pcx-{dtype}"], results[dtype]
        label = f"pcx {result['pcx']} strict PC T=20, {result['dtype']}"
        report("epoch", f"{label} (JAX {result['jax']}, after JIT)", theirs, baseline, unit="s",
               note=f"JIT + first epoch {pcx[dtype].first:.1f} s; test accuracy "
                    f"{result['test_accuracy']:.3f}")
        report("epoch", f"neurolocal strict vs pcx strict, both {dtype}", mine, theirs,
               unit="s", note="goal <= 1x at the same dtype")
        mine_cpu, theirs_cpu = CPU["strict32" if dtype == "float32" else "strict"], \
            CPU[f"pcx-{dtype}"]
        report("epoch", f"  the same in CPU seconds per epoch (load-independent), {dtype}",
               mine_cpu, theirs_cpu, unit="s", note="each process's own CPU time")
        goal(label + " (s/epoch)", theirs, baseline, "s", None)
        goal(f"strict PC T=20, digits MLP, vs pcx per epoch, both {dtype}", mine, theirs, "s",
             1.0)
        goal(f"  the same, CPU seconds per epoch (each process's own), {dtype}", mine_cpu,
             theirs_cpu, "s", 1.0)


#: section 10's child: one graph size in a fresh interpreter (its peak RSS is that size's)
_BUILD_CHILD = """
import json, resource, sys, time, yaml
from neurolocal.generate import tiled_mlp, topology_yaml
from neurolocal.limits import budget_from
from neurolocal.topology import load_topology
from neurolocal.training.settings import check_training_section
from neurolocal.yaml_load import SafeBase
vertices, path, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
text = topology_yaml(tiled_mlp(vertices=vertices, layers=10))
with open(path, "w") as handle:
    handle.write(text)
generate = time.perf_counter() - start
start, start_cpu = time.perf_counter(), time.process_time()
topology = load_topology(path, budget_from(flag or None))
check_training_section(topology.training, topology.graph)
load, load_cpu = time.perf_counter() - start, time.process_time() - start_cpu
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # before the baseline's
start = time.perf_counter()
yaml.load(text, Loader=SafeBase)
floor = time.perf_counter() - start
start = time.perf_counter()
topology.graph.init_params(0)
init = time.perf_counter() - start
print(json.dumps({"vertices": len(topology.graph.order), "generate": generate, "load": load,
                  "load_cpu": load_cpu, "floor": floor, "init": init, "rss_mb": rss}))
"""


def bench_build(quick: bool) -> None:
    """Generated tiled graphs (10 layers, fan-in 3) loaded and validated as `validate` does."""
    import json
    import shutil
    import tempfile

    print("10. building big graphs: `load_topology` + the training-section checks (what "
          "`validate` does) on tiled graphs; baseline: PyYAML's libyaml safe load of the "
          "same file")
    work = Path(tempfile.mkdtemp(prefix="nl-build-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        for vertices in (1_000, 10_000, 100_000):
            # 100k vertices take more than the default budget (docs/limits.md)
            flag = "vertices=200000,document_nodes=4000000" if vertices > 20_000 else ""
            done = subprocess.run([sys.executable, "-c", _BUILD_CHILD, str(vertices),
                                   str(work / f"tiled-{vertices}.yaml"), flag], env=env,
                                  capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            n = row["vertices"]
            report("build", f"{n} vertices: load + validate", row["load"], row["floor"],
                   unit="s", note=f"{row['load'] / n * 1e6:.1f} us/vertex (CPU "
                                  f"{row['load_cpu']:.2f} s); generate + write "
                                  f"{row['generate']:.2f} s, init_params {row['init']:.2f} s; "
                                  f"peak RSS {row['rss_mb']:.0f} MB after loading")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- scaling: strong scaling 1 -> 2 shards on this machine (issue 25) ---------------------


def scaling_graphs() -> dict:
    """The issue's workloads: the compute-heavy chain, the width-tiled graph, the MLP."""
    from neurolocal.generate import tiled_mlp
    from neurolocal.topology import graph_from_dict

    widths = [64, 1024, 1024, 1024, 1024, 10]
    vertices = [{"name": "x", "op": "input", "shape": [64]}]
    for i, width in enumerate(widths[1:], 1):
        vertex = {"name": f"h{i}", "op": "dense", "units": width,
                  "parents": ["x" if i == 1 else f"h{i - 1}"]}
        if i < len(widths) - 1:
            vertex["activation"] = "tanh"
        vertices.append(vertex)
    chain = graph_from_dict({"name": "chain-1024", "vertices": vertices, "output": "h5",
                             "loss": "softmax_cross_entropy"})
    tiled = tiled_mlp(vertices=40, layers=4, tile_width=128, input_width=64,
                      output_width=10, fan_in=3, loss="softmax_cross_entropy")
    return {"chain": chain, "tiled": graph_from_dict(tiled),
            "mlp": mlp([64, 128, 128, 10], "digits-mlp")}


def bench_scaling(quick: bool) -> None:
    """Strong scaling 1 -> 2 shards: an epoch of digits on the local engine (one
    process), the threads transport (a thread per shard) and Ray (an actor per shard),
    each with the same batches and the event schedule (`run`'s in fixed mode), measured
    in alternating chunks."""
    from neurolocal.engines.local import LocalEngine
    from neurolocal.engines.ray import RayEngine
    from neurolocal.engines.rounds import Learning
    from neurolocal.engines.threads import ThreadsEngine
    from neurolocal.optimizers import make_optimizer

    print("11. scaling: an epoch of digits, 1 -> 2 shards (local, threads, Ray); load "
          f"average {os.getloadavg()[0]:.1f}")
    data = digits_batches(128)
    _, x, y, bounds = data
    graphs = scaling_graphs()
    learning = Learning("adam", 1e-3, factory=make_optimizer)
    limit = 4 if quick else None   # batches per epoch in a quick run
    cases = [  # (workload, graph, batch bounds, T, pipeline, Ray placement)
        # min-cut: auto's min-cut partition on every core (2 shards); auto: the cost
        # model chooses how many (docs/placement.md §5)
        ("chain 64-1024x4-10 tanh, batch 128, T 4, --pipeline 2", "chain", 128, 4, 2, "min-cut"),
        ("tiled 40 vertices (9 tiles of 128/layer), batch 128, --pipeline 1", "tiled", 128, 4, 1,
         "min-cut"),
        ("digits MLP 64-128-128-10, batch 32, --pipeline 1", "mlp", 32, 2, 1, "auto"),
    ]
    for label, key, batch_size, iterations, pipeline, ray_shards in cases:
        graph = graphs[key]
        cut = list(range(0, len(x), batch_size)) + [len(x)]
        batches = [({graph.inputs[0]: x[lo:hi]}, y[lo:hi]) for lo, hi in zip(cut, cut[1:])]
        batches = batches[:limit] if limit else batches

        def epoch_of(engine):
            engine.restore(graph.init_params(0), None, learning)

            def epoch():
                for _ in engine.train_batches(batches, eta=1.0, iterations=iterations,
                                              pipeline=pipeline):
                    pass
            return epoch

        settings = {"iterations": iterations, "batch_size": batch_size}
        if ray_shards == "auto":   # training: the cost model weighs 1 .. cores shards
            settings["learning"] = True
        event = {"schedule": "event"}   # what `run` resolves auto to in fixed mode
        engines = {"local": LocalEngine(graph, graph.init_params(0), **event),
                   "threads-1": ThreadsEngine(graph, graph.init_params(0), shards=1, **event),
                   "threads-2": ThreadsEngine(graph, graph.init_params(0), shards=2, **event)}
        ray_engine = RayEngine(graph, graph.init_params(0), vertices_per_actor="auto", **event,
                               traffic_settings=settings)
        engines["ray"] = ray_engine
        try:
            model = predicted_batch(graph, ray_engine, batch_size, iterations, pipeline)
            repeats = 3 if quick else 6
            times = interleaved({name: (epoch_of(e), repeats) for name, e in engines.items()})
        finally:
            for engine in engines.values():
                engine.close()
        actors = len(ray_engine.actor_info) if ray_engine.actor_info else "?"
        info = ray_engine.partition
        print(f"  {label}: {len(batches)} batches; Ray on {actors} actor(s) ({ray_shards}, "
              f"cut {info.get('cut_fraction')})"
              + (f", auto predicted {info.get('predicted_ms')} ms/batch by shards"
                 if ray_shards == "auto" else ""))
        print(f"  Ray: {times['ray'] / len(batches) * 1e3:.1f} ms a batch measured, "
              f"{model * 1e3:.1f} ms predicted by auto's cost model "
              f"({times['ray'] / len(batches) / model:.2f}x)")
        report("scaling", f"{key}: threads, 2 shards vs 1", times["threads-2"],
               times["threads-1"], unit="s")
        report("scaling", f"{key}: threads, 2 shards vs local", times["threads-2"],
               times["local"], unit="s")
        report("scaling", f"{key}: Ray vs local", times["ray"], times["local"], unit="s")
        report("scaling", f"{key}: Ray vs threads, 2 shards", times["ray"],
               times["threads-2"], unit="s")
        if key == "chain":
            goal("chain on Ray --pipeline 2 vs local --pipeline 2 (s/epoch)", times["ray"],
                 times["local"], "s", 0.6)
            goal("chain on Ray --pipeline 2 vs threads --pipeline 2 (s/epoch)", times["ray"],
                 times["threads-2"], "s", 1.15)
        elif key == "tiled":
            goal("tiled 40 vertices on Ray, --pipeline 1 vs local (s/epoch)", times["ray"],
                 times["local"], "s", 0.65)
        else:
            goal("digits MLP on Ray (auto placement) vs local (s/epoch)", times["ray"],
                 times["local"], "s", 1.3)
    netns_model(quick)


def predicted_batch(graph, engine, batch_size: int, rounds: int, pipeline: int) -> float:
    """What the cost model predicts for the shards this Ray engine runs (costs measured
    at start-up, the engine's schedule)."""
    from neurolocal.engines.ray.costmodel import CostContext, batch_work, predict, ray_costs

    table, _ = ray_costs()
    context = CostContext(table, rounds, pipeline, schedule=engine.schedule, mode=engine.mode)
    return predict(batch_work(graph, batch_size, context), engine.transport.shards, context,
                   os.cpu_count() or 1)


def netns_model(quick: bool) -> None:
    """Issue 25: on a 3-node cluster in network namespaces (scripts/netns_cluster.py
    model; needs root), each workload's measured batch time against the cost model's
    prediction, from costs measured at the cluster's start-up; goal: within 25%."""
    import json

    from neurolocal.testing import netns

    print("  network-namespace cluster, 3 nodes: measured batch time vs the cost model's")
    reason = netns.unavailable()
    done = None if reason else subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "netns_cluster.py"), "model", "--json",
         *(["--quick"] if quick else [])], cwd=ROOT, capture_output=True, text=True,
        timeout=3600)
    if done is not None and done.returncode != 0:
        reason = "netns_cluster.py model failed: " + done.stderr.strip()[-300:]
    if reason:
        print(f"    not measured: {reason}")
        goal("netns 3 nodes: measured vs predicted batch time (not measured)", float("nan"),
             1.0, "ms", None, within=0.25)
        return
    lines = done.stdout.strip().splitlines()
    result = [line for line in lines if line.startswith("{")][-1]   # then "stopped: ..."
    print("\n".join("    " + line for line in lines if line is not result))
    for row in json.loads(result)["rows"]:
        goal(f"netns 3 nodes, {row['key']} --pipeline {row['pipeline']}, {row['shards']} "
             "shard(s): batch measured vs model", row["measured_ms"] / 1e3,
             row["predicted_ms"] / 1e3, "ms", None, within=0.25)


SECTIONS = {"local": bench_local, "ray": bench_ray, "scale": bench_scale,
            "placement": bench_placement, "logging": bench_logging, "traffic": bench_traffic,
            "startup": bench_startup, "memory": bench_memory, "epoch": bench_epoch,
            "planned": bench_planned, "build": bench_build, "scaling": bench_scaling}


def main() -> None:
    if sys.argv[1:2] == ["--traffic-child"]:  # one measurement of section 7, in its own process
        traffic_child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections ({', '.join(SECTIONS)})")
    args = parser.parse_args()
    for name in args.only.split(","):
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}")
    load = os.getloadavg()
    print(f"neurolocal bench: {os.cpu_count()} cores, numpy {np.__version__}, "
          f"{'quick' if args.quick else 'full'} run, load average {load[0]:.1f}")
    for name in args.only.split(","):
        SECTIONS[name](args.quick)
    print_summary(load)


if __name__ == "__main__":
    main()
