"""Make RESULTS.md's section "Predictive coding at depth" (issue 26, docs/depth.md).

    nice python scripts/depth_results.py [--depths 2,4,8,16,32,64,128] [--seeds 0,1,2]
                                         [--epochs 5] [--variants ...] [--quick]
                                         [--budget-minutes M] [--out runs/depth]
                                         [--results RESULTS.md] [--render]

`neurolocal run` on MNIST-5k (`--data mnist`: 4,000 train / 1,000 test), width 128, ReLU
before each linear map, batch 128, the local engine, one run per (variant, depth, seed):

  backprop        the muPC resnet (`generate resnet`), torch autograd, Adam 0.1
  fixed           the same net and optimizer, fixed predictions, eta 1, T = depth
                  (backprop exactly: every layer's error arrives)
  fixed-standard  the standard-parameterisation resnet, fixed PC, eta 1, T = depth, Adam 1e-3
  strict          standard PC as pcx runs it on the standard resnet: strict mode, eta 0.1,
                  T 20, Adam 1e-3
  ipc             incremental PC (`--schedule ipc`, a weight step every round), eta 0.1,
                  T 20, Adam 3e-4
  mupc            jpc's muPC: the muPC resnet, strict mode, activity lr 0.5 on the batch-mean
                  energy (eta 0.5/128), T = depth, Adam 0.1
  mupc-lr5        the same with activity lr 5 (eta 5/128)
  pcx-strict      pcx's recipe on a plain MLP (no skips, GELU before each linear map but
                  the first, He init): strict, eta 0.1, T 20, Adam 1e-3 (issue 26's
                  Must-show: does it stay near chance at depth 16 while fixed PC trains?)
  pcx-fixed       the same net, fixed PC, eta 1, T = depth, Adam 1e-3

Each run keeps OUT/<variant>-d<depth>-s<seed>/ (metrics.json: accuracy, seconds per epoch;
depth.json: per layer weight change, cosine with backprop's gradient, the round the error
first arrived). Runs go cheapest first; a finished one is not run again, so re-running
the same command finishes an interrupted or budget-cut grid (seed by seed, cheapest first). `--budget-minutes` starts no
run after that many minutes. Tables and plots (results/depth/) are made from what is in
--out, and the section says exactly which runs it holds and the command for the rest.
The full command also measures the cost goals (scripts/depth_cost.py, `timing.json`: fixed
PC against torch backprop on the same net at depth 128, in one process; a muPC epoch at
depth 64, T 64, in CPU-seconds); `--cost` measures just these and prints them (`--cost-depths
4,4`: the same at toy depths, to try it). `--quick`: depths 2,8, one seed, one
epoch. `--render`: only rewrite the section.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from depth_cost import DEPTHS as COST_DEPTHS
from depth_cost import cpu_seconds
from depth_cost import load_average
from depth_cost import measure as measure_cost
from depth_cost import text as cost_text

BEGIN, END = "<!-- depth:begin -->", "<!-- depth:end -->"
DEPTHS = (2, 4, 8, 16, 32, 64, 128)
SEEDS = (0, 1, 2)
EPOCHS = 5
WIDTH, BATCH = 128, 128
#: the muPC recipe's activity learning rates are jpc's, on the batch-mean energy
VARIANTS = {
    "backprop": {"net": "mupc", "args": ["--algorithm", "bp"], "T": None, "lr": "0.1"},
    "fixed": {"net": "mupc", "args": ["--mode", "fixed", "--eta", "1"], "T": "depth",
              "lr": "0.1"},
    "fixed-standard": {"net": "standard", "args": ["--mode", "fixed", "--eta", "1"],
                       "T": "depth", "lr": "0.001"},
    "strict": {"net": "standard", "args": ["--mode", "strict", "--eta", "0.1"], "T": "20",
               "lr": "0.001"},
    "ipc": {"net": "standard", "args": ["--mode", "strict", "--schedule", "ipc",
                                        "--eta", "0.1"], "T": "20", "lr": "0.0003"},
    "mupc": {"net": "mupc", "args": ["--mode", "strict", "--eta", repr(0.5 / BATCH)],
             "T": "depth", "lr": "0.1"},
    "mupc-lr5": {"net": "mupc", "args": ["--mode", "strict", "--eta", repr(5 / BATCH)],
                 "T": "depth", "lr": "0.1"},
    "pcx-strict": {"net": "mlp", "args": ["--mode", "strict", "--eta", "0.1"], "T": "20",
                   "lr": "0.001"},
    "pcx-fixed": {"net": "mlp", "args": ["--mode", "fixed", "--eta", "1"], "T": "depth",
                  "lr": "0.001"},
}
#: the nets (`generate resnet`); "mlp" is a plain GELU MLP like pcx's, with He init: with
#: pcx's own uniform init backprop itself fails at depth 16 (issue 26)
NETS = {"mupc": {"parameterization": "mupc", "activation": "relu"},
        "standard": {"parameterization": "standard", "activation": "relu"},
        "mlp": {"parameterization": "standard", "activation": "gelu", "skips": False,
                "init": "he"}}
#: jpc's and pcx's numbers measured for issue 26 (5 epochs, 1 seed), for comparison
JPC = {"backprop": {8: 89.2, 16: 89.3, 32: 91.0, 64: 91.5, 128: 91.8},
       "mupc": {8: 87.9, 16: 87.9, 32: 86.5, 64: 86.8},
       "mupc-lr5": {16: 91.7, 32: 90.3},
       "strict": {8: 88.2, 16: 77.4, 32: 10.0, 64: 10.0}}
MOVED = (0.05, 0.1)
#: exit codes of a run stopped by a signal (SIGINT, SIGTERM): not a finished run
INTERRUPTED = (130, 143)


def run_name(variant: str, depth: int, seed: int) -> str:
    return f"{variant}-d{depth}-s{seed}"


def rounds_of(variant: str, depth: int) -> int | None:
    t = VARIANTS[variant]["T"]
    return None if t is None else depth if t == "depth" else int(t)


def cost(variant: str, depth: int) -> float:
    """A guess at an epoch's relative cost: vertex-rounds (fixed mode's event schedule
    and backprop send about one message per edge)."""
    t = rounds_of(variant, depth)
    per = 2 if t is None or VARIANTS[variant]["args"][1] == "fixed" else t
    return (depth + 1) * per


def topology(out: Path, net: str, depth: int) -> Path:
    from neurolocal.generate import resnet, topology_yaml

    path = out / "nets" / f"{net}-{depth}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(topology_yaml(resnet(depth=depth, width=WIDTH, **NETS[net])))
    return path


def run_one(out: Path, variant: str, depth: int, seed: int, epochs: int) -> int:
    spec = VARIANTS[variant]
    target = out / run_name(variant, depth, seed)
    argv = ["run", str(topology(out, spec["net"], depth)), "--data", "mnist", "--engine",
            "local", "--epochs", str(epochs), "--batch-size", str(BATCH), "--seed", str(seed),
            "--optimizer", "adam", "--lr", spec["lr"], *spec["args"], "--out", str(target),
            "--quiet", "--no-traffic-log"]
    t = rounds_of(variant, depth)
    if t is not None:
        argv += ["-T", str(t)]
    return run_recorded(argv, target, epochs=epochs)


def run_recorded(argv: list[str], target: Path, **extra) -> int:
    """`neurolocal ARGV` in this process; its exit code, wall and CPU seconds, argv, the
    load after it and `extra` go to TARGET/done.json (a finished run, not run again). A
    run stopped by a signal (its checkpoint kept) stops the grid."""
    from neurolocal.cli import main as neurolocal

    started, cpu = time.time(), cpu_seconds()
    code = neurolocal(argv)
    if code in INTERRUPTED:
        raise SystemExit(code)
    target.mkdir(parents=True, exist_ok=True)
    (target / "done.json").write_text(json.dumps({
        "exit": code, "seconds": time.time() - started, "cpu": cpu_seconds() - cpu,
        "argv": ["neurolocal", *argv], "load": load_average(), **extra}))
    return code


# --- reading finished runs ------------------------------------------------------------------

def read_run(path: Path) -> dict | None:
    done = path / "done.json"
    if not done.exists():
        return None
    info = json.loads(done.read_text())
    row = {"exit": info["exit"], "load": info["load"], "epochs": info["epochs"],
           "argv": info["argv"]}
    metrics_path = path / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        algorithm = next(iter(metrics["runs"]))
        run = metrics["runs"][algorithm]
        row["accuracy"] = run["final"]["test_accuracy"]
        row["seconds"] = float(np.mean([e["seconds"] for e in run["epochs"]]))
    depth_path = path / "depth.json"
    if depth_path.exists():
        audit = next(iter(json.loads(depth_path.read_text()).values()))
        last = audit["epochs"][-1]
        layers = audit["layers"]
        row["layers"] = layers
        row["change"] = [last["weight_change"].get(n) for n in layers]
        if "layers" in last:
            row["arrived"] = [last["layers"][n]["arrived"] for n in layers]
            row["cosine"] = [last["layers"][n]["cosine"] for n in layers]
    return row


def collect(out: Path) -> dict:
    rows = {}
    for path in sorted(out.glob("*-d*-s*")):
        variant, depth, seed = path.name.rsplit("-", 2)
        row = read_run(path)
        if row is not None and variant in VARIANTS:
            rows[(variant, int(depth[1:]), int(seed[1:]))] = row
    return rows


# --- the section ------------------------------------------------------------------------------

def mean_sd(xs, scale=1.0, fmt="{:.1f}") -> str:
    xs = [x * scale for x in xs if x is not None and np.isfinite(x)]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(np.mean(xs))} ± {fmt.format(np.std(xs))}"


def moved(change, threshold) -> int:
    return sum(1 for c in change if c is not None and c >= threshold)


def per_layer_summary(rows: list[dict]) -> dict:
    """Over seeds: layers moving >= 0.05 and >= 0.1, the smallest change, layers the
    error reached, the mean cosine and the lowest layer's cosine."""
    first = rows[0]
    n = len(first.get("layers", []))
    out = {"n": n}
    if not n:
        return out
    out["moved05"] = mean_sd([moved(r["change"], MOVED[0]) for r in rows], fmt="{:.0f}")
    out["moved10"] = mean_sd([moved(r["change"], MOVED[1]) for r in rows], fmt="{:.0f}")
    out["least"] = mean_sd([min((c for c in r["change"] if c is not None), default=None)
                            for r in rows], fmt="{:.3g}")
    if "arrived" in first:
        out["reached"] = mean_sd([sum(a is not None for a in r["arrived"]) for r in rows],
                                 fmt="{:.0f}")
        cos = [np.mean([c for c in r["cosine"] if c is not None] or [np.nan]) for r in rows]
        out["cosine"] = mean_sd(cos, fmt="{:.2f}")
        out["cosine_h1"] = mean_sd([r["cosine"][0] for r in rows], fmt="{:.2f}")
        out["arrived_h1"] = mean_sd([r["arrived"][0] for r in rows], fmt="{:.0f}") \
            if all(r["arrived"][0] is not None for r in rows) else "never"
    return out


def grouped(rows: dict) -> dict:
    groups: dict = {}
    for (variant, depth, seed), row in sorted(rows.items()):
        groups.setdefault((variant, depth), []).append(row)
    return groups


def results_table(groups: dict) -> str:
    lines = ["| variant | depth | seeds | test accuracy % | jpc/pcx % | s / epoch | "
             "layers moving >= 0.05 | >= 0.1 | smallest change | error reached | "
             "error at h1 (round) | cosine to bp (mean / h1) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant in VARIANTS:
        for depth in DEPTHS:
            rows = groups.get((variant, depth))
            if not rows:
                continue
            ok = [r for r in rows if r["exit"] == 0]
            failed = len(rows) - len(ok)
            acc = mean_sd([r.get("accuracy") for r in ok], 100)
            if failed:
                acc += f" ({failed} diverged)"
            s = per_layer_summary(ok) if ok else {"n": 0}
            n = s["n"]
            ref = JPC.get(variant, {}).get(depth) if rows[0]["epochs"] == EPOCHS else None
            cos = f"{s['cosine']} / {s['cosine_h1']}" if "cosine" in s else "-"
            lines.append(
                f"| {variant} | {depth} | {len(rows)} | {acc} | "
                f"{'-' if ref is None else f'{ref:.1f}'} | "
                f"{mean_sd([r.get('seconds') for r in ok], fmt='{:.2f}')} | "
                f"{s.get('moved05', '-')} of {n} | {s.get('moved10', '-')} of {n} | "
                f"{s.get('least', '-')} | {s.get('reached', '-')} of {n} | "
                f"{s.get('arrived_h1', '-')} | {cos} |")
    return "\n".join(lines)


def verdicts(groups: dict) -> list[str]:
    """What the runs show, in sentences made from their numbers."""
    said = []

    def acc(variant, depth):
        rows = [r for r in groups.get((variant, depth), []) if r["exit"] == 0]
        xs = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
        return (100 * float(np.mean(xs))) if xs else None

    def layers(variant, depth):
        rows = [r for r in groups.get((variant, depth), []) if r["exit"] == 0]
        return rows[0] if rows and rows[0].get("change") else None

    said.extend(headline(layers))
    for depth in DEPTHS:
        mu, bp = layers("mupc", depth), layers("backprop", depth)
        if mu is None:
            continue
        n = len(mu["change"])
        k = moved(mu["change"], MOVED[0])
        top = [name for name, c in zip(mu["layers"], mu["change"])
               if c is not None and c >= MOVED[0]]
        reached = sum(a is not None for a in mu.get("arrived", []))
        text = (f"Depth {depth}: under muPC (jpc's recipe) {k} of {n} weight matrices "
                f"moved by >= {MOVED[0]} ({', '.join(top) or 'none'}); the probe's error "
                f"reached {reached} of {n} layers")
        if bp is not None:
            text += (f"; under backprop {moved(bp['change'], MOVED[0])} of {n} moved "
                     f"(smallest change {min(c for c in bp['change'] if c is not None):.3g})")
        a_mu, a_bp = acc("mupc", depth), acc("backprop", depth)
        if a_mu is not None and a_bp is not None:
            text += f"; accuracy {a_mu:.1f}% against backprop's {a_bp:.1f}%"
        ref = JPC["mupc"].get(depth) if mu["epochs"] == EPOCHS else None
        if a_mu is not None and ref is not None:
            gap = a_mu - ref
            where = "within" if abs(gap) <= 1.5 else "above, by more than" if gap > 0 \
                else "below, by more than"
            text += f" (jpc's muPC {ref:.1f}%: {where} 1.5 pp, {gap:+.1f})"
        said.append(text + ".")
    for depth in DEPTHS:
        a_f, a_bp = acc("fixed", depth), acc("backprop", depth)
        f = layers("fixed", depth)
        if a_f is None or a_bp is None or f is None:
            continue
        n = len(f["change"])
        said.append(f"Depth {depth}: fixed PC (eta 1, T = {depth}) {a_f:.1f}% against "
                    f"backprop's {a_bp:.1f}% ({a_f - a_bp:+.1f} pp); {moved(f['change'], 0.1)}"
                    f" of {n} layers moved by >= 0.1 (smallest "
                    f"{min(c for c in f['change'] if c is not None):.3g}).")
    return said


def headline(layers) -> list[str]:
    """The answer to "do muPC's deep layers learn?" from the muPC runs of depth >= 8:
    no, when at every such depth fewer than half of the weight matrices moved by >=
    MOVED[0] and the first did not; yes, when every matrix moved at every depth; partly
    otherwise. Also for activity lr 5."""
    out = []
    for variant, label in (("mupc", "jpc's recipe, activity lr 0.5"),
                           ("mupc-lr5", "activity lr 5")):
        runs = {d: layers(variant, d) for d in DEPTHS if d >= 8 and layers(variant, d)}
        if not runs:
            continue
        counts = {d: (moved(r["change"], MOVED[0]), len(r["change"])) for d, r in runs.items()}
        first_moved = {d: (r["change"][0] or 0.0) >= MOVED[0] for d, r in runs.items()}
        reached_first = {d: bool(r.get("arrived")) and r["arrived"][0] is not None
                         for d, r in runs.items()}
        if all(k < n / 2 for k, n in counts.values()) and not any(first_moved.values()):
            answer = "No"
        elif all(k == n for k, n in counts.values()):
            answer = "Yes"
        else:
            answer = "Partly"
        lowest = {}
        for d, r in runs.items():
            names = [n for n, c in zip(r["layers"], r["change"]) if c is not None
                     and c >= MOVED[0]]
            lowest[d] = names[0] if names else "none"
        detail = "; ".join(f"depth {d}: {k} of {n} moved (the lowest that did: "
                           f"{lowest[d]}), the probe's error "
                           f"{'reached' if reached_first[d] else 'never reached'} h1"
                           for d, (k, n) in counts.items())
        out.append(f"**Do muPC's deep layers learn ({label})? {answer}.** Relative weight "
                   f"change >= {MOVED[0]} after the last epoch: {detail}.")
    return out


def colour(variant: str) -> str:
    """One colour per variant in every panel."""
    return f"C{list(VARIANTS).index(variant) % 10}"


def plots(groups: dict, figures: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    made = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for variant in VARIANTS:
        depths = [d for d in DEPTHS if any(r["exit"] == 0 and r.get("accuracy") is not None
                                           for r in groups.get((variant, d), []))]
        if not depths:
            continue
        acc = [100 * np.mean([r["accuracy"] for r in groups[(variant, d)] if r["exit"] == 0])
               for d in depths]
        sec = [np.mean([r["seconds"] for r in groups[(variant, d)] if r["exit"] == 0])
               for d in depths]
        left.plot(depths, acc, marker="o", label=variant, color=colour(variant))
        right.plot(depths, sec, marker="o", label=variant, color=colour(variant))
    for ax, label in ((left, "test accuracy %"), (right, "seconds per epoch")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "accuracy.png", dpi=110)
    plt.close(fig)
    made.append("accuracy.png")

    depths = sorted({d for (_, d) in groups})
    if depths:
        fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths), 3.8),
                                 squeeze=False, sharey=True)
        for ax, depth in zip(axes[0], depths):
            for variant in VARIANTS:
                rows = [r for r in groups.get((variant, depth), [])
                        if r["exit"] == 0 and r.get("change")]
                if not rows:
                    continue
                change = np.array([[c if c is not None else np.nan for c in r["change"]]
                                   for r in rows]).mean(axis=0)
                ax.plot(np.arange(1, change.size + 1), np.maximum(change, 1e-12),
                        marker=".", label=variant, color=colour(variant))
            ax.axhline(MOVED[0], color="grey", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_title(f"{depth} hidden layers", fontsize=9)
            ax.set_xlabel("weight matrix (1 = input)")
        axes[0][0].set_ylabel("relative weight change (1e-12: none)")
        handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()
                   if not h.get_label().startswith("_")}
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="lower center",
                   ncol=len(handles))
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        fig.savefig(figures / "weight_change.png", dpi=110)
        plt.close(fig)
        made.append("weight_change.png")
    return made


def section(rows: dict, args, made: list[str], spent: dict) -> str:
    groups = grouped(rows)
    ran = sorted({(v, d) for v, d, _ in rows})
    seeds_of = {}
    for v, d, s in rows:
        seeds_of.setdefault((v, d), []).append(s)
    full = [(v, d, s) for v in VARIANTS for d in DEPTHS for s in SEEDS]
    missing = [k for k in full if k not in rows]
    epochs = sorted({r["epochs"] for r in rows.values()})
    ones = sorted(float(r["load"].split(",")[0]) for r in rows.values()
                  if r["load"] != "unknown")
    loads = [f"1-minute load {ones[0]:.1f} to {ones[-1]:.1f}, median "
             f"{ones[len(ones) // 2]:.1f} at the ends of the runs"] if ones else ["unknown"]
    ran_text = "; ".join(f"{v} at depth {', '.join(str(d) for vv, d in ran if vv == v)}"
                         for v in VARIANTS if any(vv == v for vv, _ in ran))
    seeds = sorted({s for _, _, s in rows})
    invocations = ", then ".join(f"`{c}`" for c in spent.get("invocations", [])) or "no runs"
    verdict = "\n".join(f"- {line}" for line in verdicts(groups)) or "- (no muPC run yet)"
    figures = "\n".join(f"![{m}](results/depth/{m})" for m in made)
    return f"""{BEGIN}
## Predictive coding at depth

Made by `nice -n 10 python scripts/depth_results.py` with {invocations} (finished
{spent['when']}; {spent['minutes']:.0f} minutes of one process at a time on the local engine,
on 2 cores shared with other work: the load averages the runs saw were
{'; '.join(loads)}). MNIST-5k (`--data mnist`: 4,000 train / 1,000 test images), width
{WIDTH}, ReLU before each linear map, batch {BATCH}, {', '.join(map(str, epochs))} epoch(s),
seed(s) {', '.join(map(str, seeds))}. The variants and their recipes are in the script's
docstring; "jpc/pcx %" is what the libraries themselves got (issue 26, 5 epochs, 1 seed:
jpc's backprop and muPC on the same muPC resnet; for `strict`, jpc's standard PC on the
standard resnet with jpc's own recipe, where the runs here use pcx's, eta 0.1 and T 20).

**What was run:** {ran_text}. **Not run** ({len(missing)} of the {len(full)} runs of the full
grid: depths {', '.join(map(str, DEPTHS))}, seeds {', '.join(map(str, SEEDS))}, {EPOCHS} epochs):
`nice -n 10 python scripts/depth_results.py` runs the rest (finished runs are kept in
`runs/depth` and not repeated).

Per layer, from each run's depth audit after its last epoch (`depth.json`: relative weight
change since the start, the round at which the probe batch's error first reached the layer,
the cosine of the PC update with backprop's gradient; mean ± sd over seeds):

{results_table(groups)}

What it shows (sentences written by the script from the numbers above):

{verdict}

{cost_text(spent.get('timing'))}

{figures}
{END}"""


def parse_list(text: str, kind=int) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true",
                        help="depths 2,8, seed 0, one epoch")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no run after this many minutes")
    parser.add_argument("--out", default="runs/depth")
    parser.add_argument("--results", default="RESULTS.md")
    parser.add_argument("--cost", "--timing-only", dest="cost", action="store_true",
                        help="only measure the cost goals (timing.json) and print them; the "
                             "section is rewritten only when --out holds runs")
    parser.add_argument("--cost-depths", default="128,64", metavar="FIXED,MUPC",
                        help="the depths of the cost goals (default 128,64)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the section from the runs in --out")
    args = parser.parse_args()
    if args.quick:
        args.depths, args.seeds, args.epochs = "2,8", "0", 1
        args.out = args.out if args.out != "runs/depth" else "runs/depth-quick"
    depths, seeds = parse_list(args.depths), parse_list(args.seeds)
    variants = parse_list(args.variants, str)
    bad = [v for v in variants if v not in VARIANTS] + [d for d in depths if d < 1]
    if bad or args.epochs < 1 or not seeds:
        parser.error(f"not a variant or depth: {bad}" if bad else "epochs and seeds, please")
    args.command = " ".join(
        ([f"--depths {args.depths}"] if args.depths != ",".join(map(str, DEPTHS)) else [])
        + ([f"--seeds {args.seeds}"] if args.seeds != ",".join(map(str, SEEDS)) else [])
        + ([f"--epochs {args.epochs}"] if args.epochs != EPOCHS else [])
        + ([f"--variants {args.variants}"] if args.variants != ",".join(VARIANTS) else [])
        + ([f"--budget-minutes {args.budget_minutes:g}"] if args.budget_minutes else []))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spent_path = out / "spent.json"
    spent = json.loads(spent_path.read_text()) if spent_path.exists() else {"minutes": 0.0}
    spent.setdefault("invocations", [])
    cost_depths = parse_list(args.cost_depths)
    if len(cost_depths) != 2 or min(cost_depths) < 1:
        parser.error("--cost-depths: two depths, FIXED,MUPC")
    if args.cost:
        measured = measure_cost(out, topology, cost_depths, BATCH)
        print(cost_text(measured))
        if tuple(cost_depths) != COST_DEPTHS or not collect(out):
            return   # a toy measurement, or no runs to render: RESULTS.md is left alone
    elif not args.render:
        started = time.time()
        spent["invocations"].append(args.command or "(defaults)")
        spent_path.write_text(json.dumps(spent))
        plan = sorted(((v, d, s) for v in variants for d in depths for s in seeds),
                      key=lambda k: (k[2], cost(k[0], k[1]), k[1]))
        for variant, depth, seed in plan:
            if (out / run_name(variant, depth, seed) / "done.json").exists():
                continue
            if args.budget_minutes and time.time() - started > 60 * args.budget_minutes:
                print(f"budget spent: not starting {run_name(variant, depth, seed)} and later")
                break
            t = time.time()
            code = run_one(out, variant, depth, seed, args.epochs)
            print(f"{run_name(variant, depth, seed)}: exit {code}, {time.time() - t:.0f} s, "
                  f"load {load_average()}", flush=True)
        if not args.budget_minutes or time.time() - started < 60 * args.budget_minutes:
            if not (out / "timing.json").exists() and args.command == "":
                measure_cost(out, topology)   # the full command measures the cost goals too
        spent["minutes"] += (time.time() - started) / 60
        spent["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        spent_path.write_text(json.dumps(spent))
    spent.setdefault("when", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if (out / "timing.json").exists():
        spent["timing"] = json.loads((out / "timing.json").read_text())
    rows = collect(out)
    made = plots(grouped(rows), Path("results/depth")) if rows else []
    from asynchrony_results import replace_between   # scripts/ is on sys.path

    replace_between(Path(args.results), BEGIN, END, section(rows, args, made, spent))
    print(f"wrote {args.results} (section 'Predictive coding at depth', {len(rows)} runs)")


if __name__ == "__main__":
    main()
