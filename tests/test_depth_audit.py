"""The per-layer audit (issue 26): it names exactly the layers no error reaches, and a net
where every layer learns comes out clean."""

import json

import msgpack
import numpy as np
import pytest

from neurolocal.engines.local import LocalEngine
from neurolocal.errors import DataError
from neurolocal.generate import resnet, topology_yaml
from neurolocal.topology import graph_from_dict
from neurolocal.traffic.depth import read_depth, read_log_layers
from neurolocal.traffic.log import TrafficRecorder
from neurolocal.training.depth_audit import DepthAudit, probe, weight_change


def graph_of(depth=6, skips=True, zero_at=None, activation="tanh"):
    document = resnet(depth=depth, width=8, input_width=5, output_width=3,
                      parameterization="standard", activation=activation, skips=skips,
                      init="xavier")
    if zero_at is not None:   # a layer that passes no error down: J^T eps = 0 * ...
        for entry in document["vertices"]:
            if entry["name"] == zero_at:
                entry["multiplier"] = 0.0
    return graph_from_dict(document)


def batch(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((16, 5))}, rng.standard_normal((16, 3))


def silent(graph, mode, eta, rounds):
    params = graph.init_params(1)
    x, y = batch(graph)
    layers = probe(graph, params, x, y, mode=mode, eta=eta, iterations=rounds)
    return {n for n, row in layers.items() if row["arrived"] is None}, layers


def test_T_shorter_than_the_distance_names_exactly_the_layers_beyond_it():
    graph = graph_of(depth=6)
    found, layers = silent(graph, "fixed", 1.0, 3)
    assert found == {"h1", "h2", "h3"}           # out 0, h6 1, h5 2, h4 3 edges away
    assert [layers[n]["arrived"] for n in ("out", "h6", "h5", "h4")] == [0, 1, 2, 3]
    assert all(layers[n]["cosine"] is None for n in found)      # no update at all
    assert all(layers[n]["cosine"] > 1 - 1e-12 for n in ("out", "h6", "h5", "h4"))


@pytest.mark.parametrize("mode, eta, rounds", [("fixed", 1.0, 8), ("strict", 0.2, 12)])
def test_a_zero_multiplier_without_a_skip_silences_everything_below_it(mode, eta, rounds):
    graph = graph_of(depth=6, skips=False, zero_at="h4")
    found, _ = silent(graph, mode, eta, rounds)
    assert found == {"h1", "h2", "h3"}


@pytest.mark.parametrize("mode, eta, rounds", [("fixed", 1.0, 6), ("strict", 0.2, 12)])
def test_every_layer_reached_is_clean(mode, eta, rounds):
    graph = graph_of(depth=6)
    found, layers = silent(graph, mode, eta, rounds)
    assert found == set()
    if mode == "fixed":   # T = depth at eta 1: backprop's gradient in every layer
        assert all(row["cosine"] > 1 - 1e-10 for row in layers.values())
    assert all(len(row["energy"]) == rounds + 1 for row in layers.values())
    row = layers["h3"]
    np.testing.assert_allclose(row["error_norm"], np.sqrt(2 * np.array(row["energy"])))


@pytest.mark.parametrize("mode, eta, rounds, silent_layers", [
    ("fixed", 1.0, 3, ["h1", "h2", "h3"]), ("strict", 0.2, 12, []),
    ("strict", 0.2, 3, ["h1", "h2", "h3"])])
def test_the_traffic_log_gives_the_engines_numbers_per_vertex_and_round(
        tmp_path, mode, eta, rounds, silent_layers):
    """Energy and error norm per vertex and round read back from the log equal the
    engine's (bit for bit) and the audit probe's; the log names the same silent layers."""
    graph = graph_of(depth=6)
    params = graph.init_params(1)
    x, y = batch(graph)
    recorder = TrafficRecorder(tmp_path / "log", "run", "local", settings={"mode": mode})
    engine = LocalEngine(graph, params, mode=mode, recorder=recorder)
    try:
        relaxation = engine.relax(x, y, eta=eta, iterations=rounds)
    finally:
        engine.close()
        recorder.close()
    table, settings = read_log_layers(tmp_path / "log")
    assert settings["mode"] == mode and table["batches"] == 1
    assert table["layers"] == ["h1", "h2", "h3", "h4", "h5", "h6", "out"]   # not the input
    audit = probe(graph, params, x, y, mode=mode, eta=eta, iterations=rounds)
    for n in table["layers"]:
        assert table["energy"]["first"][n] == relaxation.vertex_energy[n]
        assert table["energy"]["mean"][n] == relaxation.vertex_energy[n]
        assert table["energy"]["first"][n] == audit[n]["energy"]
        assert table["arrived"][n] == audit[n]["arrived"]
    assert table["silent"] == silent_layers
    document = read_depth(tmp_path / "log")["traffic log"]
    row = document["epochs"][-1]["layers"]["h4"]
    np.testing.assert_allclose(row["error_norm"], audit["h4"]["error_norm"], rtol=1e-15)


def test_a_damaged_vertex_energy_record_is_one_data_error(tmp_path):
    recorder = TrafficRecorder(tmp_path, "run", "local")
    recorder.record(0, 0, "x", "h1", "value", 8, 1.0, 1.0)
    recorder.record_energy(0, [1.0, 0.5], {"h1": [1.0, 0.5]})
    recorder.close()
    assert read_log_layers(tmp_path)[0]["energy"]["first"] == {"h1": [1.0, 0.5]}
    with open(recorder.path, "ab") as handle:   # a writer of another version, or damage
        handle.write(msgpack.packb({"energy": [1, [1.0, 0.5]],
                                    "vertex_energy": {"h1": [1.0, "0.5"]}}))
    with pytest.raises(DataError, match="vertex_energy"):
        read_log_layers(tmp_path)


def test_weight_change_is_relative_and_per_layer():
    start = {"a": {"weight": np.ones((2, 2))}, "b": {"weight": np.ones(4)}, "x": {}}
    now = {"a": {"weight": np.ones((2, 2)) * 1.5}, "b": {"weight": np.ones(4)}}
    assert weight_change(start, now) == {"a": pytest.approx(0.5), "b": 0.0}


def test_audit_document_names_silent_and_still_layers():
    graph = graph_of(depth=6)
    params = graph.init_params(1)
    x, y = batch(graph)
    audit = DepthAudit(graph, "pc", params, x, y, mode="fixed", eta=1.0, iterations=3)
    moved = {v: {k: a * (1.0 if v in ("h1", "h2", "h3") else 2.0) for k, a in p.items()}
             for v, p in params.items()}
    audit.record(moved, epoch=1)
    document = audit.document()
    assert document["silent"] == ["h1", "h2", "h3"]
    assert document["not_moving"] == ["h1", "h2", "h3"]


def test_run_writes_depth_json_and_traffic_depth_names_the_silent_layers(cli, tmp_path):
    document = resnet(depth=4, width=16, input_width=64, output_width=10, activation="tanh",
                      parameterization="standard", init="xavier")
    topology = tmp_path / "r.yaml"
    topology.write_text(topology_yaml(document))
    out = tmp_path / "run"
    done = cli("run", topology, "--data", "digits", "--engine", "local", "--epochs", "1",
               "-T", "2", "--out", out, "--quiet", "--no-traffic-log")
    assert done.returncode == 0, done.stderr
    audit = json.loads((out / "depth.json").read_text())["pc"]
    assert audit["silent"] == ["h1", "h2"]            # out 0, h4 1, h3 2 edges away
    assert [e["epoch"] for e in audit["epochs"]] == [None, 1]
    shown = cli("traffic", "depth", out)
    assert shown.returncode == 0, shown.stderr
    assert "error never arrived at: h1, h2" in shown.stdout
    # the same from the traffic log of a run without the audit: every training batch
    logged = tmp_path / "logged"
    assert cli("run", topology, "--data", "digits", "--engine", "local", "--epochs", "1",
               "-T", "2", "--out", logged, "--quiet", "--no-depth-audit").returncode == 0
    assert not (logged / "depth.json").exists()
    shown = cli("traffic", "depth", logged)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("traffic log: 5 layers")
    assert shown.stdout.count("error never arrived at: h1, h2") == 1
    clean_out = tmp_path / "clean"
    assert cli("run", topology, "--data", "digits", "--engine", "local", "--epochs", "1",
               "--out", clean_out, "--quiet").returncode == 0
    clean = cli("traffic", "depth", clean_out).stdout
    assert clean.count("every layer's error arrived: clean") == 2, clean   # audit and log
    missing = cli("traffic", "depth", tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def logged_relaxation(directory, rounds=3):
    """A log of one fixed-mode relaxation of the depth-6 net with T = `rounds`."""
    graph = graph_of(depth=6)
    params = graph.init_params(1)
    x, y = batch(graph)
    recorder = TrafficRecorder(directory, "run", "local", graph="resnet-6",
                               settings={"mode": "fixed", "eta": 1.0, "iterations": rounds})
    engine = LocalEngine(graph, params, mode="fixed", recorder=recorder)
    try:
        relaxation = engine.relax(x, y, eta=1.0, iterations=rounds)
    finally:
        engine.close()
        recorder.close()
    return relaxation


def test_the_report_carries_the_layer_by_round_table_of_the_log(tmp_path):
    from neurolocal.traffic.html import collect

    relaxation = logged_relaxation(tmp_path / "log")
    layers = collect(tmp_path / "log")["layers"]
    assert layers["layers"] == ["h1", "h2", "h3", "h4", "h5", "h6", "out"]
    assert layers["round_numbers"] == [0, 1, 2, 3]
    assert layers["silent"] == ["h1", "h2", "h3"]
    assert layers["energy"]["last"]["h5"] == relaxation.vertex_energy["h5"]


def test_the_report_draws_the_heat_map_in_chromium(tmp_path):
    """Headless Chromium: one cell per layer and round, the silent layers named, a
    tooltip on hover, the controls switch without errors."""
    from headless import Browser, chromium
    from neurolocal.traffic.html import write_report

    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    logged_relaxation(tmp_path / "log")
    page = tmp_path / "report.html"
    write_report(tmp_path / "log", page)
    with Browser(chromium()) as browser:
        browser.open(page)
        assert browser.wait_for("document.body && document.body.dataset.rendered === '1'")
        assert browser.evaluate("document.querySelectorAll('.heat rect.cell').length") == 7 * 4
        notes = browser.evaluate("[...document.querySelectorAll('.note')].map(n => n.textContent)")
        assert "error never arrived at (in no batch): h1, h2, h3" in notes
        grey = browser.evaluate("[...document.querySelectorAll('.heat rect.cell')]"
                                ".filter(r => r.getAttribute('fill') === '#e6e9ef').length")
        assert grey == 3 * 4 + 3 + 2 + 1          # h1-h3 always; h4 until 3, h5 until 2, h6 1
        tip = browser.evaluate("""(() => {
            const cell = document.querySelectorAll('.heat rect.cell')[0];
            const box = cell.getBoundingClientRect();
            cell.dispatchEvent(new MouseEvent('mousemove', {clientX: box.x + 1, clientY: box.y + 1}));
            return document.getElementById('tip').textContent; })()""")
        assert tip.startswith("out · round 0 (forward pass)") and "error arrived: round 0" in tip
        for label in ("error norm ‖ε‖", "last batch", "first batch"):
            browser.evaluate(f"[...document.querySelectorAll('button')].find(b => "
                             f"b.textContent === {label!r}).click()")
        assert browser.evaluate("document.querySelectorAll('.heat rect.cell').length") == 7 * 4
        assert browser.errors() == []
