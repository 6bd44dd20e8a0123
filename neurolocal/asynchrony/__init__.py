"""Models of asynchrony, free of any transport (docs/asynchrony.md): what a message's
delay, a vertex's compute time, a loss or a pause is, and how a topology's
`asynchrony:` section, a side file and the command-line flags describe them.

    models.py    delay / compute distributions, pauses, per-edge and per-vertex models
    config.py    the `asynchrony:` section and side file, checked (one-line errors)
    options.py   the settings as given (flags, side file, section) and their precedence

The sim engine simulates these models (engines/sim/), the Ray engine injects them for
real (engines/ray/asynchrony.py); the topology loader checks a file's section here.
Nothing in this package imports an engine.
"""

from neurolocal.asynchrony.models import Asynchrony, Distribution

__all__ = ["Asynchrony", "Distribution"]
