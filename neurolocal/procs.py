"""The one reader of /proc: which processes run, below whom, since when (Linux).

Every module that asks the process table uses this one: the embedded Ray's watchdog,
`LocalCluster.stop`, `cluster up|down`, the netns harness, scripts/proctree.py and the
tests. It imports nothing but the standard library and nothing of neurolocal, because
the watchdog loads it by file path from a `python -S` process that must start in
milliseconds (engines/ray/watchdog.py).

Why not psutil: that watchdog runs without site-packages (`-S`), so psutil could not
serve it and a second reader would remain; and what is needed here is five fields of
/proc/PID/stat. A process is *alive* when /proc knows it and it is not a zombie (a
zombie has exited and only waits to be reaped). Its *start time* is /proc/PID/stat
field 22, clock ticks since boot: a (pid, start time) pair never names two processes,
however often the pid is reused.
"""

from __future__ import annotations

import os
from typing import NamedTuple

PROC = "/proc"


class Stat(NamedTuple):
    """Three fields of /proc/PID/stat."""
    state: str        # R, S, D, Z, T, ... (field 3)
    parent: int       # ppid (field 4)
    started: int      # start time in clock ticks since boot (field 22)


def stat(pid: int) -> Stat | None:
    """The process's state, parent and start time; None when /proc has no such process."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            # the command name (field 2) is in parentheses and may hold spaces and ")"
            fields = f.read().rsplit(b")", 1)[1].split()
        return Stat(fields[0].decode(), int(fields[1]), int(fields[19]))
    except (OSError, IndexError, ValueError):  # exited while we looked
        return None


def alive(pid: int) -> bool:
    """The process runs (a zombie has exited)."""
    found = stat(pid)
    return found is not None and found.state != "Z"


def start_time(pid: int) -> int | None:
    """The start time of a running process, None when it has exited (or is a zombie)."""
    found = stat(pid)
    return None if found is None or found.state == "Z" else found.started


def pids() -> list[int]:
    """Every pid /proc lists now."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def table(zombies: bool = True) -> dict[int, Stat]:
    """pid -> Stat for every process (without the zombies unless `zombies`)."""
    found = {}
    for pid in pids():
        entry = stat(pid)
        if entry is not None and (zombies or entry.state != "Z"):
            found[pid] = entry
    return found


def children(processes: dict[int, Stat]) -> dict[int, list[int]]:
    """parent pid -> its children's pids, in `processes`."""
    below: dict[int, list[int]] = {}
    for pid, entry in processes.items():
        below.setdefault(entry.parent, []).append(pid)
    return below


def descendants(pid: int, processes: dict[int, Stat] | None = None) -> list[int]:
    """Every process below `pid` in the process tree, children first-found."""
    return below([pid], processes)


def below(roots, processes: dict[int, Stat] | None = None) -> list[int]:
    """Every process below any of `roots` (from `processes`, else a fresh `table()`)."""
    under = children(table() if processes is None else processes)
    found, frontier, seen = [], list(roots), set(roots)
    while frontier:
        for child in under.get(frontier.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                frontier.append(child)
    return found


def send(pid: int, signum: int) -> None:
    """Signal `pid`, quietly when it has exited already or is not ours to signal."""
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS), 0 when unknown."""
    try:
        with open(f"{PROC}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def catches(pid: int, signum: int) -> bool:
    """The process has a handler of its own for `signum` (SigCgt of /proc/PID/status)."""
    try:
        with open(f"{PROC}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, IndexError, ValueError):
        pass
    return False


def environ(pid: int) -> list[bytes] | None:
    """The process's environment entries (b"NAME=value"), None when unreadable."""
    return _read(pid, "environ", lambda data: data.split(b"\0"))


def open_paths(pid: int) -> list[str]:
    """What the process's open file descriptors point to (paths, or "socket:[...]" and
    the like); [] when unreadable (another user's process, or exited)."""
    try:
        names = os.listdir(f"{PROC}/{pid}/fd")
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append(os.readlink(f"{PROC}/{pid}/fd/{name}"))
        except OSError:   # closed while we looked
            pass
    return found


def cmdline(pid: int) -> str | None:
    """The command line, its words joined by spaces ("" for a zombie or a kernel thread)."""
    return _read(pid, "cmdline",
                 lambda data: data.replace(b"\0", b" ").decode(errors="replace").strip())


def smaps(pid: int) -> str | None:
    """/proc/PID/smaps (every mapping with its memory counters), None when unreadable."""
    return _read(pid, "smaps", lambda data: data.decode(errors="replace"))


def executable(pid: int) -> str | None:
    """The base name of the program the process runs, None when unreadable."""
    try:
        return os.path.basename(os.readlink(f"{PROC}/{pid}/exe"))
    except OSError:
        return None


def cpu_model() -> str | None:
    """The first "model name" of /proc/cpuinfo, None when there is none."""
    try:
        with open(f"{PROC}/cpuinfo", "rb") as f:
            for line in f:
                if line.startswith(b"model name"):
                    return line.split(b":", 1)[1].decode(errors="replace").strip()
    except OSError:
        pass
    return None


def _read(pid: int, name: str, parse):
    try:
        with open(f"{PROC}/{pid}/{name}", "rb") as f:
            return parse(f.read())
    except OSError:
        return None
