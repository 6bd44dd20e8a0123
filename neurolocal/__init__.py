"""neurolocal: predictive coding on arbitrary computation graphs, one actor per vertex.

The public names below are imported on first use (PEP 562), so `import neurolocal.graph`
in a Ray worker does not load the topology parser, the local engine and the rest:
a worker imports only what its actor needs (docs/startup.md).
"""

from __future__ import annotations

import importlib
import sys
import types

# first, before anything imports numba's kernels: importing it points their cache at a
# per-user directory, never into the installed package (see neurolocal/numba_cache.py)
from neurolocal import numba_cache  # noqa: F401  (isort: skip)

__version__ = "0.1.0"

_LAZY = {
    "backprop": "neurolocal.backprop",
    "LocalEngine": "neurolocal.engines.local",
    "ConfigError": "neurolocal.errors", "DataError": "neurolocal.errors",
    "NeurolocalError": "neurolocal.errors", "TopologyError": "neurolocal.errors",
    "EngineError": "neurolocal.errors", "TrainingDiverged": "neurolocal.errors",
    "Graph": "neurolocal.graph", "VertexSpec": "neurolocal.graph",
    "Op": "neurolocal.ops", "register_op": "neurolocal.ops",
    "graph_from_dict": "neurolocal.topology", "load_topology": "neurolocal.topology",
    "VertexRule": "neurolocal.vertex",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:  # a submodule not imported yet, or a typo
        raise AttributeError(f"module 'neurolocal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """`neurolocal.backprop` is the function, as it always was, even once the submodule
    of the same name is imported (Python then sets the submodule on its package)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
