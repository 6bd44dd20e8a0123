"""Connecting to Ray: an embedded local Ray or an existing cluster, and how workers find
this very `neurolocal` (see the package docstring, neurolocal/engines/ray/__init__.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile

import ray

import neurolocal
from neurolocal.engines.ray import lifecycle
from neurolocal.engines.ray.standing import attach
from neurolocal.errors import ConfigError

ADDRESS_LOCAL = "local"


#: an embedded Ray, for one command: no dashboard, and no Ray worker processes started
#: ahead of the actors (Ray prestarts one per CPU; they sat idle, ~85 MB each). See
#: docs/startup.md for what else an embedded Ray runs and why it stays.
EMBEDDED_OPTIONS = {"include_dashboard": False,
                    "_system_config": {"prestart_worker_first_driver": False}}

#: seconds to wait for a cluster's address to accept a connection
CONNECT_TIMEOUT = 10.0


def package_parent() -> str:
    """The directory that holds the `neurolocal` package (a source tree or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(neurolocal.__file__)))


def worker_runtime_env(remote: bool = False) -> dict:
    """How Ray workers find this very `neurolocal`: on this machine through PYTHONPATH
    (no copy); on a remote cluster the package is uploaded with `py_modules`.
    NUMBA_CACHE_DIR is passed on when set, so workers share compiled kernels."""
    env = {k: os.environ[k] for k in ("NUMBA_CACHE_DIR",) if k in os.environ}
    hook = {"worker_process_setup_hook": "neurolocal.engines.worker_setup.setup"}
    if remote:
        return {"py_modules": [os.path.dirname(os.path.abspath(neurolocal.__file__))],
                "env_vars": env, **hook}
    path = [package_parent()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                 if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return {"env_vars": env, **hook}


def start_ray(address: str | None) -> bool:
    """Initialise Ray unless it already is; True when this call started it (and owns it)."""
    if ray.is_initialized():
        return False
    address = address or ADDRESS_LOCAL
    resolved = attach(address)  # auto: `neurolocal cluster up`'s cluster, on this machine
    remote = address != ADDRESS_LOCAL
    address, same_machine = resolved, resolved != address
    lifecycle.quiet_token_notice()  # Ray's notice on every start (token authentication stays on)
    check_reachable(address)
    if remote:  # Ray retries a silent GCS once a second for a minute by default
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
        from neurolocal.engines.ray.cluster import check_cluster_access

        check_cluster_access(address)  # a missing or wrong token: one line, not Ray's retries
    try:
        # joining a cluster too: ray.init's Python SIGTERM handler (sys.exit(15), no line)
        # must not replace ours (issue 28)
        with (lifecycle.ray_keeps_our_handlers() if remote else lifecycle.starting_embedded()), \
                stderr_kept_unless_failing():
            ray.init(address=address, logging_level="warning", log_to_driver=False,
                     runtime_env=worker_runtime_env(remote and not same_machine),
                     **({} if remote else EMBEDDED_OPTIONS), **driver_node_ip())
        if remote:
            lifecycle.quiet_driver_logs()
    except (ConnectionError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach Ray at {address!r}: {detail}", field="address") from None
    return True


#: the address of this machine's own Ray node, when Ray cannot tell (see driver_node_ip)
NODE_IP_VARIABLE = "NEUROLOCAL_NODE_IP"


def driver_node_ip() -> dict:
    """`ray.init` options naming the raylet this driver belongs to, when
    $NEUROLOCAL_NODE_IP says. Ray finds "local" raylets by scanning the process table;
    with several network namespaces on one machine (neurolocal/testing/netns.py) it sees every
    namespace's raylet and would pick the head's, which this driver cannot reach. The
    variable names the node IP of the raylet in the driver's own namespace."""
    node_ip = os.environ.get(NODE_IP_VARIABLE, "").strip()
    return {"_node_ip_address": node_ip} if node_ip else {}


@contextlib.contextmanager
def stderr_kept_unless_failing():
    """Hold what Ray's C++ core writes to stderr while connecting: replayed when the
    connection works, dropped when it fails (our one-line error says what happened)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                os.write(2, held.read())


def check_reachable(address: str) -> None:
    """Fail fast, in one line, when HOST:PORT does not accept a connection (ray.init
    would retry for minutes). "local" and "auto" are Ray's to resolve."""
    if address in (ADDRESS_LOCAL, "auto") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected local, auto or HOST:PORT, got {address!r}", field="address")
    try:
        speaks_grpc = answers_http2(host, int(port))
    except OSError as exc:
        raise ConfigError(f"cannot reach Ray at {address!r}: {exc.strerror or exc}; nothing "
                          f"answers at {address}: is `ray start --head` running there, and is "
                          "the port reachable from this machine?", field="address") from None
    if not speaks_grpc:
        raise ConfigError(f"{address!r} answers but is not a Ray cluster (its GCS speaks gRPC)",
                          field="address")


def answers_http2(host: str, port: int) -> bool:
    """Does HOST:PORT answer the HTTP/2 preface with a SETTINGS frame, as a gRPC server
    (Ray's GCS) does? Bounded by CONNECT_TIMEOUT; OSError when it cannot connect."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as connection:
        connection.sendall(preface)
        frame = b""
        while len(frame) < 9:
            chunk = connection.recv(9 - len(frame))
            if not chunk:
                break
            frame += chunk
    return len(frame) == 9 and frame[3] == 4  # frame type 4: SETTINGS
