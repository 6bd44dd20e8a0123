"""The embedded Ray's watchdog: a small process that outlives a driver killed with SIGKILL
and then stops every process that driver's Ray started (docs/lifecycle.md).

Run as `python -S watchdog.py DRIVER_PID` (standard library only, no neurolocal package or
Ray import, it loads neurolocal/procs.py by path: it starts in a few milliseconds) by `lifecycle.EmbeddedRay`, in a session of its
own so that a signal to the driver's process group does not reach it, with a pipe from
the driver on its stdin. Only the driver holds the pipe's write end, so the kernel closes
it when the driver exits for any reason, SIGKILL included, and the watchdog reads EOF
at once (no polling for the driver).

Until then it notes, every `INTERVAL` seconds, every process below the driver and below
the processes already noted (a Ray worker whose raylet died is re-parented away from the
driver but stays noted), each with its start time so that a recycled pid is never taken
for it. The processes that were already below the driver when the watchdog started are
not the embedded Ray's and are left alone; once the driver writes `started` (ray.init
has returned: Ray's own processes are all up), only processes below those already
noted are taken, not new children of the driver (a library user's own subprocesses). On EOF it takes one last look, sends SIGKILL to
every noted process still alive (same pid, same start time) and to what runs below it,
waits (at most `GRACE` seconds) until they are gone, then writes `swept N` on stdout and
exits. The driver closes the pipe itself when it shuts its Ray down and waits for that
line: the same sweep ends every run, clean or not.

SIGINT, SIGTERM and SIGHUP are ignored: they are what stops a run, and this process is
what cleans up after it. What it cannot help: a process started and orphaned within
the last `INTERVAL` before the driver died (a Ray worker then exits by itself when it
finds its raylet gone), and a SIGKILL of the watchdog itself together with the driver.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

#: seconds between two looks at the process tree
INTERVAL = 0.2
#: seconds to wait for the killed processes to be gone
GRACE = 10.0


def _procs():
    """neurolocal/procs.py, the one /proc reader: imported when this file is imported as
    part of neurolocal, loaded by its path when it runs as `python -S watchdog.py` (no
    site-packages, no neurolocal package import: procs.py is standard library only)."""
    if __package__:
        from neurolocal import procs
        return procs
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(os.path.dirname(here)), "procs.py")
    spec = importlib.util.spec_from_file_location("neurolocal_procs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


procs = _procs()


def process_table() -> dict:
    """pid -> (state, parent, start time) of every process that has not exited (a zombie
    waits to be reaped: nothing left to stop)."""
    return procs.table(zombies=False)


class Tracker:
    """The processes of one driver's Ray, as (pid, start time) pairs."""

    def __init__(self, driver: int):
        self.driver = driver
        self.me = os.getpid()
        table = process_table()
        self.before = {(p, table[p].started) for p in procs.below([driver], table)}
        self.noted: dict[int, int] = {}
        self.started = False  # Ray is up: new children of the driver are not Ray's

    def look(self) -> None:
        table = process_table()
        started = {pid: entry.started for pid, entry in table.items()}
        alive = [p for p, t in self.noted.items() if started.get(p) == t]
        roots = alive if self.started else [self.driver, *alive]
        for pid in procs.below(roots, table):
            if pid != self.me and (pid, started[pid]) not in self.before:
                self.noted.setdefault(pid, started[pid])

    def sweep(self) -> int:
        """SIGKILL every noted process still alive; wait until they are gone."""
        self.look()
        targets = self.alive()
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(targets)

    def alive(self) -> list[int]:
        table = process_table()
        return [p for p, t in self.noted.items()
                if p in table and table[p].started == t and p != self.driver]


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    tracker = Tracker(int(argv[1]))
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([stdin], [], [], INTERVAL)
        said = os.read(stdin, 4096) if readable else None
        if said == b"":
            break  # the driver closed the pipe, or died
        tracker.look()
        if said and b"started" in said:
            tracker.started = True
    swept = tracker.sweep()
    try:
        sys.stdout.write(f"swept {swept}\n")
        sys.stdout.flush()
    except OSError:  # the driver is gone: nobody reads
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
