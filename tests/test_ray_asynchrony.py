"""The Ray actors' injection (engines/ray/asynchrony.py) on its own, in an asyncio loop
as inside an actor, without Ray: what is held, what leaves in which order, what is
lost, substituted or sent again. (End to end on real Ray: tests/test_ray_replay.py.)"""

import asyncio

import numpy as np

from neurolocal.engines.ray.asynchrony import Injection, Lost, Outbox, Receiver
from neurolocal.asynchrony.models import Asynchrony, parse_distribution


def run_outbox(spec: Asynchrony, messages, seed: int = 0):
    """Post `messages` (all to shard 1) at once; returns (sent at once, every message
    sent, in order, once nothing is held, and the outbox)."""
    sent = []

    async def main():
        box = Outbox(Injection(spec, seed), 0, lambda dest, ms: sent.extend(ms))
        box.post({1: list(messages)})
        at_once = list(sent)
        while box._heap:
            await asyncio.sleep(0.002)
        return at_once, box

    at_once, box = asyncio.run(main())
    return at_once, sent, box


class Idle:
    """A shard between batches (no settings): the receiver journals nothing."""
    settings = None


def messages_on_one_edge(n: int):
    return [(0, "error", t, "child", "parent", np.full(3, float(t)), 0.0) for t in range(n)]


def test_delays_hold_messages_and_one_edge_stays_in_order():
    spec = Asynchrony(delay=parse_distribution("exp:2", "delay"))
    at_once, sent, _ = run_outbox(spec, messages_on_one_edge(40))
    assert len(at_once) < 40                 # held for their delays, not posted at once
    assert [m[2] for m in sent] == list(range(40))   # without reorder: FIFO per edge


def test_reordering_really_reorders():
    spec = Asynchrony(delay=parse_distribution("exp:2", "delay"), reorder=True)
    _, sent, _ = run_outbox(spec, messages_on_one_edge(40))
    tags = [m[2] for m in sent]
    assert sorted(tags) == list(range(40)) and tags != list(range(40))


def test_a_lost_message_never_leaves_and_a_notice_follows():
    spec = Asynchrony(drop=0.5, timeout=1.0)
    _, sent, box = run_outbox(spec, messages_on_one_edge(40), seed=3)
    lost = [m for m in sent if isinstance(m[5], Lost)]
    counts = box.take_counts(0)
    assert len(sent) == 40 and counts["messages_lost"] == len(lost) > 0
    assert counts["messages_retransmitted"] == 0
    # the receiver goes on with the last payload it received on that edge, else zeros
    out = Receiver().prepare(Idle(), sent)
    held = None
    for original, got in zip(sent, out):
        if isinstance(original[5], Lost):
            want = np.zeros(3) if held is None else held
            np.testing.assert_array_equal(got[5], want)
        else:
            held = original[5]
            assert got is original


def test_retransmission_delivers_every_payload():
    spec = Asynchrony(drop=0.5, retransmit=True, timeout=1.0)
    _, sent, box = run_outbox(spec, messages_on_one_edge(40), seed=3)
    counts = box.take_counts(0)
    assert counts["messages_retransmitted"] > 0 and counts["messages_lost"] == 0
    assert not any(isinstance(m[5], Lost) for m in sent)
    assert [m[2] for m in sent] == list(range(40))
