"""Record and replay of simulated relaxations (docs/asynchrony.md §6).

A sim engine with a traffic log (`--traffic-log DIR`) also writes `DIR/<run>.replay`
(msgpack): per relaxed batch, the parameters, inputs and target, which tag of each
child every update of every hidden vertex read (asynchronous rounds), the messages
lost and the tag of the payload that replaced each, and a digest of the outcome
(updates, errors, input feedback, energies). `neurolocal replay DIR` re-executes each
batch in one process *without any timing*: every vertex is its own shard, and before
update u of a vertex the replay delivers exactly the messages that update read,
re-created by the replayed senders. It then checks the digest: bit for bit or exit 1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack
import numpy as np

from neurolocal.errors import ConfigError

FORMAT, VERSION, SUFFIX = "neurolocal-replay", 1, ".replay"


def _array(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _from(d) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def digest(graph, relaxation) -> str:
    """sha256 of a relaxation's numbers in graph order (what a replay must reproduce)."""
    h = hashlib.sha256()

    def add(label: str, value) -> None:
        h.update(label.encode())
        h.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())

    for name in graph.order:
        for key, value in sorted(relaxation.dtheta.get(name, {}).items()):
            add(f"dtheta {name}.{key}", value)
        if name in relaxation.errors:
            add(f"error {name}", relaxation.errors[name])
        if name in relaxation.input_feedback:
            add(f"input {name}", relaxation.input_feedback[name])
    add("energy", relaxation.energy)
    return h.hexdigest()


def write_journal(path: Path, engine, topology: str | None, relaxations: list) -> None:
    """The engine's journal of relaxed batches, with their outcome's digests."""
    batches = []
    for entry, (params, relaxation) in zip(engine.journal, relaxations):
        settings = entry["settings"]
        batches.append({
            "batch": entry["batch"], "eta": settings.eta, "iterations": settings.iterations,
            "read_inputs": settings.read_inputs,
            "params": {v: {k: _array(a) for k, a in ps.items()} for v, ps in params.items()},
            "inputs": {n: _array(a) for n, a in entry["inputs"].items()},
            "target": _array(entry["target"]), "reads": entry["reads"], "lost": entry["lost"],
            "digest": digest(engine.graph, relaxation)})
    document = {"format": FORMAT, "version": VERSION, "graph": engine.graph.name,
                "topology": str(Path(topology).resolve()) if topology else None,
                "mode": engine.mode, "schedule": engine.schedule,
                "staleness": engine.staleness, "batches": batches}
    path.write_bytes(msgpack.packb(document, use_bin_type=True))


def read_journals(directory: str) -> list[tuple[Path, dict]]:
    found = sorted(Path(directory).glob(f"*{SUFFIX}"))
    if not Path(directory).is_dir():
        raise ConfigError("no such directory", source=directory)
    if not found:
        raise ConfigError("no replay journal (*.replay): record one with --engine sim "
                          "--traffic-log DIR on check-grad", source=directory)
    journals = []
    for path in found:
        try:
            document = msgpack.unpackb(path.read_bytes(), raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ConfigError(f"not a replay journal: {exc}", source=str(path)) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ConfigError("not a replay journal", source=str(path))
        journals.append((path, document))
    return journals


def replay_batch(graph, document: dict, batch: dict):
    """Re-execute one journaled batch; returns its Relaxation."""
    from neurolocal.engines.base import Relaxation
    from neurolocal.engines.rounds import (
        CONSTANT,
        FEEDBACK,
        RunSettings,
        Shard,
        merge_results,
    )
    from neurolocal.engines.sim.transport import _zeros_like

    staleness = int(document["staleness"])
    index = {n: i for i, n in enumerate(graph.order)}
    shards = [Shard(graph, (n,), index, document["mode"]) for n in graph.order]
    params = {v: {k: _from(a) for k, a in ps.items()} for v, ps in batch["params"].items()}
    inputs = {n: _from(a) for n, a in batch["inputs"].items()}
    target = _from(batch["target"])
    settings = RunSettings(batch["batch"], batch["eta"], batch["iterations"], staleness,
                           batch["read_inputs"], document["schedule"])
    plan: dict[str, dict[int, list]] = {}
    for vertex, update, child, tag in batch["reads"]:
        plan.setdefault(vertex, {}).setdefault(update, []).append((child, tag))
    lost = {(k, s, d, t): held for k, s, d, t, held in batch["lost"]}
    produced: dict[tuple, tuple] = {}           # (kind, src, dst, tag) -> message
    delivered: set = set()
    queue: list = []
    hidden = set(graph.hidden)

    def ready(key) -> bool:
        """Produced, and (if it was lost) the payload that replaced it produced too."""
        held = lost.get(key)
        return key in produced and (held is None or key[:3] + (held,) in produced)

    def resolve(key):
        m = produced[key]
        if key in lost:     # the receiver went on with what it held (or zeros)
            held = lost[key]
            payload = (produced[key[:3] + (held,)][5] if held is not None
                       else _zeros_like(m[5]))
            m = m[:5] + (payload,) + m[6:]
        return m

    def post(out):
        for messages in out.values():
            for m in messages:
                key = (m[1], m[3], m[4], m[2])
                produced[key] = m
                if not (staleness > 0 and m[1] == FEEDBACK and m[4] in hidden
                        and m[2] != CONSTANT):
                    queue.append(key)       # delivered as soon as it can be resolved

    for i, shard in enumerate(shards):
        name = graph.order[i]
        shard.horizon = 0 if staleness > 0 else None
        shard.load_params(params)
        post(shard.begin(settings, None, {name: inputs[name]} if name in inputs else {},
                         target if name == graph.output else None))
    while True:
        progress = False
        for key in list(queue):
            if ready(key):
                queue.remove(key)
                post(shards[index[key[2]]].deliver([resolve(key)]))
                progress = True
        if staleness > 0:
            for name in graph.order:
                shard, slot = shards[index[name]], shards[index[name]].slots[name]
                if name not in hidden or slot.finished or slot.round is None:
                    continue
                update = slot.round + 1
                if shard.horizon is not None and shard.horizon >= update:
                    continue
                keys = [(FEEDBACK, child, name, tag)
                        for child, tag in plan.get(name, {}).get(update, [])]
                if not all(ready(k) for k in keys):
                    continue
                fresh = [resolve(k) for k in keys if k not in delivered]
                delivered.update(keys)
                if fresh:
                    post(shard.deliver(fresh))
                shard.horizon = update
                post(shard.resume())
                progress = True
        if not progress:
            break
    if not all(shard.done for shard in shards):
        raise ConfigError("the journal does not describe a complete run (was it written by "
                          "another version?)", field=f"batch {batch['batch']}")
    rounds = shards[0].schedule.rounds
    dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
        graph, [shard.result() for shard in shards], rounds, batch["read_inputs"])
    return Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                      energy=energy, loss=loss, prediction=prediction,
                      messages=counts["local_messages"] + counts["remote_messages"])


def cmd_replay(args) -> int:
    from neurolocal.topology import load_topology

    failed = 0
    for path, document in read_journals(args.directory):
        if not document.get("topology"):
            raise ConfigError("the journal names no topology file", source=str(path))
        graph = load_topology(document["topology"]).graph
        for batch in document["batches"]:
            relaxation = replay_batch(graph, document, batch)
            same = digest(graph, relaxation) == batch["digest"]
            failed += not same
            print(f"{path.name} batch {batch['batch']}: {len(batch['reads'])} recorded reads, "
                  f"{len(batch['lost'])} lost messages, staleness {document['staleness']}: "
                  + ("replayed bit for bit" if same else "DIFFERS from the recorded run"))
    return 1 if failed else 0


def add_replay_parser(commands) -> None:
    replay = commands.add_parser(
        "replay", help="re-execute a recorded simulated run in one process, bit for bit")
    replay.add_argument("directory", help="the --traffic-log DIR of a `--engine sim` run")
    replay.set_defaults(run=cmd_replay)
