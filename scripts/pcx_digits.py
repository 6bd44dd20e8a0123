#!/usr/bin/env python
"""The pcx contender of scripts/bench.py: strict predictive coding on the digits MLP.

Runs in the benchmark's own environment, with pcx and JAX (CPU) installed, not in
neurolocal's (scripts/bench.py says how to make it). bench.py writes the data it feeds
neurolocal (the same split, the same batch order) to an .npz; this script trains the
same 64-128-128-10 tanh MLP with a softmax cross-entropy output on it:

    strict PC: values start at the forward pass, T inference steps of SGD (step eta)
    on the hidden values against the total energy, the output clamped to the label;
    then one SGD step (lr) on the weights, the gradient averaged over the batch

and prints one JSON line: seconds per epoch after JAX's compilation (median of the
epochs after the first), the first epoch's seconds, test accuracy, versions. A last
batch smaller than the others is skipped (pcx's value nodes hold one batch size) and
the epoch's time scaled by batches / batches run (43 / 42 on digits).

    python scripts/pcx_digits.py DATA.npz --epochs 4 --iterations 20 --eta 0.1 --lr 0.1

`--serve` measures on request, so that bench.py can alternate pcx's epochs with its other
contenders' (a drifting load then hits them alike): after the first epoch (JAX's
compilation) it prints one JSON line {"ready": seconds}, then runs one epoch per line
"epoch" on stdin and answers its seconds and this process's CPU seconds (all threads; scaled as above); end of input: the result
line as without --serve.

`--dtype float64` runs JAX with 64-bit floats (JAX_ENABLE_X64), for a comparison with
neurolocal's float64 at the same dtype; the default is float32, JAX's own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from importlib import metadata

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--dtype=float64" in sys.argv or "float64" in sys.argv[sys.argv.index("--dtype") + 1:][:1] \
        if "--dtype" in sys.argv else "--dtype=float64" in sys.argv:
    os.environ["JAX_ENABLE_X64"] = "1"   # read when jax is imported
# one thread, like every other contender of the benchmark
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pcx  # noqa: E402
import pcx.functional as pxf  # noqa: E402
import pcx.nn as pxnn  # noqa: E402
import pcx.predictive_coding as pxc  # noqa: E402
import pcx.utils as pxu  # noqa: E402


class MLP(pxc.EnergyModule):
    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.act_fn = pcx.static(jax.numpy.tanh)
        self.layers = [pxnn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        self.vodes = [pxc.Vode() for _ in widths[1:-1]] + [pxc.Vode(pxc.ce_energy)]
        self.vodes[-1].h.frozen = True  # the output is clamped to the label

    def __call__(self, x, y):
        for vode, layer in zip(self.vodes[:-1], self.layers[:-1]):
            x = vode(self.act_fn(layer(x)))
        self.vodes[-1](self.layers[-1](x))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


SAMPLE = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


@pxf.vmap(SAMPLE, in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model):
    return model(x, y)


@pxf.vmap(SAMPLE, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def energy(x, *, model):
    out = model(x, None)
    return jax.lax.psum(model.energy(), "batch"), out


@pxf.jit(static_argnums=0)
def train_on_batch(iterations, x, y, *, model, optim_w, optim_h):
    model.train()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)
    for _ in range(iterations):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, grads = pxf.value_and_grad(
                pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]),
                has_aux=True)(energy)(x, model=model)
        optim_h.step(model, grads["model"])
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        _, grads = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]),
                                      has_aux=True)(energy)(x, model=model)
    optim_w.step(model, grads["model"], scale_by=1.0 / x.shape[0])


@pxf.jit()
def predict(x, *, model):
    model.eval()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        return forward(x, None, model=model).argmax(axis=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help=".npz from bench.py: x_train, y_train, x_test, y_test, order")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--serve", action="store_true",
                        help="one epoch per 'epoch' line on stdin (after a first one)")
    args = parser.parse_args()

    dtype = np.dtype(args.dtype)
    data = np.load(args.data)
    x_train = data["x_train"].astype(dtype)
    y_train = np.eye(10, dtype=dtype)[data["y_train"]]
    bounds = list(data["batches"])  # the batch boundaries neurolocal uses (same order)
    # pcx's value nodes keep per-sample state of one batch size: a last, smaller batch
    # would not fit them, so it is left out and the epoch's time scaled to all batches
    full = [b for b in zip(bounds[:-1], bounds[1:]) if b[1] - b[0] == bounds[1] - bounds[0]]
    scale = (len(bounds) - 1) / len(full)
    model = MLP([x_train.shape[1], 128, 128, 10])
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(np.zeros((int(bounds[1] - bounds[0]), x_train.shape[1]), dtype), None,
                model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(args.eta),
                            pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        optim_w = pxu.Optim(lambda: optax.sgd(args.lr), pxu.M(pxnn.LayerParam)(model))

    def epoch() -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        for lo, hi in full:
            train_on_batch(args.iterations, x_train[lo:hi], y_train[lo:hi], model=model,
                           optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready(model.layers[-1].nn.weight.get())
        epoch.cpu = (time.process_time() - start_cpu) * scale   # every thread of this process
        return (time.perf_counter() - start) * scale

    seconds = []
    if args.serve:
        seconds.append(epoch())
        print(json.dumps({"ready": seconds[0]}), flush=True)
        for line in sys.stdin:
            if line.strip() == "epoch":
                seconds.append(epoch())
                print(json.dumps({"seconds": seconds[-1], "cpu_seconds": epoch.cpu}),
                      flush=True)
    else:
        seconds = [epoch() for _ in range(args.epochs)]
    size = int(bounds[1] - bounds[0])  # evaluated in batches of the same size
    x_test, y_test = data["x_test"].astype(dtype), data["y_test"]
    cut = len(y_test) // size * size
    guess = np.concatenate([np.asarray(predict(x_test[k:k + size], model=model))
                            for k in range(0, cut, size)])
    print(json.dumps({
        "seconds_per_epoch": statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0],
        "first_epoch_seconds": seconds[0], "epochs": seconds,
        "batches": len(bounds) - 1, "batches_run": len(full), "test_accuracy": float(np.mean(guess == y_test[:cut])),
        "dtype": str(model.layers[0].nn.weight.get().dtype), "pcx": metadata.version("pcx"),
        "jax": jax.__version__}))


if __name__ == "__main__":
    main()
