"""Pipelining where no one steps every shard at once: one shard's lanes in lock-step.

The local engine pipelines K batches by ticks (engines/local.py, `run_many`): a group
of K batches enters (forward passes, in batch order), then every tick moves every
batch of the group on by one round, oldest first, until the group is done; the next
group enters after. Each vertex owns its weights and reads no other vertex's, so what
a vertex computes depends only on the order of its own events — forward passes,
rounds, applied updates — across the lanes, and on the messages it gets. That order is
the key (tick, lane): a group's forward passes `(0, k)`, then round t of lane k
`(t, k)`, t = 1..R, for lanes k = 0..K-1.

`Lanes` holds one shard's K lanes (shards over the same vertices, `share_vertices`)
and lets a lane take a step only once every vertex of the shard has done every event
of a smaller key: lane k begins when lanes 0..k-1 have done their forward passes here;
it may reach round t when lanes 0..k-1 have done round t (for t = R: are done, their
updates applied) and lanes k+1.. round t-1. A transport that delivers every message
eventually — Ray actors, threads — then gets the local engine's numbers bit for bit
without a global barrier: at the smallest key not yet done everywhere, every shard's
gate for it is open (every smaller key is done), and a key's events wait only for
messages of keys no larger (the local engine runs them in key order).
"""

from __future__ import annotations

from typing import Callable, Sequence

from neurolocal.engines.rounds import Outgoing, Shard
from neurolocal.engines.staleness import LedgerObserver, StalenessLedger


#: one batch of a group: (settings, {input vertex: data}, target or None)
Entry = tuple


class Lanes:
    """The lanes of `home` (lane 0) for a group of batches in flight (module doc).
    `make`: a new shard over the same vertices (lanes are made as a group needs them)."""

    def __init__(self, home: Shard, make: Callable[[], Shard], ledger: StalenessLedger):
        self.home = home
        self.make = make
        self.ledger = ledger
        self.observer = LedgerObserver(ledger)
        self.lanes: list[Shard] = [home]
        self.group: list[Entry] = []
        self.begun = 0              # lanes of the group begun here
        self.lane_of: dict[int, int] = {}   # batch id -> lane, for the group
        self.early: dict[int, list] = {}    # messages of a batch id not known yet
        self.floor = -1             # batch ids up to this one are over (done or abandoned)

    # --- a group -------------------------------------------------------------------------

    def start(self, group: Sequence[Entry]) -> Outgoing:
        """Take a group (every batch of the previous one is done here); returns the
        messages to post."""
        if self.lane_of:
            self.floor = max(self.floor, max(self.lane_of))
        self.group = list(group)
        self.begun = 0
        while len(self.lanes) < len(self.group):
            lane = self.make()   # the same path as home (EngineConfig.rounds)
            lane.use_plan, lane.group_vertices = self.home.use_plan, self.home.group_vertices
            self.lanes.append(lane)
        for shard in self.lanes:
            if shard is not self.home:
                shard.share_vertices(self.home)   # restore() replaces home's vertices' state
            shard.observer = self.observer
        self.lane_of = {entry[0].batch: k for k, entry in enumerate(self.group)}
        out: Outgoing = {}
        for batch in sorted(b for b in self.early if b in self.lane_of):
            merge(out, self.lanes[self.lane_of[batch]].deliver(self.early.pop(batch)))
        self.early = {b: m for b, m in self.early.items() if b > self.floor}
        merge(out, self.pump())
        return out

    def deliver(self, messages) -> Outgoing:
        """Messages from other shards, each to the lane of its batch."""
        by_lane: dict[int, list] = {}
        for message in messages:
            batch = message[0]
            lane = self.lane_of.get(batch)
            if lane is not None:
                by_lane.setdefault(lane, []).append(message)
            elif batch > self.floor:
                self.early.setdefault(batch, []).append(message)
            # else: a late message of a batch over here (done or abandoned): dropped
        out: Outgoing = {}
        for lane in sorted(by_lane):
            merge(out, self.lanes[lane].deliver(by_lane[lane]))
        merge(out, self.pump())
        return out

    def claim(self, batch: int) -> list:
        """One batch run in `home` alone (not a group): its id is lane 0's; returns the
        messages of it that came early."""
        if self.lane_of:
            self.floor = max(self.floor, max(self.lane_of))
        self.group, self.lane_of = [], {batch: 0}
        self.early = {b: m for b, m in self.early.items() if b >= batch}
        return self.early.pop(batch, [])

    @property
    def done(self) -> bool:
        return bool(self.group) and self.begun == len(self.group) and \
            all(self.lanes[k].done for k in range(len(self.group)))

    def results(self) -> list[dict]:
        """Every batch's `Shard.result()`, in group order; the group is over."""
        out = [self.lanes[k].result() for k in range(len(self.group))]
        self.floor = max(self.floor, max(self.lane_of))
        self.group, self.lane_of = [], {}
        return out

    def abandon(self) -> None:
        """A restore: every lane stops, and every batch of the group is over."""
        if self.lane_of:
            self.floor = max(self.floor, max(self.lane_of))
        for shard in self.lanes:
            shard.abandon()
            if shard.observer is self.observer:   # only what a group installed: the home
                shard.observer = None             # shard keeps its own (a replay journal)
        self.group, self.lane_of, self.early, self.begun = [], {}, {}, 0

    def release(self, observer=None) -> None:
        """Pipelining is over: the lanes stop listening; `home` gets `observer` back."""
        for shard in self.lanes:
            shard.observer = None
        self.home.observer = observer

    # --- the gates -----------------------------------------------------------------------

    def pump(self) -> Outgoing:
        """Open every gate the lanes' progress allows, until none opens."""
        out: Outgoing = {}
        moved = True
        while moved:
            moved = False
            if self.begun < len(self.group) and self._may_begin(self.begun):
                k = self.begun
                settings, inputs, target = self.group[k]
                shard = self.lanes[k]
                shard.horizon = 0
                self.begun += 1
                merge(out, shard.begin(settings, None, inputs, target))
                moved = True
            if self.begun < len(self.group):
                continue
            rounds = self.home.schedule.rounds if self.home.schedule else 0
            for k in range(len(self.group)):
                shard = self.lanes[k]
                allowed = self._allowed(k, rounds)
                if allowed > shard.horizon:
                    shard.horizon = allowed
                    merge(out, shard.resume())
                    moved = True
        return out

    def _may_begin(self, k: int) -> bool:
        """Lane k begins once lanes 0..k-1 have done their forward passes here."""
        return all(self._reached(j) >= 0 for j in range(k))

    def _allowed(self, k: int, rounds: int) -> int:
        """The highest round lane k may reach now (every lane has begun)."""
        allowed = rounds
        for j in range(len(self.group)):
            if j == k:
                continue
            reached = self._reached(j)
            if j < k:   # lane j's round t comes first; its last round includes learning
                cap = reached if reached < rounds or self.lanes[j].done else rounds - 1
            else:       # lane j's round t - 1 comes first
                cap = reached + 1
            allowed = min(allowed, cap)
        return max(allowed, 0)

    def _reached(self, k: int) -> int:
        """The lowest round every vertex of lane k has done here (-1: a forward pass
        not done; the lane not begun)."""
        if k >= self.begun:
            return -1
        shard = self.lanes[k]
        low = None
        for name in shard.names:
            done, _ = shard.progress(name)
            done = -1 if done is None else done
            low = done if low is None else min(low, done)
        return -1 if low is None else low


def merge(into: Outgoing, more: Outgoing) -> None:
    for destination, messages in more.items():
        into.setdefault(destination, []).extend(messages)

