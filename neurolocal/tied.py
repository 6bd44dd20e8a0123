"""Tied parameters: one tensor shared by several vertices, made explicit.

A `TiedGroup` names an *owner* (vertex, parameter) and the *members* (vertex,
parameter) that share its tensor. Weight sharing is not local by nature, so the
graph says it out loud instead of letting vertices point at one array:

- **Initialisation**: the owner draws the tensor; every member gets its own copy
  (`Graph.init_params`). A vertex only ever reads its own copy.
- **Learning**: every vertex computes its local Hebbian update as usual. A member
  sends the partial update of a tied parameter as a message to the owner
  (`VertexRule.partial_messages`); the owner adds the partials it receives to its
  own (`VertexRule.receive_partials`). The group's update is reported once, under
  the owner's (vertex, parameter). An engine only moves those messages
  (`neurolocal.engines.local.exchange_tied_partials` is the in-process version).
- **After an optimizer step** on the owner's tensor, the owner sends the new value
  to its members (`broadcast_tied_params` does that in one process).

`sum_tied` is the same reduction seen from the whole graph at once; backprop uses
it to produce the reference gradient of the shared tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from neurolocal.errors import TopologyError

Slot = tuple[str, str]   # (vertex, parameter)


@dataclass(frozen=True)
class TiedGroup:
    owner: Slot
    members: tuple[Slot, ...]

    @classmethod
    def make(cls, owner: Slot | str, members: Iterable[Slot | str]) -> "TiedGroup":
        """From (vertex, param) pairs or 'vertex.param' strings."""
        return cls(parse_slot(owner), tuple(parse_slot(m) for m in members))

    def describe(self) -> str:
        return f"{'.'.join(self.owner)} <- " + ", ".join(".".join(m) for m in self.members)


def parse_slot(value) -> Slot:
    if isinstance(value, str):
        vertex, dot, param = value.rpartition(".")
        if dot and vertex and param:
            return vertex, param
    elif (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, str) for v in value)):
        return value[0], value[1]
    raise TopologyError(f"expected 'vertex.parameter', got {value!r}", field="tied")


def check_groups(groups: Iterable[TiedGroup],
                 param_shapes: Mapping[str, Mapping[str, tuple]]) -> tuple[TiedGroup, ...]:
    """Every slot exists, shapes agree, and no slot belongs to two groups."""
    seen: set[Slot] = set()
    groups = tuple(groups)
    for group in groups:
        if not group.members:
            raise TopologyError(f"tied group of {'.'.join(group.owner)} has no members",
                                field="tied")
        for slot in (group.owner, *group.members):
            vertex, param = slot
            if param not in param_shapes.get(vertex, {}):
                raise TopologyError(f"'{vertex}.{param}' is not a parameter of the graph",
                                    field="tied")
            if slot in seen:
                raise TopologyError(f"'{vertex}.{param}' is tied twice", field="tied")
            seen.add(slot)
            owner_shape = param_shapes[group.owner[0]][group.owner[1]]
            if tuple(param_shapes[vertex][param]) != tuple(owner_shape):
                raise TopologyError(
                    f"'{vertex}.{param}' has shape {list(param_shapes[vertex][param])}, its owner "
                    f"'{'.'.join(group.owner)}' has {list(owner_shape)}", field="tied")
    return groups


def member_roles(groups: Iterable[TiedGroup], vertex: str) -> tuple[dict[str, Slot], dict[str, int]]:
    """What a vertex's rule needs to know about ties, and nothing more:
    (param -> owner slot it sends partials to, param -> number of partials it receives)."""
    sends: dict[str, Slot] = {}
    expects: dict[str, int] = {}
    for group in groups:
        if group.owner[0] == vertex:
            expects[group.owner[1]] = len(group.members)
        for m_vertex, m_param in group.members:
            if m_vertex == vertex:
                sends[m_param] = group.owner
    return sends, expects


def copy_owner_values(groups: Iterable[TiedGroup], params: dict) -> None:
    """Give every member its own copy of the owner's tensor (in place in `params`)."""
    for group in groups:
        value = params[group.owner[0]][group.owner[1]]
        for vertex, param in group.members:
            params[vertex][param] = np.array(value, dtype=np.float64, copy=True)


def broadcast_tied_params(groups: Iterable[TiedGroup], params: dict) -> None:
    """After an optimizer step on the owners: write each owner's new value into its
    members' own arrays (in place, so engines holding those arrays see it). In a
    distributed engine this is one message owner -> member per group and step."""
    for group in groups:
        value = params[group.owner[0]][group.owner[1]]
        for vertex, param in group.members:
            params[vertex][param][...] = value


def sum_tied(groups: Iterable[TiedGroup], updates: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """Whole-graph view of the reduction: members' entries added to their owner's and
    dropped, so each shared tensor appears once, under its owner. (Engines do this
    with messages between rules; this is for a caller that holds every update,
    such as reverse-mode backprop.)"""
    out = {v: dict(u) for v, u in updates.items()}
    for group in groups:
        o_vertex, o_param = group.owner
        total = np.array(out.get(o_vertex, {}).get(o_param), dtype=np.float64, copy=True)
        for vertex, param in group.members:
            total += out[vertex].pop(param)
        out.setdefault(o_vertex, {})[o_param] = total
    return {v: u for v, u in out.items() if u}


def exchange_tied_partials(rules) -> tuple[dict, list]:
    """Every vertex's Hebbian update, with tied groups reduced at their owners by messages.

    Each rule computes its own update; members hand the partials of tied parameters
    over as messages addressed to the owner vertex; each owner sums its inbox
    (`VertexRule.receive_partials`). Returns (updates keyed by vertex, each shared
    tensor once under its owner; the messages sent, as (member, owner, [(param,
    partial), ...])). The round machine runs the same three calls with the messages
    travelling between shards; this one-call form serves a caller that watches the
    updates round by round (scripts/reproduce.py)."""
    own = {n: rule.hebbian() for n, rule in rules.items() if rule.params}
    inbox: dict[str, list] = {n: [] for n in own}
    messages = []
    for n, update in own.items():
        for owner, partials in rules[n].partial_messages(update).items():
            inbox[owner].extend(partials)
            messages.append((n, owner, partials))
    reported = {n: rules[n].receive_partials(update, inbox[n]) for n, update in own.items()}
    return {n: u for n, u in reported.items() if u}, messages
