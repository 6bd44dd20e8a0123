"""Message-traffic logs: every message that crossed every edge, and tools to read them.

    log.py       the file format: a buffered msgpack writer and a tolerant reader
    report.py    summary and per-edge tables
    audit.py     locality proof and message counts against the algorithm
    timeline.py  Chrome / Perfetto trace
    plot.py      heat map of traffic over rounds, energy per round
"""

from neurolocal.traffic.log import KINDS, TrafficLog, TrafficRecorder, read_traffic

__all__ = ["KINDS", "TrafficLog", "TrafficRecorder", "read_traffic"]
