"""Building many small objects at once (a 100,000-vertex topology, its parameters).

CPython's cyclic garbage collector runs a generation-0 pass every few hundred new
container objects, and each pass that promotes survivors makes the older generations
grow and get walked again: parsing a 10,000-vertex YAML file spends about half its time
there, and nothing it builds is garbage. `paused_gc` switches the collector off for such
a block and back on afterwards (reference counting still frees everything as usual; a
cycle made inside the block is collected at the next pass after it).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused_gc():
    """The cyclic collector off inside the block, restored to what it was after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
