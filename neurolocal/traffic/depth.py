"""`neurolocal traffic depth DIR`: the per-layer audit of a run, as a table per algorithm
that names the layers whose error never arrived.

Two sources, printed side by side when both are there:

- OUT/depth.json, written by `neurolocal run` (neurolocal/training/depth_audit.py): a
  fixed probe batch per epoch, with weight change and cosine to backprop;
- the traffic log itself: every engine writes each batch's energy per vertex and round
  next to its total (`vertex_energy` in the energy maps, traffic/log.py), so a log alone
  (a Ray run, a run without the audit) gives energy and error norm per layer and round
  over the batches it trained on, and the layers no error reached in any of them
  (`layers_from_log`; the same arrival rule as the audit). The HTML report draws it as a
  heat map, layer x round.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from neurolocal.errors import DataError
from neurolocal.traffic.stream import LogStream

#: the log's per-layer table holds at most this many cells (vertices x rounds)
MAX_CELLS = 1 << 20


class LayerEnergyStream(LogStream):
    """A `LogStream` that also keeps each batch's energy per vertex and round (the
    `vertex_energy` key of the energy maps), in `self.vertex_energy[(run, batch)]`."""

    def __init__(self, directory, *args, **kwargs):
        self.vertex_energy: dict[tuple[int, int], dict[str, list[float]]] = {}
        super().__init__(directory, *args, **kwargs)

    def _side_record(self, item, info, run, count) -> None:
        super()._side_record(item, info, run, count)   # checks the total, or raises
        if not (isinstance(item, dict) and "energy" in item and "vertex_energy" in item):
            return
        value = item["vertex_energy"]
        if not (isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, (list, tuple))
                and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
                for k, v in value.items())):
            raise DataError(f"energy record after {count} records: 'vertex_energy' is not "
                            "{vertex: [numbers...]}", source=str(info.path))
        self.vertex_energy[(run, int(item["energy"][0]))] = {
            k: [float(e) for e in v] for k, v in value.items()}


#: an error counts as arrived once its energy exceeds this fraction of the largest seen
ARRIVAL = 1e-12


def arrival_round(energy: list[float], largest: float) -> int | None:
    """The first round at which an energy exceeds ARRIVAL x `largest` (None: never)."""
    return next((r for r, e in enumerate(energy)
                 if largest > 0 and e > ARRIVAL * largest), None)


def layers_from_log(stream: LayerEnergyStream, receivers: set[str]) -> dict | None:
    """Per layer (a vertex that receives values: not an input), from the log's energy
    maps after a pass over its chunks: energy per round (mean over batches, first and
    last batch), error norm sqrt(2 E), the first round its error arrived in any batch
    (None: in none). None when the log holds no per-vertex energy."""
    if not stream.vertex_energy:
        return None
    keys = sorted(stream.vertex_energy)
    order: list[str] = []
    for key in keys:
        order.extend(n for n in stream.vertex_energy[key] if n not in order and n in receivers)
    if not order:
        return None
    rounds = max(len(v) for key in keys for v in stream.vertex_energy[key].values())
    if len(order) * rounds > MAX_CELLS:
        raise DataError(f"{len(order)} layers x {rounds} rounds is more than the "
                        f"{MAX_CELLS:,} cells the per-layer table holds",
                        source=str(stream.directory))
    total = np.zeros((len(order), rounds))
    count = np.zeros((len(order), rounds))
    arrived: dict[str, int | None] = {n: None for n in order}
    for key in keys:
        batch = stream.vertex_energy[key]
        largest = max((e for v in batch.values() for e in v if math.isfinite(e)), default=0.0)
        for i, n in enumerate(order):
            values = np.asarray(batch.get(n, []), float)
            ok = np.isfinite(values)
            total[i, :values.size][ok] += values[ok]
            count[i, :values.size][ok] += 1
            r = arrival_round(list(values), largest)
            if r is not None and (arrived[n] is None or r < arrived[n]):
                arrived[n] = r
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def rows(values):
        return {n: [_finite(e) for e in values(i, n)] for i, n in enumerate(order)}

    first, last = stream.vertex_energy[keys[0]], stream.vertex_energy[keys[-1]]
    return {"layers": order, "rounds": rounds, "batches": len(keys),
            "arrival_threshold": ARRIVAL, "arrived": arrived,
            "silent": [n for n in order if arrived[n] is None],
            "energy": {"mean": rows(lambda i, n: mean[i]),
                       "first": rows(lambda i, n: first.get(n, [])),
                       "last": rows(lambda i, n: last.get(n, []))}}


def _finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def read_log_layers(directory: str) -> tuple[dict, dict] | None:
    """(`layers_from_log`, the log's settings) of a log directory (or of the run directory
    holding traffic/); None when there is no log or it holds no per-vertex energy."""
    where = _log_dir(Path(directory))
    if where is None:
        return None
    stream = LayerEnergyStream(where)
    value = stream.id_of("value")
    receivers: set[int] = set()
    for chunk in stream.chunks():
        c = chunk.columns
        receivers.update(np.unique(c["dst"][c["kind"] == value]).tolist())
    table = layers_from_log(stream, {stream.name(i) for i in receivers})
    return None if table is None else (table, stream.settings)


def _log_dir(base: Path) -> Path | None:
    from neurolocal.traffic.log import SUFFIX

    return next((d for d in (base, base / "traffic")
                 if d.is_dir() and any(d.glob(f"*{SUFFIX}"))), None)


def log_audit(table: dict, settings: dict) -> dict:
    """The log's per-layer table in depth.json's shape (for `format_depth`)."""
    last = {n: {"energy": table["energy"]["mean"][n],
                "error_norm": [None if e is None else math.sqrt(2 * max(e, 0.0))
                               for e in table["energy"]["mean"][n]],
                "arrived": table["arrived"][n], "cosine": None} for n in table["layers"]}
    return {"algorithm": "pc", "source": "traffic log", "mode": settings.get("mode", "?"),
            "eta": settings.get("eta"),
            "iterations": settings.get("iterations", table["rounds"] - 1),
            "batches": table["batches"], "arrival_threshold": table["arrival_threshold"],
            "layers": table["layers"], "silent": table["silent"], "not_moving": [],
            "moved_threshold": None,
            "epochs": [{"epoch": None, "weight_change": {}, "layers": last}]}


def read_depth(directory: str) -> dict:
    """depth.json of a run directory (or of the run holding the traffic/ directory given)
    and, when the run's traffic log holds per-vertex energy, the same table from the log
    (key "traffic log")."""
    base = Path(directory)
    document = None
    for candidate in (base / "depth.json", base.parent / "depth.json"):
        if candidate.is_file():
            try:
                document = json.loads(candidate.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read the depth audit: {exc}",
                                source=str(candidate)) from None
            break
    found = read_log_layers(directory)
    if found is not None:
        document = dict(document or {})
        document["traffic log"] = log_audit(*found)
    if document is None:
        raise DataError("no depth.json here and no traffic log with per-vertex energy: "
                        "every run writes one into its output directory unless its depth "
                        "audit and its traffic log are off", source=str(directory))
    return document


def _number(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def format_depth(document: dict) -> str:
    lines = []
    for algorithm, audit in document.items():
        last = audit["epochs"][-1]
        epoch = last["epoch"] if last["epoch"] is not None else 0
        probed = "layers" in last
        if audit.get("source") == "traffic log":
            lines.append(f"{algorithm}: {len(audit['layers'])} layers, energy per vertex and "
                         f"round over the {audit['batches']} batches it logged "
                         f"({audit['mode']} mode, eta {audit['eta']}, T "
                         f"{audit['iterations']}; arrival: the earliest round in any batch)")
        else:
            lines.append(f"{algorithm}: {len(audit['layers'])} layers, after epoch {epoch}"
                         + (f" ({audit['mode']} mode, eta {audit['eta']:g}, T "
                            f"{audit['iterations']})" if probed else ""))
        lines.append(f"  {'layer':<16} {'weight change':>13} {'cosine to bp':>12} "
                     f"{'error arrived':>13} {'final energy':>12}")
        for n in audit["layers"]:
            change = last["weight_change"].get(n)
            row = last["layers"][n] if probed else {}
            arrived = row.get("arrived")
            arrived = "never" if probed and arrived is None else _number(arrived, "d")
            energy = row.get("energy", [None])[-1] if probed else None
            lines.append(f"  {n:<16} {_number(change, '.4f'):>13} "
                         f"{_number(row.get('cosine'), '.4f'):>12} {arrived:>13} "
                         f"{_number(energy, '.3g'):>12}")
        if probed:
            silent = audit["silent"]
            lines.append("  error never arrived at: " + ", ".join(silent) if silent
                         else "  every layer's error arrived: clean")
        if audit["not_moving"]:
            lines.append(f"  weights moved less than {audit['moved_threshold']:g} (relative): "
                         + ", ".join(audit["not_moving"]))
    return "\n".join(lines)
