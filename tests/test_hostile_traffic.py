"""Issue 28: `traffic query` reads and writes nothing outside the log; a NaN time and a
header declaring thousands of fields are one line. Reproductions as real processes
under the hostile harness's limits (tests/hostile_cases.py)."""

from __future__ import annotations

import math
from pathlib import Path

import msgpack
import pytest

import hostile_cases as H

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    from neurolocal.cli import main

    out = tmp_path_factory.mktemp("log") / "traffic"
    assert main(["check-grad", str(H.TOPOLOGIES / "dag.yaml"), "--traffic-log", str(out),
                 "--json"]) == 0
    return out


def objects(log: Path) -> tuple[str, list]:
    path = next(log.glob("*.traffic"))
    return path.name, list(msgpack.Unpacker(open(path, "rb"), raw=False))


def rewrite(directory: Path, name: str, items: list) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    packer = msgpack.Packer(use_bin_type=True)
    (directory / name).write_bytes(b"".join(packer.pack(o) for o in items))
    return directory


def one_line(argv, *words) -> dict:
    record = H.run_cli(argv, wall_timeout=90, memory=2 << 30)   # the 2 GB (DuckDB)
    assert H.broken(**record) is None, record
    assert record["code"] == 2, record
    assert all(w in record["stderr"] for w in words), record
    return record


REFUSED = [
    "COPY messages TO '{target}/copied.csv'",
    "COPY (SELECT 1) TO '{target}/copied.parquet' (FORMAT parquet)",
    "ATTACH '{target}/new.db' AS other",
    "EXPORT DATABASE '{target}/exported'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM 'https://example.com/x.parquet'",
    "SET enable_external_access = true",
]


@pytest.mark.parametrize("sql", [REFUSED[0], REFUSED[2], REFUSED[4]])
def test_a_query_cannot_write_or_reach_out(log, tmp_path, sql):
    """The issue's reproductions (COPY TO and ATTACH succeeded), as real processes."""
    target = tmp_path / "target"
    target.mkdir()
    one_line(["traffic", "query", str(log), sql.format(target=target)], "query failed")
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("in_memory", [True, False])
def test_every_way_out_is_refused(log, tmp_path, monkeypatch, in_memory):
    """Every statement that reaches outside the log, on both paths: the log in memory,
    and (over IN_MEMORY) exported to a temporary Parquet file the query may read."""
    from neurolocal.errors import ConfigError
    from neurolocal.traffic import query as q

    if not in_memory:
        monkeypatch.setattr(q, "IN_MEMORY", 0)
    target = tmp_path / "target"
    target.mkdir()
    for sql in REFUSED:
        with pytest.raises(ConfigError, match="query failed"):
            q.query(str(log), sql.format(target=target))
    assert list(target.iterdir()) == []
    assert q.query(str(log), "SELECT count(*) AS n FROM messages").num_rows == 1


def test_a_query_still_reads_the_log(log, capsys):
    from neurolocal.cli import main

    assert main(["traffic", "query", str(log), "SELECT count(*) AS n FROM messages"]) == 0
    assert "(1 row)" in capsys.readouterr().out


@pytest.mark.parametrize("command,field,value", [
    ("report", 6, math.nan), ("query", 6, math.nan), ("summary", 6, math.nan),
    ("report", 7, math.inf)])
def test_a_nan_time_is_one_line(log, tmp_path, command, field, value):
    """A NaN send time broke `traffic report` (and made a query spin)."""
    name, items = objects(log)
    record = next(o for o in items if isinstance(o, list))
    record[field] = value
    bad = rewrite(tmp_path / "bad", name, items)
    argv = {"report": ["traffic", "report", str(bad), "-o", str(tmp_path / "r.html")],
            "query": ["traffic", "query", str(bad), "SELECT max(t_send) FROM messages"],
            "summary": ["traffic", "summary", str(bad)]}[command]
    one_line(argv, "finite")


@pytest.mark.parametrize("extra", [20_000, 100_000])
def test_a_header_of_many_fields_is_one_line(log, tmp_path, extra):
    name, items = objects(log)
    items[0]["fields"] = items[0]["fields"] + [f"f{i}" for i in range(extra)]
    bad = rewrite(tmp_path / "bad", name, items)
    one_line(["traffic", "summary", str(bad)], "fields")


def test_a_few_extra_fields_still_read(log, tmp_path, capsys):
    """A later version's fields (up to MAX_FIELDS) read in the same bounded memory."""
    from neurolocal.cli import main
    from neurolocal.traffic.stream import MAX_FIELDS

    name, items = objects(log)
    extra = MAX_FIELDS - len(items[0]["fields"])
    items[0]["fields"] = items[0]["fields"] + [f"f{i}" for i in range(extra)]
    for o in items:
        if isinstance(o, list):
            o.extend([1.5] * extra)
    good = rewrite(tmp_path / "good", name, items)
    assert main(["traffic", "summary", str(good)]) == 0
