"""Traffic records of the planned path, without a Python call per message (issue 24).

The planned path builds no message, but the traffic log holds every one the message path
would have sent, recorded as that path records a local message: under the round of the
update that consumes it, with its payload's bytes, sent and received at the same instant
(docs/traffic.md). `traffic audit` then counts the same messages per edge.

Which messages a phase of a planned batch sends (the forward pass; in update u the strict
values, then the feedback of tag u) is fixed by the layout, the batch size and the dtype;
only the batch id and the times change. So the first batch of a layout records its
messages one by one (`capturing`) and keeps each phase's records as a msgpack template;
every later batch writes a phase as one copy of its template with the batch id and the
phase's time written in at known offsets (numpy, not a loop), appended to the recorder
as bytes (`TrafficRecorder.record_packed`). A record's batch is packed as a 32-bit
unsigned integer and its times as float64, which every msgpack reader reads as the
numbers they are (neurolocal's compiled decoder included).
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np

from neurolocal.engines.schedule import CONSTANT
from neurolocal.traffic.log import now, payload_bytes

VALUE, FEEDBACK = "value", "error"
_BATCH, _TIME = b"\xce", b"\xcb"


class Template:
    """A phase's records, packed, with the offsets of their batch ids and times."""

    def __init__(self, records: list[tuple], host: str, actor: str):
        pack = msgpack.Packer(use_bin_type=True).pack
        tail = pack(host) + pack(host) + pack(actor) + pack(actor)
        parts, batch_at, time_at, at = [], [], [], 0
        for round_, src, dst, kind, nbytes in records:
            head = b"\x9c" + _BATCH
            middle = pack(round_) + pack(src) + pack(dst) + pack(kind) + pack(nbytes)
            batch_at.append(at + len(head))
            at += len(head) + 4 + len(middle)
            time_at.extend([at + 1, at + 10])
            record = head + b"\0" * 4 + middle + _TIME + b"\0" * 8 + _TIME + b"\0" * 8 + tail
            at = at + 18 + len(tail)
            parts.append(record)
        self.count = len(records)
        self.data = np.frombuffer(b"".join(parts), dtype=np.uint8)
        self.batch_at = (np.array(batch_at, dtype=np.intp)[:, None] + np.arange(4))
        self.time_at = (np.array(time_at, dtype=np.intp)[:, None] + np.arange(8))

    def fill(self, batch: int, t: float) -> bytes:
        data = self.data.copy()
        data[self.batch_at] = np.frombuffer(struct.pack(">I", batch), dtype=np.uint8)
        data[self.time_at] = np.frombuffer(struct.pack(">d", t), dtype=np.uint8)
        return data.tobytes()


class PlanTraffic:
    """Records of one shard's planned batch. `templates`: the layout's, kept across
    batches of one size and dtype (a dict the runner's `PlanState` owns)."""

    def __init__(self, shard, templates: dict):
        log = shard.log
        self.recorder = log.recorder
        self.batch = shard.settings.batch
        index = shard.index
        self.host = log.hosts[index] or self.recorder.host
        self.actor = log.actors[index]
        self.templates = templates
        #: True: this batch records its messages one by one, keeping each phase's
        self.capturing = not templates
        self._phase: list[tuple] = []

    def values(self, round_: int, src: str, children, payload) -> None:
        nbytes = payload_bytes(payload)
        self._phase.extend((round_, src, child, VALUE, nbytes) for child in children)

    def feedback(self, tag: int, src: str, dst: str, payload) -> None:
        self._phase.append((1 if tag == CONSTANT else tag + 1, src, dst, FEEDBACK,
                            payload_bytes(payload)))

    def phase(self, key) -> None:
        """A phase of the batch is over: its records go to the recorder (captured now, or
        from the phase's template)."""
        if self.capturing:
            self.templates[key] = template = Template(self._phase, self.host, self.actor)
            self._phase = []
        else:
            template = self.templates.get(key)
            if template is None:
                return
        if template.count:
            self.recorder.record_packed(template.fill(self.batch, now()), template.count)
