"""Data sets: the digits split, the text layout for unrolled graphs, user files, and one-line
errors (exit 2) for every bad file."""

from pathlib import Path

import numpy as np
import pytest

from neurolocal.training.data import (char_sequences, load_for_graph, pydoc_topics_text, text_layout,
                             vocabulary_of)
from neurolocal.errors import DataError
from neurolocal.topology import graph_from_dict, load_topology

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "topologies" / "mlp.yaml"


def _unrolled(steps=4, width=6, per_step_output=False, initial_state=False):
    """A small recurrent-looking graph: inputs x@0..x@{S-1}, a chain of dense 'cells'."""
    vertices = [{"name": f"x@{t}", "op": "input", "shape": [width]} for t in range(steps)]
    if initial_state:
        vertices.append({"name": "h@init", "op": "input", "shape": [5]})
    previous = "h@init" if initial_state else None
    outputs = []
    for t in range(steps):
        parents = [f"x@{t}"] + ([previous] if previous else [])
        if len(parents) > 1:
            vertices.append({"name": f"in@{t}", "op": "concat", "parents": parents})
            parents = [f"in@{t}"]
        vertices.append({"name": f"h{t}", "op": "dense", "parents": parents, "units": 5,
                         "activation": "tanh"})
        previous = f"h{t}"
        outputs.append(f"h{t}")
    if per_step_output:
        vertices.append({"name": "all", "op": "concat", "parents": outputs})
        vertices.append({"name": "y", "op": "dense", "parents": ["all"], "units": steps * width})
        return graph_from_dict({"vertices": vertices, "output": "y", "loss": "mse"})
    vertices.append({"name": "y", "op": "dense", "parents": [previous], "units": width})
    return graph_from_dict({"vertices": vertices, "output": "y", "loss": "softmax_cross_entropy"})


# --- built-in data sets ------------------------------------------------------------------------


def test_digits_split_and_scale():
    graph = load_topology(MLP).graph
    data = load_for_graph("digits", graph)
    assert (data.train_size, data.test_size) == (1347, 450)
    x = data.train_inputs["image"]
    assert x.shape == (1347, 64) and x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(data.test_target).min() >= 43            # stratified: 43-46 per class
    again = load_for_graph("digits", graph)
    assert np.array_equal(again.train_inputs["image"], x)


def test_digits_reshape_to_an_image_input():
    graph = graph_from_dict({
        "vertices": [{"name": "img", "op": "input", "shape": [1, 8, 8]},
                     {"name": "flat", "op": "concat", "parents": ["img", "img"], "axis": 0},
                     {"name": "out", "op": "tanh", "parents": ["flat"]}],
        "output": "out", "loss": "mse"})
    data = load_for_graph("digits", graph)
    flat = load_for_graph("digits", load_topology(MLP).graph).train_inputs["image"]
    assert data.train_inputs["img"].shape == (1347, 1, 8, 8)
    assert np.array_equal(data.train_inputs["img"].reshape(1347, 64), flat)


def test_char_sequences_layout():
    codes = np.arange(11) % 7
    x, y = char_sequences(codes, steps=4, width=7)
    assert x.shape == (2, 4, 7) and y.shape == (2, 4)
    assert x[:].shape == (2, 4, 7) and x[1].shape == (4, 7) and x[[1, 0]].shape == (2, 4, 7)
    assert np.array_equal(x[:].argmax(-1), [[0, 1, 2, 3], [5, 6, 0, 1]])
    assert np.array_equal(x[:].sum(-1), np.ones((2, 4)))
    assert np.array_equal(y, [[1, 2, 3, 4], [6, 0, 1, 2]])           # y[:, t] follows x[:, t]


def test_vocabulary_by_frequency_with_an_other_bucket():
    vocabulary, codes = vocabulary_of("aaabbc d", width=3)
    assert vocabulary == "ab"                                        # index 2 is "other"
    assert codes.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    vocabulary, codes = vocabulary_of("ba", width=5)
    assert vocabulary == "ab" and codes.tolist() == [1, 0]


def test_text_feeds_per_step_inputs_and_the_next_character():
    graph = _unrolled(steps=4, width=6, initial_state=True)
    assert text_layout(graph)[1:] == (4, 6)
    data = load_for_graph({"name": "text", "chars": 2000}, graph)
    vocabulary = data.info["vocabulary"]
    assert len(vocabulary) == 5 and data.info["steps"] == 4
    text = pydoc_topics_text()[:2000]
    first = "".join(vocabulary[i] if i < 5 else "?" for i in
                    [data.train_inputs[f"x@{t}"][0].argmax() for t in range(4)])
    expected = "".join(c if c in vocabulary else "?" for c in text[:5])
    assert first == expected[:4]
    assert data.train_target[0] == (vocabulary.index(text[4]) if text[4] in vocabulary else 5)
    assert data.train_inputs["h@init"][np.arange(7)].shape == (7, 5)
    assert not data.train_inputs["h@init"][:].any()
    assert data.train_size + data.test_size == 2000 // 5
    assert data.test_size == 40


def test_text_with_a_per_step_output():
    graph = _unrolled(steps=3, width=4, per_step_output=True)
    data = load_for_graph({"name": "text", "chars": 400}, graph)
    assert data.train_target.shape == (data.train_size, 12)
    x1 = data.train_inputs["x@1"][:].argmax(-1)
    assert np.array_equal(data.train_target[:].reshape(-1, 3, 4)[:, 0].argmax(-1), x1)


def test_user_text_file_is_char_level(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("abcabcabcabcabcabcabcabcabcabc" * 3, encoding="utf-8")
    data = load_for_graph(str(path), _unrolled(steps=2, width=3))
    assert sorted(data.info["vocabulary"]) == ["a", "b", "c"]
    assert data.train_size + data.test_size == 30


def test_npz_with_a_given_split_and_csv_with_a_header(tmp_path):
    graph = load_topology(MLP).graph
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((20, 8, 8)), y_train=np.arange(20) % 10,
             x_test=rng.random((6, 64)), y_test=np.arange(6))
    data = load_for_graph(str(tmp_path / "d.npz"), graph)
    assert (data.train_size, data.test_size) == (20, 6)
    assert data.train_inputs["image"].shape == (20, 64)
    rows = ["," .join(f"p{i}" for i in range(64)) + ",label"]
    rows += [",".join(["0.5"] * 64) + f",{i % 10}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = load_for_graph(str(tmp_path / "d.csv"), graph)
    assert (data.train_size, data.test_size) == (30, 10)
    assert data.train_target.dtype == np.int64


# --- bad files: DataError in Python, one line and exit 2 from the CLI -------------------------


def _bad_files(tmp_path):
    x = np.zeros((12, 64))
    files = {}
    np.savez(tmp_path / "short_y.npz", x=x, y=np.zeros(11, dtype=int))
    files["short_y.npz"] = "has 12 samples but y has 11"
    np.savez(tmp_path / "narrow.npz", x=np.zeros((12, 5)), y=np.zeros(12, dtype=int))
    files["narrow.npz"] = "expects [64]"
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(12))
    files["labels.npz"] = "labels out of range"
    np.savez(tmp_path / "nokeys.npz", a=x)
    files["nokeys.npz"] = "expected arrays x and y"
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 12, dtype=object), y=np.zeros(12))
    files["objects.npz"] = "pickled"
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    files["broken.npz"] = "not a readable .npz"
    (tmp_path / "garbage.csv").write_text("1,2,3\n4,five,6\n")
    files["garbage.csv"] = "row 2: expected numbers"
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    files["ragged.csv"] = "row 2 has 2 columns"
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    files["binary.txt"] = "not UTF-8"
    files["missing.npz"] = "no such file"
    return files


def test_bad_files_raise_data_errors(tmp_path):
    graph = load_topology(MLP).graph
    for name, message in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as caught:
            load_for_graph(str(tmp_path / name), graph)
        assert message in str(caught.value), (name, str(caught.value))
        assert name in str(caught.value)


def test_bad_data_files_exit_2_with_one_line(cli, tmp_path, capsys):
    from neurolocal.cli import main

    files = _bad_files(tmp_path)
    out = tmp_path / "out"
    result = cli("run", MLP, "--engine", "local", "--data", tmp_path / "missing.npz", "--out", out)   # as a user
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("neurolocal: error:") and "no such file" in result.stderr
    for name in ("short_y.npz", "labels.npz", "garbage.csv", "objects.npz"):   # in process
        assert main(["run", str(MLP), "--engine", "local", "--data", str(tmp_path / name),
                     "--out", str(out)]) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith("neurolocal: error:") and "\n" not in line, line
        assert files[name] in line
    assert not out.exists()                                       # nothing written half-way


def test_text_data_needs_a_recurrent_layout():
    with pytest.raises(DataError, match="x@0"):
        load_for_graph("text", load_topology(MLP).graph)
