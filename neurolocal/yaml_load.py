"""The safe YAML loader topology files are read with: no tags beyond YAML's own, no
duplicate keys, and fast enough for 100,000 vertices.

libyaml's parser when PyYAML was built with it (the pure-Python one takes ~20 s on a
10,000-vertex file), PyYAML's SafeConstructor otherwise. What a document loads as is
always what `StrictSafeLoader` makes of it; these keep that linear and small:

- `load_checked` builds a plain document (no anchors, aliases or explicit tags, no
  duplicate keys, scalars of type str, int, float, bool or null: every topology
  `generate` writes) straight from the parser's events, in the same pass as the
  budget's checks of them (`neurolocal.limits.checked_events`), without PyYAML's node
  tree (at 100,000 vertices that tree alone is ~550 MB); anything else is left to
  the checks and `StrictSafeLoader` as before, errors included;
- a plain text scalar is its node's value, without the constructor's generic dispatch;
- the implicit tag of a scalar is resolved once per distinct (value, style), not once
  per occurrence (a 10,000-vertex file repeats `dense`, `units`, `4` ... thousands of
  times);
- the garbage collector is paused while the document is built (`neurolocal.bulk`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import yaml

from neurolocal.bulk import paused_gc

#: libyaml's parser when PyYAML was built with it, the pure-Python one otherwise
SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
#: the scalars `load_checked` builds itself (anything else, e.g. a timestamp, goes to PyYAML)
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))


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


class _NotPlain(Exception):
    """The document holds something `load_checked` leaves to PyYAML."""


def load_checked(text: str, checked: Callable[[Iterable], Iterator]) -> Any:
    """What `load_yaml(text)` returns, after `checked` (a filter of the event stream that
    raises on what it refuses, such as `limits.checked_events`) has passed every event:
    one parse for a plain document, else the checks over the whole stream first and
    then PyYAML's load, as two passes always did."""
    with paused_gc():
        loader = StrictSafeLoader(text)
        try:
            # get_event returns None after the stream's end (both parsers)
            return _build(loader, checked(iter(loader.get_event, None)))
        except _NotPlain:
            pass
        finally:
            loader.dispose()
        for _ in checked(yaml.parse(text, Loader=SafeBase)):
            pass
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader


_OPEN = {yaml.SequenceStartEvent: list, yaml.MappingStartEvent: dict}
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_NO_KEY = object()


def _build(loader: StrictSafeLoader, events: Iterable) -> Any:
    """The single document of a plain event stream as Python objects; `_NotPlain` at the
    first event that is not (the caller then loads the text the general way)."""
    constructors = loader.yaml_constructors
    scalars: dict[tuple[str, str], Any] = {}     # (tag, text) -> its value, built once
    stack: list[list] = []                       # [collection, key awaiting its value]
    root: list = []
    documents = 0

    def place(value, collection: bool) -> None:
        if not stack:
            root.append(value)
            return
        top = stack[-1]
        container, key = top
        if type(container) is list:
            container.append(value)
        elif key is _NO_KEY:
            if collection or value in container:   # a complex or a duplicate key
                raise _NotPlain
            top[1] = value
        else:
            container[key] = value
            top[1] = _NO_KEY

    for event in events:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.anchor is not None or event.tag is not None:
                raise _NotPlain
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR_TAG:
                place(event.value, False)
                continue
            if tag not in _PLAIN_TAGS:
                raise _NotPlain
            value = scalars.get((tag, event.value), _NO_KEY)
            if value is _NO_KEY:
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
                value = scalars[tag, event.value] = constructors[tag](loader, node)
            place(value, False)
        elif kind in _OPEN:
            if event.anchor is not None or event.tag is not None:
                raise _NotPlain
            collection = _OPEN[kind]()
            place(collection, True)
            stack.append([collection, _NO_KEY])
        elif kind in _CLOSE:
            stack.pop()
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _NotPlain
        elif kind is yaml.AliasEvent:
            raise _NotPlain
    return root[0] if root else None
