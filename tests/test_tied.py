"""Tied parameters: the owner's summed update equals torch's gradient for the shared
tensor, and the owner learns the members' partials only from their messages."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from neurolocal import LocalEngine, TopologyError, graph_from_dict, load_topology
from neurolocal.engines.base import prepare_batch
from neurolocal.engines.local import exchange_tied_partials
from neurolocal.vertex import VertexRule
from neurolocal.gradcheck import synthetic_batch
from neurolocal.tied import broadcast_tied_params
from torch_graph import max_relative_error, torch_gradients


def shared_layers(**extra) -> dict:
    """x -> a -> b -> out, a and b one shared dense layer (weight and bias)."""
    document = {
        "vertices": [
            {"name": "x", "op": "input", "shape": [5]},
            {"name": "a", "op": "dense", "parents": ["x"], "units": 5, "activation": "tanh"},
            {"name": "b", "op": "dense", "parents": ["a"], "units": 5, "activation": "tanh"},
            {"name": "c", "op": "dense", "parents": ["b"], "units": 5, "activation": "tanh"},
            {"name": "out", "op": "dense", "parents": ["c"], "units": 2},
        ],
        "tied": [{"owner": "a.weight", "members": ["b.weight", "c.weight"]},
                 {"owner": "b.bias", "members": ["c.bias"]}],
        "output": "out", "loss": "mse",
    }
    document.update(extra)
    return document


def test_group_update_equals_torch_gradient_of_the_shared_tensor():
    graph = graph_from_dict(shared_layers())
    params = graph.init_params(seed=4)
    inputs, target = synthetic_batch(graph, batch_size=7, seed=4)
    _, reference = torch_gradients(graph, params, inputs, target)
    relaxation = LocalEngine(graph, params).relax(inputs, target, eta=1.0, iterations=graph.depth)
    assert max_relative_error(relaxation.dtheta, reference)[0] <= 1e-10
    # reported once, under the owner; members' shared parameters are absent
    assert set(relaxation.dtheta["a"]) == {"weight", "bias"}
    assert set(relaxation.dtheta["b"]) == {"bias"}
    assert "c" not in relaxation.dtheta
    # and the owner's update is the sum of the three vertices' local partials
    rules = LocalEngine(graph, params)
    rules.relax(inputs, target, eta=1.0, iterations=graph.depth)
    local = {n: rules.rules[n].hebbian() for n in "abc"}
    np.testing.assert_allclose(relaxation.dtheta["a"]["weight"],
                               local["a"]["weight"] + local["b"]["weight"] + local["c"]["weight"],
                               rtol=1e-13, atol=0)


def test_members_start_with_their_own_copy_of_the_owner_draw():
    graph = graph_from_dict(shared_layers())
    params = graph.init_params(seed=1)
    for member in ("b", "c"):
        np.testing.assert_array_equal(params[member]["weight"], params["a"]["weight"])
        assert not np.shares_memory(params[member]["weight"], params["a"]["weight"])
    assert graph.parameter_count() == 5 * 5 + 5 + 5 + 5 * 2 + 2
    params["a"]["weight"] += 1.0          # an optimizer step on the owner ...
    member_array = params["c"]["weight"]
    broadcast_tied_params(graph.tied, params)  # ... reaches the members' own arrays
    assert params["c"]["weight"] is member_array
    np.testing.assert_array_equal(member_array, params["a"]["weight"])


def relaxed_rules(graph, params, inputs, target):
    engine = LocalEngine(graph, params)
    engine.relax(inputs, target, eta=1.0, iterations=graph.depth)
    return engine.rules


def test_owner_sum_is_a_function_of_the_messages_alone():
    """Changing only the message contents changes the owner's result exactly as a sum
    of messages would: an owner that read its members' state another way would not
    follow."""
    graph = load_topology("topologies/rnn.yaml").graph
    params = graph.init_params(seed=2)
    inputs, target = synthetic_batch(graph, batch_size=4, seed=2)
    rules = relaxed_rules(graph, params, inputs, target)
    owner, members = "h@0", [f"h@{t}" for t in range(1, 8)]
    own = rules[owner].hebbian()
    messages = [m for n in members
                for m in rules[n].partial_messages(rules[n].hebbian())[owner]]
    assert len(messages) == 2 * len(members)  # weight and bias from every later step

    received = rules[owner].receive_partials(own, messages)
    zeroed = rules[owner].receive_partials(own, [(p, np.zeros_like(a)) for p, a in messages])
    doubled = rules[owner].receive_partials(own, [(p, 2 * a) for p, a in messages])
    for param in ("weight", "bias"):
        np.testing.assert_array_equal(zeroed[param], own[param])
        np.testing.assert_allclose(doubled[param] - own[param], 2 * (received[param] - own[param]),
                                   rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="expected"):
        rules[owner].receive_partials(own, messages[:-1])
    with pytest.raises(ValueError, match="does not own"):
        rules["y@1"].receive_partials(rules["y@1"].hebbian(), messages[:1])


def test_rules_in_isolation_reproduce_torch_through_messages_only():
    """Every rule lives in its own copy (as in its own actor); only deep-copied messages
    pass between them. Once a member has sent its partials its state is destroyed, so
    an owner (or engine) that reached into a member instead of reading its messages
    would fail here."""
    graph = load_topology("topologies/lstm.yaml").graph
    params = graph.init_params(seed=5)
    inputs, target = synthetic_batch(graph, batch_size=3, seed=5)
    _, reference = torch_gradients(graph, params, inputs, target)
    rules = {n: copy.deepcopy(VertexRule.for_vertex(graph, n, params, "fixed")) for n in graph.order}
    send = copy.deepcopy
    fed, prepared_target = prepare_batch(graph, inputs, target)

    values = {}
    rules[graph.output].set_target(prepared_target)
    for n in graph.order:
        incoming = [send(values[p]) for p in graph.parents(n)]
        values[n] = send(rules[n].clamp(fed[n]) if graph.is_input(n)
                         else rules[n].predict(incoming))
    for _ in range(graph.depth):
        inbox: dict[str, list] = {n: [] for n in graph.order}
        for n in graph.order:
            for parent, message in rules[n].feedback().items():
                inbox[parent].append(send(message))
        for n in graph.hidden:
            rules[n].relax(sum(inbox[n]) if inbox[n] else None, eta=1.0)

    own = {n: rules[n].hebbian() for n in graph.order if rules[n].params}
    partial_inbox: dict[str, list] = {n: [] for n in own}
    for n in own:
        for owner, partials in rules[n].partial_messages(own[n]).items():
            partial_inbox[owner].extend(send(partials))
        if rules[n].sends:              # a pure member: nothing of it may be read again
            rules[n].params = rules[n].error = rules[n]._cache = None
            rules[n].value = rules[n].prediction = None
            own[n] = {k: v for k, v in own[n].items() if k not in rules[n].sends}
    dtheta = {n: rules[n].receive_partials(own[n], partial_inbox[n]) for n in own}
    dtheta = {n: u for n, u in dtheta.items() if u}
    worst, errors = max_relative_error(dtheta, reference)
    assert worst <= 1e-10, errors
    # the engine's own exchange gives the same reduction
    engine_rules = relaxed_rules(graph, params, inputs, target)
    engine_dtheta, sent = exchange_tied_partials(engine_rules)
    assert sum(len(partials) for _, _, partials in sent) == sum(len(g.members) for g in graph.tied)
    assert max_relative_error(engine_dtheta, reference)[0] <= 1e-10


@pytest.mark.parametrize("tied, message", [
    ([{"owner": "a.weight", "members": ["out.weight"]}], "shape"),
    ([{"owner": "a.weight", "members": ["b.weight"]},
      {"owner": "c.weight", "members": ["b.weight"]}], "tied twice"),
    ([{"owner": "a.gain", "members": ["b.weight"]}], "not a parameter"),
    ([{"owner": "a.weight", "members": []}], "no members"),
    ([{"owner": "a.weight"}], "expected"),
])
def test_bad_tied_groups_are_refused(tied, message):
    with pytest.raises(TopologyError, match=message):
        graph_from_dict(shared_layers(tied=tied))
