"""The simulated-time engine (`--engine sim`): delays, loss, stragglers and reordering
over the round machine, deterministic and seeded (docs/asynchrony.md). The models it
simulates are transport-free and live in `neurolocal.asynchrony`.

    events.py      the event queue (time, then first scheduled first served)
    transport.py   the discrete-event transport (`SimTransport`) and `SimEngine`
"""

from neurolocal.asynchrony.models import Asynchrony, Distribution
from neurolocal.engines.sim.transport import SimEngine

__all__ = ["Asynchrony", "Distribution", "SimEngine"]
