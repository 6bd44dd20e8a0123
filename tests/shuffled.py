"""An in-process network that delivers shards' calls in a random (seeded) order, as Ray may.

Every shard is begun in random order, interleaved with deliveries of the calls posted so
far, each picked at random; shards of later batches may start before their peers'
messages arrive. Used by the round-machine tests that check the order cannot matter.
"""

from __future__ import annotations


def drive(shards, graph, settings, params, inputs, target, rng) -> list[dict]:
    """Run one batch on `shards` (inputs and target already prepared); each shard's result."""
    calls, not_begun = [], list(shards)
    rng.shuffle(not_begun)
    while not_begun or calls:
        if not_begun and (not calls or rng.random() < 0.3):
            shard = not_begun.pop()
            out = shard.begin(settings, params, {n: inputs[n] for n in shard.names if n in inputs},
                              target if graph.output in shard.names else None)
        else:
            dst, messages = calls.pop(rng.randrange(len(calls)))
            out = shards[dst].deliver(messages)
        calls += list(out.items())
    assert all(s.done for s in shards)
    return [s.result() for s in shards]
