"""Stop signals (docs/lifecycle.md): SIGINT, SIGTERM and SIGHUP stop a command the same way.

`stop_on_signals()`, around every command in `cli.main`, turns each of them into
`Stopped`, a KeyboardInterrupt raised in the main thread at the next safe point (Ray's
blocking calls check for signals between their waits), so every `finally` and `close()`
runs: the actors are killed, an embedded Ray is shut down, the last epoch's checkpoint
stays. The command then ends with one line and exit 128 + the signal's number (SIGINT
130, SIGTERM 143, SIGHUP 129). A second signal while stopping is ignored: the stop is
already bounded. This module imports no Ray: every command, local ones too, has it.

While a step that cannot be unwound runs (Ray's start-up, see
neurolocal/engines/ray/lifecycle.py), `abandon` holds a function that ends the process
itself; the first stop signal calls it instead of raising.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable

#: the signals that stop a command, and how the command says so
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
                signal.SIGHUP: "hung up (SIGHUP)"}

#: set while a step that cannot be unwound runs: called with the signal, never returns
abandon: Callable[[int], None] | None = None

_received: int | None = None
_installed = False
_ignored: set[int] = set()  # stop signals ignored when the command started


class Stopped(KeyboardInterrupt):
    """A stop signal arrived: the command ends with exit 128 + `signum`."""

    def __init__(self, signum: int):
        super().__init__(describe(signum))
        self.signum = signum
        self.exit_code = 128 + signum


def describe(signum: int) -> str:
    return STOP_SIGNALS.get(signum, f"stopped by signal {signum}")


def received() -> int | None:
    """The stop signal this command received, if any."""
    return _received


def installed() -> bool:
    return _installed


def _on_signal(signum, frame):
    global _received
    if _received is not None:
        return  # already stopping: the stop is bounded, a second signal changes nothing
    _received = signum
    if abandon is not None:
        abandon(signum)  # never returns
    raise Stopped(signum)


def install_handlers() -> None:
    """Our handlers for the stop signals (again: after a library replaced them), except
    those this process was started ignoring (`nohup` ignores SIGHUP, a shell's `&`
    SIGINT): they stay ignored."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return  # Python accepts handlers from the main thread only
    for signum in STOP_SIGNALS:
        if signum not in _ignored:
            signal.signal(signum, _on_signal)
    _installed = True


@contextlib.contextmanager
def stop_on_signals():
    """Around one command: stop signals raise `Stopped`; on the way out an embedded Ray
    still up is ended (nothing it started outlives the command), and the previous
    handlers come back (tests call `main` many times in one process)."""
    global _received, _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _ignored.clear()
    _ignored.update(s for s, handler in previous.items() if handler == signal.SIG_IGN)
    _received = None
    install_handlers()
    try:
        yield
    finally:
        try:
            lifecycle = sys.modules.get("neurolocal.engines.ray.lifecycle")
            if lifecycle is not None:  # never imported: no embedded Ray was started
                lifecycle.shutdown_embedded()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            _installed = False
            _received = None
