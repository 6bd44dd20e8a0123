"""A corpus of malformed files (tests/corpus, made by make_corpus.py) plus damaged
checkpoints of a real run: each must end in exit code 2 and ONE line on stderr that
names the problem, with no traceback and no output directory left looking complete."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from neurolocal.cli import main
from conftest import TOPOLOGIES

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())


def run_main(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


@pytest.mark.parametrize("case", MANIFEST, ids=[c["file"] for c in MANIFEST])
def test_malformed_file_is_one_line_exit_2(case, capsys, tmp_path):
    out = tmp_path / "out"
    args = [a.format(file=CORPUS / case["file"], mlp=TOPOLOGIES / "mlp.yaml", out=out)
            for a in case["command"]]
    code, lines = run_main(capsys, args)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert case["expect"].lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in lines[0]
    assert not (out / "metrics.json").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mlp"
    assert main(["run", str(TOPOLOGIES / "mlp.yaml"), "--engine", "local", "--epochs", "1",
                 "--batch-size", "256", "--out", str(out), "--quiet", "--no-traffic-log"]) == 0
    return out


def damaged(finished_run, tmp_path, edit):
    """A copy of the finished run whose checkpoint `edit` rewrites."""
    copy = tmp_path / "damaged"
    shutil.copytree(finished_run, copy)
    edit(copy / "checkpoint-pc.npz")
    return copy


def rewrite(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


CHECKPOINT_CASES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:500]), "checkpoint"),
    "not a zip": (lambda p: p.write_bytes(b"hello"), "checkpoint"),
    "wrong shape": (lambda p: rewrite(p, lambda a: a.__setitem__(
        "param/hidden1/weight", np.zeros((3, 3)))), "shape"),
    "foreign parameter": (lambda p: rewrite(p, lambda a: a.__setitem__(
        "param/ghost/weight", np.zeros(3))), "ghost"),
    "missing parameter": (lambda p: rewrite(p, lambda a: a.pop("param/logits/bias")), "logits"),
    "future format": (lambda p: rewrite(p, lambda a: a.__setitem__(
        "format", np.array(99))), "format 99"),
    "pickled array": (lambda p: _pickle_into(p), "checkpoint"),
}


def _pickle_into(path):
    with zipfile.ZipFile(path, "a") as z:
        buffer = __import__("io").BytesIO()
        np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
        z.writestr("evil.npy", buffer.getvalue())


@pytest.mark.parametrize("name", CHECKPOINT_CASES)
def test_damaged_checkpoint_is_one_line_exit_2(name, finished_run, tmp_path, capsys):
    edit, expected = CHECKPOINT_CASES[name]
    directory = damaged(finished_run, tmp_path, edit)
    code, lines = run_main(capsys, ["run", TOPOLOGIES / "mlp.yaml", "--resume", directory,
                                    "--epochs", "2", "--quiet"])
    assert code == 2, lines
    assert len(lines) == 1 and expected.lower() in lines[0].lower(), lines


def test_checkpoint_of_another_topology_is_refused(finished_run, capsys):
    code, lines = run_main(capsys, ["run", TOPOLOGIES / "cnn.yaml", "--resume", finished_run,
                                    "--epochs", "2", "--quiet"])
    assert code == 2 and len(lines) == 1 and "topology" in lines[0], lines


def test_corpus_is_large_enough():
    assert len(MANIFEST) + len(CHECKPOINT_CASES) + 1 >= 30
