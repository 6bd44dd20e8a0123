"""Tables from a traffic log: totals, per kind, per round, per edge, with latencies."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np

from neurolocal.traffic.log import TrafficLog


def _latency_ms(log: TrafficLog) -> np.ndarray:
    if not len(log):
        return np.array([])
    return (log.columns["t_recv"].astype(float) - log.columns["t_send"].astype(float)) * 1e3


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def summary(log: TrafficLog) -> dict:
    c = log.columns
    latency = _latency_ms(log)
    p50, p99 = _percentiles(latency)
    out = {
        "messages": len(log),
        "bytes": int(np.sum(c["bytes"])) if len(log) else 0,
        "batches": len(set(c["batch"].tolist())),
        "rounds": int(np.max(c["round"])) + 1 if len(log) else 0,
        "writers": [h.get("writer") for h in log.headers],
        "hosts": sorted(set(c["src_host"].tolist()) | set(c["dst_host"].tolist())),
        "latency_ms": {"p50": p50, "p99": p99},
        "settings": log.settings,
        "truncated_files": log.truncated,
        "by_kind": {},
        "by_round": {},
    }
    for key, column in (("by_kind", "kind"), ("by_round", "round")):
        groups: dict = defaultdict(list)
        for i, k in enumerate(c[column].tolist()):
            groups[k].append(i)
        for k in sorted(groups):
            idx = np.array(groups[k])
            out[key][str(k)] = {"messages": len(idx), "bytes": int(np.sum(c["bytes"][idx]))}
    return out


def edges(log: TrafficLog) -> list[dict]:
    """One row per (src, dst, kind): count, bytes and latency, most messages first."""
    c = log.columns
    latency = _latency_ms(log)
    groups: dict = defaultdict(list)
    for i, key in enumerate(zip(c["src"].tolist(), c["dst"].tolist(), c["kind"].tolist())):
        groups[key].append(i)
    rows = []
    for (src, dst, kind), idx in groups.items():
        idx = np.array(idx)
        p50, p99 = _percentiles(latency[idx])
        rows.append({"src": src, "dst": dst, "kind": kind, "messages": len(idx),
                     "bytes": int(np.sum(c["bytes"][idx])), "latency_p50_ms": p50,
                     "latency_p99_ms": p99})
    rows.sort(key=lambda r: (-r["messages"], -r["bytes"], r["src"], r["dst"], r["kind"]))
    return rows


def format_summary(s: dict) -> str:
    lines = [
        f"{s['messages']} messages, {s['bytes']} bytes, {s['batches']} batches, "
        f"{s['rounds']} rounds (round 0 = forward pass)",
        f"writers: {', '.join(map(str, s['writers']))}; hosts: {', '.join(s['hosts'])}",
        f"latency p50 {s['latency_ms']['p50']:.3f} ms, p99 {s['latency_ms']['p99']:.3f} ms",
        "by kind:",
    ]
    lines += [f"  {k:<8} {v['messages']:>10} messages {v['bytes']:>14} bytes"
              for k, v in s["by_kind"].items()]
    lines.append("by round:")
    lines += [f"  {k:>5} {v['messages']:>10} messages {v['bytes']:>14} bytes"
              for k, v in s["by_round"].items()]
    if s["truncated_files"]:
        lines.append(f"truncated (read up to the last whole record): {', '.join(s['truncated_files'])}")
    return "\n".join(lines)


def format_edges_table(rows: list[dict]) -> str:
    if not rows:
        return "no messages"
    width = max(len(f"{r['src']} -> {r['dst']}") for r in rows)
    lines = [f"{'edge':<{width}}  {'kind':<8} {'messages':>9} {'bytes':>12} {'p50 ms':>8} {'p99 ms':>8}"]
    for r in rows:
        lines.append(f"{r['src'] + ' -> ' + r['dst']:<{width}}  {r['kind']:<8} {r['messages']:>9} "
                     f"{r['bytes']:>12} {r['latency_p50_ms']:>8.3f} {r['latency_p99_ms']:>8.3f}")
    return "\n".join(lines)


def format_edges_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    fields = ["src", "dst", "kind", "messages", "bytes", "latency_p50_ms", "latency_p99_ms"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
