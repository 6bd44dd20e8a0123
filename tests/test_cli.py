"""The check-grad command, end to end through the console entry point."""

import json

from conftest import TOPOLOGIES


def test_check_grad_dag_json_is_exact_at_depth(cli):
    result = cli("check-grad", TOPOLOGIES / "dag.yaml", "--eta", "1", "--iterations", "7", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["depth"] == 7
    assert report["max_rel_error"] <= 1e-10
    assert len(report["parameters"]) == 10
    assert all(row["rel_error"] <= 1e-10 for row in report["parameters"])


def test_check_grad_too_few_iterations_fails_threshold(cli):
    result = cli("check-grad", TOPOLOGIES / "dag.yaml", "--iterations", "6",
                 "--max-rel-error", "1e-6")
    assert result.returncode == 1
    assert "max relative error" in result.stdout


def test_check_grad_strict_mode_runs(cli):
    result = cli("check-grad", TOPOLOGIES / "mlp.yaml", "--mode", "strict", "--eta", "0.1",
                 "--iterations", "50", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["max_rel_error"] > 1e-3


def test_bad_flag_values_exit_2_with_one_line(cli):
    for args in (["--eta", "0"], ["--eta", "2"], ["--eta", "nan"], ["--iterations", "-1"],
                 ["--batch-size", "0"]):
        result = cli("check-grad", TOPOLOGIES / "mlp.yaml", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
