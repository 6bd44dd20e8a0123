"""A sweep's outputs: one CSV (a row per point and seed) and the plots — final accuracy
and gradient error against each varied quantity (mean and standard deviation over
seeds, a line per combination of the other varied quantities), and accuracy against
messages sent."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np

from neurolocal.files import atomic_path
from neurolocal.sweep.grid import Job
from neurolocal.sweep.worker import RESULTS

MAX_LINES = 8


def write_csv(path: Path, grid: dict[str, list], results: dict[Job, dict]) -> list[dict]:
    assert not set(grid) & set(RESULTS), "a varied key shadows a result column"
    rows = []
    for job, result in sorted(results.items(), key=lambda item: _order(grid, item[0])):
        rows.append({**{k: _text(v) for k, v in job.point}, "seed": job.seed,
                     **{k: result.get(k) for k in RESULTS}})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(grid) + ["seed", *RESULTS])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _save(fig, path: Path) -> None:
    """A figure written whole or not at all (a FIFO or a link where it goes is replaced,
    not written into)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def _order(grid, job: Job):
    return tuple(grid[k].index(v) for k, v in job.point) + (job.seed,)


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _stats(values):
    values = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, 0.0
    return float(values.mean()), float(values.std())


def plot(out: Path, grid: dict[str, list], rows: list[dict], title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    keys = list(grid)
    for key in keys:
        others = [k for k in keys if k != key]
        combos = list(itertools.product(*(grid[k] for k in others)))
        if len(combos) > MAX_LINES:          # too many lines: average over the others
            combos, others_shown = [()], []
        else:
            others_shown = others
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        xs = np.arange(len(grid[key]))
        plotted = 0
        for combo in combos:
            label = ", ".join(f"{k}={_text(v)}" for k, v in zip(others_shown, combo)) or "all"
            for ax, column in zip(axes, ("test_accuracy", "grad_rel_error")):
                means, stds = [], []
                for value in grid[key]:
                    chosen = [r for r in rows if r[key] == _text(value)
                              and all(r[k] == _text(v) for k, v in zip(others_shown, combo))]
                    m, s = _stats([r[column] for r in chosen])
                    means.append(m)
                    stds.append(s)
                    plotted += int(np.isfinite(m))
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
        if not plotted:   # rows and grid disagree: a bug here, never an empty figure
            raise RuntimeError(f"no sweep results to plot against {key}")
        axes[0].set_ylabel("final test accuracy")
        axes[1].set_ylabel("gradient relative error (first batch)")
        axes[1].set_yscale("symlog", linthresh=1e-16)
        for ax in axes:
            ax.set_xticks(xs, [_text(v) for v in grid[key]])
            ax.set_xlabel(key)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{title}: against {key} (mean ± sd over seeds)")
        fig.tight_layout()
        path = out / f"{key}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    first = keys[0]
    for value in grid[first]:
        chosen = [r for r in rows if r[first] == _text(value)]
        ax.scatter([r["messages"] for r in chosen], [r["test_accuracy"] for r in chosen],
                   label=f"{first}={_text(value)}", s=18)
    ax.set_xlabel("messages sent (training)")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: accuracy against messages")
    fig.tight_layout()
    path = out / "messages.png"
    _save(fig, path)
    plt.close(fig)
    written.append(path)
    return written
