"""What every Ray worker of the Ray engine runs before its first task (the job's runtime
env `worker_process_setup_hook`, see connection.worker_runtime_env), and the `neurolocal`
command itself before it becomes a Ray driver (cli.main)."""

from __future__ import annotations

import sys


def setup() -> None:
    """Keep pyarrow out of the worker. Ray registers serializers for Ray Data's Arrow
    tables in every worker and imports pyarrow to do so whenever it is installed: about
    40 MB and 0.2 s per actor for data neurolocal never sends. A None entry in
    sys.modules makes `import pyarrow` fail as if it were absent, which Ray handles."""
    sys.modules.setdefault("pyarrow", None)
