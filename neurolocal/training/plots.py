"""Pictures of a run, drawn from its metrics document (matplotlib, Agg: no display needed).

curves.png  loss (train dashed, test solid) and test accuracy per epoch, one colour
            per algorithm, so PC and its BP baseline overlay when both ran;
            text runs show test perplexity instead of accuracy
energy.png  predictive coding's free energy after each relaxation round, averaged
            over the last epoch's batches (round 0 = right after the forward pass), and
            below it the energy's change per round, which settles to zero (the energy
            itself rises: see `plot_energy`)
"""

from __future__ import annotations

from pathlib import Path

from neurolocal.files import atomic_path

COLOURS = {"pc": "tab:blue", "bp": "tab:orange"}
LABELS = {"pc": "predictive coding", "bp": "backprop"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Render to a temporary name and rename, so a crash never leaves half a PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_curves(doc: dict, path: Path) -> None:
    plt = _pyplot()
    text = doc["data"]["kind"] == "text"
    fig, (ax_loss, ax_right) = plt.subplots(1, 2, figsize=(10, 4))
    # backprop first, wide and pale, so predictive coding stays visible on top when the
    # two coincide (they do exactly with eta = 1 and T >= depth)
    for algorithm in sorted(doc["runs"], key=lambda a: a != "bp"):
        rows = doc["runs"][algorithm]["epochs"]
        epochs = [r["epoch"] for r in rows]
        style = {"color": COLOURS.get(algorithm)}
        if algorithm == "bp":
            style.update(linewidth=4, alpha=0.35)
        label = LABELS.get(algorithm, algorithm)
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "--", label=f"{label} train",
                     **style)
        ax_loss.plot(epochs, [r["test_loss"] for r in rows], "-", label=f"{label} test", **style)
        if text:
            ax_right.plot(epochs, [r["test_perplexity"] for r in rows], "-", label=label, **style)
        elif rows and rows[0]["test_accuracy"] is not None:
            ax_right.plot(epochs, [100 * r["test_accuracy"] for r in rows], "-",
                          label=f"{label} test", **style)
            ax_right.plot(epochs, [100 * r["train_accuracy"] for r in rows], "--",
                          label=f"{label} train", **style)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{doc['topology']} on {doc['data']['name']}")
    ax_right.set(xlabel="epoch", ylabel="test perplexity" if text else "accuracy (%)")
    for ax in (ax_loss, ax_right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def energy_change(energy) -> list[float]:
    """|E_r - E_(r-1)| for rounds r = 1..T: how much the state still moved in round r."""
    return [abs(b - a) for a, b in zip(energy, energy[1:])]


def plot_energy(doc: dict, path: Path) -> None:
    """Top: the free energy after each round. It *rises*: with fixed predictions the
    hidden errors start at zero after the forward pass and grow to their backprop
    values (docs/design.md §1). Bottom: its change per round, which falls to zero as
    the errors settle (at eta = 1: zero from round depth + 1 on; zeros are marked on a
    dotted line below every nonzero change)."""
    plt = _pyplot()
    fig, (ax, ax_change) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2]})
    energy = doc["runs"].get("pc", {}).get("energy_per_round") or []
    if energy:
        ax.plot(range(len(energy)), energy, "o-", color=COLOURS["pc"])
        if all(e > 0 for e in energy):
            ax.set_yscale("log")
        settings = doc["settings"]
        why = ("\nrises: hidden errors start at 0 and grow to their backprop values"
               if settings["mode"] == "fixed" else "")
        ax.set_title(f"eta {settings['eta']}, {settings['iterations']} rounds, "
                     f"{settings['mode']} mode (last epoch mean){why}", fontsize=9)
        change = energy_change(energy)
        rounds = list(range(1, len(energy)))
        positive = [c for c in change if c > 0]
        if positive:
            ax_change.semilogy([r for r, c in zip(rounds, change) if c > 0], positive, "s-",
                               color="tab:green")
            settled = [r for r, c in zip(rounds, change) if c == 0]
            if settled:  # a log axis has no zero: a marked line well below every change
                floor = min(positive) / 1000
                ax_change.axhline(floor, linestyle=":", linewidth=0.8, color="tab:red")
                ax_change.plot(settled, [floor] * len(settled), "v", color="tab:red",
                               label="exactly 0: settled")
                ax_change.set_ylim(bottom=floor / 3)
                ax_change.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no predictive-coding run", ha="center", va="center",
                transform=ax.transAxes)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(ylabel="free energy per sample")
    ax_change.set(xlabel="relaxation round", ylabel="|energy change| in the round")
    for axis in (ax, ax_change):
        axis.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
