#!/usr/bin/env python
"""A multi-node Ray cluster on this one machine: run a topology across it, tear it down.

    python scripts/local_cluster.py --workers 2 topologies/dag.yaml
    python scripts/local_cluster.py --workers 1 big.yaml --vertices-per-actor 64
    python scripts/local_cluster.py --workers 2 --hold      # keep it up; Ctrl-C stops it

It starts `ray start --head --block` on 127.0.0.1 and N `ray start --address ... --block`
workers, each with its own temp dir, ports and custom resource `node_k`, and a fresh
token of their own (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN in their environment and the
driver's; ~/.ray/auth_token is neither read nor changed). Then it runs

    neurolocal check-grad TOPOLOGY --engine ray --address HEAD:PORT ... --json

and prints where the actors ran. At the end, or on Ctrl-C, it stops exactly the
processes it started and what they spawned, never `ray stop` (that stops every Ray
on the machine). Linux only (it walks /proc to find those processes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurolocal.engines.ray.cluster import LocalCluster  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", help="topology file to run across the cluster")
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--vertices-per-actor", type=int, default=16)
    parser.add_argument("--placement", choices=("spread", "pack"), default="spread")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hold", action="store_true",
                        help="keep the cluster up and print how a driver joins it, until Ctrl-C")
    args = parser.parse_args(argv)
    if not args.topology and not args.hold:
        parser.error("give a topology to run, or --hold")
    return args


def run_topology(cluster: LocalCluster, args) -> int:
    command = [sys.executable, "-m", "neurolocal", "check-grad", args.topology,
               "--engine", "ray", "--address", cluster.address,
               "--vertices-per-actor", str(args.vertices_per_actor),
               "--placement", args.placement, "--batch-size", str(args.batch_size), "--json"]
    print("$ " + " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=cluster.driver_env(), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr)
        return done.returncode
    report = json.loads(done.stdout.strip().splitlines()[-1])  # Ray may print before it
    per_node = Counter(a["node_id"][:8] for a in report["actors"])
    vertices = Counter()
    for actor in report["actors"]:
        vertices[actor["node_id"][:8]] += len(actor["vertices"])
    print(f"{report['graph']}: max relative error {report['max_rel_error']:.3e} "
          f"(eta {report['eta']}, T {report['iterations']}, depth {report['depth']}), "
          f"{seconds:.1f} s")
    for node, actors in sorted(per_node.items()):
        print(f"  node {node}: {actors} actors, {vertices[node]} vertices")
    return done.returncode


def main(argv=None) -> int:
    args = parse_args(argv)
    cluster = LocalCluster(workers=args.workers, cpus_per_node=args.cpus_per_node,
                           ray=shutil.which("ray") or str(Path(sys.executable).with_name("ray")))
    # a SIGTERM (e.g. from a CI timeout) tears down like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    start = time.perf_counter()
    status = 1
    try:
        cluster.start()
        print(f"cluster up at {cluster.address}: head + {args.workers} worker node(s) in "
              f"{time.perf_counter() - start:.1f} s (temp dirs under {cluster.base_dir})",
              flush=True)
        if args.hold:
            token_file = Path(cluster.base_dir) / "auth_token"
            token_file.touch(mode=0o600)
            token_file.write_text(cluster.token)
            print("a driver joins it with:\n"
                  f"  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token_file}\n"
                  f"  neurolocal check-grad FILE.yaml --engine ray --address {cluster.address}\n"
                  "Ctrl-C stops the cluster.", flush=True)
            while True:
                time.sleep(3600)
        status = run_topology(cluster, args)
        return status
    except KeyboardInterrupt:
        status = 130
        return status
    finally:
        stopped = cluster.stop()
        print(f"stopped {len(stopped)} processes this script started", flush=True)
        if status in (0, 130) and cluster.base_dir:
            shutil.rmtree(cluster.base_dir, ignore_errors=True)
        elif cluster.base_dir:
            print(f"node logs kept in {cluster.base_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
