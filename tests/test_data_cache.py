"""The digits split is cached per user (issue 15: a driver need not import sklearn).

The cached split must be the sklearn split bit for bit, and a command that finds it
must not import sklearn at all. Each test has a cache directory of its own."""

import subprocess
import sys

import numpy as np

from conftest import REPO_ROOT

READ = ("import sys, json, numpy as np; from neurolocal.training.data import load_digits; "
        "d = load_digits(); print(json.dumps({'sklearn': 'sklearn' in sys.modules, "
        "'sums': [float(np.sum(a)) for a in (d.x_train, d.y_train, d.x_test, d.y_test)]}))")


def read_in_subprocess(cache_home, **env):
    import json
    import os

    done = subprocess.run([sys.executable, "-c", READ], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache_home), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_second_load_reads_the_cache_without_sklearn(tmp_path):
    first = read_in_subprocess(tmp_path)
    assert first["sklearn"] is True                    # built the split, wrote the cache
    assert list((tmp_path / "neurolocal").glob("digits-split-sklearn-*.npz"))
    second = read_in_subprocess(tmp_path)
    assert second["sklearn"] is False and second["sums"] == first["sums"]
    off = read_in_subprocess(tmp_path, NEUROLOCAL_DATA_CACHE="0")
    assert off["sklearn"] is True and off["sums"] == first["sums"]


def test_cached_split_is_sklearns_split_bit_for_bit(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    from neurolocal.training.data import load_digits

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_digits()                                      # writes the cache
    cached = load_digits()                             # reads it
    bunch = sk_digits()
    expected = train_test_split(bunch.data.astype(np.float64) / 16.0,
                                bunch.target.astype(np.int64), test_size=0.25,
                                stratify=bunch.target, random_state=0)
    got = (cached.x_train, cached.x_test, cached.y_train, cached.y_test)
    for want, have in zip(expected, got):
        assert want.dtype == have.dtype and np.array_equal(want, have)


def test_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    from neurolocal.training.data import _digits_cache, load_digits

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _digits_cache()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    data = load_digits()
    assert data.x_train.shape == (1347, 64) and len(data.y_test) == 450
    with np.load(path) as saved:                       # replaced by a good one
        assert np.array_equal(saved["x_train"], data.x_train)


def test_the_readme_command_on_an_empty_cache_builds_the_split_on_ray(tmp_path):
    """A fresh machine: no cached split, the Ray engine (the README's first command).
    sklearn builds the split in the Ray driver's process, which must not have been
    altered for Ray's sake (a driver that hid pyarrow from itself broke sklearn's
    train_test_split with a traceback)."""
    import os

    done = subprocess.run([sys.executable, "-m", "neurolocal", "run", "topologies/mlp.yaml",
                           "--engine", "ray", "--epochs", "1", "--quiet", "--no-traffic-log",
                           "--out", str(tmp_path / "run")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert list((tmp_path / "cache" / "neurolocal").glob("digits-split-sklearn-*.npz"))
    assert (tmp_path / "run" / "metrics.json").is_file()
