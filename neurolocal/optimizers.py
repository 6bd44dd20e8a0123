"""Optimizers: SGD with momentum and Adam, acting in place on a graph's parameters.

Sign convention — read this before wiring an optimizer to predictive coding:
`step(params, gradient)` takes the *gradient of the loss* dL/dtheta and moves the
parameters downhill. Backprop hands it its gradient as is. Predictive coding's
Hebbian update is `dtheta = -dL/dtheta` at the fixed point, so the trainer hands
it `-dtheta` (`negated(relaxation.dtheta)`): the parameters then move along
+dtheta, which is gradient descent. Negation is exact in floating point, so PC at
its fixed point and backprop take bitwise the same steps when their gradients agree.

State (moments, step count) is plain float64 arrays named "<slot>/<vertex>/<param>"
plus "step", so a checkpoint stores it with `np.savez` and reads it back without pickle.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from neurolocal.errors import ConfigError, DataError
from neurolocal.graph import Params

OPTIMIZERS = ("sgd", "adam")


def negated(updates: Params) -> Params:
    """-dtheta: predictive coding's Hebbian updates turned into loss gradients."""
    return {v: {k: -a for k, a in p.items()} for v, p in updates.items()}


class Optimizer:
    name = ""
    moments: tuple[str, ...] = ()   # names of the per-parameter state arrays

    def __init__(self, lr: float):
        if not np.isfinite(lr) or lr <= 0:
            raise ConfigError(f"learning rate must be a positive number, got {lr}", field="lr")
        self.lr = float(lr)
        self.step_count = 0
        self.state: dict[str, Params] = {s: {} for s in self.moments}

    def step(self, params: Params, gradient: Params) -> None:
        """One descent step along -gradient, updating `params` arrays in place."""
        self.step_count += 1
        for vertex, grads in gradient.items():
            for name, g in grads.items():
                slots = {s: self._slot(s, vertex, name, g) for s in self.moments}
                params[vertex][name] -= self._delta(g, **slots)

    def _slot(self, slot: str, vertex: str, name: str, like: np.ndarray) -> np.ndarray:
        per_vertex = self.state[slot].setdefault(vertex, {})
        if name not in per_vertex:
            per_vertex[name] = np.zeros_like(like, dtype=like.dtype if like.dtype.kind == "f"
                                             else np.float64)
        return per_vertex[name]

    def _delta(self, g: np.ndarray, **slots: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- checkpoints ---------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"step": np.array(self.step_count, dtype=np.int64)}
        for slot, per_vertex in self.state.items():
            for vertex, per_param in per_vertex.items():
                for name, a in per_param.items():
                    arrays[f"{slot}/{vertex}/{name}"] = a.copy()
        return arrays

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray], params: Params) -> None:
        """Restore from `state_arrays()`, checking every slot against the parameters' shapes."""
        if "step" not in arrays:
            raise DataError("optimizer state has no step count", field="optimizer")
        state: dict[str, Params] = {s: {} for s in self.moments}
        for key, a in arrays.items():
            if key == "step":
                continue
            parts = key.split("/")
            if len(parts) != 3 or parts[0] not in self.moments:
                raise DataError(f"unexpected optimizer entry {key!r} for {self.name}",
                                field="optimizer")
            slot, vertex, name = parts
            if vertex not in params or name not in params[vertex]:
                raise DataError(f"optimizer entry {key!r} names no parameter of the topology",
                                field="optimizer")
            if a.shape != params[vertex][name].shape:
                raise DataError(f"optimizer entry {key!r} has shape {list(a.shape)}, the "
                                f"parameter has {list(params[vertex][name].shape)}",
                                field="optimizer")
            like = params[vertex][name].dtype   # float32 parameters keep float32 moments
            state[slot].setdefault(vertex, {})[name] = np.array(
                a, dtype=like if like.kind == "f" else np.float64)
        self.state = state
        self.step_count = int(arrays["step"])

    def describe(self) -> dict:
        return {"name": self.name, "lr": self.lr}


class SGD(Optimizer):
    """v = momentum * v + g;  theta -= lr * v   (PyTorch's form; momentum 0 is plain SGD)."""

    name = "sgd"
    moments = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        super().__init__(lr)
        if not np.isfinite(momentum) or not 0 <= momentum < 1:
            raise ConfigError(f"momentum must lie in [0, 1), got {momentum}", field="momentum")
        self.momentum = float(momentum)

    def _delta(self, g, velocity):
        velocity *= self.momentum
        velocity += g
        return self.lr * velocity

    def describe(self):
        return {**super().describe(), "momentum": self.momentum}


class Adam(Optimizer):
    """Kingma & Ba with bias correction: theta -= lr * m_hat / (sqrt(v_hat) + eps)."""

    name = "adam"
    moments = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        for field, value in (("beta1", beta1), ("beta2", beta2)):
            if not np.isfinite(value) or not 0 <= value < 1:
                raise ConfigError(f"{field} must lie in [0, 1), got {value}", field=field)
        if not np.isfinite(eps) or eps <= 0:
            raise ConfigError(f"eps must be a positive number, got {eps}", field="eps")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _delta(self, g, m, v):
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.step_count)
        v_hat = v / (1 - self.beta2 ** self.step_count)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def describe(self):
        return {**super().describe(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


def make_optimizer(name: str, lr: float | None = None, **options) -> Optimizer:
    """Build by name; `lr=None` takes the optimizer's default. Bad names/options: ConfigError."""
    classes = {"sgd": SGD, "adam": Adam}
    if name not in classes:
        raise ConfigError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})",
                          field="optimizer")
    kwargs = dict(options)
    if lr is not None:
        kwargs["lr"] = lr
    for key, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", field=f"optimizer.{key}")
    try:
        return classes[name](**kwargs)
    except TypeError:
        import inspect

        known = [p for p in inspect.signature(classes[name].__init__).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(known))
        raise ConfigError(f"unknown option(s) {unknown} for {name} (known: {', '.join(known)})",
                          field="optimizer") from None
