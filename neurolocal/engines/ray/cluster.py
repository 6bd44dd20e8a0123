"""Joining a Ray cluster started with `ray start`, and a multi-node cluster on one machine.

Token authentication (Ray 2.60, docs/design.md §3): `ray start --head` turns it on, and every
process of the cluster (head, workers, drivers) must carry RAY_AUTH_MODE=token and the
same token, in RAY_AUTH_TOKEN, in the file RAY_AUTH_TOKEN_PATH names, or in
~/.ray/auth_token. A driver without it makes `ray.init` retry for ~20 s, print one
C++ warning per second and end in a bare "Failed to connect"; `check_cluster_access`
finds out in milliseconds and says what to set, in one line.

`LocalCluster` starts a head and N worker nodes as separate `ray start --block`
processes on this machine (distinct ports, resources and temp dirs, a fresh token of
their own) and stops exactly the processes it started: `ray stop` would stop every
Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from neurolocal import procs
from neurolocal.errors import ConfigError

TOKEN_HELP = ("set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or the file "
              "~/.ray/auth_token) for this driver; on the head, `ray get-auth-token` prints it")


# --- joining an existing cluster -------------------------------------------------------------


def check_cluster_access(address: str | None, timeout: float = 3.0) -> None:
    """Before `ray.init(address=...)` joins a running cluster: is something listening
    there, and does it accept this process's token? Raises ConfigError (one line) if
    not. "local" (an embedded Ray) and Ray Client addresses (ray://) are not checked."""
    if not address or address == "local" or address.startswith("ray://"):
        return
    gcs = _resolve(address)
    host, _, port = gcs.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError):
        raise ConfigError(f"nothing answers at {gcs}: is `ray start --head` running there, and "
                          "is the port reachable from this machine?", field="address") from None
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray.exceptions import AuthenticationError

    # what ray.init does before joining: RAY_AUTH_MODE unset but a token at hand
    # (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) switches token mode on
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        with _quiet_stderr():  # Ray's C++ client logs a warning line before it raises
            from ray._raylet import GcsClient

            GcsClient(address=gcs)
    except AuthenticationError:
        has_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        has_token = ("RAY_AUTH_TOKEN" in os.environ or "RAY_AUTH_TOKEN_PATH" in os.environ
                     or (Path.home() / ".ray" / "auth_token").exists())
        problem = ("refused this driver's token" if has_mode and has_token
                   else "uses token authentication and this driver has no token")
        raise ConfigError(f"the Ray cluster at {gcs} {problem}: {TOKEN_HELP}",
                          field="address") from None
    except Exception as exc:  # unreachable or not a Ray GCS: ray.init would fail the same
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach Ray at {gcs}: {detail}", field="address") from None


def _resolve(address: str) -> str:
    """HOST:PORT of the cluster's GCS; "auto" as Ray resolves it (RAY_ADDRESS, then the
    cluster last started on this machine)."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError):
            found = None
        if not found:
            raise ConfigError("address auto found no running Ray cluster on this machine: "
                              "start one with `ray start --head`, or give HOST:PORT",
                              field="address")
        return found
    if ":" not in address:
        raise ConfigError(f"expected HOST:PORT, auto or local, got {address!r}", field="address")
    return address


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ logging writes there directly) for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --- a cluster of several nodes on this machine ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_client_port_flag() -> list[str]:
    """neurolocal never uses Ray Client. `ray start --head` runs Ray Client's server only
    when its extra (grpcio) is installed, on port 10001 unless told otherwise, and refuses
    `--ray-client-server-port` when the extra is missing. So: no flag without grpcio (no
    server, nothing to clash); with it, a free port, so two heads on one machine (two
    local clusters, a parallel test run) do not both claim 10001."""
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        return []
    return [f"--ray-client-server-port={free_port()}"]


@dataclass
class LocalCluster:
    """A head and `workers` worker nodes, each its own `ray start --block` process.

    Node k carries the custom resource `node_k` (the head `node_0`), so work can be
    pinned to a node. Nodes register with the machine's address, not loopback (Ray
    does that even with --node-ip-address=127.0.0.1); `address` is what they
    registered. `driver_env()` is the environment a driver needs to join.
    """

    workers: int = 1
    cpus_per_node: int = 1
    object_store_bytes: int = 200 << 20
    ray: str = "ray"                                # the ray executable
    base_dir: str | None = None                     # temp dirs go under it (default: new)
    address: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Token authentication on, with this cluster's own token (never ~/.ray/auth_token)."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_USAGE_STATS_ENABLED": "0",
                # agents start slowly on a loaded machine; Ray's default wait is shorter
                "RAY_agent_register_timeout_ms": "120000"}

    def driver_env(self) -> dict[str, str]:
        return {**self.env(), "RAY_ADDRESS": self.address}

    def start(self, timeout: float = 90.0) -> "LocalCluster":
        # short: Ray's unix socket paths under the temp dir must stay < 108 characters
        self.base_dir = self.base_dir or tempfile.mkdtemp(prefix="nl-ray-")
        port = free_port()
        self._start_node(0, ["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--include-dashboard=false", *ray_client_port_flag()])
        self.address = self._wait_for_address(timeout)
        # one node at a time: on a busy 2-core machine, raylets started together time out
        # waiting for their agents (seen: "Timed out waiting for file ...agent_listen_port")
        for k in range(1, self.workers + 1):
            self._start_node(k, [f"--address={self.address}"])
            self._wait_for_nodes(k + 1, timeout)
        return self

    def _start_node(self, index: int, role: list[str]) -> None:
        temp_dir = Path(self.base_dir) / f"n{index}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = Path(self.base_dir) / f"node{index}.log"
        command = [self.ray, "start", "--block", *role, f"--temp-dir={temp_dir}",
                   f"--num-cpus={self.cpus_per_node}", f'--resources={{"node_{index}": 1}}',
                   f"--object-store-memory={self.object_store_bytes}",
                   # every node on one machine needs its own agent and metrics ports
                   f"--dashboard-agent-listen-port={free_port()}",
                   f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}",
                   f"--metrics-export-port={free_port()}", "--disable-usage-stats"]
        with open(log, "wb") as out:
            # its own session: a Ctrl-C in the terminal reaches us, and we stop the nodes
            self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                   env=self.env(), start_new_session=True))
        self.logs.append(log)

    def _wait_for_address(self, timeout: float) -> str:
        """The GCS address the head registered (written to its temp dir when it is up)."""
        marker = Path(self.base_dir) / "n0" / "ray_current_cluster"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if marker.exists() and marker.read_text().strip():
                return marker.read_text().strip()
            time.sleep(0.2)
        raise TimeoutError(f"the head did not come up in {timeout:.0f} s; see {self.logs[0]}")

    def _wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} nodes did not register in {timeout:.0f} s; see {self.logs}")

    def alive_nodes(self) -> int:
        """Nodes the GCS counts as alive (asked with this cluster's token)."""
        probe = ("from ray._raylet import GcsClient; import sys; "
                 "c = GcsClient(address=sys.argv[1]); "
                 "print(sum(1 for n in c.get_all_node_info(timeout=5).values() "
                 "if n.state == 0))")
        done = subprocess.run([sys.executable, "-c", probe, self.address], env=self.env(),
                              capture_output=True, text=True, timeout=60)
        return int(done.stdout.strip() or 0) if done.returncode == 0 else 0

    def _check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs):
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"`ray start` exited with {process.returncode}: "
                                   + " / ".join(tail))

    def stop(self, grace: float = 3.0) -> list[int]:
        """Stop the processes this cluster started and everything they spawned (raylets,
        GCS, Ray workers), nothing else. Returns the pids signalled."""
        pids = []
        for process in self.processes:
            pids += [process.pid, *procs.descendants(process.pid)]
        for pid in pids:
            procs.send(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(procs.alive(pid) for pid in pids):
            for process in self.processes:
                process.poll()  # reap our direct children so they do not linger as zombies
            time.sleep(0.1)
        for pid in pids:
            if procs.alive(pid):
                procs.send(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        # SIGKILL is not instant on a loaded machine: return once every pid has exited
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(procs.alive(pid) for pid in pids):
            time.sleep(0.05)
        self.processes = []
        return pids

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

