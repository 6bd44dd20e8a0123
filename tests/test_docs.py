"""The documents say what the code does: tables render whole, every flag value is in
the README, `run --help` says where its defaults come from, design notes are cited
from this repository."""

import re
import subprocess

from conftest import REPO_ROOT, run_cli

from neurolocal.engines import SCHEDULES
from neurolocal.ops import OPS


def table_after(text: str, header: str) -> list[str]:
    """The rows of the Markdown table whose header row starts with `header`, up to the
    first line that is not a table row (a blank line ends a table)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_ops_table_of_topologies_readme_is_one_table_naming_every_op():
    rows = table_after((REPO_ROOT / "topologies" / "README.md").read_text(), "| op |")
    named = {name for row in rows for name in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}
    assert set(OPS) <= named, sorted(set(OPS) - named)


def test_the_readme_flag_table_names_every_schedule():
    rows = table_after((REPO_ROOT / "README.md").read_text(), "| flag |")
    schedule = next(row for row in rows if row.startswith("| `--schedule"))
    for name in SCHEDULES:
        assert name in schedule, name


def test_run_help_says_where_epochs_batch_size_and_lr_come_from():
    done = run_cli("run", "--help")
    text = " ".join(done.stdout.split())
    assert "`training:` section" in text
    assert "default: training.epochs, else 10" in text
    assert "default: training.batch_size, else 32" in text
    assert "adam 0.001" in text and "sgd 0.01" in text
    assert "Ray's node resources" in text and "default auto" in text   # docs/placement.md


def test_design_notes_are_cited_from_the_repository():
    """docs/design.md keeps the reference notes' section numbers; code cites it, never a
    DESIGN.md this repository does not have."""
    text = (REPO_ROOT / "docs" / "design.md").read_text()
    for n in range(1, 8):
        assert re.search(rf"^## {n}\. ", text, re.M), f"docs/design.md has no section {n}"
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    citing = [f for f in files if f != "tests/test_docs.py"
              and (REPO_ROOT / f).is_file()
              and "DESIGN.md" in (REPO_ROOT / f).read_text(errors="replace")]
    assert citing == []
