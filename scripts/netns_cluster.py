#!/usr/bin/env python
"""A Ray cluster of separate hosts on one Linux machine (network namespaces); needs root.

    sudo python scripts/netns_cluster.py run topologies/dag.yaml          # up, check-grad, down
    sudo python scripts/netns_cluster.py run big.yaml --vertices-per-actor 64 --workers 2
    sudo python scripts/netns_cluster.py up --workers 2 [--rate 100mbit]   # hold; Ctrl-C stops
    sudo python scripts/netns_cluster.py down                             # leftovers of a killed run
    sudo python scripts/netns_cluster.py bench [--quick]                  # round time vs link rate
    sudo python scripts/netns_cluster.py model [--quick]                  # batch time vs cost model

Every Ray node (`ray start`) and the driver run in network namespaces of their own on a
private bridge, addresses 198.18.0.x (RFC 2544 benchmarking range; no default route,
so nothing leaves the bridge); see neurolocal/testing/netns.py and docs/netns.md. `run` and
`bench` tear everything down when they end, fail or are interrupted (Ctrl-C,
SIGTERM); `up` holds the cluster until Ctrl-C; `down` removes what a run killed with
SIGKILL left behind (only namespaces whose owning process is gone).

`bench` measures a relaxation round of a tiled graph over the cluster with a `tbf`
rate limit on every link, counts the bytes each link carried per round (the veths'
own counters), and compares with the scaling model of BENCHMARKS.md §4 plus a
bandwidth term: predicted = unlimited round + (bytes on the busiest link) / rate.

`model` (3 Ray nodes: head, w1 and the driver's own) trains the scaling workloads of
scripts/bench.py (section 11) over the cluster, 1 shard and 3 shards (one per node),
and prints the measured batch time next to the one `auto`'s cost model predicts
(neurolocal/engines/ray/costmodel.py) from the flop rate and the Ray hop costs
measured at start-up in the driver's namespace (probe.py: the hop to another node).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurolocal.testing import netns  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workers", type=int, default=2, help="worker hosts besides the head")
    common.add_argument("--cpus-per-node", type=int, default=1)
    common.add_argument("--rate", default=None, help="tbf rate on every link, e.g. 100mbit")
    run = sub.add_parser("run", parents=[common], help="up, check-grad TOPOLOGY, down")
    run.add_argument("topology")
    run.add_argument("--vertices-per-actor", type=int, default=16)
    run.add_argument("--placement", choices=("spread", "pack"), default="spread")
    run.add_argument("--batch-size", type=int, default=8)
    sub.add_parser("up", parents=[common], help="start a cluster and hold it until Ctrl-C")
    sub.add_parser("down", help="remove leftovers of runs whose process is gone")
    bench = sub.add_parser("bench", parents=[common], help="round time against link rate")
    bench.add_argument("--quick", action="store_true", help="fewer rates and repeats")
    bench.add_argument("--vertices", type=int, default=256)
    bench.add_argument("--vertices-per-actor", type=int, default=32)
    model = sub.add_parser("model", parents=[common], help="batch time against the cost model")
    model.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    model.add_argument("--json", action="store_true", help="the result as JSON, one line")
    predicted = sub.add_parser("predicted", help=argparse.SUPPRESS)  # model's driver, in drv
    predicted.add_argument("--quick", action="store_true")
    measure = sub.add_parser("measure", help=argparse.SUPPRESS)  # bench's driver, inside drv
    measure.add_argument("--switch", required=True)
    measure.add_argument("--vertices", type=int, required=True)
    measure.add_argument("--vertices-per-actor", type=int, required=True)
    measure.add_argument("--rounds", type=int, required=True)
    measure.add_argument("--repeats", type=int, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "measure":
        return measure(args)
    if args.command == "predicted":
        return predicted(args)
    if args.command == "down":
        removed = netns.sweep()
        print(f"removed {len(removed)} namespace(s) left behind: {', '.join(removed) or '-'}")
        return 0
    reason = netns.unavailable()
    if reason:
        print(f"netns_cluster: {reason}", file=sys.stderr)
        return 2
    if args.command == "model":
        args.workers = 1   # three Ray nodes: head, w1 and the driver's
    cluster = netns.NetnsCluster(workers=args.workers, cpus_per_node=args.cpus_per_node,
                                 rate=args.rate)
    started = time.perf_counter()
    try:
        cluster.start()
        print(f"cluster up in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{h.role} {h.address} ({h.namespace})" for h in cluster.hosts.values())
              + (f"; every link limited to {args.rate}" if args.rate else ""), flush=True)
        if args.command == "up":
            return hold(cluster)
        if args.command == "run":
            return run_topology(cluster, args)
        if args.command == "model":
            return model(cluster, args)
        return bench(cluster, args)
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.stop()
        left = cluster.leftovers()
        print("stopped: " + ("nothing left" if not any(left.values()) else f"LEFT {left}"),
              flush=True)


def hold(cluster: netns.NetnsCluster) -> int:
    token = cluster.base_dir / "auth_token"
    token.touch(mode=0o600)
    token.write_text(cluster.token)
    drv = cluster.hosts["drv"]
    print("a driver joins it from its namespace with:\n"
          f"  sudo ip netns exec {drv.namespace} env RAY_AUTH_MODE=token "
          f"RAY_AUTH_TOKEN_PATH={token} NEUROLOCAL_NODE_IP={drv.address} \\\n"
          f"    {sys.executable} -m neurolocal check-grad FILE.yaml --engine ray "
          f"--address {cluster.address}\n"
          "cut a link: sudo ip -n " + cluster.switch + " link set w1 down (and up)\n"
          "Ctrl-C stops the cluster.", flush=True)
    while True:
        time.sleep(3600)


def run_topology(cluster: netns.NetnsCluster, args) -> int:
    flags = ["check-grad", args.topology, "--engine", "ray", "--address", cluster.address,
             "--vertices-per-actor", args.vertices_per_actor, "--placement", args.placement,
             "--batch-size", args.batch_size, "--json"]
    print("$ neurolocal " + " ".join(map(str, flags)), flush=True)
    started = time.perf_counter()
    done = cluster.neurolocal(*flags, cwd=str(ROOT))
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr)
        return done.returncode
    report = json.loads(done.stdout.strip().splitlines()[-1])
    actors = Counter(a["ip"] for a in report["actors"])
    vertices = Counter()
    for actor in report["actors"]:
        vertices[actor["ip"]] += len(actor["vertices"])
    print(f"{report['graph']}: max relative error {report['max_rel_error']:.3e} "
          f"(eta {report['eta']}, T {report['iterations']}), {seconds:.1f} s")
    for ip, count in sorted(actors.items()):
        print(f"  host {ip}: {count} actors, {vertices[ip]} vertices")
    return done.returncode


# --- bandwidth --------------------------------------------------------------------------------

#: BENCHMARKS.md §4's scaling model: vertex work per round, remote call cost, hop latency
W, H, L = 25e-6, 0.32e-3, 1.8e-3


def bench(cluster: netns.NetnsCluster, args) -> int:
    rates = ["none", "100mbit", "10mbit"] if args.quick else \
        ["none", "1gbit", "100mbit", "20mbit", "10mbit"]
    rounds, repeats = (8, 3) if args.quick else (16, 5)
    rows = []
    for rate in rates:
        for role in cluster.roles:
            cluster.limit(role, None if rate == "none" else rate)
        done = cluster.run_in("drv", [sys.executable, __file__, "measure",
                                      "--switch", cluster.switch, "--vertices", str(args.vertices),
                                      "--vertices-per-actor", str(args.vertices_per_actor),
                                      "--rounds", str(rounds), "--repeats", str(repeats)],
                              env=cluster.driver_env(), timeout=1800, cwd=str(ROOT))
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-3000:])
            return 1
        rows.append({"rate": rate, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(f"  {rate}: round {rows[-1]['round'] * 1e3:.2f} ms", flush=True)
    print_table(rows, args, cluster)
    return 0


def rate_bits(rate: str) -> float:
    """tc's rate units, in bits per second (SI: 1mbit = 10^6 bit/s)."""
    match = re.fullmatch(r"([\d.]+)([kmg]?)bit", rate.lower())
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


def print_table(rows: list[dict], args, cluster) -> None:
    base = rows[0]
    v, nodes = base["vertices"], len(cluster.roles)
    s = base["remote_calls_per_core"]
    model = v * W / 2 + s * H + L  # BENCHMARKS.md §4 with M c = 2 cores for all hosts
    print(f"\n{v}-vertex tiled graph, {base['actors']} actors (K={args.vertices_per_actor}) "
          f"spread over {nodes} hosts sharing 2 cores; batch 32, eta 0.5; a round = "
          f"(batch of R rounds - batch of 0 rounds) / R, median of repeats. B = bytes per "
          f"round on the busiest link direction (veth counters, all of Ray's traffic). "
          f"Model: V w / 2 + s h + L = {model * 1e3:.1f} ms (s = {s:.1f}) plus B / rate.")
    print("Predicted three ways: the model with the link added in series; the unlimited "
          "round as measured here with the link in series (sum); the same overlapped "
          "(max: the link is busy while the cores compute).")
    print("\n| link rate | B per round | B / rate | model + B / rate | sum: unlimited + B / "
          "rate | max(unlimited, B / rate) | measured | measured / sum | measured / max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        busiest = max(row["link_bytes_per_round"].values())
        wire = 0.0 if row["rate"] == "none" else busiest * 8 / rate_bits(row["rate"])
        series, overlap = base["round"] + wire, max(base["round"], wire)
        print(f"| {row['rate']} | {busiest / 1e3:,.1f} kB | {wire * 1e3:.2f} ms | "
              f"{(model + wire) * 1e3:.2f} ms | {series * 1e3:.2f} ms | "
              f"{overlap * 1e3:.2f} ms | **{row['round'] * 1e3:.2f} ms** | "
              f"{row['round'] / series:.2f}x | {row['round'] / overlap:.2f}x |")


def link_bytes(switch: str) -> dict[str, int]:
    """Bytes each host's link carried in each direction (tbf limits each direction on
    its own), from the switch's veth counters: `w1:tx` is toward host w1."""
    done = subprocess.run(["ip", "-n", switch, "-s", "-j", "link"], capture_output=True,
                          text=True, check=True)
    return {f"{link['ifname']}:{way}": link["stats64"][way]["bytes"]
            for link in json.loads(done.stdout) if link["ifname"] not in ("lo", "br0")
            for way in ("rx", "tx")}


def measure(args) -> int:
    """Inside the driver's namespace: a round's time and each link's bytes per round."""
    import ray

    from neurolocal.engines.ray import RayEngine
    from neurolocal.generate import tiled_mlp
    from neurolocal.gradcheck import synthetic_batch
    from neurolocal.topology import graph_from_dict

    graph = graph_from_dict(tiled_mlp(vertices=args.vertices, layers=4))
    params = graph.init_params(0)
    inputs, target = synthetic_batch(graph, 32, 0)
    with RayEngine(graph, params, address=f"{netns.SUBNET}.{netns.HEAD_HOST}:{netns.GCS_PORT}",
                   vertices_per_actor=args.vertices_per_actor, placement="spread") as engine:
        def relax(r):
            return engine.relax(inputs, target, eta=0.5, iterations=r)

        relax(args.rounds)  # warm up: kernels, workers, connections
        per_round, link_rounds = [], []
        for _ in range(args.repeats):
            b0 = link_bytes(args.switch)
            start = time.perf_counter()
            calls0 = relax(0).extras["report"]["message_counts"]["remote_calls"]
            forward = time.perf_counter() - start
            b1 = link_bytes(args.switch)
            start = time.perf_counter()
            report = relax(args.rounds).extras["report"]
            full = time.perf_counter() - start
            b2 = link_bytes(args.switch)
            per_round.append((full - forward) / args.rounds)
            link_rounds.append({k: ((b2[k] - b1[k]) - (b1[k] - b0[k])) / args.rounds for k in b0})
        actors = len(engine.actors)
        remote_calls = report["message_counts"]["remote_calls"] - calls0
    ray.shutdown()
    links = {k: statistics.median(r[k] for r in link_rounds) for k in link_rounds[0]}
    print(json.dumps({"round": statistics.median(per_round), "vertices": len(graph.order),
                      "actors": actors, "link_bytes_per_round": links,
                      "remote_calls_per_core": remote_calls / args.rounds / 2}))
    return 0


# --- the cost model against measured batch times ---------------------------------------

def model(cluster: netns.NetnsCluster, args) -> int:
    """Inside the driver's namespace, `predicted` trains each workload and prints JSON;
    here, the table."""
    done = cluster.run_in("drv", [sys.executable, __file__, "predicted",
                                  *(["--quick"] if args.quick else [])],
                          env=cluster.driver_env(), timeout=3600, cwd=str(ROOT))
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(model_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


def model_table(result: dict) -> str:
    costs = result["costs"]
    lines = [f"{result['nodes']} Ray nodes in network namespaces on one {result['cores']}-core "
             f"machine (1 CPU each), driver on its own node; costs measured at start-up: "
             f"{costs['gflops']:.3g} GFLOP/s, {costs['param_ns']:.3g} ns a parameter's Adam step, "
             f"a message {costs['message_ms']:.3g} ms one way + {costs['byte_ns']:.3g} ns a "
             f"byte ({costs['hop_measured_on']}); a batch = "
             f"an epoch of {result['batches']} digits batches / {result['batches']}, "
             "median of repeats after a warm-up epoch.", "",
             "| workload | shards (nodes) | predicted ms/batch | measured ms/batch | "
             "measured / predicted |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in result["rows"]:
        lines.append(f"| {row['workload']} | {row['shards']} ({row['nodes']}) | "
                     f"{row['predicted_ms']:.2f} | {row['measured_ms']:.2f} | "
                     f"**{row['measured_ms'] / row['predicted_ms']:.2f}x** |")
    return "\n".join(lines)


def predicted(args) -> int:
    """Inside the driver's namespace: each scaling workload on 1 and 3 shards, the batch
    time measured and predicted."""
    import os

    import ray

    sys.path.insert(0, str(Path(__file__).parent))
    from bench import digits_batches, scaling_graphs

    from neurolocal.engines.ray import RayEngine
    from neurolocal.engines.ray.connection import driver_node_ip
    from neurolocal.engines.ray.costmodel import CostContext, batch_work, predict, ray_costs
    from neurolocal.engines.rounds import Learning
    from neurolocal.optimizers import make_optimizer

    address = f"{netns.SUBNET}.{netns.HEAD_HOST}:{netns.GCS_PORT}"
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, **driver_node_ip())
    table, recorded = ray_costs()
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    cores = os.cpu_count() or 1
    _, x, y, _ = digits_batches(128)
    graphs = scaling_graphs()
    learning = Learning("adam", 1e-3, factory=make_optimizer)
    limit, repeats = (8, 2) if args.quick else (16, 4)
    cases = [("digits MLP, batch 32, T 2, --pipeline 1", "mlp", 32, 2, 1),
             ("chain 64-1024x4-10, batch 128, T 4, --pipeline 1", "chain", 128, 4, 1),
             ("chain 64-1024x4-10, batch 128, T 4, --pipeline 2", "chain", 128, 4, 2),
             ("tiled 40, batch 128, T 4, --pipeline 1", "tiled", 128, 4, 1)]
    rows = []
    for label, key, batch_size, rounds, pipeline in cases:
        graph = graphs[key]
        cut = list(range(0, len(x), batch_size))[:limit + 1]
        batches = [({graph.inputs[0]: x[lo:hi]}, y[lo:hi]) for lo, hi in zip(cut, cut[1:])]
        context = CostContext(table, rounds, pipeline)
        work = batch_work(graph, batch_size, context)
        for shards in (1, nodes):
            per_actor = -(-len(graph.order) // shards)
            with RayEngine(graph, graph.init_params(0), address=address, schedule="event",
                           vertices_per_actor=per_actor, placement="spread") as engine:
                engine.restore(graph.init_params(0), None, learning)
                times = []
                for r in range(repeats + 1):
                    start = time.perf_counter()
                    for _ in engine.train_batches(batches, eta=1.0, iterations=rounds,
                                                  pipeline=pipeline):
                        pass
                    if r:   # the first epoch warms up kernels, workers and connections
                        times.append((time.perf_counter() - start) / len(batches))
                used = [list(names) for names in engine.transport.shards]
                hosts = len({a["node_id"] for a in engine.actor_info})
            rows.append({"workload": label, "key": key, "pipeline": pipeline,
                         "shards": len(used), "nodes": hosts,
                         "predicted_ms": predict(work, used, context, cores) * 1e3,
                         "measured_ms": statistics.median(times) * 1e3})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ray.shutdown()
    print(json.dumps({"costs": recorded, "nodes": nodes, "cores": cores,
                      "batches": limit, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
