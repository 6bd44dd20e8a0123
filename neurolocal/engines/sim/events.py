"""The event queue of the simulated-time transport: events ordered by time, ties by
the order they were scheduled in (so a run is deterministic, whatever the payloads)."""

from __future__ import annotations

import heapq
from typing import Any


class EventQueue:
    """A min-heap of (time, sequence, event). `sequence` breaks ties first in, first out."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._sequence = 0

    def push(self, time: float, event: Any) -> None:
        heapq.heappush(self._heap, (time, self._sequence, event))
        self._sequence += 1

    def pop(self) -> tuple[float, Any]:
        time, _, event = heapq.heappop(self._heap)
        return time, event

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
