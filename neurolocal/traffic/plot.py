"""A picture of a traffic log: messages (or bytes) per edge over rounds, and energy per round."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from neurolocal.traffic.log import TrafficLog


def traffic_matrix(log: TrafficLog, weight: str = "messages"):
    """Rows: 'src -> dst (kind)'; columns: rounds; values summed over batches."""
    c = log.columns
    rounds = int(np.max(c["round"])) + 1 if len(log) else 0
    rows: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(rounds))
    for i in range(len(log)):
        key = f"{c['src'][i]} -> {c['dst'][i]} ({c['kind'][i]})"
        rows[key][int(c["round"][i])] += 1 if weight == "messages" else c["bytes"][i]
    labels = sorted(rows)
    matrix = np.array([rows[k] for k in labels]) if labels else np.zeros((0, rounds))
    return labels, matrix


def plot_traffic(log: TrafficLog, path: str | Path, weight: str = "messages") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = traffic_matrix(log, weight)
    energy = [log.energy[b] for b in sorted(log.energy)]
    height = 2.5 + 0.22 * max(len(labels), 4)
    fig, axes = plt.subplots(2, 1, figsize=(10, height + 3),
                             gridspec_kw={"height_ratios": [height, 3]})
    heat, curve = axes
    if matrix.size:
        image = heat.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=heat, label=weight + " (all batches)")
    heat.set_yticks(range(len(labels)), labels, fontsize=7)
    heat.set_xlabel("round (0 = forward pass)")
    heat.set_title(f"{weight} per edge and round — {log.directory.name}")
    if energy:
        width = max(len(e) for e in energy)
        padded = np.array([e + [np.nan] * (width - len(e)) for e in energy])
        mean = np.nanmean(padded, axis=0)
        curve.semilogy(range(width), np.maximum(mean, 1e-300), marker="o", ms=3)
        curve.set_ylabel("energy (mean over batches)")
        curve.set_xlabel("round")
    else:
        curve.text(0.5, 0.5, "no energy records in this log", ha="center", va="center")
        curve.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
