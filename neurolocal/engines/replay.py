"""Record and replay of asynchronous runs (docs/asynchrony.md §6).

A sim engine with a traffic log (`--traffic-log DIR`) also writes `DIR/<run>.sim.replay`
(one msgpack map, version 1): per relaxed batch, the parameters, inputs and target,
which tag of each child every update of every hidden vertex read (asynchronous
rounds), the messages lost and the tag of the payload that replaced each, and a digest
of the outcome (updates, errors, input feedback, energies). An asynchronous Ray run
writes the same facts as streams (version 2, engines/journal.py): the driver's
`<run>.scheduler.replay` (settings, parameters, data, digests, training's restores and
snapshots) and each actor's `<run>.actor-<i>.replay` (its vertices' reads, stale drops
and lost messages per batch).

`neurolocal replay DIR` re-executes each batch in one process *without any timing*:
every vertex is its own shard, and before update u of a vertex the replay delivers
exactly the messages that update read, re-created by the replayed senders. Training
batches run on shards that keep their parameters and optimizers from batch to batch,
as the vertices did. Nothing here depends on which transport wrote the journal. It
then checks the digests: bit for bit (exit 0) or the first differing batch and
vertex (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from neurolocal.engines.journal import (
    FORMAT,
    SUFFIX,
    read_stream,
    state_digest,
    step_digest,
    unpack_params,
    vertex_digests,
)
from neurolocal.engines.journal import (
    pack_array as _array,
)
from neurolocal.engines.journal import (
    relaxation_digest as digest,
)
from neurolocal.engines.journal import (
    unpack_array as _from,
)
from neurolocal.engines.journal_check import check_actor_entries, check_header, check_journal
from neurolocal.errors import ConfigError, NeurolocalError, param
from neurolocal.limits import Budget, add_budget_option, budget_from, default_budget

VERSION = 1   # the sim engine's single-map journal; Ray's streams are version 2


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


@dataclass
class Journal:
    """One recorded run, whatever wrote it: the header and its events in order (restore,
    batch, snapshot), each batch with the reads and lost messages of every vertex."""
    source: Path
    header: dict
    events: list
    cut: list = field(default_factory=list)    # streams whose tail was cut


def read_journals(directory: str, budget: Budget | None = None) -> list[Journal]:
    """Every journal of `directory`, each header and actor record checked
    (engines/journal_check.py); the events are checked against the graph by `replay`."""
    budget = budget or default_budget()
    if not Path(directory).is_dir():
        raise ConfigError("no such directory", source=directory)
    found = sorted(Path(directory).glob(f"*{SUFFIX}"))
    if not found:
        raise ConfigError(f"no replay journal (*.replay): record one with {param('traffic_log')} "
                          f"DIR on an asynchronous run ({param('engine')} sim, or "
                          f"{param('engine')} ray with {param('staleness')} or injected "
                          "delays)", source=directory)
    journals, streams = [], []
    for path in found:
        objects, cut = read_stream(path, budget.data_bytes)
        first = objects[0] if objects else None
        if not isinstance(first, dict) or first.get("format") != FORMAT:
            raise ConfigError("not a replay journal", source=str(path))
        check_header(first, str(path), budget)
        if first.get("version") == VERSION:     # a sim journal: one map
            events = [{"event": "batch", "training": False, **b} for b in first["batches"]]
            journals.append(Journal(path, first, events))
        else:
            if first.get("writer") != "scheduler":
                check_actor_entries(objects[1:], str(path))
            streams.append((path, first, objects[1:], cut))
    drivers = [s for s in streams if s[1].get("writer") == "scheduler"]
    for path, header, events, cut in drivers:
        run = header["run"]
        mine = [s for s in streams if s[0].name.startswith(run + ".")]
        writers = {h.get("writer", "").split("-restart-")[0] for _, h, _, _ in mine}
        missing = [f"actor-{i}" for i in range(header.get("actors", 0))
                   if f"actor-{i}" not in writers]
        if missing:
            raise ConfigError(f"the journal of {', '.join(missing[:5])} is missing "
                              f"({run}.actor-N.replay): the run cannot be replayed",
                              source=str(path))
        if not any(isinstance(e, dict) and e.get("event") == "batch" for e in events):
            raise ConfigError("the journal holds no whole batch (the run stopped before its "
                              "first batch ended): nothing to replay", source=str(path))
        reads: dict[int, dict] = {}
        for p, h, entries, _ in mine:
            for entry in entries if h.get("writer") != "scheduler" else ():
                part = reads.setdefault(entry["batch"], {"reads": [], "lost": [], "stale": []})
                for key in part:
                    part[key].extend(entry.get(key, []))
        for event in events:
            if isinstance(event, dict) and event.get("event") == "batch":
                batch = event.get("batch")
                event.update(reads.get(batch if isinstance(batch, int) else None,
                                       {"reads": [], "lost": [], "stale": []}))
        journals.append(Journal(path, header, events, [p.name for p, _, _, c in mine if c]))
    if not journals:
        raise ConfigError("only actor journals, no scheduler journal (<run>.scheduler.replay)",
                          source=directory)
    return journals


def graph_of(journal: Journal, budget: Budget | None = None):
    """The recorded graph: the topology text the journal holds (bounded and checked as a
    topology file is), else its file."""
    from neurolocal.topology import load_topology, topology_from_text

    header, source = journal.header, str(journal.source)
    text = header.get("topology_text")
    if text:
        return topology_from_text(text, source=f"{source} (topology_text)",
                                  default_name=header["graph"], budget=budget).graph
    if not header.get("topology"):
        raise ConfigError("the journal names no topology file", source=source)
    return load_topology(header["topology"], budget).graph


def run_batch(graph, mode: str, schedule: str, settings, shards, batch: dict, inputs, target):
    """Re-execute one journaled batch on `shards` (one per vertex, in graph order; they
    keep their parameters and optimizers when training). Returns the shards' results."""
    from neurolocal.engines.rounds import CONSTANT, FEEDBACK, zeros_like_payload as _zeros_like

    staleness = settings.staleness
    index = {n: i for i, n in enumerate(graph.order)}
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
                shard = shards[index[name]]
                round_, finished = shard.progress(name)
                if name not in hidden or finished or round_ is None:
                    continue
                update = round_ + 1
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
    return [shard.result() for shard in shards]


@dataclass
class Outcome:
    """What replaying one journal found: counts, and the first difference (None: bit for
    bit). `params`/`optimizer`: the replayed vertices' final state (training)."""
    batches: int = 0
    training: int = 0
    reads: int = 0
    lost: int = 0
    stale: int = 0
    snapshots: int = 0
    difference: str | None = None
    params: dict | None = None
    optimizer: dict | None = None


def _first_vertex(graph, want: dict | None, got: dict) -> str:
    if not want:
        return ""
    for name in graph.order:
        if want.get(name) != got.get(name):
            return f", vertex {name}"
    return ""


def replay(journal: Journal, on_batch=None, budget: Budget | None = None) -> Outcome:
    """Check every event of a journal against its graph and the budget, then re-execute
    them; stop at the first difference."""
    from neurolocal.engines.base import Relaxation
    from neurolocal.engines.rounds import (
        Learning,
        RunSettings,
        Shard,
        merge_results,
        merge_snapshots,
        step_from_results,
    )

    budget = budget or default_budget()
    graph = graph_of(journal, budget)
    check_journal(journal, graph, budget)
    header = journal.header
    mode, schedule = header["mode"], header["schedule"]
    index = {n: i for i, n in enumerate(graph.order)}
    shards = [Shard(graph, (n,), index, mode) for n in graph.order]
    learning = None
    outcome = Outcome()
    for event in journal.events:
        kind = event["event"]
        if kind == "restore":
            spec = event["learning"]
            learning = Learning(spec["optimizer"], spec["lr"],
                                tuple(tuple(o) for o in spec["options"]),
                                spec["updates_per_batch"])
            params = unpack_params(event["params"])
            optimizer = (None if event["optimizer"] is None else
                         {k: _from(v) for k, v in event["optimizer"].items()})
            for shard in shards:
                shard.restore(params, optimizer, learning)
            continue
        if kind == "snapshot":
            outcome.snapshots += 1
            params, optimizer = merge_snapshots(graph, [s.snapshot() for s in shards])
            if state_digest(params, optimizer) != event["digest"]:
                got = {v: state_digest({v: ps}, None) for v, ps in params.items()}
                outcome.difference = (f"the weights after batch {outcome.batches}"
                                      + _first_vertex(graph, event.get("vertices"), got))
                return outcome
            continue
        training = event.get("training", False)
        staleness = event.get("staleness", header.get("staleness", 0))
        settings = RunSettings(event["batch"], event["eta"], event["iterations"], staleness,
                               event["read_inputs"], schedule, learning if training else None)
        if training and learning is None:
            raise ConfigError("a training batch before any restore event",
                              source=str(journal.source))
        if not training:
            params = unpack_params(event["params"])
            for shard in shards:
                shard.load_params(params)
        inputs = {n: _from(a) for n, a in event["inputs"].items()}
        target = _from(event["target"])
        results = run_batch(graph, mode, schedule, settings, shards, event, inputs, target)
        rounds = shards[0].schedule.rounds
        outcome.batches += 1
        outcome.training += training
        outcome.reads += len(event["reads"])
        outcome.lost += len(event["lost"])
        outcome.stale += len(event.get("stale", []))
        if training:
            same = step_digest(step_from_results(graph, results, rounds)) == event["digest"]
        else:
            dtheta, errors, input_feedback, energy, loss, prediction, _ = merge_results(
                graph, results, rounds, settings.read_inputs)
            relaxation = Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                                    energy=energy, loss=loss, prediction=prediction)
            same = digest(graph, relaxation) == event["digest"]
        if on_batch is not None:
            on_batch()
        if not same:
            outcome.difference = (f"batch {event['batch']}"
                                  + _first_vertex(graph, event.get("vertices"),
                                                  vertex_digests(results)))
            return outcome
    if learning is not None:
        outcome.params, outcome.optimizer = merge_snapshots(graph, [s.snapshot() for s in shards])
    return outcome


def replay_batch(graph, document: dict, batch: dict):
    """Re-execute one batch of a sim journal (version 1); returns its Relaxation."""
    from neurolocal.engines.base import Relaxation
    from neurolocal.engines.rounds import RunSettings, Shard, merge_results

    index = {n: i for i, n in enumerate(graph.order)}
    shards = [Shard(graph, (n,), index, document["mode"]) for n in graph.order]
    params = unpack_params(batch["params"])
    for shard in shards:
        shard.load_params(params)
    settings = RunSettings(batch["batch"], batch["eta"], batch["iterations"],
                           int(document["staleness"]), batch["read_inputs"],
                           document["schedule"])
    results = run_batch(graph, document["mode"], document["schedule"], settings, shards, batch,
                        {n: _from(a) for n, a in batch["inputs"].items()},
                        _from(batch["target"]))
    rounds = shards[0].schedule.rounds
    dtheta, errors, input_feedback, energy, loss, prediction, counts = merge_results(
        graph, results, rounds, batch["read_inputs"])
    return Relaxation(dtheta=dtheta, errors=errors, input_feedback=input_feedback,
                      energy=energy, loss=loss, prediction=prediction,
                      messages=counts["local_messages"] + counts["remote_messages"])


def cmd_replay(args) -> int:
    import sys

    from tqdm import tqdm

    failed = 0
    budget = budget_from(args.budget)
    for journal in read_journals(args.directory, budget):
        header = journal.header
        cut = (f"{', '.join(journal.cut)} ends in a cut record (its writer was killed); "
               "read up to its last whole batch")
        batches = sum(isinstance(e, dict) and e.get("event") == "batch"
                      for e in journal.events)
        try:
            with tqdm(total=batches, desc=f"replay {journal.source.name}", unit="batch",
                      disable=None, leave=False) as bar:   # a bar on a terminal only
                with np.errstate(all="ignore"):  # a recorded overflow recurs: the digest says
                    outcome = replay(journal, on_batch=lambda: bar.update(1), budget=budget)
        except NeurolocalError as exc:       # one line, saying the file was cut if it was
            if not journal.cut:
                raise
            raise type(exc)(f"{exc.detail} ({cut})", source=exc.source,
                            field=exc.field) from None
        if journal.cut:
            print(f"neurolocal: warning: {cut}", file=sys.stderr)
        engine = header.get("engine", "sim")
        what = (f"{journal.source.name}: {engine} run, {outcome.batches} batch(es)"
                f" ({outcome.training} training), {outcome.reads} recorded reads, "
                f"{outcome.lost} lost messages, {outcome.stale} stale drops, "
                f"{outcome.snapshots} weight snapshot(s), staleness {header.get('staleness', 0)}")
        if outcome.difference is None:
            print(f"{what}: replayed bit for bit")
        else:
            failed += 1
            print(f"{what}: DIFFERS from the recorded run at {outcome.difference}")
    return 1 if failed else 0


def add_replay_parser(commands) -> None:
    replay_ = commands.add_parser(
        "replay", help="re-execute a recorded asynchronous run (sim or ray) in one process, "
                       "bit for bit")
    replay_.add_argument("directory", help="the --traffic-log DIR of an asynchronous run "
                                           "(--engine sim, or --engine ray with --staleness "
                                           "or injected delays)")
    add_budget_option(replay_)
    replay_.set_defaults(run=cmd_replay)
