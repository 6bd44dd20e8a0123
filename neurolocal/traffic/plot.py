"""A picture of a traffic log: messages (or bytes) per edge over rounds, and energy per round."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from neurolocal.traffic.aggregate import open_stream

MAX_ROWS = 200  # edges shown in the heat map (the busiest); a label per row must stay legible


def traffic_matrix(source, weight: str = "messages"):
    """Rows: 'src -> dst (kind)'; columns: rounds 0..R; values summed over batches.
    Streams the log: memory grows with edges x rounds, not with messages."""
    stream = open_stream(source)
    cells: dict[tuple[int, int, int], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for chunk in stream.chunks():
        c = chunk.columns
        rounds = c["round"]
        keys = np.stack([c["src"], c["dst"], c["kind"]], axis=1).astype(np.int64)
        table = np.concatenate([keys, rounds[:, None]], axis=1)
        unique, inverse = np.unique(table, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        w = np.ones(len(chunk)) if weight == "messages" else c["bytes"].astype(float)
        sums = np.bincount(inverse, weights=w, minlength=len(unique))
        for (s, d, k, r), v in zip(unique.tolist(), sums.tolist()):
            cells[(s, d, k)][r] += v
    name = stream.name
    used = sorted({r for row in cells.values() for r in row if r >= 0})
    rounds = (used[-1] + 1) if used and used[-1] < 100_000 else len(used)
    column = {r: r for r in used} if rounds == (used[-1] + 1 if used else 0) \
        else {r: i for i, r in enumerate(used)}
    busiest = sorted(cells, key=lambda k: -sum(cells[k].values()))[:MAX_ROWS]
    labels = sorted(f"{name(s)} -> {name(d)} ({name(k)})" for s, d, k in busiest)
    index = {f"{name(s)} -> {name(d)} ({name(k)})": (s, d, k) for s, d, k in busiest}
    matrix = np.zeros((len(labels), rounds))
    for i, label in enumerate(labels):
        for r, v in cells[index[label]].items():
            if r in column:
                matrix[i, column[r]] = v
    return labels, matrix, stream


def plot_traffic(source, path: str | Path, weight: str = "messages") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels, matrix, stream = traffic_matrix(source, weight)
    energy = [stream.energy[b] for b in sorted(stream.energy)]
    height = 2.5 + 0.22 * max(len(labels), 4)
    fig, axes = plt.subplots(2, 1, figsize=(10, height + 3),
                             gridspec_kw={"height_ratios": [height, 3]})
    heat, curve = axes
    if matrix.size:
        image = heat.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=heat, label=weight + " (all batches)")
    heat.set_yticks(range(len(labels)), labels, fontsize=7)
    heat.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    heat.set_xlabel("round (0 = forward pass)")
    heat.set_title(f"{weight} per edge and round — {stream.directory.name}")
    if energy:
        width = max(len(e) for e in energy)
        padded = np.array([e + [np.nan] * (width - len(e)) for e in energy])
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.where(np.isfinite(padded), padded, np.nan), axis=0)
        curve.semilogy(range(width), np.maximum(np.nan_to_num(mean, nan=1e-300), 1e-300),
                       marker="o", ms=3)
        curve.xaxis.set_major_locator(MaxNLocator(integer=True))
        curve.set_ylabel("energy (mean over batches)")
        curve.set_xlabel("round")
    else:
        curve.text(0.5, 0.5, "no energy records in this log", ha="center", va="center")
        curve.set_axis_off()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:  # a directory that is not there; an unknown suffix
        from neurolocal.errors import ConfigError

        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot write: {text}", source=str(path)) from None
    finally:
        plt.close(fig)
