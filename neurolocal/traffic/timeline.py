"""A Chrome / Perfetto trace of a traffic log: one track per vertex, a flow arrow per message.

Open the file at ui.perfetto.dev or chrome://tracing. Each message is a short
slice on the sender's track at its send time and one on the receiver's track at
its receive time, joined by a flow arrow.
"""

from __future__ import annotations

from neurolocal.traffic.log import TrafficLog

SLICE_US = 1.0


def chrome_trace(log: TrafficLog, max_messages: int = 200_000) -> dict:
    c = log.columns
    count = min(len(log), max_messages)
    names = sorted(set(c["src"][:count].tolist()) | set(c["dst"][:count].tolist()))
    track = {name: i + 1 for i, name in enumerate(names)}
    t0 = float(min(c["t_send"][:count].min(), c["t_recv"][:count].min())) if count else 0.0
    events = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0,
               "args": {"name": "neurolocal vertices"}}]
    for name, tid in track.items():
        events.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": tid,
                       "args": {"name": name}})
    for i in range(count):
        src, dst, kind = c["src"][i], c["dst"][i], c["kind"][i]
        ts_send = (float(c["t_send"][i]) - t0) * 1e6
        ts_recv = max((float(c["t_recv"][i]) - t0) * 1e6, ts_send)
        args = {"batch": int(c["batch"][i]), "round": int(c["round"][i]),
                "bytes": int(c["bytes"][i]), "src": src, "dst": dst}
        events.append({"ph": "X", "name": f"send {kind} -> {dst}", "cat": kind, "pid": 1,
                       "tid": track[src], "ts": ts_send, "dur": SLICE_US, "args": args})
        events.append({"ph": "X", "name": f"recv {kind} <- {src}", "cat": kind, "pid": 1,
                       "tid": track[dst], "ts": ts_recv, "dur": SLICE_US, "args": args})
        events.append({"ph": "s", "id": i, "name": kind, "cat": kind, "pid": 1,
                       "tid": track[src], "ts": ts_send})
        events.append({"ph": "f", "bp": "e", "id": i, "name": kind, "cat": kind, "pid": 1,
                       "tid": track[dst], "ts": ts_recv})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"messages": len(log), "shown": count}}
