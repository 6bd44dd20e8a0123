"""A standing local Ray: `neurolocal cluster up|status|down` (docs/startup.md).

A command that starts its own embedded Ray pays Ray's start-up (GCS, raylet, agents:
~6 s on a quiet 2-core machine, 18 s loaded) before its first batch. `cluster up`
starts one head node here and leaves it running, so later commands attach to it with
`--address auto` in about a second; `cluster down` stops it.

The head is `ray start --head --block` (engines/ray/cluster.py's LocalCluster, no
worker nodes) with token authentication on and a fresh token of its own, its own temp
dir, no dashboard, no Ray Client server, and no worker processes started ahead of the
actors. What `up` started is recorded in the state directory (`NEUROLOCAL_CLUSTER_DIR`,
default ~/.neurolocal/cluster):

    cluster.json   address, temp dir, log, start time, and every process of the head
                   as (pid, start time) pairs with its command line, so a pid reused by
                   the system later is never mistaken for one of ours
    auth_token     the cluster's token (mode 0600)

The record is trusted only as far as it can be proven (`proven_temp_dir`,
`proven_processes`): `down` (and `up` clearing a dead cluster) deletes the temp dir only
when it is a directory of this user directly under the system temp dir, named
`nl-ray-*`, not a link, holding the marker `up` wrote there (a digest of the token);
and signals a process only when its start time and command line are what `up`
recorded, it belongs to this user and its command line names that temp dir (or it
runs below such a process). A record naming a foreign directory or pid deletes and
kills nothing.

Ray processes outside the recorded tree (`leftovers`): the raylet starts its agents
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) after `up` has recorded the head, and
they rename themselves, so their command lines name no temp dir (nor does their
environment: the new title overwrites it); after a `kill -9` of the head they are
orphans below no recorded process and ran on for 20-85 s. They are proven by the
files they hold open instead: a process of this user, started after the head, with
a Ray process title (`ray::...`) and a file open under the proven temp dir (their
logs). `down`, and `up` clearing a dead cluster, stop them too. A driver attached to
the cluster is no `ray::` process and is left alone.

`--address auto` reads that record first (unless RAY_ADDRESS is set): it attaches to
the recorded address with the recorded token, whatever else runs on the machine.
`down` stops exactly the recorded processes and everything below them (Ray workers
are the raylet's children), never `ray stop` (that stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from neurolocal.engines.ray.cluster import LocalCluster
from neurolocal.errors import ConfigError, EngineError
from neurolocal.files import write_atomic
from neurolocal.procs import cmdline, descendants, open_paths, pids, rss_bytes, start_time

STATE_ENV = "NEUROLOCAL_CLUSTER_DIR"
RECORD, TOKEN = "cluster.json", "auth_token"
#: written by `up` into the temp dir it created: the proof `down` asks for before deleting
MARKER, PREFIX = "neurolocal-cluster", "nl-ray-"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".neurolocal" / "cluster")


# --- processes, by (pid, start time) ---------------------------------------------------------


def still_ours(pid: int, started: int) -> bool:
    return start_time(pid) == started


def tree_of(roots: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The given processes that still run, and every process now below them (pass
    `proven_processes(record)`, never a record's list unchecked)."""
    found: dict[int, int] = {}
    for pid, started in roots:
        if still_ours(pid, started):
            found[pid] = started
            for child in descendants(pid):
                if child not in found and (t := start_time(child)) is not None:
                    found[child] = t
    return list(found.items())


def stop_processes(processes: list[tuple[int, int]], grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace` seconds, exactly these processes (each only
    while its start time still matches), and return once they are gone (a SIGKILL
    takes effect when the kernel next schedules the process: under load, a while;
    bounded by KILL_WAIT). Returns the pids signalled."""
    targets = [(pid, t) for pid, t in processes if still_ours(pid, t)]
    for pid, _ in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(still_ours(p, t) for p, t in targets):
        time.sleep(0.1)
    for pid, t in targets:
        if still_ours(pid, t):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline and any(still_ours(p, t) for p, t in targets):
        time.sleep(0.05)
    return [pid for pid, _ in targets]


#: how long `stop_processes` waits for a SIGKILL to take effect before it returns anyway
KILL_WAIT = 60.0


# --- the record ------------------------------------------------------------------------------


@dataclass
class Record:
    """What `cluster up` started."""
    address: str
    temp_dir: str
    log: str
    started: float                                   # time.time() when it came up
    cpus: int
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, start time)
    commands: dict = field(default_factory=dict)   # str(pid) -> its command line
    #: the state directory it was read from (not written: where it lies says that)
    state: str = field(default="", repr=False)

    @property
    def root(self) -> tuple[int, int]:
        return self.processes[0]

    def running(self) -> bool:
        return bool(self.processes) and any(p == self.root for p in proven_processes(self))

    def token_path(self) -> Path:
        return Path(self.state or state_dir()) / TOKEN

    def as_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if k != "state"}, indent=1)


def read_record() -> Record | None:
    from neurolocal.files import read_bytes

    path = state_dir() / RECORD
    if not os.path.lexists(path):
        return None
    bad = ConfigError("is not a cluster record neurolocal wrote; remove it", source=str(path))
    data = read_bytes(path, 1 << 20, ConfigError, "cluster record")
    try:
        data = json.loads(data)
        data["processes"] = [(int(p), int(t)) for p, t in data["processes"]]
        data["state"] = str(state_dir())
        record = Record(**data)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise bad from None
    if not (isinstance(record.temp_dir, str) and isinstance(record.address, str)
            and isinstance(record.commands, dict)):
        raise bad
    return record


# --- what the record can prove ----------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(f"neurolocal cluster {token}".encode()).hexdigest()


def _token(record: Record) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return record.token_path().read_text()
    return None


def proven_temp_dir(record: Record) -> Path | None:
    """The record's temp dir when `up` created it (see the module's doc), else None."""
    import stat

    token = _token(record)
    try:
        path = Path(record.temp_dir)
        info = os.lstat(path)
        root = Path(os.path.realpath(tempfile.gettempdir()))
        marker = path / MARKER
        if not (path.is_absolute() and stat.S_ISDIR(info.st_mode)
                and info.st_uid == os.getuid() and path.parent == root
                and path.name.startswith(PREFIX) and os.path.realpath(path) == str(path)
                and stat.S_ISREG(os.lstat(marker).st_mode) and token is not None):
            return None
        with open(marker, encoding="utf-8") as handle:
            return path if handle.read(100) == _digest(token) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _mine(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


def proven_processes(record: Record) -> list[tuple[int, int]]:
    """The recorded processes that still run as `up` recorded them (start time, command
    line), are this user's and name the proven temp dir on their command line."""
    temp_dir = proven_temp_dir(record)
    if temp_dir is None:
        return []
    found = []
    for pid, started in record.processes:
        line = cmdline(pid)
        if (still_ours(pid, started) and _mine(pid) and line
                and line == record.commands.get(str(pid)) and str(temp_dir) in line):
            found.append((pid, started))
    return found


def leftovers(record: Record) -> list[tuple[int, int]]:
    """The cluster's Ray processes outside the recorded tree (see the module's doc): this
    user's, started no earlier than the recorded head, with a Ray process title and a
    file open under the proven temp dir. None when the temp dir is not proven."""
    temp_dir = proven_temp_dir(record)
    if not record.processes or temp_dir is None:
        return []
    inside = str(temp_dir) + os.sep
    found = []
    for pid in pids():
        started = start_time(pid)
        if (started is not None and started >= record.root[1] and _mine(pid)
                and (cmdline(pid) or "").startswith("ray::")
                and any(path.startswith(inside) for path in open_paths(pid))):
            found.append((pid, started))
    return found


def _write_private(path: Path, text: str) -> None:
    """Write a file only this user can read (0600), atomically."""
    write_atomic(path, text, private=True)


def _clear_state() -> None:
    for name in (RECORD, TOKEN):
        with contextlib.suppress(FileNotFoundError):
            (state_dir() / name).unlink()


# --- up / status / down ----------------------------------------------------------------------


class StandingHead(LocalCluster):
    """One head node, no worker nodes, no Ray worker started before it is needed (Ray
    prestarts one per CPU when a driver connects: idle processes of ~85 MB each)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "RAY_prestart_worker_first_driver": "0"}


def up(cpus: int | None = None, object_store_bytes: int = 200 << 20,
       timeout: float = 120.0) -> tuple[Record, bool]:
    """Start the standing cluster unless one runs; (its record, whether this call started it)."""
    found = read_record()
    if found is not None and found.running():
        return found, False
    if found is not None:  # the machine rebooted, or someone killed it: start afresh
        stop_processes(leftovers(found))
        _remove_temp_dir(found)
        _clear_state()
    state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    cpus = cpus or os.cpu_count() or 1
    ray_exe = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    # short: Ray's unix socket paths under the temp dir must stay < 108 characters
    head = StandingHead(workers=0, cpus_per_node=cpus, object_store_bytes=object_store_bytes,
                        ray=ray_exe,
                        base_dir=tempfile.mkdtemp(prefix=PREFIX, dir=os.path.realpath(
                            tempfile.gettempdir())))
    try:
        head.start(timeout)  # no worker nodes: the head alone
        head._wait_for_nodes(1, timeout)
    except BaseException as exc:
        head.stop()
        log = head.logs[0].read_text(errors="replace") if head.logs else ""
        shutil.rmtree(head.base_dir, ignore_errors=True)
        if isinstance(exc, (RuntimeError, TimeoutError, OSError)):  # `ray start` failed
            last = (log.strip().splitlines() or [str(exc)])[-1]
            raise EngineError(f"the local Ray head did not start: {last}") from None
        raise
    root = head.processes[0].pid
    processes = [(pid, t) for pid in [root, *descendants(root)]
                 if (t := start_time(pid)) is not None]
    commands = {str(pid): line for pid, _ in processes if (line := cmdline(pid))}
    record = Record(address=head.address, temp_dir=head.base_dir, log=str(head.logs[0]),
                    started=time.time(), cpus=cpus, processes=processes, commands=commands)
    _write_private(Path(head.base_dir) / MARKER, _digest(head.token))
    _write_private(state_dir() / TOKEN, head.token)
    _write_private(state_dir() / RECORD, record.as_json())
    return record, True


def status() -> dict | None:
    """What runs: address, uptime, nodes and CPUs (asked of the GCS with the cluster's
    token), the head's processes and their RSS. None when no cluster is up."""
    record = read_record()
    if record is None or not record.running():
        return None
    processes = tree_of(proven_processes(record))
    report = {"address": record.address, "uptime_s": time.time() - record.started,
              "processes": len(processes),
              "rss_bytes": sum(rss_bytes(pid) for pid, _ in processes),
              "temp_dir": record.temp_dir, "log": record.log,
              "token_file": str(record.token_path()), "nodes": None, "cpus": None,
              "node_ids": None}
    with contextlib.suppress(Exception):  # a GCS that does not answer: say what we know
        nodes = _alive_nodes(record)
        report["nodes"] = len(nodes)
        report["node_ids"] = [n.node_id.hex() for n in nodes]
        report["cpus"] = sum(n.resources_total.get("CPU", 0) for n in nodes)
    return report


def _alive_nodes(record: Record) -> list:
    use_token(record.token_path().read_text())
    from ray._raylet import GcsClient

    from neurolocal.engines.ray.cluster import _quiet_stderr

    with _quiet_stderr():
        info = GcsClient(address=record.address).get_all_node_info(timeout=5)
    return [n for n in info.values() if n.state == 0]


def down() -> list[int] | None:
    """Stop exactly what `up` started (and the Ray workers below it); None if nothing was up."""
    record = read_record()
    if record is None:
        return None
    found = dict(tree_of(proven_processes(record)))
    found.update(leftovers(record))
    stopped = stop_processes(list(found.items()))
    _remove_temp_dir(record)
    _clear_state()
    return stopped


def _remove_temp_dir(record: Record) -> None:
    """The record's temp dir, deleted only when `up` provably created it."""
    temp_dir = proven_temp_dir(record)
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


def attach(address: str) -> str:
    """`--address auto` with a standing cluster up (and RAY_ADDRESS unset): its address,
    with its token put in this process's environment for ray.init. Else unchanged."""
    if address != "auto" or os.environ.get("RAY_ADDRESS"):
        return address
    record = read_record()
    if record is None or not record.running():
        return address
    use_token(record.token_path().read_text())
    return record.address


def use_token(token: str) -> None:
    """Token mode with this token for this process (and what it starts). Ray reads both
    when it is imported and caches them, so a loaded Ray is told to read them again,
    as Ray's own `ray.init` does after it generates a token."""
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
