"""`traffic report`: one self-contained HTML page about a traffic log.

The page works offline: its script, style and data are inlined (assets/report.js
and assets/report.css, written for this page; no library, no CDN, nothing fetched).
Python does the counting (two streaming passes: totals, then activity per actor
over time) and the graph layout; the script only draws SVG and handles hover,
zoom and toggles. The data's size depends on the graph and the number of bins,
never on the number of messages.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from neurolocal.traffic.aggregate import Totals, open_stream
from neurolocal.traffic.log import SCHEDULER

ASSETS = Path(__file__).resolve().parent / "assets"
TIME_BINS = 240
MAX_BATCH_POINTS = 1500
#: the layer x round heat map holds at most this many cells a series (3 series)
MAX_HEAT_CELLS = 40_000
KIND_MEANING = {
    "value": "a vertex's prediction mu, parent -> child (round 0: the forward pass; "
             "strict mode: every round)",
    "error": "J^T eps, the error a child sends back to a parent, once per relaxation round",
    "partial": "a tied weight's parameter update, member vertex -> the group's owner "
               "(after the last round)",
    "param": "a tied weight's new values after the owner's optimizer step, owner -> "
             "member vertex (training)",
    "control": "scheduler traffic: batch settings, parameters and data out, results back "
               "(src = dst = scheduler marks an abandoned batch)",
}


def collect(source) -> dict:
    """Everything the page shows, as plain JSON-able data."""
    from neurolocal.traffic.depth import LayerEnergyStream

    stream = open_stream(source, LayerEnergyStream)
    totals = Totals(stream, edges=True, detail=True)
    for chunk in stream.chunks():
        totals.add(chunk)
    name = stream.name
    summary = totals.summary()
    control = stream.id_of("control")

    # --- the graph: vertices are names that carry value/error/partial messages ----------
    edge_rows = []
    vertices: dict[str, dict] = {}
    for (src, dst, kind), (m, b) in totals.edges.items():
        hist = totals.edge_latency[(src, dst, kind)]
        row = {"src": name(src), "dst": name(dst), "kind": name(kind), "messages": m,
               "bytes": b, "p50": _num(hist.percentile(50)), "p99": _num(hist.percentile(99))}
        edge_rows.append(row)
        if kind == control:
            continue
        for v, side in ((src, "sent"), (dst, "received")):
            entry = vertices.setdefault(name(v), {
                "id": name(v), "actor": name(totals.vertex_actor.get(v, -1))
                if totals.vertex_actor.get(v, -1) >= 0 else "",
                "host": name(totals.vertex_host.get(v, -1))
                if totals.vertex_host.get(v, -1) >= 0 else "",
                "sent": 0, "received": 0, "bytes_sent": 0})
            entry[side] += m
            if side == "sent":
                entry["bytes_sent"] += b
    for entry in vertices.values():
        entry["actor"] = entry["actor"] or "local"
    graph_edges = [e for e in edge_rows if e["kind"] != "control"]
    layout = layered_layout(list(vertices), graph_edges)
    for v, (x, y) in layout.items():
        vertices[v]["x"], vertices[v]["y"] = x, y

    # --- per round and kind, latency per kind ---------------------------------------------
    rounds = sorted({r for r, _ in totals.round_kind})
    kinds = sorted({name(k) for _, k in totals.round_kind})
    per_round = {k: [0] * len(rounds) for k in kinds}
    index = {r: i for i, r in enumerate(rounds)}
    for (r, k), m in totals.round_kind.items():
        per_round[name(k)][index[r]] += m
    latency = {}
    for k, hist in totals.kind_latency.items():
        edges, counts = hist.coarse(10)
        latency[name(k)] = {"edges": [_num(e) for e in edges], "counts": counts,
                            "p50": _num(hist.percentile(50)), "p99": _num(hist.percentile(99))}

    # --- batches (downsampled to at most MAX_BATCH_POINTS points) ----------------------
    keys = sorted(totals.work_batches(), key=lambda k: (totals.batches[k][3], k))
    rows = np.array([totals.batches[k] for k in keys], float).reshape(-1, 6)
    step = max(1, math.ceil(len(keys) / MAX_BATCH_POINTS))
    batches = {"step": step, "count": len(keys), "messages": [], "bytes": [], "control": []}
    for a in range(0, len(keys), step):
        part = rows[a:a + step]
        batches["messages"].append(float(part[:, 0].mean()))
        batches["bytes"].append(float(part[:, 1].mean()))
        batches["control"].append(float(part[:, 2].mean()))
    position = {k: i / step for i, k in enumerate(keys)}
    abandoned = sorted(totals.abandoned)
    unfinished = _unfinished(stream, totals)
    marks = ([{"kind": "abandoned", "run": stream.runs[r], "batch": b,
               "at": position.get((r, b)), "t": _batch_time(totals, r, b)}
              for r, b in abandoned]
             + [{"kind": "unfinished", "run": stream.runs[r], "batch": b,
                 "at": position.get((r, b)), "t": _batch_time(totals, r, b)}
                for r, b in unfinished])
    run_starts = []
    for i, k in enumerate(keys):
        if i == 0 or keys[i - 1][0] != k[0]:
            run_starts.append({"run": stream.runs[k[0]], "at": i / step,
                               "t": totals.batches[k][3]})

    # --- energy per round: mean over batches, first and last batch ------------------------
    energy = {}
    if stream.energy:
        ordered = sorted(stream.energy.items(), key=lambda kv: (
            totals.batches.get(kv[0], [0, 0, 0, math.inf])[3], kv[0]))
        width = max(len(v) for _, v in ordered)
        total, count = np.zeros(width), np.zeros(width)
        for _, values in ordered:
            v = np.asarray(values, float)
            ok = np.isfinite(v)
            total[:v.size][ok] += v[ok]
            count[:v.size][ok] += 1
        energy = {"mean": [_num(x) for x in np.where(count > 0, total / np.maximum(count, 1),
                                                     np.nan)],
                  "first": [_num(x) for x in ordered[0][1]],
                  "last": [_num(x) for x in ordered[-1][1]],
                  "batches": len(ordered)}

    layers = layer_energy(stream, {e["dst"] for e in graph_edges if e["kind"] == "value"})
    timeline = activity(stream, totals)
    actors = sorted({v["actor"] for v in vertices.values()})
    hosts = sorted({v["host"] for v in vertices.values()})
    return {
        "title": f"traffic of {stream.files[0].graph or stream.directory.name}",
        "directory": str(stream.directory),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "graph_name": stream.files[0].graph,
        "settings": _jsonable(stream.settings),
        "writers": [f.writer for f in stream.files],
        "runs": stream.runs,
        "summary": _jsonable(summary),
        "kinds": {k: KIND_MEANING.get(k, "a kind this version of the report does not know")
                  for k in summary["by_kind"]},
        "graph": {"vertices": list(vertices.values()), "edges": graph_edges,
                  "actors": actors, "hosts": hosts},
        "control": [e for e in edge_rows if e["kind"] == "control"],
        "rounds": {"rounds": rounds, "kinds": per_round},
        "latency": latency,
        "batches": batches,
        "marks": marks,
        "run_starts": run_starts,
        "energy": energy,
        "layers": layers,
        "timeline": timeline,
        "truncated": stream.truncated,
        "side_records": stream.side_records,
    }


def layer_energy(stream, receivers: set[str]) -> dict | None:
    """The heat map's data: energy per layer and round (mean over batches, first and
    last batch; traffic/depth.py `layers_from_log`), with at most MAX_HEAT_CELLS cells
    (every k-th round past that; the last round always)."""
    from neurolocal.traffic.depth import layers_from_log

    table = layers_from_log(stream, receivers)
    if table is None:
        return None
    rounds = table["rounds"]
    stride = max(1, math.ceil(len(table["layers"]) * rounds / MAX_HEAT_CELLS))
    keep = sorted(set(range(0, rounds, stride)) | {rounds - 1})
    for series in table["energy"].values():
        for n, values in series.items():
            series[n] = [values[r] if r < len(values) else None for r in keep]
    table["round_numbers"] = keep
    return table


def _batch_time(totals: Totals, run: int, batch: int):
    row = totals.batches.get((run, batch))
    return row[3] if row else None


def _unfinished(stream, totals: Totals) -> list[tuple[int, int]]:
    """Batches a run was inside when it ended (see audit.unfinished_batches)."""
    from neurolocal.traffic.audit import unfinished_batches

    return sorted(unfinished_batches(stream.energy, totals.work_batches(), totals.abandoned))


def activity(stream, totals: Totals, bins: int = TIME_BINS) -> dict:
    """Second pass: messages each actor sent or received per time bin (a proxy for busy
    time; the log records messages, not compute)."""
    if not totals.messages or not math.isfinite(totals.t_min):
        return {}
    t0, t1 = totals.t_min, max(totals.t_max, totals.t_min + 1e-6)
    width = (t1 - t0) / bins
    counts: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(bins, np.int64))
    scheduler = stream.id_of(SCHEDULER)
    for chunk in stream.chunks():
        c = chunk.columns
        for actor_col, t_col in (("src_actor", "t_send"), ("dst_actor", "t_recv")):
            t = c[t_col]
            ok = np.isfinite(t)
            b = np.clip(((t[ok] - t0) / width).astype(np.int64), 0, bins - 1)
            actor = c[actor_col][ok].astype(np.int64)
            unique, inverse = np.unique(actor, return_inverse=True)
            flat = np.bincount(inverse * bins + b, minlength=unique.size * bins)
            for j, a in enumerate(unique.tolist()):
                counts[a] += flat[j * bins:(j + 1) * bins]
    name = stream.name
    rows = {}
    for a, row in counts.items():
        label = name(a) or "local"
        if a == scheduler:
            label = SCHEDULER
        rows[label] = rows.get(label, 0) + row
    ordered = sorted(rows, key=lambda k: (k == SCHEDULER, _natural(k)))
    spans = []
    for key in totals.work_batches():
        row = totals.batches[key]
        spans.append([row[3] - t0, row[4] - t0])
    spans.sort()
    if len(spans) > 600:  # thin out: the shading is a guide, not data
        spans = spans[::math.ceil(len(spans) / 600)]
    return {"t0": t0, "seconds": t1 - t0, "bins": bins,
            "actors": ordered, "counts": [rows[k].tolist() for k in ordered],
            "batch_spans": spans}


def _natural(text: str):
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def layered_layout(vertices: list[str], edges: list[dict]) -> dict[str, tuple[float, float]]:
    """Vertices in layers (longest path along value edges, parents left of children),
    ordered within a layer by the mean position of their neighbours (a few sweeps)."""
    parents: dict[str, set] = defaultdict(set)
    children: dict[str, set] = defaultdict(set)
    flow = [e for e in edges if e["kind"] == "value"] or edges
    members = set(vertices)
    for e in flow:
        if e["src"] != e["dst"] and e["src"] in members and e["dst"] in members:
            children[e["src"]].add(e["dst"])
            parents[e["dst"]].add(e["src"])
    indegree = {v: len(parents[v] - {v}) for v in vertices}
    layer = {v: 0 for v in vertices}
    ready = sorted(v for v in vertices if indegree[v] == 0)
    seen = 0
    while ready:
        v = ready.pop()
        seen += 1
        for c in sorted(children[v]):
            if c not in indegree or c == v:
                continue
            layer[c] = max(layer[c], layer[v] + 1)
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    layers: dict[int, list[str]] = defaultdict(list)
    for v in sorted(vertices, key=_natural):
        layers[layer[v]].append(v)
    position = {v: float(i) for members in layers.values() for i, v in enumerate(members)}
    neighbours = {v: (parents[v] | children[v]) - {v} for v in vertices}
    for sweep in range(6):
        for depth in sorted(layers, reverse=bool(sweep % 2)):
            members = layers[depth]
            def key(v):
                near = [position[n] for n in neighbours[v] if n in position]
                return (sum(near) / len(near)) if near else position[v]
            members.sort(key=key)
            for i, v in enumerate(members):
                position[v] = float(i)
    out = {}
    tallest = max((len(m) for m in layers.values()), default=1)
    for depth, members in layers.items():
        offset = (tallest - len(members)) / 2
        for i, v in enumerate(members):
            out[v] = (float(depth), float(i + offset))
    return out


def _num(x):
    """JSON has no NaN/inf: those become null."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


#: characters that end or open something in HTML, escaped inside the inline JSON (as
#: \uXXXX, which JSON.parse reads back unchanged): no `</script>`, no `<!--`, no `]]>`
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                 "\u2028": "\\u2028", "\u2029": "\\u2029"}


def inline_json(data) -> str:
    """JSON that is inert inside a <script> element: nothing in it can close the element,
    open a comment or an HTML parser state (every `<`, `>` and `&` is a \\u escape)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return "".join(_JSON_ESCAPES.get(c, c) for c in payload) if any(
        c in payload for c in _JSON_ESCAPES) else payload


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(script: str, style: str) -> str:
    """Nothing may load or run but the page's own inline script and style (by hash):
    an injected <script>, event handler attribute, javascript: URL or remote resource
    is refused by the browser even if markup got in."""
    return (f"default-src 'none'; script-src {csp_hash(script)}; "
            f"style-src {csp_hash(style)}; img-src data:; base-uri 'none'; "
            "form-action 'none'")


def render(data: dict) -> str:
    script = "\n" + (ASSETS / "report.js").read_text() + "\n"
    style = "\n" + (ASSETS / "report.css").read_text() + "\n"
    policy = content_security_policy(script, style)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(policy, quote=False)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>neurolocal · {html.escape(data['title'])}</title>\n"
        f"<style>{style}</style>\n</head>\n<body>\n"
        "<noscript>This report draws its charts with JavaScript; please enable it."
        "</noscript>\n<div id=\"app\"></div>\n"
        f"<script id=\"report-data\" type=\"application/json\">{inline_json(data)}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n")


def write_report(source, path) -> None:
    """Write the page for a log (directory, run directory or TrafficLog) to `path`."""
    from neurolocal.files import write_output

    write_output(path, render(collect(source)))
