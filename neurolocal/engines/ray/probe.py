"""A Ray hop's costs, measured at start-up (docs/placement.md §5): what `auto` predicts
message time with.

Two small actors (`HopProbe`, no state) are started, one on the driver's node and one
where a shard's peer would most likely sit (another node when the cluster has one,
else the driver's own). The first times calls to the second, one at a time, each
waited for, as shards talk (an actor calling an actor: a hop between actors costs
more than a call from the driver): empty ones, and ones carrying a float64 array of
each size in `SIZES`. A least-squares line through (bytes, seconds) gives the cost of
a byte (its slope) and of a call and its reply (its intercept): a message one way
costs half that. Each point is the median of `REPEATS` calls after `WARMUP`, so one
scheduling hiccup does not move it. The probes are then killed. About 0.5 s on this
machine (docs/placement.md §5); it runs only when `auto` weighs shard counts (a
training run with `--vertices-per-actor auto`), and once per cluster: `hop_costs`
keeps the result in this process and in the cluster's Ray session directory
(`neurolocal-hop-costs.json`), so the runs attached to one `neurolocal cluster up`
measure it once. A cached entry that is not what this module writes (wrong types,
numbers out of bounds) is measured again.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import ray

from neurolocal.files import atomic_path

#: payload sizes in bytes: the messages of the graphs `auto` packs span 1 kB (a small
#: MLP's batch) to a few MB (a 1024-wide layer at batch 128 and float64)
SIZES = (0, 64 << 10, 1 << 20, 4 << 20)
REPEATS = 5
WARMUP = 2
#: (message, byte) seconds when the probe fails: a hop between actors on this
#: 2-core machine (0.5 ms one way, 1.3 ns a byte; docs/placement.md §5)
UNMEASURED = (5e-4, 1.3e-9)


@dataclass(frozen=True)
class HopCosts:
    """Seconds per message (one way) and per byte of a Ray hop, and where they were
    measured."""
    message: float
    byte: float
    node: str            # "driver's node" or "another node"
    points: tuple        # ((bytes, median seconds), ...) the line was fitted to


def timed_calls(target, size: int, timeout: float) -> float:
    """The median seconds of `REPEATS` calls to `target.echo` carrying `size` bytes, each
    waited for, after `WARMUP`."""
    payload = None if size == 0 else np.ones(size // 8)
    for _ in range(WARMUP):
        ray.get(target.echo.remote(payload), timeout=timeout)
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        ray.get(target.echo.remote(payload), timeout=timeout)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


@ray.remote(num_cpus=0)
class HopProbe:
    """Answers a call at once (its argument, if any, has been received by then), and
    times calls to a peer probe: a hop between actors, as shards talk."""

    def echo(self, payload=None) -> int:
        return 0

    def times_to(self, peer, sizes, timeout: float) -> list:
        return [(size, timed_calls(peer, size, timeout)) for size in sizes]


def fit(points) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through (bytes, seconds), both kept
    non-negative: a fit below zero means the cost is too small to see."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return max(float(intercept), 1e-6), max(float(slope), 0.0)


def measure(driver: str | None, node: str | None, where: str,
            timeout: float = 60.0) -> HopCosts:
    """Two probes, one on the driver's node and one on `node` (None: wherever Ray puts
    them); the first times `SIZES` to the second; both are killed."""
    from neurolocal.engines.ray.nodes import placement_strategy

    def on(n):
        return {} if n is None else {"scheduling_strategy": placement_strategy(n)}

    sender, receiver = HopProbe.options(**on(driver)).remote(), HopProbe.options(**on(node)).remote()
    try:
        ray.get([sender.echo.remote(), receiver.echo.remote()], timeout=timeout)
        points = ray.get(sender.times_to.remote(receiver, SIZES, timeout),
                         timeout=timeout * len(SIZES))
    finally:
        ray.kill(sender)
        ray.kill(receiver)
    round_trip, byte = fit(points)
    return HopCosts(round_trip / 2, byte, where, tuple((int(b), float(t)) for b, t in points))


def measured_or_not(driver: str | None, node: str | None, where: str,
                    timeout: float = 60.0) -> HopCosts:
    """`measure`, or when the probes fail (a node gone, a call timing out) the costs of
    a hop on this machine (`UNMEASURED`), saying so: the run's own actors then say what
    is wrong, if anything is."""
    try:
        return measure(driver, node, where, timeout)
    except ray.exceptions.RayError as exc:
        return HopCosts(*UNMEASURED, f"not measured ({type(exc).__name__})", ())


_MEASURED: dict[tuple[str, str], HopCosts] = {}
CACHE_NAME = "neurolocal-hop-costs.json"


def _session_file() -> Path | None:
    try:
        from ray._private import worker

        return Path(worker.global_worker.node.get_session_dir_path()) / CACHE_NAME
    except Exception:   # an API of Ray's that moved: measure every time
        return None


def _cached(path: Path | None, key: str) -> HopCosts | None:
    """The entry for `key` if the file holds one this module wrote (else None)."""
    try:
        if path is None or not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        entry = json.loads(path.read_text()).get(key)
        message, byte, node = entry["message"], entry["byte"], entry["node"]
        points = tuple((int(b), float(t)) for b, t in entry["points"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    numbers = (message, byte)
    if not all(isinstance(x, float) and math.isfinite(x) and 0 <= x < 10 for x in numbers) \
            or node not in ("another node", "driver's node"):
        return None
    return HopCosts(message, byte, node, points)


def _keep(path: Path | None, key: str, costs: HopCosts) -> None:
    if path is None:
        return
    try:
        small = path.is_file() and path.stat().st_size <= 1 << 20
        known = json.loads(path.read_text()) if small else {}
    except (OSError, ValueError):
        known = {}   # damaged: replaced
    try:
        known = known if isinstance(known, dict) and len(known) < 64 else {}
        known[key] = asdict(costs)
        with atomic_path(path) as partial:
            partial.write_text(json.dumps(known))
    except (OSError, ValueError):
        pass   # a read-only session directory: the next run measures again


def hop_costs() -> HopCosts:
    """The hop costs of the cluster this process is connected to, measured once per
    cluster and probe node (module doc)."""
    driver = ray.get_runtime_context().get_node_id()
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    others = [n for n in alive if n != driver]
    node = others[0] if others else (driver if driver in alive else None)
    key = (driver, node or "-")   # node ids are new with every cluster
    if key not in _MEASURED:
        path, name = _session_file(), f"{driver}->{node or '-'}"
        found = _cached(path, name)
        if found is None:
            found = measured_or_not(driver if driver in alive else None, node,
                                    "another node" if others else "driver's node")
            if found.points:
                _keep(path, name, found)
        _MEASURED[key] = found
    return _MEASURED[key]
