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

Batches are told apart by (run, batch): a resumed run numbers its batches from 0
again under a new run id. A run whose last batch has no energy record while its
other batches have one ended inside that batch (an actor timeout): the batches
after its last energy record are "unfinished" and, like an abandoned one, checked
for locality only.

Bounded memory, whatever the log's size: records stream through in chunks; the
per-batch count check keeps, per (run, batch), the number of messages and the
sum of a 64-bit hash of each (round, src, dst, kind) — a multiset fingerprint
equal to the sum over the expected messages exactly when the counts agree (but
for a 2**-64 chance). Failing batches (the first few) are read again to list the
exact differences. The event schedule's "at most" bound is checked per message
(every key must be allowed) and, for duplicates, within each writer's stream
over a window of its two most recent batches. The header's settings are never
trusted to size anything: the expected count per batch is worked out in closed
form first and enumerated only when the log holds a batch that large.

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

import numpy as np

from neurolocal.errors import DataError
from neurolocal.graph import Graph
from neurolocal.traffic.aggregate import open_stream
from neurolocal.traffic.log import SCHEDULER


@dataclass
class AuditResult:
    messages: int
    violations: list[str] = field(default_factory=list)
    counts_checked: bool = False
    note: str = ""
    abandoned: list[int] = field(default_factory=list)
    unfinished: list[int] = field(default_factory=list)

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
        if child == graph.output and mode != "strict":  # the fixed output speaks once
            if iterations >= 1:
                expected[(1, child, parent, "error")] += 1
            continue
        for round_ in range(1, iterations + 1):
            expected[(round_, child, parent, "error")] += 1
            if mode == "strict":
                expected[(round_, parent, child, "value")] += 1
    for member, owner in tied_partners(graph):
        expected[(iterations + 1, member, owner, "partial")] += 1
        if learning:
            expected[(iterations + 1, owner, member, "param")] += 1
    return expected


def expected_count(graph: Graph, iterations: int, mode: str = "fixed",
                   read_inputs: bool = False, learning: bool = False) -> int:
    """len(expected_messages(...)) in closed form: nothing is enumerated."""
    count = 0
    for parent, child in graph.edges:
        count += 1
        if graph.is_input(parent):
            count += int(read_inputs)
        elif mode == "strict":
            count += 2 * iterations
        elif child == graph.output:
            count += min(iterations, 1)
        else:
            count += iterations
    return count + len(tied_partners(graph)) * (2 if learning else 1)


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


KIND_CODE = {"value": 0, "error": 1, "partial": 2, "param": 3}
MESSAGE_KINDS = tuple(KIND_CODE)
LISTED_BATCHES = 3  # failing batches read again to list their differences
MAX_ENUMERATED = 4_000_000  # expected keys of one batch enumerated at most


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64: a well-spread 64-bit hash of 64-bit keys (wrapping arithmetic)."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key(round_, kind, src, dst, nv: int) -> np.ndarray:
    """One int64 per message key (round, kind, src vertex, dst vertex); wraps harmlessly."""
    with np.errstate(over="ignore"):
        return ((np.asarray(round_, np.int64) * 4 + kind) * nv + src) * nv + dst


class _Settings:
    """A run's header settings, checked for type (a damaged header is one line)."""

    def __init__(self, settings: dict, source: str):
        def get(name, kinds, default):
            value = settings.get(name, default)
            if not isinstance(value, kinds) or (kinds is not bool and isinstance(value, bool)):
                raise DataError(f"header settings.{name} is {value!r:.40}, not a "
                                f"{getattr(kinds, '__name__', 'number')}", source=source)
            return value

        self.schedule = get("schedule", str, "jacobi")
        self.mode = get("mode", str, "fixed")
        self.read_inputs = get("read_inputs", bool, False)
        self.learning = get("learning", bool, False)
        self.eta = float(get("eta", (int, float), 1.0))
        self.iterations = get("iterations", int, -1) if "iterations" in settings else None
        if self.iterations is not None and self.iterations < 0:
            raise DataError(f"header settings.iterations is {self.iterations}, not >= 0",
                            source=source)


def _check_graph(stream, graph: Graph) -> None:
    """One line when the log was written by another graph than the topology given."""
    named = {f.graph for f in stream.files if f.graph}
    if named and graph.name not in named:
        raise DataError(f"the log's graph is {min(named)!r}, not the topology given "
                        f"({graph.name!r}); audit it against the topology that wrote it",
                        source=str(stream.directory))


def audit(log, graph: Graph, max_listed: int = 20) -> AuditResult:
    """Audit a log (directory, run directory, `TrafficLog` or stream) against `graph`."""
    stream = open_stream(log)
    _check_graph(stream, graph)
    order = list(graph.order)
    nv = len(order) + 1  # index nv - 1: a name that is no vertex (scheduler, actors, junk)
    other = nv - 1
    vindex = {n: i for i, n in enumerate(order)}
    edges = np.unique([vindex[p] * nv + vindex[c] for p, c in graph.edges] or [-1])
    partners = np.unique([vindex[m] * nv + vindex[o] for m, o in tied_partners(graph)] or [-1])
    scheduler = stream.id_of(SCHEDULER)
    kind_ids = {k: stream.id_of(k) for k in ("value", "error", "partial", "param", "control")}
    settings = [_Settings(stream.settings_of_run(r), stream.source_of_run(r))
                for r in range(len(stream.runs))]
    allowed = [_event_allowed(s, graph, vindex, nv) for s in settings]
    result = AuditResult(messages=0)
    violations: list[str] = []
    extra = 0
    batches: dict[tuple[int, int], list] = {}  # (run, batch) -> [count, hash sum]
    abandoned: set[tuple[int, int]] = set()
    max_round = -1
    event_keys: dict[tuple, dict[int, set]] = {}  # per file: batch -> keys (2 latest)
    lookup = np.zeros(0, np.int64)
    names = stream.name

    def note(text: str) -> None:
        nonlocal extra
        if len(violations) < max_listed:
            violations.append(text)
        else:
            extra += 1

    for chunk in stream.chunks():
        c = chunk.columns
        n = len(chunk)
        result.messages += n
        if len(stream.strings) > lookup.size:  # map name ids to vertex indices
            lookup = np.array([vindex.get(names(i), other) for i in range(len(stream.strings))],
                              np.int64)
        src, dst = lookup[c["src"]], lookup[c["dst"]]
        kind = c["kind"]
        is_value, is_error = kind == kind_ids["value"], kind == kind_ids["error"]
        is_partial, is_control = kind == kind_ids["partial"], kind == kind_ids["control"]
        is_param = kind == kind_ids["param"]
        bad = np.zeros(n, bool)
        problems = (
            (is_value & ~np.isin(src * nv + dst, edges),
             "a value between vertices that are not parent -> child"),
            (is_error & ~np.isin(dst * nv + src, edges),
             "an error between vertices that are not child -> parent"),
            (is_partial & ~np.isin(src * nv + dst, partners),
             "a parameter partial outside a tied group (member -> owner)"),
            (is_param & ~np.isin(dst * nv + src, partners),
             "parameter values outside a tied group (owner -> member)"),
            (is_control & (c["src"] != scheduler) & (c["dst"] != scheduler),
             "control traffic that does not involve the scheduler"),
            (~(is_value | is_error | is_partial | is_param | is_control), None),
        )
        for mask, text in problems:
            if mask.any():
                bad |= mask
                for i in np.flatnonzero(mask)[:max_listed - len(violations) + 1].tolist():
                    what = text or f"unknown kind {names(int(kind[i]))!r}"
                    note(f"batch {int(c['batch'][i])} round {int(c['round'][i])}: "
                         f"{names(int(c['src'][i]))} -> {names(int(c['dst'][i]))} "
                         f"({names(int(kind[i]))}): {what}")
                extra += max(0, int(mask.sum()) - max_listed)
        marks = is_control & (c["src"] == scheduler) & (c["dst"] == scheduler)
        abandoned.update((chunk.run, b) for b in np.unique(c["batch"][marks]).tolist())
        counted = (is_value | is_error | is_partial | is_param) & ~bad
        if not counted.any():
            continue
        rounds = c["round"][counted]
        max_round = max(max_round, int(rounds.max()))
        kcode = np.select([is_value, is_error, is_partial], [0, 1, 2], 3)[counted]
        keys = _key(rounds, kcode, src[counted], dst[counted], nv)
        batch = c["batch"][counted]
        if allowed[chunk.run] is not None:
            over = ~np.isin(keys, allowed[chunk.run])
            for i in np.flatnonzero(over)[:max_listed].tolist():
                j = np.flatnonzero(counted)[i]
                note(f"batch {int(batch[i])} round {int(rounds[i])}: {names(int(c['src'][j]))}"
                     f" -> {names(int(c['dst'][j]))} ({names(int(kind[j]))}): a message the "
                     "event schedule never sends (its error cannot change in this round)")
            extra += max(0, int(over.sum()) - max_listed)
        hashes = _mix(keys)
        order_ = np.argsort(batch, kind="stable")
        sb, sh = batch[order_], hashes[order_]
        starts = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
        sums = np.add.reduceat(sh, starts)
        sizes = np.diff(np.r_[starts, sb.size])
        for b, size, h in zip(sb[starts].tolist(), sizes.tolist(), sums.tolist()):
            row = batches.setdefault((chunk.run, b), [0, 0])
            row[0] += size
            row[1] = (row[1] + h) & 0xFFFFFFFFFFFFFFFF
        if settings[chunk.run].schedule == "event":
            _event_duplicates(event_keys.setdefault((str(chunk.file.path),), {}),
                              sb, keys[order_], starts, chunk, note)

    result.violations = violations
    result.abandoned = sorted(b for _, b in abandoned)
    unfinished = unfinished_batches(stream.energy, batches, abandoned)
    result.unfinished = sorted(b for _, b in unfinished)
    skip = abandoned | unfinished
    failing: list[tuple[int, int]] = []
    notes = []
    for run, s in enumerate(settings):
        run_batches = {b: v for (r, b), v in batches.items() if r == run and (r, b) not in skip}
        checked, text = _check_counts(s, graph, run_batches, vindex, nv, max_round, run,
                                      failing, note, stream.runs[run], len(settings) > 1)
        result.counts_checked |= checked
        if text and text not in notes:
            notes.append(text)
    result.note = "; ".join(notes)
    if failing:
        _list_differences(stream, graph, settings, failing[:LISTED_BATCHES], vindex, note,
                          len(settings) > 1)
    if extra:
        violations.append(f"... and {extra} more")
    return result


def unfinished_batches(energy: dict, batches, abandoned) -> set[tuple[int, int]]:
    """(run, batch) ids after the last batch with an energy record, in runs that write
    energy records: the batches a run was inside when it ended (an actor timeout ends
    it; batches may be in flight several at a time)."""
    last: dict[int, int] = {}
    for run, batch in energy:
        last[run] = max(last.get(run, batch), batch)
    return {(run, batch) for run, batch in batches
            if run in last and batch > last[run] and (run, batch) not in abandoned}


def _event_allowed(s: _Settings, graph, vindex, nv):
    """Keys an event-driven batch may carry (each at most once), or None."""
    if s.schedule != "event" or s.iterations is None:
        return None
    if s.eta != 1.0 and expected_count(graph, s.iterations, "fixed", s.read_inputs,
                                       s.learning) > MAX_ENUMERATED:
        return None
    bound = event_bound(graph, s.iterations, s.eta, s.read_inputs, s.learning)
    keys = [(r, KIND_CODE[k], vindex[a], vindex[b]) for (r, a, b, k) in bound]
    if not keys:
        return np.zeros(0, np.int64)
    a = np.array(keys, np.int64)
    return np.unique(_key(a[:, 0], a[:, 1], a[:, 2], a[:, 3], nv))


def _event_duplicates(window: dict, sb, keys, starts, chunk, note) -> None:
    """A message key twice in one batch of one writer's stream (the event bound is 1)."""
    ends = np.r_[starts[1:], sb.size]
    for a, e in zip(starts.tolist(), ends.tolist()):
        b = int(sb[a])
        seen = window.setdefault(b, set())
        for k in keys[a:e].tolist():
            if k in seen:
                note(f"batch {b}: a message sent twice in one batch (key {k}), the event "
                     "schedule sends each at most once")
            seen.add(k)
        for old in sorted(window)[:-2]:
            del window[old]


def _expected_hash(expected: Counter, vindex: dict, nv: int) -> tuple[int, int]:
    keys = [(r, KIND_CODE[k], vindex[s], vindex[d]) for (r, s, d, k), m in expected.items()
            for _ in range(m)]
    if not keys:
        return 0, 0
    a = np.array(keys, np.int64)
    h = _mix(_key(a[:, 0], a[:, 1], a[:, 2], a[:, 3], nv))
    return len(keys), int(h.sum(dtype=np.uint64))


def _check_counts(s: _Settings, graph, run_batches: dict, vindex, nv, max_round, run,
                  failing, note, run_name, several) -> tuple[bool, str]:
    if s.iterations is None:
        return False, "counts not checked: the header gives no iterations"
    if s.schedule not in ("jacobi", "event"):
        return False, f"counts not checked: schedule {s.schedule!r} has no fixed per-round count"
    if not run_batches:
        return True, ""
    if s.schedule == "event":
        return True, _check_event(s, graph, run_batches, vindex, nv, note)
    largest = max(v[0] for v in run_batches.values())
    size = expected_count(graph, s.iterations, s.mode, s.read_inputs, s.learning)
    if size > largest:
        note(f"{'run ' + run_name + ': ' if several else ''}the header's settings "
             f"(iterations {s.iterations}, mode {s.mode}) imply {size} messages a batch; "
             f"the largest batch in the log has {largest}")
        return True, ""
    if size > MAX_ENUMERATED:
        return False, f"counts not checked: {size} messages a batch is more than the audit " \
                      f"enumerates ({MAX_ENUMERATED})"
    expected = expected_messages(graph, s.iterations, s.mode, s.read_inputs, s.learning)
    count, fingerprint = _expected_hash(expected, vindex, nv)
    for b, (seen, h) in sorted(run_batches.items()):
        if seen != count or h != fingerprint:
            failing.append((run, b))
    return True, ""


def _check_event(s: _Settings, graph, run_batches, vindex, nv, note) -> str:
    """Every message was checked against the bound as it streamed by; here the totals."""
    if s.eta != 1.0 and expected_count(graph, s.iterations, "fixed", s.read_inputs,
                                       s.learning) > MAX_ENUMERATED:
        return "event counts not checked: the bound is beyond what the audit enumerates"
    limit = sum(event_bound(graph, s.iterations, s.eta, s.read_inputs, s.learning).values())
    for b, (seen, _) in sorted(run_batches.items()):
        if seen > limit:
            note(f"batch {b}: {seen} messages, the event schedule sends at most {limit}")
    return ""


def _list_differences(stream, graph, settings, failing, vindex, note, several) -> None:
    """Read the log again for a few failing batches and list what differs, key by key."""
    wanted = set(failing)
    seen: dict[tuple[int, int], Counter] = {k: Counter() for k in wanted}
    names = stream.name
    for chunk in stream.chunks():
        c = chunk.columns
        batch_ids = {b for r, b in wanted if r == chunk.run}
        if not batch_ids:
            continue
        rows = np.flatnonzero(np.isin(c["batch"], list(batch_ids)))
        for i in rows.tolist():
            kind = names(int(c["kind"][i]))
            if kind in KIND_CODE:
                seen[(chunk.run, int(c["batch"][i]))][
                    (int(c["round"][i]), names(int(c["src"][i])), names(int(c["dst"][i])),
                     kind)] += 1
    for run, b in failing:
        s = settings[run]
        expected = expected_messages(graph, s.iterations, s.mode, s.read_inputs, s.learning)
        got = seen[(run, b)]
        label = f"run {stream.runs[run]} batch {b}" if several else f"batch {b}"
        for key in sorted(set(expected) | set(got), key=str):
            if got[key] != expected[key]:
                round_, src, dst, kind = key
                note(f"{label} round {round_}: {src} -> {dst} ({kind}): {got[key]} messages, "
                     f"the algorithm sends {expected[key]}")
