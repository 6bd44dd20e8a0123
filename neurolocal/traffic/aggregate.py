"""One streaming pass over a log's chunks: the totals every summary, table and report needs.

Everything here is vectorised per chunk (numpy) and merged into small tables whose
size depends on the graph and the number of batches, never on the number of
records: grouping uses `np.unique`/`np.bincount` on ids, and a hostile value (a
round of 2**62) costs a dictionary entry, not an array of that length. Latency
percentiles come from a log-spaced histogram (`LatencyHistogram`, 0.23 % bins).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from neurolocal.errors import DataError
from neurolocal.traffic.log import SCHEDULER

#: latency histogram: 1 ns .. 1e4 s in milliseconds, BINS_PER_DECADE bins a decade
LOW_MS, DECADES, BINS_PER_DECADE = 1e-6, 13, 1000
#: per-batch totals are kept for this many (run, batch) pairs at most
MAX_BATCHES = 4_000_000


def open_stream(source, stream_class=None):
    """A `LogStream` over a directory, a run directory, a `TrafficLog` or a stream
    (`stream_class`: a LogStream subclass to open paths with)."""
    from neurolocal.traffic.log import TrafficLog
    from neurolocal.traffic.stream import LogStream

    if isinstance(source, LogStream):
        return source
    stream_class = stream_class or LogStream
    if isinstance(source, TrafficLog):
        return stream_class(source.directory)
    return stream_class(Path(source))


class LatencyHistogram:
    """Counts of latencies (ms) in log-spaced bins; bin 0 holds latencies <= LOW_MS
    (including negative ones from clocks of different hosts), the last one the rest."""

    def __init__(self, bins_per_decade: int = BINS_PER_DECADE):
        self.per_decade = bins_per_decade
        self.counts = np.zeros(DECADES * bins_per_decade + 2, np.int64)

    def bins(self, latency_ms: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log10(np.maximum(latency_ms, LOW_MS * 0.5) / LOW_MS) * self.per_decade
        index = np.where(np.isfinite(x), np.floor(x) + 1, 0)
        return np.clip(index, 0, self.counts.size - 1).astype(np.int64)

    def add(self, latency_ms: np.ndarray) -> None:
        self.counts += np.bincount(self.bins(latency_ms), minlength=self.counts.size)

    def percentile(self, q: float) -> float:
        total = int(self.counts.sum())
        if not total:
            return float("nan")
        k = int(np.searchsorted(np.cumsum(self.counts), q / 100 * total, side="left"))
        if k == 0:
            return 0.0
        return float(LOW_MS * 10 ** ((k - 0.5) / self.per_decade))

    def coarse(self, per_decade: int = 10) -> tuple[list[float], list[int]]:
        """(left edges in ms, counts) at a lower resolution, trimmed to the occupied range."""
        step = self.per_decade // per_decade
        body = self.counts[1:-1].reshape(-1, step).sum(axis=1)
        counts = np.concatenate([[self.counts[0]], body, [self.counts[-1]]])
        occupied = np.nonzero(counts)[0]
        if not occupied.size:
            return [], []
        a, b = int(occupied[0]), int(occupied[-1]) + 1
        edges = [0.0] + [LOW_MS * 10 ** (i / per_decade) for i in range(counts.size - 1)]
        return edges[a:b + 1], counts[a:b].tolist()


def _group(keys: np.ndarray, weights: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Unique keys and, per weight, its sum per key (counts under 'messages')."""
    if keys.size and keys.min() >= 0 and keys.max() < (1 << 22):
        counts = np.bincount(keys)
        present = np.nonzero(counts)[0]
        out = {"messages": counts[present]}
        for name, w in weights.items():
            out[name] = np.bincount(keys, weights=w)[present]
        return present, out
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    out = {"messages": counts}
    for name, w in weights.items():
        out[name] = np.bincount(inverse, weights=w, minlength=unique.size)
    return unique, out


class Totals:
    """Summary-level totals of a stream (see `summary`); `edges=True` also per edge."""

    def __init__(self, stream, edges: bool = False, detail: bool = False):
        self.stream = stream
        self.messages = 0
        self.bytes = 0
        self.latency = LatencyHistogram()
        self.by_kind: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.by_round: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        # (run, batch) -> [messages, bytes, control bytes, t_first, t_last, vertex messages];
        # a batch id with control messages only (a snapshot's replies) is not a batch of work
        self.batches: dict[tuple[int, int], list] = {}
        self.hosts: set[int] = set()
        self.scope = {"local": [0, 0], "cross-actor": [0, 0], "cross-host": [0, 0]}
        self.abandoned: set[tuple[int, int]] = set()
        self.want_edges = edges
        self.detail = detail
        self.edges: dict[tuple[int, int, int], list] = {}  # -> [messages, bytes]
        self.edge_latency: dict[tuple[int, int, int], LatencyHistogram] = {}
        self.kind_latency: dict[int, LatencyHistogram] = {}
        self.round_kind: dict[tuple[int, int], int] = defaultdict(int)
        self.vertex_actor: dict[int, int] = {}
        self.vertex_host: dict[int, int] = {}
        self.t_min, self.t_max = np.inf, -np.inf
        self.scheduler = stream.id_of(SCHEDULER)
        self.control = stream.id_of("control")

    def add(self, chunk) -> None:
        c = chunk.columns
        n = len(chunk)
        if not n:
            return
        self.messages += n
        nbytes = c["bytes"]
        self.bytes += int(nbytes.sum())
        latency = (c["t_recv"] - c["t_send"]) * 1e3
        self.latency.add(latency)
        fb = nbytes.astype(np.float64)
        kinds, sums = _group(c["kind"].astype(np.int64), {"bytes": fb})
        for k, m, b in zip(kinds.tolist(), sums["messages"].tolist(), sums["bytes"].tolist()):
            self.by_kind[k][0] += m
            self.by_kind[k][1] += int(b)
        rounds, sums = _group(c["round"], {"bytes": fb})
        for r, m, b in zip(rounds.tolist(), sums["messages"].tolist(), sums["bytes"].tolist()):
            self.by_round[r][0] += m
            self.by_round[r][1] += int(b)
        control = c["kind"] == self.control
        batch_keys = c["batch"]
        ts = c["t_send"]
        order = np.argsort(batch_keys, kind="stable")
        sb = batch_keys[order]
        starts = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
        ends = np.r_[starts[1:], sb.size]
        cb = np.where(control, fb, 0.0)[order]
        cum_b = np.r_[0.0, np.cumsum(fb[order])]
        cum_c = np.r_[0.0, np.cumsum(cb)]
        cum_w = np.r_[0, np.cumsum(~control[order])]
        t_sorted = ts[order]
        t_lo = np.minimum.reduceat(t_sorted, starts)
        t_hi = np.maximum.reduceat(t_sorted, starts)
        for i, (a, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            key = (chunk.run, int(sb[a]))
            row = self.batches.get(key)
            if row is None:
                if len(self.batches) >= MAX_BATCHES:
                    raise DataError(f"more than {MAX_BATCHES} batches: not a log this tool "
                                    "summarises in bounded memory", source=str(chunk.file.path))
                self.batches[key] = [e - a, cum_b[e] - cum_b[a], cum_c[e] - cum_c[a],
                                     float(t_lo[i]), float(t_hi[i]), int(cum_w[e] - cum_w[a])]
            else:
                row[0] += e - a
                row[1] += cum_b[e] - cum_b[a]
                row[2] += cum_c[e] - cum_c[a]
                row[3] = min(row[3], float(t_lo[i]))
                row[4] = max(row[4], float(t_hi[i]))
                row[5] += int(cum_w[e] - cum_w[a])
        self.hosts.update(np.unique(c["src_host"]).tolist())
        self.hosts.update(np.unique(c["dst_host"]).tolist())
        cross_host = c["src_host"] != c["dst_host"]
        cross_actor = ~cross_host & (c["src_actor"] != c["dst_actor"])
        local = ~cross_host & ~cross_actor
        for name, mask in (("local", local), ("cross-actor", cross_actor),
                           ("cross-host", cross_host)):
            self.scope[name][0] += int(mask.sum())
            self.scope[name][1] += int(nbytes[mask].sum())
        marks = control & (c["src"] == self.scheduler) & (c["dst"] == self.scheduler)
        for b in np.unique(c["batch"][marks]).tolist():
            self.abandoned.add((chunk.run, b))
        finite = ts[np.isfinite(ts)]
        if finite.size:
            self.t_min = min(self.t_min, float(finite.min()))
            self.t_max = max(self.t_max, float(finite.max()))
        if self.want_edges:
            self._add_edges(c, fb, latency)

    def _add_edges(self, c, fb, latency) -> None:
        src, dst, kind = (c[k].astype(np.int64) for k in ("src", "dst", "kind"))
        keys = (src << 42) | (dst << 21) | kind
        unique, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, minlength=unique.size)
        sums = np.bincount(inverse, weights=fb, minlength=unique.size)
        per_decade = 50
        for j, key in enumerate(unique.tolist()):
            edge = (key >> 42, (key >> 21) & ((1 << 21) - 1), key & ((1 << 21) - 1))
            row = self.edges.setdefault(edge, [0, 0])
            row[0] += int(counts[j])
            row[1] += int(sums[j])
        # per-edge latency at 50 bins a decade: one bincount over (edge, bin)
        index = {e: i for i, e in enumerate(self.edge_latency)}
        for j, key in enumerate(unique.tolist()):
            edge = (key >> 42, (key >> 21) & ((1 << 21) - 1), key & ((1 << 21) - 1))
            if edge not in index:
                index[edge] = len(self.edge_latency)
                self.edge_latency[edge] = LatencyHistogram(per_decade)
        width = DECADES * per_decade + 2
        probe = LatencyHistogram(per_decade)
        slot = np.array([index[(k >> 42, (k >> 21) & ((1 << 21) - 1), k & ((1 << 21) - 1))]
                         for k in unique.tolist()], np.int64)[inverse]
        flat = np.bincount(slot * width + probe.bins(latency),
                           minlength=len(index) * width).reshape(len(index), width)
        for edge, i in index.items():
            if flat[i].any():
                self.edge_latency[edge].counts += flat[i]
        if self.detail:
            for k in np.unique(kind).tolist():
                hist = self.kind_latency.setdefault(k, LatencyHistogram(100))
                hist.add(latency[kind == k])
            rk, sums = _group((c["round"].clip(0, 1 << 30) << 8) | np.minimum(kind, 255), {})
            for key, m in zip(rk.tolist(), sums["messages"].tolist()):
                self.round_kind[(key >> 8, key & 255)] += m
            for side in ("src", "dst"):
                pairs = np.unique(np.stack([c[side], c[f"{side}_actor"], c[f"{side}_host"]]),
                                  axis=1)
                for v, a, h in pairs.T.tolist():
                    self.vertex_actor.setdefault(v, a)
                    self.vertex_host.setdefault(v, h)

    # --- results ------------------------------------------------------------------------

    def summary(self) -> dict:
        s = self.stream
        name = s.name
        batches = len(self.work_batches())
        control = self.by_kind.get(self.control, [0, 0])[1]
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "bytes_meaning": "payload bytes sent (not the log's size on disk)",
            "batches": batches,
            "runs": len(s.runs),
            "rounds": (max(self.by_round) + 1) if self.by_round else 0,
            "writers": [f.writer for f in s.files],
            "hosts": sorted(name(h) for h in self.hosts),
            "latency_ms": {"p50": self.latency.percentile(50),
                           "p99": self.latency.percentile(99)},
            "settings": s.settings,
            "truncated_files": s.truncated,
            "abandoned_batches": sorted(f"{s.runs[r]}:{b}" for r, b in self.abandoned),
            "scheduler_bytes_per_batch": control / batches if batches else 0.0,
            "scope": {k: {"messages": v[0], "bytes": v[1]} for k, v in self.scope.items()},
            "by_kind": {name(k): {"messages": v[0], "bytes": v[1]}
                        for k, v in sorted(self.by_kind.items(), key=lambda kv: name(kv[0]))},
            "by_round": {str(r): {"messages": v[0], "bytes": v[1]}
                         for r, v in sorted(self.by_round.items())},
        }

    def work_batches(self) -> list[tuple[int, int]]:
        """(run, batch) ids that carried vertex traffic (not only control replies)."""
        return [k for k, row in self.batches.items() if row[5] > 0]

    def edge_rows(self) -> list[dict]:
        name = self.stream.name
        rows = []
        for (src, dst, kind), (m, b) in self.edges.items():
            hist = self.edge_latency[(src, dst, kind)]
            rows.append({"src": name(src), "dst": name(dst), "kind": name(kind), "messages": m,
                         "bytes": b, "latency_p50_ms": hist.percentile(50),
                         "latency_p99_ms": hist.percentile(99)})
        rows.sort(key=lambda r: (-r["messages"], -r["bytes"], r["src"], r["dst"], r["kind"]))
        return rows


def totals(source, edges: bool = False, detail: bool = False) -> Totals:
    stream = open_stream(source)
    result = Totals(stream, edges=edges, detail=detail)
    for chunk in stream.chunks():
        result.add(chunk)
    return result
