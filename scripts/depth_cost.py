"""Issue 26's cost goals, measured side by side in one process (docs/depth.md §4).

    nice python scripts/depth_results.py --cost [--cost-depths 128,64] [--out runs/depth]

1. The muPC resnet of depth 128, width 128 (`generate resnet`), one epoch of MNIST-5k at
   batch 128, Adam 0.1, float64, no depth audit or traffic log, seed 0:
   - fixed PC (eta 1, T 128) on the local engine and neurolocal's own (numpy) backprop,
     one after the other in one `neurolocal run --algorithm both` (same init, batches,
     optimizer);
   - torch backprop on the same net: the same initial weights, the same data and batch
     size, torch.optim.Adam(lr 0.1), autograd of the same batch-mean 1/2-MSE, float64.
   The goal: fixed PC's epoch <= 1.5x torch backprop's.
2. muPC (strict, activity lr 0.5 on the batch-mean energy: eta 0.5/128, T 64) at depth 64,
   one epoch: the epoch's wall seconds, and the CPU-seconds this process spent on the
   whole `run` (data, evaluation and plots included: an upper bound on the epoch's). The
   goal: within jpc's 35 CPU-seconds an epoch.

An epoch's seconds are neurolocal's own (metrics.json: the epoch's training and its test
evaluation); torch's are the same span, timed here. Both sides use the machine's default
thread counts (numpy's BLAS, torch's intra-op threads), printed with the result. Take it
on a quiet machine: the numbers are wall seconds.
"""

from __future__ import annotations

import json
import shutil
import os
import resource
import time
from pathlib import Path

import numpy as np

#: the runs the cost goals name: fixed PC against backprop at this depth, muPC at that one
DEPTHS = (128, 64)
LR = "0.1"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


ACTIVATIONS = ("identity", "relu", "tanh", "gelu")


def torch_model(graph, params):
    """The graph's forward pass in torch autograd, float64, for graphs of dense vertices
    with one parent each (the resnets `generate resnet` writes), computed as
    `neurolocal/ops/dense.py` computes them: (forward(x) -> output, the parameter
    tensors by vertex)."""
    import torch

    act = {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
           "gelu": torch.nn.functional.gelu}
    leaves = {n: {k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
                  for k, a in p.items()} for n, p in params.items()}
    layers = []
    for n in graph.order:
        if graph.is_input(n):
            continue
        spec = graph.vertices[n]
        op = spec.op
        if op.name != "dense" or len(spec.parents) != 1 or op.activation not in act \
                or op.pre_activation not in act:
            raise ValueError(f"{n}: the torch baseline reads dense vertices with one parent "
                             f"and activations {', '.join(ACTIVATIONS)}")
        layers.append((n, spec.parents[0], op))

    def forward(x):
        values = {graph.inputs[0]: x}
        for n, parent, op in layers:
            below = values[parent]
            z = act[op.pre_activation](below) @ leaves[n]["weight"]
            if op.bias:
                z = z + leaves[n]["bias"]
            out = act[op.activation](op.multiplier * z)
            values[n] = out + below if op.skip else out
        return values[graph.output]

    return forward, leaves


def mse(prediction, target):
    """neurolocal's `mse` loss (scale 1): 1/2 ||y - vhat||^2, the batch mean."""
    return 0.5 * ((prediction - target) ** 2).sum() / prediction.shape[0]


def torch_backprop_epoch(net: Path, batch: int, lr: float, seed: int = 0) -> dict:
    """One epoch of torch backprop (`torch_model`) on MNIST-5k for the graph in `net`,
    initialised as `neurolocal run --seed` initialises it, Adam: wall and CPU seconds of
    the epoch (training and test evaluation), the test accuracy after it, torch's thread
    count."""
    import torch

    from neurolocal.topology import load_topology
    from neurolocal.training.data import load_for_graph

    graph = load_topology(net).graph
    data = load_for_graph("mnist", graph)
    forward, leaves = torch_model(graph, graph.init_params(seed))
    optimizer = torch.optim.Adam([t for p in leaves.values() for t in p.values()], lr=lr)
    x = torch.tensor(data.train_inputs[graph.inputs[0]], dtype=torch.float64)
    y = torch.tensor(data.train_target, dtype=torch.float64)
    test_x = torch.tensor(data.test_inputs[graph.inputs[0]], dtype=torch.float64)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(y)))
    wall, cpu = time.perf_counter(), cpu_seconds()
    for start in range(0, len(y), batch):
        idx = order[start:start + batch]
        optimizer.zero_grad()
        mse(forward(x[idx]), y[idx]).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = forward(test_x).argmax(dim=1).numpy()
    accuracy = float(np.mean(predicted == np.asarray(data.test_target).argmax(axis=1)))
    return {"seconds": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu,
            "accuracy": accuracy, "threads": torch.get_num_threads()}


def measure(out: Path, topology, depths=DEPTHS, batch: int = 128) -> dict:
    """Both cost goals (module docstring); `topology(out, net, depth)` writes the net.
    Saves and returns timing.json's contents."""
    from neurolocal.cli import main as neurolocal

    deep, mupc = depths
    result = {"load_before": load_average(), "depths": [deep, mupc],
              "blas_threads": blas_threads()}
    net = topology(out, "mupc", deep)
    for name in (f"timing-fixed-vs-bp-d{deep}", f"timing-mupc-d{mupc}"):
        shutil.rmtree(out / name, ignore_errors=True)   # this function's own, from a last run
    target = out / f"timing-fixed-vs-bp-d{deep}"
    common = ["--data", "mnist", "--engine", "local", "--epochs", "1", "--batch-size",
              str(batch), "--optimizer", "adam", "--lr", LR, "--quiet", "--no-traffic-log",
              "--no-depth-audit"]
    code = neurolocal(["run", str(net), "--algorithm", "both", "--mode", "fixed", "--eta", "1",
                       "-T", str(deep), "--out", str(target), *common])
    if code:
        raise SystemExit(code)
    runs = json.loads((target / "metrics.json").read_text())["runs"]
    result["d128"] = {a: {"seconds": r["epochs"][0]["seconds"],
                          "accuracy": r["final"]["test_accuracy"]} for a, r in runs.items()}
    result["d128"]["torch"] = torch_backprop_epoch(net, batch, float(LR))
    target = out / f"timing-mupc-d{mupc}"
    wall, used = time.time(), cpu_seconds()
    code = neurolocal(["run", str(topology(out, "mupc", mupc)), "--mode", "strict", "--eta",
                       repr(0.5 / batch), "-T", str(mupc), "--out", str(target), *common])
    if code:
        raise SystemExit(code)
    run = json.loads((target / "metrics.json").read_text())["runs"]["pc"]
    result["mupc_d64"] = {"seconds": run["epochs"][0]["seconds"],
                          "process_wall": time.time() - wall, "process_cpu": cpu_seconds() - used}
    result["load_after"] = load_average()
    # only the goals' own depths are RESULTS.md's numbers; a toy measurement goes beside them
    name = "timing.json" if tuple(depths) == DEPTHS else f"timing-d{deep}-d{mupc}.json"
    (out / name).write_text(json.dumps(result, indent=1))
    return result


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()) \
        or "unknown"


def text(t: dict | None) -> str:
    """The cost goals' lines for RESULTS.md (and for the terminal)."""
    if not t:
        return ("Cost goals: not measured yet (`scripts/depth_results.py --cost` "
                "measures them).")
    deep, mupc = t.get("depths", DEPTHS)
    bp, pc, tb = t["d128"]["bp"], t["d128"]["pc"], t["d128"].get("torch")
    mu = t["mupc_d64"]
    if tb is None:   # measured before the torch baseline was added
        against = (f"against neurolocal's own (numpy) backprop's {bp['seconds']:.1f} s in the "
                   f"same `run --algorithm both`: {pc['seconds'] / bp['seconds']:.2f}x (torch "
                   f"backprop, the goal's baseline, was not measured in that run)")
    else:
        ratio = pc["seconds"] / tb["seconds"]
        against = (f"against torch backprop's {tb['seconds']:.1f} s on the same net in the same "
                   f"process ({tb['threads']} torch threads): {ratio:.2f}x (goal <= 1.5x: "
                   f"{'met' if ratio <= 1.5 else 'not met'}); neurolocal's own (numpy) "
                   f"backprop took {bp['seconds']:.1f} s in the same `run --algorithm both` "
                   f"({pc['seconds'] / bp['seconds']:.2f}x); test accuracy after the epoch "
                   f"{100 * tb['accuracy']:.1f}% (torch)")
    return (f"Cost, one epoch each in one process (load {t['load_before']} before, "
            f"{t['load_after']} after; BLAS threads: {t.get('blas_threads', 'unknown')}):\n\n"
            f"- depth {deep}, width 128: fixed PC (eta 1, T {deep}, local engine) "
            f"{pc['seconds']:.1f} s {against}; {100 * pc['accuracy']:.1f}% / "
            f"{100 * bp['accuracy']:.1f}% (fixed PC / numpy backprop).\n"
            f"- muPC at depth {mupc}, T {mupc} (strict): {mu['seconds']:.1f} s of wall time for "
            f"the epoch; the whole run (data, evaluation included) took "
            f"{mu['process_cpu']:.1f} CPU-seconds of this process, against jpc's 35 "
            f"CPU-seconds an epoch (goal: within it: "
            f"{'met' if mu['process_cpu'] <= 35 else 'not met'}).")
