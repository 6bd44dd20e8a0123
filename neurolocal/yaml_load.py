"""The safe YAML loader topology files are read with: no tags beyond YAML's own, no
duplicate keys, and fast enough for 100,000 vertices.

libyaml's parser when PyYAML was built with it (the pure-Python one takes ~20 s on a
10,000-vertex file), PyYAML's SafeConstructor otherwise. Three things keep the Python
side of a load linear and small, none of them changing what a document loads as:

- a plain text scalar (most of a topology: names, ops, parents) is its node's value,
  without the constructor's generic dispatch;
- the implicit tag of a scalar is resolved once per distinct (value, style), not once
  per occurrence (a 10,000-vertex file repeats `dense`, `units`, `4` ... thousands of
  times);
- the garbage collector is paused while the document is built (`neurolocal.bulk`).
"""

from __future__ import annotations

from typing import Any

import yaml

from neurolocal.bulk import paused_gc

#: the loader the document checks parse with (`neurolocal.limits.check_document`)
SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"


class StrictSafeLoader(SafeBase):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""

    def __init__(self, stream):
        super().__init__(stream)
        self._scalar_tags: dict[tuple, str] = {}

    def resolve(self, kind, value, implicit):
        # the same answer as Resolver.resolve: a scalar's tag depends only on its text
        # and style while no path resolvers are registered (none are, on this class)
        if kind is not yaml.ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._scalar_tags.get(key)
        if tag is None:
            tag = self._scalar_tags[key] = super().resolve(kind, value, implicit)
        return tag

    def construct_object(self, node, deep=False):
        # what construct_yaml_str returns, without the dispatch (a scalar is never
        # recursive, and an aliased one yields an equal str either way)
        if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
            return node.value
        return super().construct_object(node, deep=deep)


def _mapping_without_duplicates(loader: StrictSafeLoader, node: yaml.MappingNode, deep=False):
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
    # SafeConstructor.construct_mapping, built directly: every key is hashable (it went
    # into `seen`), and there is nothing to flatten (a `<<` merge or `=` key has no
    # constructor of its own, so the loop above already refused it)
    return {loader.construct_object(k, deep=deep): loader.construct_object(v, deep=deep)
            for k, v in node.value}

StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """The document in `text`, loaded strictly and safely (yaml errors propagate)."""
    with paused_gc():
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader
