"""A batch's shard results as the engine returns them (docs/rounds.md §6): arrays in
graph order, energy summed over vertices per round, snapshots in the checkpoint's layout."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neurolocal.engines.base import Step
from neurolocal.graph import Graph, Params


def merge_results(graph: Graph, results: Sequence[dict], rounds: int, read_inputs: bool):
    """The shards' results as one (dtheta, errors, input_feedback, energy per round,
    loss, prediction, counts): arrays in graph order, energy summed over vertices."""
    merged = {k: {} for k in ("dtheta", "errors", "input_feedback", "energy")}
    counts = {"local_messages": 0, "remote_messages": 0, "remote_calls": 0}
    loss = prediction = None
    for result in results:
        for key in merged:
            merged[key].update(result[key])
        for key in counts:
            counts[key] += result["counts"][key]
        if "loss" in result:
            loss, prediction = result["loss"], result["prediction"]
    energy = energy_per_round(graph, merged["energy"], rounds)
    return (
        {n: merged["dtheta"][n] for n in graph.order if n in merged["dtheta"]},
        {n: merged["errors"][n] for n in graph.order if n in merged["errors"]},
        {n: merged["input_feedback"][n] for n in graph.inputs} if read_inputs else {},
        energy, loss, prediction, counts,
    )


def step_from_results(graph: Graph, results: Sequence[dict], rounds: int):
    """A training batch's scalars from its shards' results (`Step`)."""
    energy = {}
    messages = 0
    for result in results:
        energy.update(result["energy"])
        messages += result["counts"]["local_messages"] + result["counts"]["remote_messages"]
        if "loss" in result:
            loss, hits = result["loss"], result["hits"]
    return Step(loss=loss, hits=hits, messages=messages,
                energy=energy_per_round(graph, energy, rounds),
                vertex_energy={n: energy[n] for n in graph.order})


def round_path(results: Sequence[dict]) -> str:
    """Which path the shards' rounds took (docs/rounds.md §9): "planned", "message", or
    "mixed" (some shards each)."""
    paths = {result.get("path", "message") for result in results}
    return paths.pop() if len(paths) == 1 else "mixed"


def energy_per_round(graph: Graph, energy: dict, rounds: int) -> list[float]:
    """The energy of each round: every vertex's, summed in graph order."""
    table = np.array([energy[n][:rounds + 1] for n in graph.order], dtype=np.float64)
    # a reduction over the first axis adds the rows one after another, column by column:
    # the order Python's sum takes (tests/test_plan.py compares energies bit for bit)
    return table.sum(axis=0).tolist()


def vertex_energy(graph: Graph, results: Sequence[dict]) -> dict[str, list[float]]:
    """Each vertex's energy after each round, in graph order, from its shard's result."""
    energy = {}
    for result in results:
        energy.update(result["energy"])
    return {n: list(energy[n]) for n in graph.order}


def merge_snapshots(graph: Graph, parts: Sequence[dict]) -> tuple[Params, dict]:
    """Shards' snapshots as (parameters in graph order, optimizer state arrays in the
    checkpoint's layout: "step" and "<slot>/<vertex>/<param>"). Every vertex steps
    once per batch, so their step counts agree; the first one is the run's."""
    params: Params = {}
    optimizer: dict = {}
    by_vertex = {}
    for part in parts:
        params.update(part["params"])
        by_vertex.update(part["optimizer"])
    for vertex in graph.order:
        for key, value in by_vertex.get(vertex, {}).items():
            if key == "step":
                optimizer.setdefault("step", value)
            else:
                optimizer[key] = value
    optimizer.setdefault("step", np.array(0, dtype=np.int64))
    return {n: params[n] for n in graph.order if n in params}, optimizer
