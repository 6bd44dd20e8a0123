"""The embedded Ray's life and death (docs/lifecycle.md): start-up, leftovers, a dead node.

Stop signals themselves are neurolocal/signals.py's (no Ray import there). Here:

- **Signals and Ray.** `ray.init` installs SIGTERM handlers of its own (Python ones
  that would `sys.exit` mid-start-up, and its C++ core's, which dumps a stack and
  aborts): the Python ones are not installed while we start Ray, and ours go back on
  after `ray.init`.

- **Start-up.** A signal while `ray.init` runs cannot unwind safely (Ray's half-made
  core worker crashes the interpreter at exit: SIGSEGV). It ends the command at once
  instead: the line, the watchdog's sweep of every process started so far, `os._exit`.

- **Leftovers.** An embedded Ray (`--address local`) gets a watchdog
  (neurolocal/engines/ray/watchdog.py): a process in a session of its own that notes
  every process below the driver and, when the driver closes its pipe or dies (even by
  SIGKILL), kills what is still alive. `shutdown_embedded()` is the one way an embedded
  Ray ends: `ray.shutdown()` while Ray is healthy, then the watchdog's sweep, waited for.

- **A dead node.** `check_embedded()` raises `RayProcessDied` (an EngineError: one line,
  exit 2) once the embedded Ray's GCS or raylet has exited; `ray_failure(exc)` turns
  whatever Ray raised when they died (e.g. `OSError: Broken pipe` from `ray.wait`) into
  that error. The driver calls both (its relax, recover and error paths).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from neurolocal import procs, signals
from neurolocal.errors import EngineError

#: the embedded Ray's processes whose death ends a run, as Ray names them
VITAL = {"gcs_server": "GCS server (gcs_server, the cluster's metadata store)",
         "raylet": "raylet (the local node's scheduler and object store)"}
#: seconds the driver waits for the watchdog's sweep
SWEEP_TIMEOUT = 20.0


class RayProcessDied(EngineError):
    """A process of the embedded Ray that a run cannot do without has exited."""


@contextlib.contextmanager
def ray_keeps_our_handlers():
    """While ray.init runs: Ray's Python SIGTERM handlers are not installed (they would
    `sys.exit` mid-start-up); ours go back on after its C++ core installed its own."""
    if not signals.installed():
        yield
        return
    import ray._private.utils as ray_utils

    original = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original
        signals.install_handlers()


# --- the embedded Ray ------------------------------------------------------------------------


class EmbeddedRay:
    """The processes of the Ray this process started, and the watchdog that outlives it."""

    def __init__(self):
        self.starting = True
        self.processes: dict[str, list[int]] = {}   # Ray's process type -> pids
        self.stderr = os.dup(2)  # the terminal's, even while ray.init's output is held
        self.watchdog = subprocess.Popen(
            [sys.executable, "-S", str(Path(__file__).with_name("watchdog.py")), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)

    def started(self) -> None:
        import ray

        node = getattr(ray._private.worker, "_global_node", None)
        for kind, infos in (getattr(node, "all_processes", None) or {}).items():
            self.processes[kind] = [info.process.pid for info in infos
                                    if getattr(info, "process", None) is not None]
        self.starting = False
        try:  # from now on the watchdog takes only what runs below Ray's processes
            self.watchdog.stdin.write(b"started\n")
            self.watchdog.stdin.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def dead(self) -> list[str]:
        """The vital processes (GCS, raylet) that have exited, described."""
        return [f"the embedded Ray's {VITAL[kind]}, pid {pid}"
                for kind in VITAL for pid in self.processes.get(kind, ()) if not procs.alive(pid)]

    def sweep(self) -> None:
        """Close the watchdog's pipe: it kills what is left; wait for it to say so."""
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError):
            os.close(self.stderr)
        try:
            watchdog.communicate(timeout=SWEEP_TIMEOUT)
        except (subprocess.TimeoutExpired, OSError):
            watchdog.kill()
            watchdog.wait()

    def abandon_start(self, signum: int) -> None:
        """A stop signal during ray.init: say so, stop every process started, exit now."""
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            os.write(self.stderr, f"neurolocal: {signals.describe(signum)}\n".encode())
        self.sweep()
        os._exit(128 + signum)


_embedded: EmbeddedRay | None = None


def begin_embedded() -> EmbeddedRay:
    """Before ray.init starts a Ray here: the watchdog is up."""
    global _embedded
    quiet_token_notice()
    _embedded = EmbeddedRay()
    return _embedded


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled for this Ray")


def quiet_token_notice() -> None:
    """Token authentication stays on (Ray's default for a new local Ray, with its own
    token), without the warning Ray logs about it on every start: a user of the
    embedded Ray can do nothing about it. Joining a cluster says nothing either (a
    missing or wrong token is one line of its own, cluster.check_cluster_access), so
    that any Ray-engine error stays the one line on stderr."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenNotice) for f in logger.filters):
        logger.addFilter(_DropTokenNotice())


@contextlib.contextmanager
def starting_embedded():
    """Around `ray.init` of an embedded Ray."""
    embedded = begin_embedded()
    signals.abandon = embedded.abandon_start
    try:
        with ray_keeps_our_handlers():
            yield embedded
    except BaseException:
        signals.abandon = None
        shutdown_embedded()
        raise
    signals.abandon = None
    embedded.started()
    quiet_driver_logs()


def quiet_driver_logs() -> None:
    """Ray prints what its GCS publishes ("(raylet) WARNING: N PYTHON worker processes
    have been started", a dead raylet's last log lines) on the driver's stdout; a run
    says what matters in its own words, and `--json` output must stay one document."""
    import ray._private.worker as ray_worker

    ray_worker._worker_logs_enabled = False


def check_embedded() -> None:
    """Raise RayProcessDied when the embedded Ray's GCS or raylet has exited."""
    if _embedded is not None and not _embedded.starting:
        dead = _embedded.dead()
        if dead:
            raise RayProcessDied(f"{' and '.join(dead)} died")


def ray_failure(exc: BaseException) -> EngineError | None:
    """The error a run ends with when `exc` came from a dead embedded Ray process; None
    when `exc` is anything else (a stop signal included: it wins)."""
    if isinstance(exc, (KeyboardInterrupt, RayProcessDied)) or signals.received() is not None:
        return None
    try:
        check_embedded()
    except RayProcessDied as died:
        return died
    return None


def healthy() -> bool:
    return _embedded is None or _embedded.starting or not _embedded.dead()


def shutdown_embedded() -> None:
    """End the embedded Ray, if any: `ray.shutdown()` when it is healthy (a dead GCS or
    raylet would make it wait and log), then the watchdog's sweep. Safe to call twice."""
    global _embedded
    embedded = _embedded
    if embedded is None:
        return
    import ray

    try:
        if ray.is_initialized() and healthy():
            ray.shutdown()
    finally:
        embedded.sweep()
        _embedded = None
        if ray.is_initialized():  # what was left of Ray in this process, its processes gone
            with contextlib.suppress(Exception), _quiet_fd(2):
                ray.shutdown()


@contextlib.contextmanager
def _quiet_fd(fd: int):
    """Silence file descriptor `fd` for a moment (Ray's C++ logs write to it directly)."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


