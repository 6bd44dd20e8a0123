"""Property-based tests: the loaders raise only the project's own error type, whatever the input."""

import io
import warnings

import msgpack
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurolocal import NeurolocalError
from neurolocal.topology import load_topology, topology_from_dict
from neurolocal.traffic import read_traffic

OP_NAMES = ["input", "dense", "tanh", "relu", "sigmoid", "add", "mul", "concat", "bogus", 3, None]
NAMES = ["x", "h", "y", "z", "out", "", "1bad", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True),
                    st.sampled_from(NAMES), st.sampled_from(OP_NAMES))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(
                                                           ["shape", "units", "axis", "activation",
                                                            "bias", "init", "parents", "name",
                                                            "op"]), inner, max_size=4)),
                      max_leaves=12)
vertex = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES), "op": st.sampled_from(OP_NAMES)},
    optional={"parents": st.one_of(st.lists(st.sampled_from(NAMES), max_size=3), values),
              "shape": st.one_of(st.lists(st.integers(-2, 9), max_size=3), values),
              "units": st.one_of(st.integers(-2, 9), values),
              "activation": st.sampled_from(["tanh", "relu", "identity", "swish", 1]),
              "axis": st.integers(-3, 3)})
document = st.one_of(
    values,
    st.fixed_dictionaries(
        {"vertices": st.one_of(st.lists(vertex, max_size=6), values)},
        optional={"output": st.sampled_from(NAMES + [None, 1]),
                  "loss": st.sampled_from(["mse", "softmax_cross_entropy", "hinge", None,
                                           {"type": "mse", "scale": 2.0}, {"type": 1}]),
                  "training": values, "name": values, "extra": values}),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document)
def test_topology_from_any_mapping_builds_or_raises_our_error(doc):
    try:
        topology_from_dict(doc)
    except NeurolocalError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_topology_file_of_any_bytes_builds_or_raises_our_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "t.yaml"
    path.write_bytes(data)
    try:
        load_topology(path)
    except NeurolocalError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(document)
def test_yaml_round_trip_of_any_mapping(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fuzz") / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_topology(path)
    except NeurolocalError:
        pass


HEADER = {"format": "neurolocal-traffic", "version": 1, "run": "r", "writer": "w",
          "fields": [], "graph": "g", "settings": {}}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(values, st.lists(scalars, min_size=12, max_size=12)), max_size=5),
       st.integers(0, 40), st.binary(max_size=40))
def test_traffic_reader_raises_only_our_error(tmp_path_factory, items, cut, junk):
    directory = tmp_path_factory.mktemp("log")
    stream = io.BytesIO()
    stream.write(msgpack.packb(HEADER))
    for item in items:
        stream.write(msgpack.packb(item))
    data = stream.getvalue()
    data = data[:max(1, len(data) - cut)] + junk
    (directory / "a.traffic").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_traffic(directory)
        except NeurolocalError as exc:
            assert "\n" not in str(exc)
