"""Traffic records of the planned path: the records the message path writes, per message.

A message the planned path does not build (a forward value, a strict value, J^T eps into
an edge buffer) is still recorded as the message path records a local message: under the
round of the update that consumes it, with its payload's bytes, sent and received at the
same instant (docs/traffic.md). `traffic audit` counts the same messages per edge.
"""

from __future__ import annotations

from neurolocal.engines.schedule import CONSTANT
from neurolocal.traffic.log import now, payload_bytes

VALUE, FEEDBACK = "value", "error"


class PlanTraffic:
    """Records of one shard's planned batch (every vertex of the graph is local)."""

    def __init__(self, shard):
        log = shard.log
        self.record = log.recorder.record
        self.batch = shard.settings.batch
        index = shard.index
        self.host, self.actor = log.hosts[index], log.actors[index]

    def values(self, round_: int, src: str, children, payload) -> None:
        nbytes, t = payload_bytes(payload), now()
        for child in children:
            self.record(self.batch, round_, src, child, VALUE, nbytes, t, t, self.host,
                        self.host, self.actor, self.actor)

    def feedback(self, tag: int, src: str, dst: str, payload) -> None:
        t = now()
        self.record(self.batch, 1 if tag == CONSTANT else tag + 1, src, dst, FEEDBACK,
                    payload_bytes(payload), t, t, self.host, self.host, self.actor, self.actor)

    def end_round(self) -> None:
        """A round is over (nothing buffered here yet)."""

    def flush(self) -> None:
        """The batch's rounds are over."""
