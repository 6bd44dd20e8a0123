"""Where numba keeps neurolocal's compiled kernels: a per-user cache, never the package.

The kernels (`neurolocal.kernels`, `neurolocal.spatial_kernels`) are compiled with
`cache=True`. Left alone, numba writes that cache next to the source, i.e. into an
installed package's `site-packages/neurolocal/__pycache__/`; `pip uninstall` does not
remove those files, and the leftover folder (no `__init__.py`) is then imported as a
namespace package that shadows an editable install ("cannot import name
'__version__' from 'neurolocal' (unknown location)"). So before numba compiles
anything, importing this module (the first thing `neurolocal/__init__.py` does) runs
`configure()`, which sets NUMBA_CACHE_DIR, in this order:

    1. NUMBA_CACHE_DIR, when the user set it (and it is writable)
    2. $XDG_CACHE_HOME/neurolocal/numba, when XDG_CACHE_HOME is set
    3. ~/.cache/neurolocal/numba
    4. <temp dir>/neurolocal-numba-<uid> (no writable home, e.g. a locked-down container)

It is set in `os.environ`, so every process started from this one inherits it: the
embedded Ray's workers (and `worker_runtime_env` passes it on explicitly), so the
driver and every worker on a node share one cache and compile each kernel once per
machine. A worker on another node that cannot write the driver's directory (another
user, another home) falls back to its own per-user directory by the same rules.
numba keys its cache by the source file's full path, so two checkouts never collide.
"""

from __future__ import annotations

import os
import sys
import tempfile

ENV = "NUMBA_CACHE_DIR"


def candidates(environ=os.environ) -> list[str]:
    """The cache directories to try, best first (see the module docstring)."""
    found = []
    if environ.get(ENV):
        found.append(environ[ENV])
    if environ.get("XDG_CACHE_HOME"):
        found.append(os.path.join(environ["XDG_CACHE_HOME"], "neurolocal", "numba"))
    home = os.path.expanduser("~")
    if home and home != "~":
        found.append(os.path.join(home, ".cache", "neurolocal", "numba"))
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    found.append(os.path.join(tempfile.gettempdir(), f"neurolocal-numba-{user}"))
    return found


def writable(path: str) -> bool:
    """Whether `path` exists (or can be made) and a file can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def configure(environ=os.environ) -> str | None:
    """Point numba's kernel cache at the first writable candidate and return it; None
    when not even the temp dir is writable (numba's own fallbacks then apply)."""
    for path in candidates(environ):
        if writable(path):
            path = os.path.abspath(path)
            environ[ENV] = path
            numba_config = sys.modules.get("numba.core.config")
            if numba_config is not None:  # numba imported before us: it read the old value
                numba_config.CACHE_DIR = path
            return path
    return None


#: the directory chosen when neurolocal was imported
CACHE_DIR = configure()
