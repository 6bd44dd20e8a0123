"""Tables from a traffic log: totals, per kind, per round, per edge, with latencies.

Both functions stream the log (any size, bounded memory) through
`aggregate.Totals`; they take a log directory, a run directory, or a `TrafficLog`.
"""

from __future__ import annotations

import csv
import io

from neurolocal.traffic.aggregate import totals


def summary(source) -> dict:
    return totals(source).summary()


def edges(source) -> list[dict]:
    """One row per (src, dst, kind): count, bytes and latency, most messages first."""
    return totals(source, edges=True).edge_rows()


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{int(n)} bytes"


def format_summary(s: dict) -> str:
    batches = max(s["batches"], 1)
    lines = [
        f"{s['messages']} messages, {s['bytes']} bytes sent (payload, not the log's size), "
        f"{s['batches']} batches in {s['runs']} run(s), {s['rounds']} rounds "
        "(round 0 = forward pass)",
        f"writers: {', '.join(map(str, s['writers']))}; hosts: {', '.join(s['hosts'])}",
        f"latency p50 {s['latency_ms']['p50']:.3f} ms, p99 {s['latency_ms']['p99']:.3f} ms",
        f"scheduler (control) bytes per batch: {s['scheduler_bytes_per_batch']:.0f}",
        "scope: " + ", ".join(f"{k} {v['messages']} messages ({_mb(v['bytes'])})"
                              for k, v in s["scope"].items()),
        "by kind:",
    ]
    shards = _partition_line(s.get("settings") or {})
    if shards:
        lines.insert(4, shards)
    lines += [f"  {k:<8} {v['messages']:>10} messages {v['bytes']:>14} bytes "
              f"{v['bytes'] / batches:>12.0f} bytes/batch"
              for k, v in s["by_kind"].items()]
    lines.append("by round:")
    lines += [f"  {k:>5} {v['messages']:>10} messages {v['bytes']:>14} bytes"
              for k, v in s["by_round"].items()]
    if s["abandoned_batches"]:
        shown = ", ".join(s["abandoned_batches"][:10])
        more = len(s["abandoned_batches"]) - 10
        lines.append(f"abandoned (replayed) batches, run:batch: {shown}"
                     + (f" and {more} more" if more > 0 else ""))
    if s["truncated_files"]:
        lines.append(f"truncated (read up to the last whole record): {', '.join(s['truncated_files'])}")
    return "\n".join(lines)


def _partition_line(settings: dict) -> str | None:
    """The Ray run's shards as its header recorded them (docs/placement.md), or None."""
    if "shards" not in settings or "cut_bytes" not in settings:
        return None
    share = settings.get("cut_fraction")
    share = f" ({100 * share:.1f}% of edge bytes)" if isinstance(share, (int, float)) else ""
    return (f"partition: {settings.get('partition', '?')}, {settings['shards']} shards "
            f"(vertices per actor {settings.get('vertices_per_actor', '?')}), "
            f"cut {settings['cut_bytes']} bytes/batch between shards as it weighed the "
            f"edges{share}")


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
