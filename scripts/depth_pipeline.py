"""Make RESULTS.md's subsection "Depth and time: pipelining on the sim engine" (issue 26,
scope 6; docs/asynchrony.md §7, docs/depth.md).

    nice python scripts/depth_pipeline.py [--depths 4,8,16,32,64] [--pipelines 1,2,4,8,depth]
                                          [--lrs 0.1,0.01] [--seeds 0,1,2] [--delay DIST]
                                          [--budget-minutes M] [--out runs/depth-pipeline]
                                          [--results RESULTS.md] [--render]

The muPC resnets of scripts/depth_results.py (`generate resnet`, width 128, ReLU before
each linear map) trained for one epoch of MNIST-5k (`--data mnist`: 4,000 train / 1,000
test, batch 128: 32 batches) on the sim engine in fixed mode, eta 1, T = depth (at K = 1
this is backprop exactly), Adam, with `--pipeline K` batches in flight. One run per
(lr, depth, K, seed): `neurolocal run NET --engine sim --pipeline K ...`. From its
metrics.json: test accuracy; the simulated rounds per batch over the epoch (the run's
simulated time / 32: it includes the pipeline filling and draining at the epoch's ends,
so K close to 32 is mostly fill); batches per simulated second (1000 / rounds per batch:
round_ms 1, unit compute time); the mean latency of a batch (entry to its last update);
the largest weight staleness (updates a vertex applied between a batch's forward pass and
its update for that batch, <= K - 1). Also the wall and CPU seconds the simulation took.
Simulated time does not depend on the machine; the accuracies do not either (one process,
deterministic), the seconds do.

Runs are kept in --out/<lr>-d<depth>-k<K>-s<seed>/ and not repeated; they go seed by seed,
cheapest first, and `--budget-minutes` starts no run after that many minutes, so the same
command finishes an interrupted grid. The section is written between
<!-- depth-pipeline:begin --> and <!-- depth-pipeline:end --> (appended when absent) from
what --out holds. `--render`: only rewrite the section.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from depth_results import (BATCH, WIDTH, load_average, mean_sd, parse_list, run_recorded,
                           topology)

BEGIN, END = "<!-- depth-pipeline:begin -->", "<!-- depth-pipeline:end -->"
DEPTHS = (4, 8, 16, 32, 64)
PIPELINES = ("1", "2", "4", "8", "depth")
LRS = ("0.1", "0.01")
SEEDS = (0, 1, 2)


def pipelines_for(depth: int, pipelines) -> list[int]:
    """The K values of one depth ("depth": K = the depth), each once, ascending."""
    return sorted({depth if k == "depth" else int(k) for k in pipelines})


def run_name(lr: str, depth: int, k: int, seed: int) -> str:
    return f"lr{lr}-d{depth}-k{k}-s{seed}"


def run_one(out: Path, lr: str, depth: int, k: int, seed: int, delay: str | None) -> int:
    target = out / run_name(lr, depth, k, seed)
    argv = ["run", str(topology(out, "mupc", depth)), "--data", "mnist", "--engine", "sim",
            "--mode", "fixed", "--eta", "1", "-T", str(depth), "--pipeline", str(k),
            "--epochs", "1", "--batch-size", str(BATCH), "--seed", str(seed),
            "--optimizer", "adam", "--lr", lr, "--out", str(target), "--quiet",
            "--no-traffic-log", "--no-depth-audit"]
    if delay:
        argv += ["--delay", delay]
    return run_recorded(argv, target)


def read_run(path: Path) -> dict | None:
    done = path / "done.json"
    if not done.exists():
        return None
    info = json.loads(done.read_text())
    row = {"exit": info["exit"], "seconds": info["seconds"], "cpu": info["cpu"],
           "load": info["load"]}
    metrics = path / "metrics.json"
    if info["exit"] == 0 and metrics.exists():
        doc = json.loads(metrics.read_text())
        run = doc["runs"]["pc"]
        report = run["engine_report"]
        batches = -(-doc["data"]["train_size"] // doc["settings"]["batch_size"])
        row.update(accuracy=run["final"]["test_accuracy"], batches=batches,
                   rounds=report["sim_time"] / batches,
                   latency=report.get("latency", report["sim_time"]) / batches,
                   staleness=report.get("max_weight_staleness", 0),
                   epoch_seconds=run["final"]["seconds"])
    return row


def collect(out: Path) -> dict:
    rows = {}
    for path in sorted(out.glob("lr*-d*-k*-s*")):
        lr, depth, k, seed = path.name[2:].rsplit("-", 3)
        row = read_run(path)
        if row is not None:
            rows[(lr, int(depth[1:]), int(k[1:]), int(seed[1:]))] = row
    return rows


def grouped(rows: dict) -> dict:
    groups: dict = {}
    for key, row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        groups.setdefault(key[:3], []).append(row)
    return groups


def results_table(groups: dict, lr: str) -> str:
    lines = ["| depth | K | seeds | test accuracy % | sim. rounds / batch | batches / sim. s | "
             "latency (rounds) | max weight staleness | wall s / run (CPU s) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (rate, depth, k), rows in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        if rate != lr:
            continue
        ok = [r for r in rows if "accuracy" in r]
        acc = mean_sd([r["accuracy"] for r in ok], 100)
        if len(ok) < len(rows):
            acc += f" ({len(rows) - len(ok)} failed)"
        # simulated time: the same for every seed (deterministic timing)
        rounds, latency = (ok[0]["rounds"], ok[0]["latency"]) if ok else (None, None)
        lines.append(
            f"| {depth} | {k} | {len(rows)} | {acc} | "
            f"{'-' if rounds is None else f'{rounds:.1f}'} | "
            f"{'-' if rounds is None else f'{1000 / rounds:.0f}'} | "
            f"{'-' if latency is None else f'{latency:.1f}'} | "
            f"{max((r['staleness'] for r in ok), default='-')} | "
            f"{mean_sd([r['seconds'] for r in rows])} "
            f"({mean_sd([r['cpu'] for r in rows])}) |")
    return "\n".join(lines)


def verdicts(groups: dict, lrs) -> list[str]:
    """Sentences from the numbers: throughput of the deepest K against K = 1 per depth, and
    accuracy against K per depth and learning rate."""
    said = []

    def get(lr, depth, k, key):
        rows = [r for r in groups.get((lr, depth, k), []) if key in r]
        return float(np.mean([r[key] for r in rows])) if rows else None

    depths = sorted({d for _, d, _ in groups})
    throughput = []
    for depth in depths:
        ks = sorted({k for lr, d, k in groups if d == depth})
        one = next((get(lr, depth, 1, "rounds") for lr in lrs if get(lr, depth, 1, "rounds")),
                   None)
        top = ks[-1] if ks else None
        deep = next((get(lr, depth, top, "rounds") for lr in lrs
                     if get(lr, depth, top, "rounds")), None)
        if one and deep and top > 1:
            throughput.append(f"depth {depth}: {one:.1f} rounds per batch at K = 1, "
                              f"{deep:.1f} at K = {top} ({one / deep:.1f}x the batches per "
                              "simulated second)")
    if throughput:
        said.append("**Throughput.** " + "; ".join(throughput) + ".")
    for lr in lrs:
        parts = []
        for depth in depths:
            ks = sorted(k for rate, d, k in groups if rate == lr and d == depth)
            accs = [(k, get(lr, depth, k, "accuracy")) for k in ks]
            accs = [(k, a) for k, a in accs if a is not None]
            if accs:
                parts.append(f"depth {depth}: " + ", ".join(f"K {k} {100 * a:.1f}%"
                                                            for k, a in accs))
        if parts:
            said.append(f"**Accuracy against K, Adam {lr}** (mean over the seeds run): "
                        + "; ".join(parts) + ".")
    return said


def plots(groups: dict, lrs, figures: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 1 + len(lrs), figsize=(4.2 * (1 + len(lrs)), 3.8))
    depths = sorted({d for _, d, _ in groups})
    ks = sorted({k for _, _, k in groups})
    def rounds(depth, k):   # simulated time: the same for every lr's and seed's run
        rows = [r for lr in lrs for r in groups.get((lr, depth, k), []) if "rounds" in r]
        return rows[0]["rounds"] if rows else None

    # batches per simulated second against depth: a line per fixed K, and K = depth
    series = {f"K = {k}": [(d, k) for d in depths if rounds(d, k)] for k in ks}
    series["K = depth"] = [(d, d) for d in depths if rounds(d, d)]
    for label, points in series.items():
        if len(points) > 1:
            axes[0].plot([d for d, _ in points], [1000 / rounds(d, k) for d, k in points],
                         marker="o", label=label, ls="--" if label == "K = depth" else "-")
    axes[0].set(xscale="log", yscale="log", xlabel="hidden layers",
                ylabel="batches per simulated second")
    axes[0].set_xscale("log", base=2)
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    for ax, lr in zip(axes[1:], lrs):
        for depth in depths:
            pts = [(k, 100 * np.mean([r["accuracy"] for r in groups[(lr, depth, k)]
                                      if "accuracy" in r]))
                   for k in ks if any("accuracy" in r for r in groups.get((lr, depth, k), []))]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"depth {depth}")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="pipeline depth K", ylabel="test accuracy % (1 epoch)",
               title=f"Adam {lr}", ylim=(0, 100))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(figures / "pipeline.png", dpi=110)
    plt.close(fig)
    return ["pipeline.png"]


def section(rows: dict, spent: dict, made: list[str]) -> str:
    groups = grouped(rows)
    lrs = sorted({lr for lr, *_ in rows}, key=float, reverse=True)
    seeds = sorted({s for *_, s in rows})
    depths = sorted({d for _, d, _, _ in rows})
    cpu = sum(r["cpu"] for r in rows.values()) / 60
    ones = sorted(float(r["load"].split(",")[0]) for r in rows.values()
                  if r["load"] != "unknown")
    load = (f"1-minute load {ones[0]:.1f} to {ones[-1]:.1f}, median {ones[len(ones) // 2]:.1f}"
            if ones else "load unknown")
    invocations = ", then ".join(f"`{c}`" for c in spent.get("invocations", [])) or "no runs"
    delays = sorted({spent.get("delay") or "none"})
    tables = "\n\n".join(f"Adam {lr}:\n\n{results_table(groups, lr)}" for lr in lrs)
    said = "\n".join(f"- {s}" for s in verdicts(groups, lrs)) or "- (no runs yet)"
    figures = "\n".join(f"![{m}](results/depth/{m})" for m in made)
    return f"""{BEGIN}
### Depth and time: pipelining on the sim engine

Made by `nice -n 10 python scripts/depth_pipeline.py` with {invocations}
(finished {spent.get('when', '-')}; {cpu:.1f} CPU-minutes in {len(rows)} runs, one process,
{load} at the ends of the runs). The muPC resnets above (width {WIDTH}, depths
{', '.join(map(str, depths))}) in fixed mode, eta 1, T = depth: at K = 1 this is backprop
exactly (the `fixed` rows above; the sim engine at K = 1 is the local engine bit for bit).
**One epoch** of MNIST-5k (32 batches of {BATCH}), seed(s) {', '.join(map(str, seeds))},
Adam at the depth grid's learning rate 0.1 and at 0.01; message delay {', '.join(delays)};
unit compute time, so simulated time does not depend on the machine. "sim. rounds / batch" is the
epoch's simulated time over its 32 batches: it includes filling and draining the pipeline
(it drains at every epoch boundary, docs/asynchrony.md §7), so K near 32 is mostly fill and
drain, and K >= 32 admits the whole epoch at once (staleness 31 at most). "latency" is the
mean from a batch's entry to its last vertex's update; "max weight staleness" the most
updates a vertex applied between a batch's forward pass and its update for it (<= K - 1).
Simulated times are the same for every seed. "wall s / run" is what the simulator took on
this machine for the whole run (data, the epoch, evaluation), with the CPU-seconds it used.

{tables}

What it shows (numbers written by the script):

{said}

Without pipelining a batch takes about 2 x depth + 1 rounds (the forward pass down, the
error back up, the weight updates), so batches per simulated second fall as 1 / depth;
with K batches in flight the rounds per batch fall about K-fold until the pipeline is
full. In the steady state, with K = depth, a batch takes a few rounds whatever the depth
(the synthetic chains of "Throughput against depth" above). Here an epoch has 32 batches:
the pipeline fills and drains inside it and never holds more than 32, so the epoch's
rounds per batch at K = depth grow with depth, though far less than at K = 1. Throughput is bought with staleness: every
vertex uses the weights it holds when it computes, there is no weight stashing, and an
update can be up to K - 1 updates older than the forward pass it belongs to. At the depth
grid's learning rate (Adam 0.1 on N(0, 1) weights, large steps) that costs accuracy at
once; at a ten times smaller rate accuracy falls with K more slowly (compare the two
tables). One epoch and {len(seeds)} seed(s): the accuracies are a first look at the trade,
not converged numbers.

{figures}
{END}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--pipelines", default=",".join(PIPELINES),
                        help="K values; 'depth' is K = the net's depth")
    parser.add_argument("--lrs", default=",".join(LRS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--delay", default=None,
                        help="message delay (run --delay), e.g. exp:1; default none")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no run after this many minutes")
    parser.add_argument("--out", default="runs/depth-pipeline")
    parser.add_argument("--results", default="RESULTS.md")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the section from the runs in --out")
    args = parser.parse_args()
    depths, seeds = parse_list(args.depths), parse_list(args.seeds)
    pipelines, lrs = parse_list(args.pipelines, str), parse_list(args.lrs, str)
    bad = ([d for d in depths if d < 1]
           + [k for k in pipelines if k != "depth" and not (k.isdigit() and int(k) >= 1)])
    for lr in lrs:
        try:
            if float(lr) <= 0:
                bad.append(lr)
        except ValueError:
            bad.append(lr)
    if bad or not seeds or not depths:
        parser.error(f"not a depth, K or learning rate: {bad}" if bad
                     else "depths and seeds, please")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spent_path = out / "spent.json"
    spent = json.loads(spent_path.read_text()) if spent_path.exists() else {}
    spent.setdefault("invocations", [])
    if spent.get("delay", args.delay) != args.delay and not args.render:
        parser.error(f"{out} holds runs with delay {spent['delay']}: use another --out")
    if not args.render:
        spent["delay"] = args.delay
        spent["invocations"].append(" ".join(f"--{k.replace('_', '-')} {v}" for k, v in (
            ("depths", args.depths), ("pipelines", args.pipelines), ("lrs", args.lrs),
            ("seeds", args.seeds), ("delay", args.delay),
            ("budget_minutes", args.budget_minutes)) if v is not None))
        spent_path.write_text(json.dumps(spent))
        started = time.time()
        plan = sorted(((lr, d, k, s) for lr in lrs for d in depths
                       for k in pipelines_for(d, pipelines) for s in seeds),
                      key=lambda key: (key[3], key[1], key[2], -float(key[0])))
        for lr, depth, k, seed in plan:
            if (out / run_name(lr, depth, k, seed) / "done.json").exists():
                continue
            if args.budget_minutes and time.time() - started > 60 * args.budget_minutes:
                print(f"budget spent: not starting {run_name(lr, depth, k, seed)} and later")
                break
            t = time.time()
            code = run_one(out, lr, depth, k, seed, args.delay)
            print(f"{run_name(lr, depth, k, seed)}: exit {code}, {time.time() - t:.1f} s, "
                  f"load {load_average()}", flush=True)
        spent["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        spent_path.write_text(json.dumps(spent))
    rows = collect(out)
    groups = grouped(rows)
    lrs_run = sorted({lr for lr, *_ in rows}, key=float, reverse=True)
    made = plots(groups, lrs_run, Path("results/depth")) if rows else []
    from asynchrony_results import replace_between   # scripts/ is on sys.path

    replace_between(Path(args.results), BEGIN, END, section(rows, spent, made))
    print(f"wrote {args.results} (section 'Depth and time: pipelining on the sim engine', "
          f"{len(rows)} runs)")


if __name__ == "__main__":
    main()
