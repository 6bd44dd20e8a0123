"""scripts/bench.py's summary table (issue 15): every goal row is printed with its
measured value, baseline, ratio, goal and met / not met. No timing is asserted: the
numbers are the machine's; only the table's shape and its met column's logic are."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import bench  # noqa: E402


def test_a_goal_is_met_by_its_ratio_on_the_right_side_of_the_limit(capsys):
    bench.GOALS.clear()
    bench.goal("slower than allowed", 3.0, 1.0, "s", 2.0)
    bench.goal("fast enough", 1.0, 1.0, "s", 2.0)
    bench.goal("enough messages", 2e6, 1e6, "msg/s", 1.0, at_least=True)
    bench.goal("too few messages", 5e5, 1e6, "msg/s", 1.0, at_least=True)
    bench.goal("a baseline", 0.02, 0.02, "s", None)
    assert [g["met"] for g in bench.GOALS] == [False, True, True, False, None]
    bench.print_summary((1.0, 1.0, 1.0))
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == 5
    assert table[0].rstrip().endswith("| not met |") and "3.00x" in table[0]
    assert table[1].rstrip().endswith("| met     |") and "<= 2x" in table[1]
    assert ">= 1x" in table[2] and "2,000,000 msg/s" in table[2]
    assert table[4].rstrip().endswith("|         |")
    bench.GOALS.clear()


def test_a_prediction_goal_is_met_within_its_band_on_either_side():
    bench.GOALS.clear()
    for measured in (1.2, 0.8, 1.3, 0.7, float("nan")):
        bench.goal("measured vs predicted", measured, 1.0, "ms", None, within=0.25)
    assert [g["met"] for g in bench.GOALS] == [True, True, False, False, None]
    assert {g["goal"] for g in bench.GOALS} == {"1 ± 0.25"}
    bench.GOALS.clear()


@pytest.mark.slow
def test_the_quick_logging_section_ends_with_its_goals_table():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--quick",
                           "--only", "logging"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("summary (goals of issues"))
    rows = [line for line in out[start + 3:] if line.startswith("| logging overhead")]
    assert len(rows) == 4   # every row of the section, strict included
    assert all(row.rstrip().endswith(("| met     |", "| not met |")) for row in rows)
