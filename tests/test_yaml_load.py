"""The topology loader's YAML: what the strict loader it replaced (PyYAML's safe
loader refusing duplicate keys) makes of a document, faster."""

import gc

import pytest
import yaml

from neurolocal.bulk import paused_gc
from neurolocal.errors import TopologyError
from neurolocal.limits import Budget, checked_events
from neurolocal.yaml_load import load_checked, load_yaml

DOCUMENTS = [
    "a: 1\nb: [x, 'y', \"z\", 2.5, .inf, -0x1F, 1_000, 0o17, null, ~, true, No, on]\n",
    "v: [{name: a, op: dense, units: 4}, {name: b, parents: [a, a], shape: [2, 3]}]\n",
    # aliases: the same scalar, list and mapping named twice
    "s: &s text\nl: &l [1, 2]\nm: &m {k: v}\nagain: [*s, *l, *m]\n",
    # merge and value keys: refused, as they always were
    "a: 1\na: 2\n", "{1: a, 1.0: b}\n", "[x]\n---\n[y]\n", "--- just text\n", "a: [\n",
    "base: &b {units: 4, op: dense}\nv: {<<: *b, name: t}\nw: {<<: [*b], units: 8}\n",
    "=: value key\nplain: !!str 12\nbin: !!binary aGVsbG8=\nstamp: 2026-12-06\n",
    "? [complex, key]\n: not a plain value\n",
    "'': empty key\n1: int key\n1.5: float key\nnull: null key\n",
    "",
    "- &r [*r]\n",
]


class Reference(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The loader topology files were read with before: SafeConstructor throughout."""


def _reference_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain values", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


Reference.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _reference_mapping)


def _checked_load(text):
    return load_checked(text, lambda events: checked_events(events, Budget()))


@pytest.mark.parametrize("load", [load_yaml, _checked_load])
@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_what_the_reference_loader_loads(text, load):
    try:
        expected = yaml.load(text, Loader=Reference)
    except yaml.YAMLError as exc:
        with pytest.raises(yaml.YAMLError) as refused:
            load(text)
        assert str(refused.value) == str(exc)
        return
    assert repr(load(text)) == repr(expected)


def test_a_plain_document_is_built_in_the_checks_pass():
    from neurolocal.generate import tiled_mlp, topology_yaml

    text = topology_yaml(tiled_mlp(200, layers=3)).replace("mse", "{type: mse, scale: 0.5}")
    passes = []

    def checked(events):
        passes.append(1)
        return checked_events(events, Budget())

    assert load_checked(text, checked) == yaml.load(text, Loader=Reference)
    assert len(passes) == 1
    # a budget broken half way stops the one pass there, as the checks alone did
    small = Budget(document_nodes=500)
    with pytest.raises(TopologyError, match="more than 500 nodes") as alone:
        for _ in checked_events(yaml.parse(text, Loader=Reference), small):
            pass
    with pytest.raises(TopologyError) as refused:
        load_checked(text, lambda events: checked_events(events, small))
    assert str(refused.value) == str(alone.value) and alone.value.field.startswith("line ")


def test_a_generated_topology_loads_as_before():
    from neurolocal.generate import random_graph, topology_yaml

    text = topology_yaml(random_graph(300, seed=3))
    assert load_yaml(text) == _checked_load(text) == yaml.load(text, Loader=Reference)


def test_duplicate_keys_are_refused_at_their_line():
    with pytest.raises(yaml.constructor.ConstructorError) as refused:
        load_yaml("a: 1\nv: {units: 3,\n    units: 5}\n")
    assert "duplicate key 'units'" in str(refused.value)
    assert refused.value.problem_mark.line == 2


def test_paused_gc_restores_the_collector():
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError):
        with paused_gc():
            assert not gc.isenabled()
            1 / 0
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
