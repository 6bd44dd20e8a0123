"""Memory of a command's whole process tree (Linux /proc), sampled while it runs.

A Ray command is many processes: the driver, the GCS, the raylet, Ray's agents and
monitors, one worker per actor. Three sums over the tree, at its peak:

    rss     the sum of every process's RSS (what `ps` adds up; counts a shared library
            once per process that maps it: numba's LLVM, 95 MB, is in every actor)
    pss     the sum of PSS (shared pages divided among the processes mapping them,
            including processes outside the tree)
    unique  private pages of every process + each shared file's resident pages once
            (the largest any process of the tree maps): what the tree costs the machine

Used by scripts/bench.py's memory section.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import defaultdict

from neurolocal import procs

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    return [pid, *procs.descendants(pid)]


def process_memory(pid: int) -> dict | None:
    """RSS, PSS, private bytes and shared resident bytes per mapped file, of one process."""
    smaps, name = procs.smaps(pid), procs.cmdline(pid)
    if smaps is None or name is None:
        return None
    rss = pss = private = 0
    shared: dict[str, int] = defaultdict(int)
    where = "[anon]"
    for line in smaps.splitlines():
        if _MAPPING.match(line):
            parts = line.split()
            where = parts[5] if len(parts) > 5 else "[anon]"
            continue
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean",
                   "Shared_Dirty"):
            kib = int(rest.split()[0]) * 1024
            if key == "Rss":
                rss += kib
            elif key == "Pss":
                pss += kib
            elif key.startswith("Private"):
                private += kib
            else:
                shared[where] += kib
    if not name:  # a zombie, or a process between fork and exec
        return None
    return {"pid": pid, "name": name, "rss": rss, "pss": pss, "private": private,
            "shared": dict(shared)}


def tree_memory(pid: int) -> dict:
    processes = [m for m in map(process_memory, tree(pid)) if m]
    shared_once: dict[str, int] = defaultdict(int)
    for m in processes:
        for where, size in m["shared"].items():
            shared_once[where] = max(shared_once[where], size)
    return {"rss": sum(m["rss"] for m in processes), "pss": sum(m["pss"] for m in processes),
            "unique": sum(m["private"] for m in processes) + sum(shared_once.values()),
            "processes": processes}


def run_and_sample(command: list[str], interval: float = 0.5, **popen) -> tuple[int, dict]:
    """Run `command`; return (exit code, the tree's memory at its largest RSS sum)."""
    process = subprocess.Popen(command, **popen)
    peak = {"rss": 0, "pss": 0, "unique": 0, "processes": []}
    while process.poll() is None:
        sample = tree_memory(process.pid)
        if sample["rss"] > peak["rss"]:
            peak = sample
        time.sleep(interval)
    return process.returncode, peak


def kind(name: str) -> str:
    """A short label for a process of a Ray command."""
    for needle, label in (("ray::ShardActor", "actor"), ("ray::IDLE", "idle worker"),
                          ("gcs_server", "GCS"), ("raylet", "raylet"),
                          ("dashboard.py", "API server"), ("DashboardAgent", "dashboard agent"),
                          ("RuntimeEnvAgent", "runtime-env agent"), ("log_monitor", "log monitor"),
                          ("autoscaler", "autoscaler monitor"), ("neurolocal", "driver")):
        if needle in name:
            return label
    return name.split()[0].rsplit("/", 1)[-1]
