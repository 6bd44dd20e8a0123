"""What a Ray actor of the engine imports (issue 15): only what it needs.

Every Ray worker process of this module's Ray runs a setup hook that writes the
process's `sys.modules` to a file every few milliseconds. The engine's real actors
(`ShardActor`, started by `RayEngine`, after a real batch) are then read by pid and
compared with a bare actor of the same Ray that imports nothing: neurolocal must add
none of the heavy libraries (torch, matplotlib, sklearn, tqdm, pyarrow) a worker does
not need. Each costs memory in every actor and start-up time before the first batch.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from conftest import TOPOLOGIES
from neurolocal.engines.ray import RayEngine, worker_runtime_env
from neurolocal.engines.ray.connection import EMBEDDED_OPTIONS
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology

HEAVY = ("torch", "matplotlib", "sklearn", "tqdm", "pyarrow")
OUT_ENV = "NEUROLOCAL_TEST_MODULES_DIR"
ENGINE_HOOK = "neurolocal.engines.worker_setup.setup"


def report_modules():
    """Runs in every Ray worker at start-up, after the engine's own setup hook: keep
    `OUT/<pid>.json` = the modules loaded (a None entry is a module kept out)."""
    import importlib

    module, _, name = ENGINE_HOOK.rpartition(".")
    getattr(importlib.import_module(module), name)()
    out = Path(os.environ[OUT_ENV])

    def loop():
        while True:
            tmp = out / f".{os.getpid()}.tmp"
            loaded = sys.modules.copy()  # one C-level copy: imports go on in the main thread
            tmp.write_text(json.dumps(sorted(k for k, v in loaded.items() if v is not None)))
            os.replace(tmp, out / f"{os.getpid()}.json")
            time.sleep(0.05)

    threading.Thread(target=loop, daemon=True).start()


@pytest.fixture(scope="module")
def modules_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("modules")
    runtime_env = worker_runtime_env()
    runtime_env["env_vars"][OUT_ENV] = str(out)
    assert runtime_env["worker_process_setup_hook"] == ENGINE_HOOK
    runtime_env["worker_process_setup_hook"] = report_modules
    # the hook and Bare travel by value: importing this test module in a worker would
    # load pytest and what the test imports, and spoil the measurement
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", runtime_env=runtime_env, logging_level="error",
             log_to_driver=False, **EMBEDDED_OPTIONS)
    try:
        yield out
    finally:
        ray.shutdown()


def modules_of(out: Path, pid: int, must_have: str) -> set[str]:
    """The process's modules once its report includes `must_have` (the hook's thread
    writes every 50 ms; a report written before the actor's class was loaded is stale)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            found = set(json.loads((out / f"{pid}.json").read_text()))
        except (FileNotFoundError, ValueError):
            found = set()
        if must_have in found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@ray.remote(num_cpus=0)
class Bare:
    def pid(self):
        return os.getpid()


def test_engine_actors_import_no_heavy_library(modules_dir):
    bare = Bare.remote()
    baseline = modules_of(modules_dir, ray.get(bare.pid.remote()), "ray")
    assert "ray" in baseline
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    inputs, target = synthetic_batch(graph, 8, 0)
    with RayEngine(graph, graph.init_params(0), vertices_per_actor=1) as engine:
        relaxation = engine.relax(inputs, target, eta=1.0, iterations=graph.depth)
        pids = [a["pid"] for a in relaxation.extras["report"]["actors"]]
        time.sleep(0.5)  # the reports written after the batch
        loaded = {pid: modules_of(modules_dir, pid, "neurolocal.engines.rounds") for pid in pids}
    assert len(loaded) == 4 and np.isfinite(relaxation.energy).all()
    # numba's kernels ran in the actors of relaxing vertices, and only there is numba
    assert 1 <= sum("numba" in modules for modules in loaded.values()) < 4
    for pid, modules in loaded.items():
        assert "neurolocal.engines.rounds" in modules  # the real actor
        heavy = {m.split(".")[0] for m in modules} & set(HEAVY)
        added = heavy - {m.split(".")[0] for m in baseline}
        assert not added, f"actor pid {pid} imported {sorted(added)}"
        assert not heavy & {"torch", "matplotlib", "sklearn", "pyarrow"}, sorted(heavy)
