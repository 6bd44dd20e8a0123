"""Reading and writing user-named files without surprises.

`regular_file` is asked before any input file is opened: only a regular file of at
most `limit` bytes passes, so /dev/zero, /dev/urandom, a FIFO (whose open would block
forever) or a directory end in one line instead of a hang or gigabytes read.

`writable_directory` is asked before a command writes anything: the output directory
(created if missing) must be a directory this process can create files in, so an
unwritable output directory (`--out`) fails up front and leaves nothing half-written.

`directory_lock` is held by the command that writes into a directory for as long as it
does (a run's `--out`): a second one is refused in one line instead of mixing its files
with the first's.

`atomic_path` (and `write_atomic` on top of it) is the one way a file is written whole
or not at all: written under a temporary name beside it, then renamed over it, so a
reader (or a crash) sees the old file or the new one, never half of one. Every writer
in the package uses it (tests/test_structure.py checks that no other module renames).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Type

from neurolocal.errors import ConfigError, NeurolocalError, param


def regular_file(path: str | Path, limit: int, error: Type[NeurolocalError],
                 what: str = "file") -> int:
    """The size of `path` when it is a regular file of at most `limit` bytes, else `error`."""
    source = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error("no such file", source=source) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or type(exc).__name__}",
                    source=source) from None
    except ValueError:                         # e.g. a NUL byte in the name
        raise error("not a usable file name", source=source) from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"is a directory, expected a {what}", source=source)
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise error(f"is {kind}, expected a regular {what}", source=source)
    if info.st_size > limit:
        key = "document_bytes" if what in ("topology file", "asynchrony file") else \
            "data_bytes"
        raise error(f"{what} is {info.st_size} bytes, more than the budget of {limit}; raise "
                    f"it with {param('budget')} {key}=N (or NEUROLOCAL_BUDGET)", source=source)
    return info.st_size


def read_bytes(path: str | Path, limit: int, error: Type[NeurolocalError],
               what: str = "file") -> bytes:
    """The bytes of a regular file, refusing (not truncating) one that grew past `limit`.
    Read in pieces of about the file's size: `read(limit + 1)` would reserve the whole
    budget (256 MB) for a file of a few bytes, a MemoryError under a tight RLIMIT_AS."""
    size = regular_file(path, limit, error, what)
    try:
        with open(path, "rb") as handle:
            pieces, total = [], 0
            while total <= limit:
                piece = handle.read(min(max(size + 1, 1 << 16), limit + 1 - total))
                if not piece:
                    break
                pieces.append(piece)
                total += len(piece)
            data = b"".join(pieces)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or type(exc).__name__}",
                    source=str(path)) from None
    if len(data) > limit:
        raise error(f"{what} is more than the budget of {limit} bytes", source=str(path))
    return data


def writable_directory(path: str | Path, name: str) -> Path:
    """Prove `path` can be a directory this process writes in, creating nothing: it is a
    directory already, or its nearest existing ancestor is one we can create files in.
    `name`: the parameter that gave the path (`errors.param("out")`), the error's field."""
    path = Path(path)
    where = f"{name} {path}"
    with _writing_to(where):
        existing = path
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if not existing.is_dir():
            what = "exists and is not a directory" if existing == path else \
                f"{existing} is a file where a directory is expected"
            raise ConfigError(what, field=where)
        _probe(existing)
    return path


@contextlib.contextmanager
def _writing_to(where: str):
    """An OSError or a bad path while checking an output becomes one ConfigError line."""
    try:
        yield
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot write here: {exc.strerror or type(exc).__name__}",
                          field=where) from None
    except ValueError:
        raise ConfigError("not a usable path", field=where) from None


def _probe(directory: Path) -> None:
    fd, probe = tempfile.mkstemp(dir=directory, prefix=".neurolocal-probe-")
    os.close(fd)
    os.unlink(probe)


def writable_file(path: str | Path, name: str) -> Path:
    """An output file's directory must exist and be writable; the file is not touched.
    `name`: the parameter that gave the path (as for `writable_directory`)."""
    path = Path(path)
    where = f"{name} {path}"
    parent = path.parent if str(path.parent) else Path(".")
    with _writing_to(where):
        if path.is_dir():
            raise ConfigError("is a directory, expected a file name", field=where)
        if not parent.is_dir():
            raise ConfigError(f"directory {parent} does not exist", field=where)
        _probe(parent)
    return path


# --- one writer per directory ------------------------------------------------------------------

LOCK_NAME = ".neurolocal.lock"


@contextlib.contextmanager
def directory_lock(directory: str | Path, name: str) -> Iterator[None]:
    """An exclusive lock on `directory` (an flock on DIR/.neurolocal.lock holding the pid)
    for the block; ConfigError naming `name` (the parameter that gave the path) when
    another process holds it. The kernel drops the lock when the holder exits, however it
    ends, so a killed run never leaves a stale lock; the file itself stays."""
    import fcntl

    path = Path(directory) / LOCK_NAME
    where = f"{name} {directory}"
    with _writing_to(where):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise ConfigError(f"is in use by another run{f' (pid {holder})' if holder else ''}"
                              "; wait for it to end or pick another directory",
                              field=where) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# --- writing a file whole or not at all --------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path, *, private: bool = False,
                durable: bool = False) -> Iterator[Path]:
    """A temporary name beside `path` for the block to write to (`.<name>.<random>.tmp`);
    when the block ends without an error it replaces `path` in one rename, else it is
    removed. The file gets the mode a plain `open` would give it (0666 less the umask),
    or 0600 when `private`; `durable` fsyncs it before the rename (a checkpoint: after a
    power loss the old file or the new one, complete). OSError propagates."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not private:                      # mkstemp's 0600 is for the half-written file only
            os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)          # gone already after the rename


def write_atomic(path: str | Path, data: str | bytes, *, private: bool = False,
                 durable: bool = False) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` whole or not at all (`atomic_path`)."""
    with atomic_path(path, private=private, durable=durable) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def write_output(path: str | Path, text: str) -> None:
    """A command's output file, whole or nothing (`write_atomic`); one line (ConfigError
    naming the file) when it cannot be written."""
    from neurolocal.errors import ConfigError

    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", source=str(path)) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
