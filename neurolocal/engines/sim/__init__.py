"""The simulated-time engine (`--engine sim`): delays, loss, stragglers and reordering
over the round machine, deterministic and seeded (docs/asynchrony.md).

    events.py      the event queue (time, then first scheduled first served)
    models.py      delay / compute distributions, pauses, per-edge and per-vertex models
    config.py      the `asynchrony:` section and side file, checked (one-line errors)
    options.py     the command-line flags and their precedence over the section
    transport.py   SimEngine: the discrete-event transport
"""

from neurolocal.engines.sim.models import Asynchrony, Distribution
from neurolocal.engines.sim.transport import SimEngine

__all__ = ["Asynchrony", "Distribution", "SimEngine"]
