"""`numba.njit` on a kernel's first call, so a process that runs none never imports numba.

numba costs every process that imports it ~0.3 s and ~115 MB RSS (its LLVM library,
~95 MB of it shared). The driver of a Ray run, `validate`, `generate`, the `cluster`
and `traffic` commands run no kernel; the actors and the local engine do, and pay the
same as before on their first call. After that first call the module attribute is the
compiled dispatcher itself, so `kernels.relax_step(...)` costs what it always did.
"""

from __future__ import annotations

import functools
import sys


def njit_on_first_call(fn):
    """`numba.njit(cache=True, nogil=True)(fn)`, compiled (or loaded from numba's cache)
    when first called; the compiled function then replaces this wrapper in its module."""
    compiled = None

    @functools.wraps(fn)
    def first_call(*args):
        nonlocal compiled
        if compiled is None:
            from numba import njit

            compiled = njit(cache=True, nogil=True)(fn)
            setattr(sys.modules[fn.__module__], fn.__name__, compiled)
        return compiled(*args)

    return first_call
