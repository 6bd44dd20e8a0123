"""neurolocal: predictive coding on arbitrary computation graphs, one actor per vertex."""

# first, before anything imports numba's kernels: importing it points their cache at a
# per-user directory, never into the installed package (see neurolocal/numba_cache.py)
from neurolocal import numba_cache  # noqa: F401  (isort: skip)
from neurolocal.backprop import backprop
from neurolocal.engines.local import LocalEngine
from neurolocal.errors import ConfigError, DataError, NeurolocalError, TopologyError
from neurolocal.graph import Graph, VertexSpec
from neurolocal.ops import Op, register_op
from neurolocal.topology import graph_from_dict, load_topology
from neurolocal.vertex import VertexRule

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "Graph", "LocalEngine", "NeurolocalError", "Op", "TopologyError",
    "VertexRule", "VertexSpec", "backprop", "graph_from_dict", "load_topology", "register_op",
]
