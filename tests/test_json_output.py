"""`--json` prints one JSON document on stdout and nothing else (issue 12, item 4), and an
ordinary embedded Ray run prints nothing of Ray's on stderr (item 5: token
authentication stays on, its notice stays out).

With many actors on two cores, Ray's raylet publishes `(raylet) WARNING: N PYTHON worker
processes have been started ...` to the driver, which Ray prints on stdout: the LSTM's
75 vertices, one actor each, used to put it in front of the report. That check runs
the real thing (75 actors, about 13 GB of actor processes for a minute or two).
"""

import json

from conftest import run_cli


def test_check_grad_json_with_75_ray_actors_is_one_document_and_stderr_stays_empty():
    done = run_cli("check-grad", "topologies/lstm.yaml", "--engine", "ray", "--json",
                   timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # the whole of stdout: nothing before or after
    assert len(report["actors"]) == 75 >= 64
    assert report["engine"] == "ray" and report["max_rel_error"] <= 1e-6
    assert done.stderr == ""  # no token notice, no raylet warning, no worker log lines


def test_every_json_flag_prints_one_document(tmp_path):
    """check-grad (local engine), traffic summary and traffic edges."""
    log = tmp_path / "traffic"
    done = run_cli("check-grad", "topologies/dag.yaml", "--json", "--traffic-log", log)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["engine"] == "local"
    for tool in ("summary", "edges"):
        done = run_cli("traffic", tool, log, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)
