"""Machines that really are separate, on one Linux machine: a Ray cluster in network namespaces.

Every Ray node runs in a network namespace of its own (own interfaces, own loopback, own
port space, own address), and the driver in one more. The namespaces hang off a private
bridge that itself lives in a "switch" namespace, so the host's own network stack (its
addresses, routes, firewall) never sees a packet of the cluster:

    switch namespace:  br0 ── head ── w1 ── w2 ── drv      (veth ends, no address)
                              │       │      │      │
    node namespaces:        eth0    eth0   eth0   eth0     198.18.0.2, .11, .12, .100

Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking: never routed on the
Internet), and no namespace has a default route: a Ray process that tries to reach any
address outside the bridge fails at once instead of sending anything.

For Ray these are separate hosts: each `ray start` runs inside its namespace (via
`ip netns exec`) with its own --temp-dir, --node-ip-address and a fresh token
(RAY_AUTH_MODE=token); the dashboard and usage stats are off and no Ray Client
server is asked for. A link can be taken down and up (a partition), rate-limited with a
`tbf` qdisc (bandwidth), and one node's processes killed (node loss) — see
docs/netns.md.

Clean-up is exact: `stop()` ends the processes this cluster started (by pid, with
their descendants, then anything still inside its namespaces) and deletes its
namespaces, which removes every veth and the bridge with them. It runs from `with`,
from atexit and on SIGTERM/SIGHUP (turned into SystemExit while a cluster is up).
Names carry the prefix `nlns-<owner pid>-<random>-`, so `sweep()` removes only
leftovers of this harness whose owning process is gone, never anything else.

Needs root or CAP_NET_ADMIN (+ CAP_SYS_ADMIN for `ip netns add`) and `ip` from
iproute2; `unavailable()` says, in one line, why a machine cannot.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from neurolocal import procs
from neurolocal.procs import alive, descendants, send

#: every namespace this harness makes starts with this
PREFIX = "nlns-"
#: the /24 of 198.18.0.0/15 (RFC 2544 benchmarking range) the cluster's hosts use
SUBNET = "198.18.0"
HEAD_HOST, DRIVER_HOST, FIRST_WORKER_HOST = 2, 100, 11
GCS_PORT = 6379
#: how a node's process tree is found again after the harness's own process is gone
#: every process a cluster starts carries NLNS_CLUSTER=<its tag> in its environment
CLUSTER_VARIABLE = "NLNS_CLUSTER"
NAME_PATTERN = re.compile(rf"^{re.escape(PREFIX)}(\d+)-([0-9a-f]+)-(\w+)$")


def unavailable() -> str | None:
    """None when namespaces can be made here; else the reason, in one line."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: apt-get install -y iproute2"
    probe = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"  # sweep() spares it
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return f"cannot create a network namespace (needs root or CAP_NET_ADMIN): {detail}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    """Every namespace of this harness on the machine (any owner)."""
    listed = ip("netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listed if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def pids_in(namespace: str) -> list[int]:
    done = ip("netns", "pids", namespace, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def sweep() -> list[str]:
    """Remove leftovers of this harness whose owner process is gone (a run killed with
    SIGKILL cannot clean up): their processes, namespaces and temp dirs. Returns the
    namespaces removed. A cluster whose owner still runs is left alone."""
    removed = []
    for name in namespaces():
        match = NAME_PATTERN.match(name)
        if match and alive(int(match.group(1))):
            continue
        for pid in pids_in(name):
            send(pid, signal.SIGKILL)
        ip("netns", "del", name, check=False)
        removed.append(name)
    for directory in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        match = re.match(rf"{re.escape(PREFIX)}(\d+)-", directory.name)
        if match and not alive(int(match.group(1))):
            shutil.rmtree(directory, ignore_errors=True)
    return removed


def processes_with_env(entry: str, prefix: bool = False) -> list[int]:
    """Live processes (not this one) whose environment holds `entry` ("NAME=value"), or
    an entry starting with it when `prefix`."""
    marker = entry.encode()
    found = []
    for pid in procs.pids():
        entries = procs.environ(pid) if pid != os.getpid() else None
        if entries and any(e.startswith(marker) if prefix else e == marker for e in entries):
            found.append(pid)
    return [pid for pid in found if alive(pid)]


def processes_of_owner(pid: int) -> list[int]:
    """Live processes started by clusters of the harness process `pid` (they carry
    NLNS_CLUSTER=<pid>-<id> in their environment)."""
    return processes_with_env(f"{CLUSTER_VARIABLE}={pid}-", prefix=True)


@dataclass
class Host:
    """One namespace on the bridge: `role` is head, w1, w2, ... or drv."""
    role: str
    namespace: str
    address: str
    link: str                       # the veth's name on the switch side (= role)
    process: subprocess.Popen | None = None   # its `ray start --block`
    log: Path | None = None


@dataclass(eq=False)
class NetnsCluster:
    """A Ray head, `workers` worker nodes and a driver host, each in its own namespace.

    `node_death_seconds`: how long the head's GCS waits on a silent raylet before it
    declares the node dead (Ray's health check: period 1 s, failure threshold this
    many). A partition shorter than that is only a pause for Ray; the engine's own
    --timeout decides what a longer one does. `rate`: a tbf rate (e.g. "100mbit") on
    every link, both directions."""

    workers: int = 2
    cpus_per_node: int = 1
    object_store_bytes: int = 80 << 20
    node_death_seconds: int = 30
    rate: str | None = None
    ray: str = field(default_factory=lambda: str(Path(sys.executable).with_name("ray")))
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    tag: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(3)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    base_dir: Path | None = None
    started: list[subprocess.Popen] = field(default_factory=list)  # every process we ran

    # --- names -------------------------------------------------------------------------

    def namespace(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    @property
    def switch(self) -> str:
        return self.namespace("sw")

    @property
    def address(self) -> str:
        """The GCS address drivers join."""
        return f"{self.hosts['head'].address}:{GCS_PORT}"

    @property
    def roles(self) -> list[str]:
        return ["head", *(f"w{k}" for k in range(1, self.workers + 1)), "drv"]

    # --- network -------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> "NetnsCluster":
        sweep()
        _stop_on_signals()
        _LIVE.add(self)
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.tag}-"))
        try:
            self._make_network()
            self._start_ray(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_network(self) -> None:
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for role in self.roles:
            host_part = {"head": HEAD_HOST, "drv": DRIVER_HOST}.get(role)
            if host_part is None:
                host_part = FIRST_WORKER_HOST + int(role[1:]) - 1
            host = Host(role, self.namespace(role), f"{SUBNET}.{host_part}", role)
            ip("netns", "add", host.namespace)
            self.hosts[role] = host
            ip("-n", host.namespace, "link", "set", "lo", "up")
            # made directly inside the two namespaces: nothing ever appears in the host's
            ip("link", "add", "eth0", "netns", host.namespace, "type", "veth",
               "peer", "name", role, "netns", self.switch)
            ip("-n", self.switch, "link", "set", role, "master", "br0")
            ip("-n", self.switch, "link", "set", role, "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
            if self.rate:
                self.limit(role, self.rate)

    def limit(self, role: str, rate: str | None) -> None:
        """A tbf rate limit on `role`'s link, both directions (None: remove it)."""
        for namespace, device in ((self.switch, role), (self.hosts[role].namespace, "eth0")):
            subprocess.run(["tc", "-n", namespace, "qdisc", "del", "dev", device, "root"],
                           capture_output=True)
            if rate:
                done = subprocess.run(["tc", "-n", namespace, "qdisc", "add", "dev", device,
                                       "root", "tbf", "rate", rate, "burst", "64kb",
                                       "latency", "100ms"], capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"tc tbf on {role}: {done.stderr.strip()}")

    def link(self, role: str, up: bool) -> None:
        """Take `role`'s link down (a partition: its namespace is cut off from all the
        others, its processes keep running) or up again."""
        ip("-n", self.switch, "link", "set", self.hosts[role].link, "up" if up else "down")

    # --- Ray ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Token authentication with this cluster's fresh token; Ray's phone-home off;
        the head's node-death detection as `node_death_seconds` says."""
        return {**os.environ, CLUSTER_VARIABLE: self.tag,
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "120000",
                "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": str(self.node_death_seconds)}

    def driver_env(self) -> dict[str, str]:
        """What the driver needs: the cluster, the token, and which raylet is its own
        (every namespace's raylet looks local to Ray's process scan)."""
        return {**self.env(), "RAY_ADDRESS": self.address,
                "NEUROLOCAL_NODE_IP": self.hosts["drv"].address}

    def _start_ray(self, timeout: float) -> None:
        self._start_node("head", ["--head", f"--port={GCS_PORT}", "--include-dashboard=false"])
        self._wait_for_nodes(1, timeout)
        # one node at a time: raylets started together on a busy 2-core machine time out
        # waiting for their agents
        for k, role in enumerate(self.roles[1:], start=2):
            self._start_node(role, [f"--address={self.address}"])
            self._wait_for_nodes(k, timeout)

    def _start_node(self, role: str, extra: list[str]) -> None:
        host = self.hosts[role]
        temp_dir = self.base_dir / role
        temp_dir.mkdir()
        host.log = self.base_dir / f"{role}.log"
        index = self.roles.index(role)
        command = ["ip", "netns", "exec", host.namespace, self.ray, "start", "--block", *extra,
                   f"--node-ip-address={host.address}", f"--temp-dir={temp_dir}",
                   f"--num-cpus={self.cpus_per_node}", f'--resources={{"node_{index}": 1}}',
                   f"--object-store-memory={self.object_store_bytes}",
                   "--disable-usage-stats"]
        with open(host.log, "wb") as out:
            # its own session: a terminal's Ctrl-C reaches us only, and we stop the nodes
            host.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            env=self.env(), start_new_session=True)
        self.started.append(host.process)

    def _wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for host in self.hosts.values():
                if host.process is not None and host.process.poll() is not None:
                    tail = host.log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError(f"`ray start` in {host.role} exited with "
                                       f"{host.process.returncode}: " + " / ".join(tail))
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} Ray nodes did not register in {timeout:.0f} s; "
                           f"logs in {self.base_dir}")

    def alive_nodes(self) -> int:
        """Nodes the GCS counts as alive, asked from the driver's namespace."""
        probe = ("from ray._raylet import GcsClient; import sys; "
                 "c = GcsClient(address=sys.argv[1]); "
                 "print(sum(1 for n in c.get_all_node_info(timeout=5).values() "
                 "if n.state == 0))")
        done = self.run_in("drv", [sys.executable, "-c", probe, self.address], timeout=60)
        return int(done.stdout.strip() or 0) if done.returncode == 0 else 0

    def run_in(self, role: str, command: list[str], timeout: float | None = None,
               env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside `role`'s namespace and wait for it (killed, with its
        descendants, if it outlives `timeout`)."""
        process = self.popen(role, command, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, **kwargs)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree(process.pid)
            out, err = process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def popen(self, role: str, command: list[str], env: dict | None = None,
              **kwargs) -> subprocess.Popen:
        """Start a command inside `role`'s namespace (with `driver_env()` unless `env`);
        `stop()` ends it too if it is still running."""
        process = subprocess.Popen(["ip", "netns", "exec", self.hosts[role].namespace,
                                    *command], env=env or self.driver_env(),
                                   start_new_session=True, **kwargs)
        self.started.append(process)
        return process

    def neurolocal(self, *args, timeout: float = 600, cwd: str | None = None,
                   ) -> subprocess.CompletedProcess:
        """`python -m neurolocal ARGS` in the driver's namespace."""
        return self.run_in("drv", [sys.executable, "-m", "neurolocal", *map(str, args)],
                           timeout=timeout, cwd=cwd)

    # --- faults ------------------------------------------------------------------------

    def node_processes(self, role: str) -> list[int]:
        """The `ray start` launched in `role` and every process below it."""
        process = self.hosts[role].process
        if process is None or process.poll() is not None:
            return []
        return [process.pid, *descendants(process.pid)]

    def kill_node(self, role: str) -> list[int]:
        """SIGKILL every Ray process of `role` (a machine that lost power): the `ray
        start` launched there and its descendants. Returns the pids killed."""
        pids = self.node_processes(role)
        for pid in pids:
            send(pid, signal.SIGKILL)
        self.hosts[role].process.wait(timeout=10)
        return pids

    @staticmethod
    def kill_tree(pid: int) -> None:
        for p in [pid, *descendants(pid)]:
            send(p, signal.SIGKILL)

    # --- tear-down ---------------------------------------------------------------------

    def leftovers(self) -> dict[str, list]:
        """What of this cluster still exists: namespaces, processes inside them, and
        processes it started (with their descendants) still alive. Empty after stop()."""
        spaces = [n for n in namespaces() if n.startswith(f"{PREFIX}{self.tag}-")]
        inside = sorted({pid for n in spaces for pid in pids_in(n) if alive(pid)})
        ours = {pid for p in self.started for pid in [p.pid, *descendants(p.pid)]
                if alive(pid)}
        return {"namespaces": spaces,
                "processes": sorted(set(inside) | ours | set(self.carrying_token()))}

    def carrying_token(self) -> list[int]:
        """Live processes whose environment holds this cluster's token: every process it
        started inherited it, even one that left the process tree and its namespace."""
        return processes_with_env(f"RAY_AUTH_TOKEN={self.token}")

    def stop(self, grace: float = 3.0) -> None:
        """End every process this cluster started (SIGTERM, then SIGKILL after `grace`),
        then whatever still runs inside its namespaces, then delete the namespaces (the
        veths and the bridge go with them) and the temp dirs. Safe to call twice."""
        pids = {pid for p in self.started if p.poll() is None
                for pid in [p.pid, *descendants(p.pid)]}
        for pid in pids:
            send(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            for p in self.started:
                p.poll()  # reap our children so they do not linger as zombies
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                send(pid, signal.SIGKILL)
        spaces = [n for n in namespaces() if n.startswith(f"{PREFIX}{self.tag}-")]
        for _ in range(50):  # a process that escaped its parent: inside a namespace, or
            # anywhere with this cluster's token in its environment
            stray = [pid for n in spaces for pid in pids_in(n) if alive(pid)]
            stray += self.carrying_token()
            if not stray:
                break
            for pid in stray:
                send(pid, signal.SIGKILL)
            time.sleep(0.1)
        for p in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        for name in spaces:
            ip("netns", "del", name, check=False)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> "NetnsCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


#: clusters up in this process, stopped at exit and on SIGTERM/SIGHUP
_LIVE: set[NetnsCluster] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit (so `finally` blocks, fixtures and atexit
    run and stop the clusters), unless the program installed handlers of its own."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)
