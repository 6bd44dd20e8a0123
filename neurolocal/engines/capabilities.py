"""What each transport can do, declared once (docs/rounds.md §6): the capability table.

The engine checks an `EngineConfig` against its transport's row when it opens
(`check_capabilities`): every "the X engine does not support Y" comes from here, naming
the engine and the parameter, and no setting is silently ignored. A transport class
points at its row (`capabilities = CAPABILITIES["local"]`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from neurolocal.errors import ConfigError


@dataclass(frozen=True)
class Capabilities:
    """What a transport supports beyond synchronous rounds in float64, one batch at a
    time. Each field names the `EngineConfig` parameters (or call arguments) it allows.

    staleness:        asynchronous rounds, `staleness` > 0
    asynchrony:       delays, losses, stragglers, reordering (`sim`: simulated or injected)
    float32:          `dtype` float32
    pipelining:       `pipeline` K > 1 (batches in flight through the graph)
    posting_ahead:    `post_ahead` (batches posted before the previous ones' results)
    fault_injection:  `fault` (kill a worker mid-batch)
    placement:        where shards run: `address`, `placement_from` (the packing knobs,
                      `PACKING_FIELDS`, change no number and pass everywhere)
    watch_rounds:     `relax(on_round=...)`: the state after every round"""
    staleness: bool = False
    asynchrony: bool = False
    float32: bool = False
    pipelining: bool = False
    posting_ahead: bool = False
    fault_injection: bool = False
    placement: bool = False
    watch_rounds: bool = False

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


#: one row per transport (engines/local.py, engines/threads.py, engines/sim/, engines/ray/)
CAPABILITIES: dict[str, Capabilities] = {
    "local": Capabilities(float32=True, pipelining=True, watch_rounds=True),
    "threads": Capabilities(float32=True, pipelining=True),
    "sim": Capabilities(staleness=True, asynchrony=True, pipelining=True),
    "ray": Capabilities(staleness=True, asynchrony=True, float32=True, pipelining=True,
                        posting_ahead=True, fault_injection=True, placement=True),
}


#: EngineConfig parameters that choose where shards run: refused by a transport that
#: places nothing (joining a cluster, or weighing a partition by a log, would be lost)
PLACEMENT_FIELDS = ("address", "placement_from")
#: packing and patience knobs (`vertices_per_actor`, `placement`, `timeout`,
#: `max_restarts`) are accepted by every transport: they never change a number (packed
#: or not, the results are the same bit for bit), so a command may pass the same flags to
#: every engine to compare them; only the Ray transport reads them
PACKING_FIELDS = ("vertices_per_actor", "placement", "timeout", "max_restarts")

#: what each capability is, as a refusal reads it ("{what}; it needs the {others} engine")
WHAT = {
    "staleness": "{engine} synchronous rounds only; asynchronous rounds (staleness > 0) "
                 "need the sim or ray engine",
    "asynchrony": "delays, loss and stragglers are simulated: they need the sim engine (or "
                  "the ray engine, which injects them for real)",
    "float32": "float32 runs on the local and ray engines",
    "pipelining": "pipelining (batches in flight) runs on the local, threads, sim and ray "
                  "engines",
    "posting_ahead": "posting batches ahead is for batches sent to actors",
    "fault_injection": "fault injection kills a Ray actor",
    "placement": "placing shards is for Ray actors",
    "watch_rounds": "watching every round (on_round) needs global rounds",
}


def refusal(engine: str, capability: str) -> str:
    """One line: what the capability is and which engines have it; where that names no
    engine, which one lacks it (the engine is always named)."""
    others = [n for n, caps in CAPABILITIES.items() if n != engine and getattr(caps, capability)]
    text = WHAT[capability].replace("{engine}", f"the {engine} engine runs")
    if "engine" not in text:
        text += f"; it needs the {' or '.join(others)} engine" if others else \
            f"; the {engine} engine does not"
    if capability == "float32":
        text += f"; the {engine} engine computes in float64 only"
    elif capability == "watch_rounds":
        text += f"; the {engine} engine has none"
    return text


def check_capabilities(config, capabilities: Capabilities | None = None) -> None:
    """Refuse, in one line naming the engine and the parameter (`ConfigError.field`),
    anything in `config` that its transport cannot do. `capabilities`: the transport's
    row (default: the table's for `config.engine`)."""
    caps = CAPABILITIES[config.engine] if capabilities is None else capabilities
    defaults = {f.name: f.default for f in fields(config)}

    def refuse(field_: str, capability: str) -> None:
        raise ConfigError(refusal(config.engine, capability), field=field_)

    if config.staleness and not caps.staleness:
        refuse("staleness", "staleness")
    requested = config.sim.requested() if config.sim is not None else []
    if requested and not caps.asynchrony:
        refuse(requested[0], "asynchrony")
    if config.dtype != "float64" and not caps.float32:
        refuse("dtype", "float32")
    if config.pipeline > 1 and not caps.pipelining:
        refuse("pipeline", "pipelining")
    if config.fault is not None and not caps.fault_injection:
        refuse("fault", "fault_injection")
    if not caps.placement:
        for name in PLACEMENT_FIELDS:
            if getattr(config, name) != defaults[name]:
                refuse(name, "placement")
    if config.post_ahead != defaults["post_ahead"] and not caps.posting_ahead:
        refuse("post_ahead", "posting_ahead")
