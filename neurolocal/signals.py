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

No window (issue 28): `python -m neurolocal` installs the handlers before it imports
anything else (`install_early`, neurolocal/__main__.py), and while a command runs a
keeper thread checks, every KEEP_EVERY seconds, that the kernel still calls Python's
handler for each stop signal: C code that replaced it with its own (Ray's core worker
installs one for SIGTERM) is undone at once, from any phase (Ray start-up, snapshot,
checkpoint write, evaluation), so a signal never meets the default action (exit 143
and no line). Once the command has returned, the stop signals are ignored (`exiting`):
one during the interpreter's teardown no longer kills the process with the default
action; it ends with the command's own exit code.

Nor a swallowed stop: Python runs a signal's handler at the next safe point of the main
thread, which may lie inside a finalizer (a weakref callback, a `__del__`, run by the
garbage collector), and what a finalizer raises is printed ("Exception ignored in ...")
and dropped: the command ran on to exit 0 with a traceback on stderr. `_unraisable`
(our `sys.unraisablehook`) keeps such a `Stopped` from being printed, and the keeper
raises it again in the main thread (`_thread.interrupt_main`) within KEEP_EVERY
seconds, outside the finalizer. Once the command has returned (no keeper), a swallowed
stop stays swallowed, silently, as the ignored signals of the teardown.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
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
_original: dict | None = None  # the handlers before `install_early`, if it ran
_swallowed: int | None = None  # a stop raised inside a finalizer: Python dropped it
_previous_hook = None  # the unraisable hook before ours
#: seconds between the keeper's checks of the kernel's handlers
KEEP_EVERY = 0.02


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


def _unraisable(unraisable) -> None:
    """sys.unraisablehook: a `Stopped` raised inside a finalizer is kept for the keeper
    to raise again (nothing printed); anything else goes to the hook before ours."""
    global _swallowed
    if isinstance(unraisable.exc_value, Stopped):
        _swallowed = unraisable.exc_value.signum
        return
    (_previous_hook or sys.__unraisablehook__)(unraisable)


def _raise_swallowed() -> None:
    """The stop a finalizer swallowed, raised again in the main thread (as the signal
    itself: `_on_signal` runs at its next safe point)."""
    global _swallowed, _received
    signum = _swallowed
    if signum is None:
        return
    _swallowed = None
    _received = None    # the stop has not happened yet: its handler may run again
    _thread.interrupt_main(signum)


def install_handlers() -> None:
    """Our handlers for the stop signals (again: after a library replaced them), except
    those this process was started ignoring (`nohup` ignores SIGHUP, a shell's `&`
    SIGINT): they stay ignored; and our unraisable hook (a stop a finalizer swallowed)."""
    global _installed, _previous_hook
    if threading.current_thread() is not threading.main_thread():
        return  # Python accepts handlers from the main thread only
    for signum in STOP_SIGNALS:
        if signum not in _ignored:
            signal.signal(signum, _on_signal)
    if sys.unraisablehook is not _unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable
    _installed = True


def install_early() -> None:
    """Our handlers before anything else is imported (`python -m neurolocal`): a stop
    signal during the imports is already one line. What was ignored stays ignored."""
    global _original
    if threading.current_thread() is not threading.main_thread():
        return
    _original = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _ignored.clear()
    _ignored.update(s for s, handler in _original.items() if handler == signal.SIG_IGN)
    install_handlers()


def exiting() -> None:
    """The command has returned and the process is exiting (`python -m neurolocal`): the
    stop signals are ignored from now on, so one arriving during the interpreter's
    teardown (which puts the default action back for Python's handlers, and can take a
    second on a loaded machine) no longer kills it: it ends with the command's own exit
    code. SIGKILL still ends it. A Ray still connected is disconnected here, not by
    its atexit hook during the teardown: its C++ core puts SIGTERM's default action
    back as it shuts down, so the signals are ignored again after it."""
    if threading.current_thread() is not threading.main_thread():
        return
    _ignore_stop_signals()
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        with contextlib.suppress(Exception):
            ray.shutdown()
        _ignore_stop_signals()


def _ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


# --- the keeper: the kernel keeps calling our handlers ---------------------------------------


class _SigAction(ctypes.Structure):
    """struct sigaction of Linux's C library: the handler comes first (x86-64, arm64)."""
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]


class Keeper:
    """A daemon thread that puts Python's C-level handler back for every stop signal a
    library's C code replaced (signal.signal cannot: it works from the main thread only,
    and Python does not see the change). `restored` counts what it undid."""

    def __init__(self, signums):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.saved = {}
        for signum in signums:
            action = _SigAction()
            if self.libc.sigaction(int(signum), None, ctypes.byref(action)) == 0:
                self.saved[int(signum)] = action
        self.restored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neurolocal-signal-keeper",
                                        daemon=True)
        self._thread.start()

    def check(self) -> None:
        current = _SigAction()
        for signum, ours in self.saved.items():
            if self.libc.sigaction(signum, None, ctypes.byref(current)) != 0:
                continue
            if current.handler != ours.handler:
                self.libc.sigaction(signum, ctypes.byref(ours), None)
                self.restored += 1

    def _run(self) -> None:
        while not self._stop.wait(KEEP_EVERY):
            self.check()
            _raise_swallowed()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def _keeper() -> Keeper | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return Keeper([s for s in STOP_SIGNALS if s not in _ignored])
    except (OSError, AttributeError):  # no C library to ask: Python's handlers alone
        return None


@contextlib.contextmanager
def stop_on_signals():
    """Around one command: stop signals raise `Stopped`; on the way out an embedded Ray
    still up is ended (nothing it started outlives the command), and the previous
    handlers come back (tests call `main` many times in one process)."""
    global _received, _installed, _swallowed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _original if _original is not None else \
        {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _ignored.clear()
    _ignored.update(s for s, handler in previous.items() if handler == signal.SIG_IGN)
    _received = _swallowed = None
    hook = sys.unraisablehook
    install_handlers()
    keeper = _keeper()
    try:
        yield
    finally:
        try:
            lifecycle = sys.modules.get("neurolocal.engines.ray.lifecycle")
            if lifecycle is not None:  # never imported: no embedded Ray was started
                lifecycle.shutdown_embedded()
        finally:
            if keeper is not None:
                keeper.stop()
            if _original is None:  # in a caller's process (tests): theirs come back
                for signum, handler in previous.items():
                    signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
                sys.unraisablehook = hook
                _installed = False
            else:                  # `python -m neurolocal`: ours stay until it exits
                install_handlers()
            _received = None
