"""metrics.json: the run's document (settings, history, versions, restarts) and its final table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from neurolocal.files import write_atomic
from neurolocal.graph import Graph
from neurolocal.training.data import GraphData
from neurolocal.training.history import Run, predicted_positions
from neurolocal.training.settings import Settings, iterations_for


def versions() -> dict[str, str]:
    import platform

    from importlib import metadata

    found = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("numba", "ray"):  # read from the installed metadata: importing numba
        try:                           # would load its LLVM into the driver
            found[module] = metadata.version(module)
        except Exception:                      # not installed: say so rather than fail a run
            found[module] = None
    from neurolocal import __version__

    found["neurolocal"] = __version__
    return found


def write_json_atomic(path: Path, document: dict) -> None:
    text = json.dumps(document, indent=2, allow_nan=False, default=_json_default)
    write_atomic(path, text + "\n")


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def metrics_document(topology_name: str, topology_file: str | None, data: GraphData,
                     settings: Settings, graph: Graph, runs: dict[str, Run]) -> dict:
    doc = {
        "topology": topology_name,
        "topology_file": topology_file,
        "data": {"name": data.name, "kind": data.kind, "train_size": data.train_size,
                 "test_size": data.test_size,
                 **{k: v for k, v in data.info.items() if k != "vocabulary"}},
        "settings": {**settings.as_dict(), "iterations": iterations_for(settings, graph),
                     "depth": graph.depth},
        "versions": versions(),
        "runs": {},
    }
    for algorithm, run in runs.items():
        rows = [{k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in run.history.rows(data.kind, predicted_positions(graph))]
        doc["runs"][algorithm] = {
            "epochs": rows,
            "wall_seconds": float(sum(run.history.seconds)),
            "final": rows[-1] if rows else None,
            "energy_per_round": run.history.energy_per_round,
            "restarts": run.restarts,
        }
        if run.engine_report:
            doc["runs"][algorithm]["engine_report"] = dict(run.engine_report)
    return doc


def final_table(doc: dict) -> str:
    text = doc["data"]["kind"] == "text"
    header = ["algorithm", "epochs", "train loss", "test loss",
              "test ppl" if text else "test acc", "wall s"]
    lines = []
    for algorithm, run in doc["runs"].items():
        f = run["final"]
        if f is None:
            continue
        if text:
            last = "inf" if f["test_perplexity"] is None else f"{f['test_perplexity']:.3f}"
        else:
            last = "-" if f["test_accuracy"] is None else f"{100 * f['test_accuracy']:.2f}%"
        lines.append([algorithm, str(f["epoch"]), f"{f['train_loss']:.4f}",
                      f"{f['test_loss']:.4f}", last, f"{run['wall_seconds']:.1f}"])
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.rjust(w) if i else c.ljust(w)     # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header)] + [fmt(r) for r in lines])
