"""Schedules as policies of the round machine (docs/rounds.md §3): the total rounds R,
in which update rounds each vertex relaxes, and at which tags it speaks to its relaxing
parents. Every shard of a batch builds the same `Schedule` from the graph and the
settings alone; `check_schedule` refuses one the machine cannot run in a mode."""

from __future__ import annotations

from typing import Sequence

from neurolocal.graph import Graph

#: round tag of a message valid in every round (the fixed-mode output's error)
CONSTANT = -1

SCHEDULES = ("jacobi", "event", "backward-in-time", "ipc")
MODES = ("fixed", "strict")


def check_schedule(schedule: str, mode: str, staleness: int = 0, graph: Graph | None = None):
    """Refuse a schedule the machine cannot run in this mode (ConfigError, no flag names)."""
    from neurolocal.errors import ConfigError

    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}",
                          field="schedule")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if schedule in ("event", "backward-in-time") and mode != "fixed":
        raise ConfigError(f"the {schedule} schedule needs fixed predictions (fixed mode): in "
                          "strict mode every value moves every round", field="schedule")
    if schedule == "ipc" and mode != "strict":
        raise ConfigError("the ipc schedule re-predicts after every weight step: it needs "
                          "strict mode", field="schedule")
    if staleness and (schedule != "jacobi" or mode != "fixed"):
        raise ConfigError("asynchronous rounds (staleness > 0) run the jacobi schedule in "
                          "fixed mode only", field="staleness")
    if graph is not None:
        if schedule == "ipc" and graph.tied:
            raise ConfigError("the ipc schedule does not support tied parameters yet (a weight "
                              "step every round would need the group's sum every round)",
                              field="schedule")
        if schedule == "backward-in-time":
            from neurolocal.engines.timewise import time_blocks

            time_blocks(graph)  # raises for a graph that is not unrolled


def path_lengths(graph: Graph) -> dict[str, frozenset[int]]:
    """Lengths, in edges, of every path from each vertex down to the output."""
    lengths: dict[str, set[int]] = {n: set() for n in graph.order}
    lengths[graph.output] = {0}
    for n in reversed(graph.order):
        for c in graph.children[n]:
            lengths[n].update(k + 1 for k in lengths[c])
    return {n: frozenset(v) for n, v in lengths.items()}


class Schedule:
    """A schedule as a policy: the total rounds R, in which update rounds each vertex
    relaxes, and at which tags it speaks to its relaxing parents. Every shard of a
    batch builds the same one from the graph and the settings alone."""

    def __init__(self, graph: Graph, settings, mode: str):
        self.graph = graph
        self.name = settings.schedule
        self.strict = mode == "strict"
        self.eta = settings.eta
        self.staleness = settings.staleness
        self.ipc = self.name == "ipc"
        self._ranges: dict[str, tuple[tuple[int, int], ...]] = {}
        self._needed: dict[tuple, int | None] = {}
        self._block: dict[str, tuple[int, int]] = {}
        if self.name == "backward-in-time":
            from neurolocal.engines.timewise import time_blocks

            k = settings.iterations
            blocks = time_blocks(graph)
            for b, block in enumerate(blocks):
                for n in block:
                    self._block[n] = (b * k, (b + 1) * k)   # relaxes in updates start+1..stop
            self.rounds = k * len(blocks)
        else:
            self.rounds = settings.iterations
        self._lengths = path_lengths(graph) if self.name == "event" else None

    def constant_output(self) -> bool:
        """The fixed-mode output's error never changes: it speaks once, for every round."""
        return not self.strict

    def ranges(self, vertex: str) -> tuple[tuple[int, int], ...]:
        """The tags at which `vertex` speaks to its relaxing parents, as [start, stop) ranges."""
        found = self._ranges.get(vertex)
        if found is not None:
            return found
        R = self.rounds
        if vertex == self.graph.output and self.constant_output():
            found = ((CONSTANT, CONSTANT + 1),)
        elif self.name == "event":
            lengths = self._lengths[vertex]
            if self.eta == 1.0:
                found = tuple((t, t + 1) for t in sorted(lengths) if t < R)
            else:
                found = ((min(lengths), R),) if lengths and min(lengths) < R else ()
        elif self.name == "backward-in-time" and vertex in self._block:
            start, stop = self._block[vertex]   # its block's rounds, and once when it ends
            found = ((start, min(stop + 1, R)),) if start < R else ()
        else:
            found = ((0, R),)
        self._ranges[vertex] = found
        return found

    def speaks(self, vertex: str, tag: int) -> bool:
        return any(a <= tag < b for a, b in self.ranges(vertex))

    def needed(self, child: str, update: int) -> int | None:
        """The tag of `child`'s message that update `update` of a parent reads: its newest
        tag <= update - 1 (CONSTANT for a constant output; None: it has not spoken).
        A function of the child's speaking ranges and the update: computed once per pair
        (most vertices share their ranges; a 10,000-vertex plan asks 300,000 times)."""
        ranges = self.ranges(child)
        key = (ranges, update)
        if key in self._needed:
            return self._needed[key]
        found = None
        for a, b in reversed(ranges):
            if a == CONSTANT:
                found = CONSTANT
                break
            if a <= update - 1:
                found = min(b - 1, update - 1)
                break
        self._needed[key] = found
        return found

    def first_read(self, child: str) -> int | None:
        """The first update whose `needed(child, update)` is not None: from there on every
        update reads the child (its newest tag only grows); None: none within R."""
        ranges = self.ranges(child)
        if not ranges:
            return None
        start = min(a for a, _ in ranges)
        return 1 if start == CONSTANT else start + 1

    def read_at(self, children: Sequence[str], update: int) -> tuple[str, ...]:
        """The children whose feedback update `update` reads (those that have spoken by
        then), in the given (the graph's) order."""
        first = self.first_read
        return tuple(c for c in children if (f := first(c)) is not None and f <= update)

    def tags(self, vertex: str) -> range | tuple:
        """The tags 0..R-1 at which `vertex` speaks to its relaxing parents (none for a
        constant output: it spoke once, at the forward pass)."""
        found = []
        for a, b in self.ranges(vertex):
            if a != CONSTANT:
                found.extend(range(max(a, 0), min(b, self.rounds)))
        return tuple(found)

    def relaxes(self, vertex: str, update: int, children: Sequence[str]) -> bool:
        """Does a hidden vertex move its value in update `update`?"""
        if self.name == "backward-in-time":
            block = self._block.get(vertex)
            return block is not None and block[0] < update <= block[1]
        if self.name == "event" and self.eta == 1.0:   # only when a child spoke last round
            for c in children:
                tag = self.needed(c, update)
                if tag == update - 1 or (tag == CONSTANT and update == 1):
                    return True
            return False
        return True
