"""Paper mode: the reference code's quirks, named, off by default.

The paper's own code (Millidge et al. 2020) differs from textbook backprop in two
places that change numbers a user may want to reproduce:

- `mse_without_half`: its MSE has no 1/2, so eps_out = 2 (y - vhat): every
  gradient is twice the textbook one. (The same as `loss: {type: mse, scale: 2}`.)
- `double_update`: its CNN applies each batch's weight update twice, i.e. an
  optimizer step of twice backprop's size (SGD) or two optimizer steps (Adam).
  The trainer reads `PaperMode.updates_per_batch`.

A topology switches it on in its training section::

    training:
      paper_mode: true          # every quirk that applies to this graph:
                                #  mse_without_half if the loss is mse,
                                #  double_update if the graph has a conv2d vertex
                                #  (the paper's double update is in its CNN only)
      # or name the quirks:
      paper_mode: {mse_without_half: true, double_update: false}

The paper's RNN/LSTM schedule — relaxing backwards in time, 100 / 200 iterations
per step at eta 0.1 — is an engine schedule, not a flag here:
`--schedule backward-in-time` (see `neurolocal.engines.timewise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurolocal.errors import TopologyError

QUIRKS = ("mse_without_half", "double_update")


@dataclass(frozen=True)
class PaperMode:
    mse_without_half: bool = False
    double_update: bool = False

    @property
    def enabled(self) -> bool:
        return self.mse_without_half or self.double_update

    @property
    def updates_per_batch(self) -> int:
        """How many times the trainer applies each batch's update (2 in the paper's CNN)."""
        return 2 if self.double_update else 1

    @property
    def mse_scale(self) -> float:
        return 2.0 if self.mse_without_half else 1.0


def paper_mode_from(setting: Any, *, loss_name: str, has_conv: bool) -> PaperMode:
    """Parse `training.paper_mode` for a graph with this loss and these ops."""
    where = "training.paper_mode"
    if setting is None or setting is False:
        return PaperMode()
    if setting is True:
        return PaperMode(mse_without_half=loss_name == "mse", double_update=has_conv)
    if isinstance(setting, dict):
        for key, value in setting.items():
            if key not in QUIRKS:
                raise TopologyError(f"unknown quirk (expected {', '.join(QUIRKS)})",
                                    field=f"{where}.{key}")
            if not isinstance(value, bool):
                raise TopologyError(f"expected true or false, got {value!r}", field=f"{where}.{key}")
        return PaperMode(**setting)
    raise TopologyError(f"expected true, false or a mapping of quirks, got {setting!r}", field=where)
