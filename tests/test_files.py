"""The one atomic write (neurolocal/files.py): whole or nothing, the mode a plain open gives."""

from __future__ import annotations

import os

import pytest

from neurolocal.files import atomic_path, write_atomic


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "doc.json"
    target.write_text("old")
    write_atomic(target, "new text")
    assert target.read_text() == "new text"
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(os.listdir(tmp_path)) == ["doc.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "doc.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["doc.json"]


def test_mode_is_the_umasks_unless_private(tmp_path):
    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "plain", "x")
        write_atomic(tmp_path / "secret", "x", private=True)
        write_atomic(tmp_path / "durable", "x", durable=True)
    finally:
        os.umask(mask)
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "durable").read_text() == "x"


def test_a_missing_directory_is_an_oserror_and_writes_nothing(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "absent" / "doc.json", "x")
    assert os.listdir(tmp_path) == []
