"""`neurolocal traffic depth DIR`: the per-layer audit of a run (OUT/depth.json, written
by `neurolocal run`, neurolocal/training/depth_audit.py), as a table per algorithm that
names the layers whose error never arrived."""

from __future__ import annotations

import json
from pathlib import Path

from neurolocal.errors import DataError


def read_depth(directory: str) -> dict:
    """depth.json of a run directory (or of the run holding the traffic/ directory given)."""
    base = Path(directory)
    for candidate in (base / "depth.json", base.parent / "depth.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read the depth audit: {exc}",
                                source=str(candidate)) from None
    raise DataError("no depth.json here: every run writes one into its output directory "
                    "unless its depth audit is off", source=str(directory))


def _number(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def format_depth(document: dict) -> str:
    lines = []
    for algorithm, audit in document.items():
        last = audit["epochs"][-1]
        epoch = last["epoch"] if last["epoch"] is not None else 0
        probed = "layers" in last
        lines.append(f"{algorithm}: {len(audit['layers'])} layers, after epoch {epoch}"
                     + (f" ({audit['mode']} mode, eta {audit['eta']:g}, T {audit['iterations']})"
                        if probed else ""))
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
