"""Losses at the output vertex: its fixed error eps_out = -dl/dvhat, per sample.

The training objective is the batch mean of the per-sample loss `l`; errors stay
per sample (as in the paper) and parameter updates are averaged over the batch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from neurolocal.errors import DataError, TopologyError


#: the largest option value a loss accepts: beyond it eps_out overflows float64 in one batch
MAX_SCALE = 1e6



def one_hot(labels, classes: int) -> np.ndarray:
    """Rows of `classes` zeros with a one at each label (any shape of labels; the last
    axis is the class). np.eye(classes)[labels] builds a classes x classes matrix first:
    128 MB for 4,096 classes, refused under a 1 GB address-space limit."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape + (classes,))
    np.put_along_axis(out, labels[..., None], 1.0, axis=-1)
    return out

class Loss:
    name: ClassVar[str] = ""
    #: the options a topology may give (`loss: {type: NAME, OPTION: value}`): for each, the
    #: open/closed range (low, high] a finite number must lie in. The schema the loader
    #: checks and the fuzz harness walks.
    OPTIONS: ClassVar[dict[str, tuple[float, float]]] = {}

    def check_output_shape(self, shape: tuple[int, ...]) -> None:
        pass

    def prepare_target(self, target: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        """The target as a float array shaped like the output (labels become one-hot)."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape[1:] != tuple(output_shape):
            raise DataError(f"target has per-sample shape {list(target.shape[1:])}, "
                            f"the output vertex has {list(output_shape)}")
        return target

    def value(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Batch mean of the per-sample loss."""
        raise NotImplementedError

    def output_error(self, prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
        """eps_out = -dl/dvhat for each sample."""
        raise NotImplementedError

    def evaluate(self, prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """(output error, loss value) together, sharing whatever work they share."""
        return self.output_error(prediction, target), self.value(prediction, target)


class MeanSquaredError(Loss):
    """l = scale/2 * ||y - vhat||^2; eps_out = scale * (y - vhat).

    `scale = 1` is the textbook 1/2-MSE; the paper's code drops the 1/2 (scale 2).
    """

    name = "mse"
    OPTIONS = {"scale": (0.0, MAX_SCALE)}

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def value(self, prediction, target):
        diff = target - prediction
        return float(0.5 * self.scale * np.sum(diff * diff) / prediction.shape[0])

    def output_error(self, prediction, target):
        return self.scale * (target - prediction)


class SoftmaxCrossEntropy(Loss):
    """l = -sum_positions sum_k y_k log softmax(vhat)_k; eps_out = y - softmax(vhat).

    The output is [classes], or [..., classes] with a softmax over the last axis at
    every position: a char-level model's stacked per-step logits [steps, vocab] give
    the sum of the per-step losses, so each step's error is that step's own
    y_t - softmax(vhat_t) (the paper's per-step output errors). Targets are one-hot
    like the output, or whole-number labels shaped like the output without its
    last axis.
    """

    name = "softmax_cross_entropy"

    def check_output_shape(self, shape):
        if len(shape) < 1 or shape[-1] < 2:
            raise TopologyError(
                f"softmax_cross_entropy needs an output of shape [..., classes >= 2], "
                f"got {list(shape)}")

    def prepare_target(self, target, output_shape):
        target = np.asarray(target)
        classes = output_shape[-1]
        if target.ndim >= 1 and target.shape[1:] == tuple(output_shape[:-1]):
            if not np.issubdtype(target.dtype, np.integer):
                if not np.all(np.mod(target, 1) == 0):
                    raise DataError("class labels must be whole numbers")
                target = target.astype(np.int64)
            if target.size and (target.min() < 0 or target.max() >= classes):
                raise DataError(f"labels must lie in 0..{classes - 1}, "
                                f"found {int(target.min())}..{int(target.max())}")
            return one_hot(target, classes)
        return super().prepare_target(target, output_shape)

    @staticmethod
    def _log_softmax(prediction):
        z = prediction - prediction.max(axis=-1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return z

    def value(self, prediction, target):
        return self.evaluate(prediction, target)[1]

    def output_error(self, prediction, target):
        # evaluate's error without its loss value (strict mode asks every round)
        return target - np.exp(self._log_softmax(prediction))

    def evaluate(self, prediction, target):
        log_softmax = self._log_softmax(prediction)
        value = float(-np.vdot(target, log_softmax) / prediction.shape[0])
        return target - np.exp(log_softmax), value


LOSSES: dict[str, type[Loss]] = {
    MeanSquaredError.name: MeanSquaredError,
    SoftmaxCrossEntropy.name: SoftmaxCrossEntropy,
}


def check_loss_options(name: str, options: dict[Any, Any]) -> dict[str, float]:
    """Every option of loss `name` known, a finite number in its range; else one line."""
    known = LOSSES[name].OPTIONS
    checked = {}
    for key, value in options.items():
        if not isinstance(key, str) or key not in known:
            listed = ", ".join(known) or "none"
            raise TopologyError(f"unknown option {key!r} of loss {name!r} (known: {listed})",
                                field="loss")
        low, high = known[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not low < value <= high:
            raise TopologyError(f"expected a number above {low:g} and at most {high:g}, "
                                f"got {value!r}", field=f"loss.{key}")
        checked[key] = float(value)
    return checked


def make_loss(name: str, **options) -> Loss:
    if not isinstance(name, str) or name not in LOSSES:
        raise TopologyError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})", field="loss")
    return LOSSES[name](**check_loss_options(name, options))


def correct_count(prediction: np.ndarray, target: np.ndarray) -> float:
    """Arg-max hits; the target may be labels (N,) or one-hot / per-step (N, ..., C).
    A per-step output counts the fraction of its steps it got right. (Read by the
    trainer, and by the output vertex when it reports a batch's hits.)"""
    guess = prediction.reshape(len(prediction), -1, prediction.shape[-1]).argmax(-1)
    truth = target.reshape(-1, 1) if target.ndim == 1 else \
        target.reshape(len(target), -1, target.shape[-1]).argmax(-1)
    return float(np.sum(np.mean(guess == truth, axis=1)))
