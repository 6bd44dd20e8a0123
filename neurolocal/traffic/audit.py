"""Prove locality from a traffic log, and that each edge carried what the algorithm needs.

Locality: a `value` goes from a parent to its child, an `error` (J^T eps) from a
child to its parent, a `partial` (parameter update of a tied group) from a member
vertex to the group's owner, and `control` has the scheduler at one end.

Counts, for a batch relaxed with T synchronous rounds (the log header's settings):
    round 0        one value per edge, parent -> child (the forward pass)
    rounds 1..T    one error per edge whose parent relaxes (inputs are clamped); the
                   output's error is fixed, so it speaks in round 1 only (fixed mode)
    strict mode    also one value per edge whose parent relaxes, each round 1..T
    read_inputs    round T+1: one error per edge whose parent is an input
    tied groups    round T+1: one partial per (member vertex, owner vertex) pair
    training       (header setting "learning"): round T+1, one param message per (owner
                   vertex, member vertex) pair: the owner's new values of the shared
                   tensors after its optimizer step (docs/rounds.md)
Every other count (missing, duplicated or extra messages) is a violation.

An event-driven batch (schedule "event") sends only when an error changed: the
audit then checks that no edge carried more than the event bound (`event_bound`).

Abandoned batches: when an actor dies mid-batch the Ray engine replays the batch
under a fresh batch id and writes a `control` record from the scheduler to itself
(src = dst = "scheduler") carrying the abandoned batch id. The failed attempt's
messages are partial (some were never sent, the dead actor's buffer is lost), so
the audit checks their locality but not their counts; the replay is counted like
any other batch. `AuditResult.abandoned` lists the batch ids skipped that way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from neurolocal.graph import Graph
from neurolocal.traffic.log import SCHEDULER, TrafficLog


@dataclass
class AuditResult:
    messages: int
    violations: list[str] = field(default_factory=list)
    counts_checked: bool = False
    note: str = ""
    abandoned: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def expected_messages(graph: Graph, iterations: int, mode: str = "fixed",
                      read_inputs: bool = False, learning: bool = False) -> Counter:
    """(round, src, dst, kind) -> count that one batch must produce."""
    expected: Counter = Counter()
    for parent, child in graph.edges:
        expected[(0, parent, child, "value")] += 1
        if graph.is_input(parent):
            if read_inputs:
                expected[(iterations + 1, child, parent, "error")] += 1
            continue
        for round_ in range(1, iterations + 1):
            if child != graph.output or round_ == 1 or mode == "strict":
                expected[(round_, child, parent, "error")] += 1
            if mode == "strict":
                expected[(round_, parent, child, "value")] += 1
    for member, owner in tied_partners(graph):
        expected[(iterations + 1, member, owner, "partial")] += 1
        if learning:
            expected[(iterations + 1, owner, member, "param")] += 1
    return expected


def path_lengths(graph: Graph) -> dict[str, set[int]]:
    """Lengths, in edges, of every path from each vertex down to the output."""
    lengths: dict[str, set[int]] = {n: set() for n in graph.order}
    lengths[graph.output] = {0}
    for n in reversed(graph.order):
        for c in graph.children[n]:
            lengths[n].update(k + 1 for k in lengths[c])
    return lengths


def event_bound(graph: Graph, iterations: int, eta: float, read_inputs: bool,
                learning: bool = False) -> Counter:
    """Most messages an event-driven batch may send per (round, src, dst, kind).

    With eta = 1 an error changes only at the updates whose number is the length of
    some path from the vertex to the output, so child c may speak in round r only if
    r - 1 is such a length. With eta != 1 every error moves every round (Jacobi's count).
    """
    if eta != 1.0:
        return expected_messages(graph, iterations, "fixed", read_inputs, learning)
    lengths = path_lengths(graph)
    bound: Counter = Counter()
    for parent, child in graph.edges:
        bound[(0, parent, child, "value")] += 1
        if graph.is_input(parent):
            if read_inputs:
                bound[(iterations + 1, child, parent, "error")] += 1
            continue
        for k in lengths[child]:
            if k + 1 <= iterations:
                bound[(k + 1, child, parent, "error")] += 1
    for member, owner in tied_partners(graph):
        bound[(iterations + 1, member, owner, "partial")] += 1
        if learning:
            bound[(iterations + 1, owner, member, "param")] += 1
    return bound


def tied_partners(graph: Graph) -> set[tuple[str, str]]:
    """(member vertex, owner vertex) pairs: the only routes a parameter partial may take."""
    return {(vertex, group.owner[0]) for group in graph.tied for vertex, _ in group.members
            if vertex != group.owner[0]}


def audit(log: TrafficLog, graph: Graph, max_listed: int = 20) -> AuditResult:
    c = log.columns
    edges = set(graph.edges)
    partners = tied_partners(graph)
    result = AuditResult(messages=len(log))
    by_batch: dict[int, Counter] = {}
    abandoned: set[int] = set()
    for i in range(len(log)):
        src, dst, kind = c["src"][i], c["dst"][i], c["kind"][i]
        batch, round_ = int(c["batch"][i]), int(c["round"][i])
        problem = None
        if kind == "value" and (src, dst) not in edges:
            problem = "a value between vertices that are not parent -> child"
        elif kind == "error" and (dst, src) not in edges:
            problem = "an error between vertices that are not child -> parent"
        elif kind == "partial" and (src, dst) not in partners:
            problem = "a parameter partial outside a tied group (member -> owner)"
        elif kind == "param" and (dst, src) not in partners:
            problem = "parameter values outside a tied group (owner -> member)"
        elif kind == "control" and SCHEDULER not in (src, dst):
            problem = "control traffic that does not involve the scheduler"
        elif kind not in ("value", "error", "partial", "param", "control"):
            problem = f"unknown kind {kind!r}"
        if problem:
            result.violations.append(f"batch {batch} round {round_}: {src} -> {dst} ({kind}): {problem}")
        if kind in ("value", "error", "partial", "param"):
            by_batch.setdefault(batch, Counter())[(round_, src, dst, kind)] += 1
        elif kind == "control" and src == dst == SCHEDULER:
            abandoned.add(batch)
    result.abandoned = sorted(abandoned)
    by_batch = {b: seen for b, seen in by_batch.items() if b not in abandoned}

    settings = log.settings
    schedule = settings.get("schedule", "jacobi")
    if schedule == "event" and "iterations" in settings:
        bound = event_bound(graph, int(settings["iterations"]), float(settings.get("eta", 1.0)),
                            bool(settings.get("read_inputs", False)),
                            bool(settings.get("learning", False)))
        result.counts_checked = True
        for batch, seen in sorted(by_batch.items()):
            for key in sorted(seen, key=str):
                if seen[key] > bound[key]:
                    round_, src, dst, kind = key
                    result.violations.append(
                        f"batch {batch} round {round_}: {src} -> {dst} ({kind}): {seen[key]} "
                        f"messages, the event schedule sends at most {bound[key]}")
    elif schedule != "jacobi" or "iterations" not in settings:
        result.note = (f"counts not checked: schedule {schedule!r} has no fixed per-round count")
    else:
        expected = expected_messages(graph, int(settings["iterations"]),
                                     settings.get("mode", "fixed"),
                                     bool(settings.get("read_inputs", False)),
                                     bool(settings.get("learning", False)))
        result.counts_checked = True
        for batch, seen in sorted(by_batch.items()):
            for key in sorted(set(expected) | set(seen), key=str):
                if seen[key] != expected[key]:
                    round_, src, dst, kind = key
                    result.violations.append(
                        f"batch {batch} round {round_}: {src} -> {dst} ({kind}): "
                        f"{seen[key]} messages, the algorithm sends {expected[key]}")
    if len(result.violations) > max_listed:
        extra = len(result.violations) - max_listed
        result.violations = result.violations[:max_listed] + [f"... and {extra} more"]
    return result
