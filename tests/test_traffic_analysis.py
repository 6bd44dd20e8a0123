"""Traffic logs as analysts read them: Arrow/Parquet/CSV export, SQL with DuckDB, the HTML
report in a real headless Chromium, and audits of honest logs that used to fail
(a resumed run numbers its batches from 0 again; a run that ended inside a batch).

The log under test is a real `neurolocal run` (local engine, digits MLP, 1 epoch of
6 batches, Jacobi schedule) resumed for a second epoch: two runs in one traffic directory.
"""

import json
import re
import shutil
import sys
from collections import Counter

import msgpack
import numpy as np
import pyarrow as pa
import pytest

from neurolocal.cli import main
from neurolocal.topology import load_topology
from neurolocal.traffic import read_table, read_traffic
from neurolocal.traffic.audit import audit
from neurolocal.traffic.log import FIELDS
from neurolocal.traffic.table import export
from conftest import TOPOLOGIES

MLP = TOPOLOGIES / "mlp.yaml"
COLUMNS = ["run", "writer", *FIELDS, "latency_ms"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "mlp"
    common = ["--engine", "local", "--batch-size", "256", "--quiet", "--schedule", "jacobi"]
    assert main(["run", str(MLP), "--epochs", "1", "--out", str(out), *common]) == 0
    assert main(["run", str(MLP), "--resume", str(out), "--epochs", "2", "--quiet",
                 "--schedule", "jacobi"]) == 0
    return out


def rows_of(log):
    return sorted(zip(*(log.columns[f].tolist() for f in ["run", *FIELDS])))


# --- export -----------------------------------------------------------------------------

def test_parquet_export_has_every_message_and_every_field(run_dir, tmp_path, cli):
    import pyarrow.parquet as pq

    path = tmp_path / "messages.parquet"
    result = cli("traffic", "export", run_dir, "-o", path)  # the run directory: finds traffic/
    assert result.returncode == 0, result.stderr
    table = pq.read_table(path)
    log = read_traffic(run_dir / "traffic")
    audited = audit(run_dir / "traffic", load_topology(MLP).graph)
    assert audited.ok and audited.counts_checked, audited.violations
    assert table.num_rows == audited.messages == len(log) == 2 * 6 * 6
    assert table.column_names == COLUMNS
    assert table.column("kind").type == pa.dictionary(pa.int32(), pa.string())
    exported = sorted(zip(*(table.column(f).to_pylist() for f in ["run", *FIELDS])))
    assert exported == rows_of(log)
    latency = table.column("latency_ms").to_numpy()
    t = table.to_pydict()
    assert np.allclose(latency, (np.array(t["t_recv"]) - np.array(t["t_send"])) * 1e3)
    assert len(set(t["run"])) == 2 and set(t["writer"]) == {"local"}


@pytest.mark.parametrize("suffix", [".csv", ".arrow"])
def test_csv_and_arrow_exports_round_trip(run_dir, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    assert export(run_dir, path) == 72
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(path)
    else:
        import pyarrow.ipc as ipc

        table = ipc.open_file(path).read_all()
    assert table.column_names == COLUMNS and table.num_rows == 72
    assert Counter(table.column("kind").to_pylist()) == \
        Counter(read_traffic(run_dir).columns["kind"].tolist())


def test_read_table_is_the_log(run_dir):
    table = read_table(run_dir / "traffic")
    assert table.num_rows == 72
    assert sorted(zip(*(table.column(f).to_pylist() for f in ["run", *FIELDS]))) == \
        rows_of(read_traffic(run_dir))


def test_export_refuses_an_unknown_format_in_one_line(run_dir, tmp_path, cli):
    result = cli("traffic", "export", run_dir, "-o", tmp_path / "m.xlsx")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown export format '.xlsx'" in result.stderr
    assert not (tmp_path / "m.xlsx").exists()


# --- SQL --------------------------------------------------------------------------------

README_QUERIES = {
    "busiest edges": "SELECT src, dst, kind, count(*) AS messages, sum(bytes) AS bytes "
                     "FROM messages GROUP BY ALL ORDER BY bytes DESC LIMIT 10",
    "cross-host bytes per batch": "SELECT run, batch, sum(bytes) AS cross_host_bytes FROM "
                                  "messages WHERE src_host <> dst_host GROUP BY ALL ORDER BY ALL",
    "latency percentiles per kind": "SELECT kind, quantile_cont(latency_ms, 0.5) AS p50_ms, "
                                    "quantile_cont(latency_ms, 0.99) AS p99_ms FROM messages "
                                    "GROUP BY kind ORDER BY kind",
    "messages per round": "SELECT round, kind, count(*) AS messages FROM messages "
                          "GROUP BY ALL ORDER BY ALL",
    "restarts": "SELECT run, batch, t_send FROM messages WHERE kind = 'control' AND "
                "src = 'scheduler' AND dst = 'scheduler' ORDER BY t_send",
}


def test_duckdb_query_counts_what_the_summary_counts(run_dir, cli):
    pytest.importorskip("duckdb", reason="the optional extra neurolocal[analysis]")
    result = cli("traffic", "query", run_dir, "SELECT kind, count(*) AS n, sum(bytes) AS b "
                 "FROM messages GROUP BY kind ORDER BY kind", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    summary = json.loads(cli("traffic", "summary", run_dir, "--json").stdout)
    assert {r["kind"]: (r["n"], r["b"]) for r in rows} == \
        {k: (v["messages"], v["bytes"]) for k, v in summary["by_kind"].items()}
    energy = cli("traffic", "query", run_dir, "SELECT count(DISTINCT (run, batch)) AS batches, "
                 "max(round) AS last FROM energy", "--json")
    assert json.loads(energy.stdout) == [{"batches": 12, "last": 2}]


def test_the_readme_queries_run(run_dir):
    pytest.importorskip("duckdb", reason="the optional extra neurolocal[analysis]")
    from neurolocal.traffic.query import query

    readme = (TOPOLOGIES.parent / "README.md").read_text()
    for name, sql in README_QUERIES.items():
        assert sql in " ".join(readme.split()), f"README lost the query {name!r}"
        table = query(run_dir, sql)
        assert table.num_rows > 0 or name in ("cross-host bytes per batch", "restarts")
    per_round = query(run_dir, README_QUERIES["messages per round"]).to_pylist()
    assert sum(r["messages"] for r in per_round) == 72


def test_a_bad_query_and_a_missing_duckdb_are_one_line(run_dir, tmp_path, cli):
    pytest.importorskip("duckdb", reason="the optional extra neurolocal[analysis]")
    bad = cli("traffic", "query", run_dir, "SELECT nope FROM messages")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "query failed" in bad.stderr and "Traceback" not in bad.stderr
    # an environment without DuckDB: a module of that name that cannot be imported
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "duckdb.py").write_text("raise ImportError('no duckdb here')\n")
    env = {"PYTHONPATH": f"{shadow}:{TOPOLOGIES.parent}"}
    missing = cli("traffic", "query", run_dir, "SELECT 1", env=env)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "neurolocal: error: traffic query needs DuckDB, an optional extra: pip install "
        "'neurolocal[analysis]' (or pip install duckdb)"]


# --- the HTML report --------------------------------------------------------------------

def test_run_writes_a_self_contained_report(run_dir):
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="report-data"' in page
    # offline: nothing is fetched — no external script, style, font or image
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)'
                                r"</script>", page, re.S).group(1).replace("<\\/", "</"))
    assert data["summary"]["messages"] == 72 and len(data["runs"]) == 2
    assert {v["id"] for v in data["graph"]["vertices"]} == set(load_topology(MLP).graph.order)


def _png_pixels(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def test_report_renders_in_headless_chromium_without_errors(run_dir, tmp_path):
    from headless import Browser, chromium

    executable = chromium()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    shot = tmp_path / "report.png"
    with Browser(executable) as browser:
        browser.open(run_dir / "report.html")
        assert browser.wait_for("document.body && document.body.dataset.rendered === '1'"), \
            browser.errors()
        assert browser.errors() == []
        drawn = browser.evaluate("[document.querySelectorAll('svg path').length, "
                                 "document.querySelectorAll('svg rect').length, "
                                 "document.querySelectorAll('section.panel').length]")
        browser.screenshot(shot)
        assert browser.errors() == []
    paths, rects, panels = drawn
    assert paths >= 10 and rects >= 20 and panels >= 8
    pixels = _png_pixels(shot)
    assert pixels.shape[0] > 1500 and pixels.shape[1] > 1300  # the whole page
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # drawn, not blank
    background = np.all(np.abs(pixels[..., :3] - pixels[5, -5, :3]) < 0.02, axis=-1)
    assert 0.05 < 1 - background.mean()
    shutil.copy(shot, run_dir / "report-screenshot.png")


def test_chromium_harness_sees_a_javascript_error(tmp_path):
    """The harness itself can fail: a page that throws is reported."""
    from headless import Browser, chromium

    executable = chromium()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><body><script>document.body.dataset.rendered = '1';"
                    "undefinedFunction();</script></body>")
    with Browser(executable) as browser:
        browser.open(page)
        assert browser.wait_for("document.body && document.body.dataset.rendered === '1'")
        browser.evaluate("1")
        assert any("undefinedFunction" in e for e in browser.errors())


# --- honest logs the audit must pass; dishonest ones it must not ----------------------

def test_summary_of_a_run_directory_says_bytes_sent_and_scheduler_bytes(run_dir, cli):
    result = cli("traffic", "summary", run_dir)
    assert result.returncode == 0, result.stderr
    assert "bytes sent (payload, not the log's size)" in result.stdout
    assert "12 batches in 2 run(s)" in result.stdout
    assert "scheduler (control) bytes per batch: 0" in result.stdout


def test_resumed_run_passes_the_audit_and_a_forged_duplicate_in_it_fails(run_dir, tmp_path,
                                                                         cli):
    logdir = tmp_path / "traffic"
    shutil.copytree(run_dir / "traffic", logdir)
    ok = cli("traffic", "audit", logdir, MLP)
    assert ok.returncode == 0 and ok.stdout.startswith("PASS"), ok.stdout
    second = sorted(logdir.glob("*.traffic"))[-1]
    log = read_traffic(logdir)
    i = next(i for i, r in enumerate(log.columns["run"]) if second.name.startswith(r)
             and log.columns["kind"][i] == "error")
    record = [log.columns[f][i].item() if hasattr(log.columns[f][i], "item") else
              log.columns[f][i] for f in FIELDS]
    with open(second, "ab") as f:
        f.write(msgpack.packb(record))
    bad = cli("traffic", "audit", logdir, MLP)
    assert bad.returncode == 1 and "2 messages, the algorithm sends 1" in bad.stdout
    assert f"batch {record[0]} round {record[1]}" in bad.stdout


def _objects(path):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    return list(unpacker)


def test_a_run_that_ended_inside_a_batch_passes_with_that_batch_unfinished(run_dir,
                                                                           tmp_path):
    """As a run that died of an actor timeout leaves it: the last batch has some of its
    messages and no energy record. Skipped as unfinished; with its energy record kept
    (the batch claims to be complete) the same missing messages fail."""
    graph = load_topology(MLP).graph
    for keep_energy in (False, True):
        logdir = tmp_path / f"cut-{keep_energy}"
        logdir.mkdir()
        first = sorted((run_dir / "traffic").glob("*.traffic"))[0]
        objects = _objects(first)
        last = max(o[0] for o in objects[1:] if isinstance(o, list))
        kept = [o for o in objects if not (isinstance(o, list) and o[0] == last and o[1] > 0)]
        if not keep_energy:
            kept = [o for o in kept if not (isinstance(o, dict) and o.get("energy", [None])[0]
                                            == last)]
        (logdir / first.name).write_bytes(b"".join(msgpack.packb(o) for o in kept))
        result = audit(logdir, graph)
        if keep_energy:
            assert not result.ok and any(f"batch {last} round 1" in v for v in result.violations)
        else:
            assert result.ok and result.counts_checked, result.violations
            assert result.unfinished == [last]


def test_audit_against_another_topology_is_one_line(run_dir, cli):
    result = cli("traffic", "audit", run_dir, TOPOLOGIES / "dag.yaml")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"neurolocal: error: {run_dir / 'traffic'}: the log's graph is 'mlp', not the "
        "topology given ('dag'); audit it against the topology that wrote it"]


def test_header_iterations_are_never_used_to_size_anything(run_dir, tmp_path):
    """iterations 10**12 in the header: one violation line, no allocation by it."""
    import resource

    logdir = tmp_path / "huge"
    logdir.mkdir()
    first = sorted((run_dir / "traffic").glob("*.traffic"))[0]
    objects = _objects(first)
    objects[0]["settings"]["iterations"] = 10**12
    objects[0]["settings"]["schedule"] = "jacobi"
    (logdir / first.name).write_bytes(b"".join(msgpack.packb(o) for o in objects))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = audit(logdir, load_topology(MLP).graph)
    assert not result.ok and len(result.violations) == 1
    assert "imply" in result.violations[0] and "the largest batch in the log has" in \
        result.violations[0]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
