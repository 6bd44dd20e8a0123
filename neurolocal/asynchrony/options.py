"""The sim engine's command-line flags, and where they meet the `asynchrony:` section.

`add_sim_options` is called by `cli.add_engine_options`, so every command that runs
a graph takes them. Precedence: the topology's `asynchrony:` section < the side file
`--asynchrony FILE.yaml` < the flags (docs/asynchrony.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from neurolocal.asynchrony.config import (
    SECTION,
    parse_section,
    parse_straggler,
    read_side_file,
)
from neurolocal.asynchrony.models import (
    Asynchrony,
    VertexTiming,
    parse_distribution,
    parse_probability,
)
from neurolocal.errors import ConfigError

@dataclass(frozen=True)
class SimOptions:
    """The sim engine's settings as given (flags, the side file, the topology file whose
    `asynchrony:` section applies), resolved against the graph when the engine opens
    (`asynchrony_from_options`). `stats`, a dict, receives running totals (sweeps)."""
    topology: str | None = None
    asynchrony: str | None = None
    delay: object = None
    drop: float | None = None
    retransmit: bool = False
    reorder: bool = False
    straggler: tuple = ()
    stats: dict | None = field(default=None, compare=False, hash=False)

    def requested(self) -> list[str]:
        """The timing/fault settings given (refused on engines that cannot inject them)."""
        return [key for key in _FAULT_FLAGS if getattr(self, key) not in (None, False, ())]


#: flags that change timing or faults: the sim engine simulates them, the ray engine
#: injects them for real (engines/ray/asynchrony.py), the local engine refuses them
_FAULT_FLAGS = ("delay", "drop", "retransmit", "straggler", "reorder", "asynchrony")


def sim_options_from_args(args) -> SimOptions | None:
    """The command's sim flags (None when it has none)."""
    if not hasattr(args, "delay"):
        return None
    return SimOptions(topology=getattr(args, "topology", None), asynchrony=args.asynchrony,
                      delay=args.delay, drop=args.drop, retransmit=args.retransmit,
                      reorder=args.reorder, straggler=tuple(args.straggler or ()))


def _delay(text: str):
    try:
        return parse_distribution(text, "delay")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None


def _probability(text: str) -> float:
    try:
        return parse_probability(text, "drop")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None


def add_sim_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "asynchrony (sim engine: simulated time; ray engine: injected for real; "
        "docs/asynchrony.md)")
    group.add_argument("--delay", type=_delay, default=None, metavar="DIST",
                       help="delay of every message in rounds: 0, const:2, uniform:0,2, "
                            "exp:1 (mean 1), lognormal:1,0.5; a trailing ms means "
                            "milliseconds (exp:2ms)")
    group.add_argument("--drop", type=_probability, default=None, metavar="P",
                       help="each message is lost with probability P; the receiver goes on "
                            "with the last value it holds (counted as lost)")
    group.add_argument("--retransmit", action="store_true",
                       help="a lost message is sent again after the timeout (exact results)")
    group.add_argument("--straggler", action="append", default=None,
                       metavar="VERTEX:K",
                       help="VERTEX computes K times slower; VERTEX:pause:AT:FOR[:EVERY] "
                            "pauses it (rounds); repeatable")
    group.add_argument("--reorder", action="store_true",
                       help="messages on one edge may overtake each other (default: in order)")
    group.add_argument("--asynchrony", default=None, metavar="FILE.yaml",
                       help="per-edge and per-vertex models (the topology's asynchrony: "
                            "section, in a side file)")


def topology_section(path: str | None):
    """The raw `asynchrony:` mapping of a topology file (None when it has none)."""
    if not path:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):   # the topology loader has reported it already
        return None
    return document.get(SECTION) if isinstance(document, dict) else None


def asynchrony_from_options(options, graph) -> Asynchrony:
    """Topology section < side file < flags, checked against the graph."""
    source = getattr(options, "topology", None)
    try:
        spec = parse_section(topology_section(source), graph)
    except ConfigError as exc:
        raise exc.located(source=source) from None
    side = getattr(options, "asynchrony", None)
    if side:
        spec = read_side_file(side, graph, base=spec)
    changes = {}
    delay = getattr(options, "delay", None)
    if delay is not None:
        changes["delay"] = delay if not isinstance(delay, str) else \
            parse_distribution(delay, "delay")
    drop = getattr(options, "drop", None)
    if drop is not None:
        changes["drop"] = parse_probability(drop, "drop")
    if getattr(options, "retransmit", False):
        changes["retransmit"] = True
    if getattr(options, "reorder", False):
        changes["reorder"] = True
    stragglers = getattr(options, "straggler", None) or []
    if stragglers:
        vertices = dict(spec.vertices)
        for text in stragglers:
            name, timing = parse_straggler(text, graph)
            old = vertices.get(name, VertexTiming())
            vertices[name] = VertexTiming(compute=old.compute,
                                          slow=timing.slow if timing.slow != 1.0 else old.slow,
                                          pause=timing.pause or old.pause)
        changes["vertices"] = vertices
    return replace(spec, **changes) if changes else spec


def sim_seed(spec: Asynchrony, seed) -> int:
    """The section's seed, else the run's (the config's), else 0."""
    if spec.seed is not None:
        return spec.seed
    return 0 if seed is None else int(seed)
