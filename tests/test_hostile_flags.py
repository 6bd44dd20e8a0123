"""Issue 19: every numeric flag of every command (found in the parser, so new flags are
covered) given 0, negative, NaN, inf, 1e300, huge integers, fractions and text; `--budget`
given nonsense; every output path (`--out`, `--traffic-log`, `-o`) pointed at /proc, a
missing parent, a file where a directory is expected, a directory where a file is, a
read-only directory. Every case: exit 0 or 2, one stderr line on 2, no traceback, within
10 s of CPU and 1 GB; a refused run leaves no metrics.json or checkpoint, and every JSON
file a run leaves (after `--lr 1e300`, say) is strict JSON."""

from __future__ import annotations

import argparse
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import hostile_cases as H
from neurolocal.cli import build_parser, main

MLP = str(H.TOPOLOGIES / "mlp.yaml")
NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e300", "1e-300", "99999999999999999999999",
           "18446744073709551616", "1.5", "abc", "", "0x10"]
BUDGETS = ["parameters=0", "parameters=-1", "vertices=nan", "activations=1e300", "bogus=1",
           "parameters", "=", "parameters=99999999999999999999999", "vertex_rounds=1",
           "document_nodes=1", "document_depth=1", "data_bytes=1", "parameters=1,vertices=x"]
NUMERIC_TYPES = {"_positive_int", "_non_negative_int", "_positive_float", "int", "float",
                 "_fault"}


#: commands that start a Ray cluster or many trainings: their flags are checked by their
#: own tests (test_cluster*, test_sweep*), not under a 1 GB address-space limit here
NOT_HERE = {("cluster", "up"), ("sweep",)}


def numeric_flags() -> dict[tuple[str, ...], list[str]]:
    """{command path: [numeric flags]} read from the parser itself (but NOT_HERE)."""
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + (name,))
            elif action.option_strings and getattr(action.type, "__name__", "") in NUMERIC_TYPES:
                found.setdefault(path, []).append(action.option_strings[-1])
    walk(build_parser(), ())
    return {k: v for k, v in found.items() if k not in NOT_HERE}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Small data, a traffic log, a file, a read-only directory: what commands need."""
    root = tmp_path_factory.mktemp("hostile-flags")
    rng = np.random.default_rng(7)
    np.savez(root / "data.npz", x=rng.random((40, 64)), y=np.arange(40) % 10)
    assert main(["check-grad", MLP, "--engine", "local", "--traffic-log",
                 str(root / "traffic")]) == 0
    (root / "a-file").write_text("x")
    readonly = root / "readonly"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return root


def base_argv(command: tuple[str, ...], world: Path, out: Path) -> list[str]:
    if command == ("check-grad",):
        return ["check-grad", MLP, "--engine", "local"]
    if command == ("run",):
        return ["run", MLP, "--engine", "local", "--epochs", "1", "--batch-size", "100000",
                "--data", str(world / "data.npz"), "--out", str(out), "--quiet",
                "--no-traffic-log"]
    if command == ("generate",):
        return ["generate", "tiled", "--vertices", "20", "-o", str(out) + ".yaml"]
    if command[0] == "traffic":
        argv = ["traffic", command[1], str(world / "traffic")]
        if command[1] in ("timeline", "plot"):
            argv += ["-o", str(out) + (".json" if command[1] == "timeline" else ".png")]
        if command[1] == "audit":
            argv.append(MLP)
        return argv
    return [*command, MLP]


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        i = argv.index(flag)
        return argv[:i] + [flag, value] + argv[i + 2:]
    return argv + [f"{flag}={value}"]                 # "=" so "-1" is a value, not a flag


def flag_cases(world: Path, work: Path) -> list[dict]:
    cases = []
    flags = numeric_flags()
    assert ("run",) in flags and "--lr" in flags[("run",)], flags
    for command, names in sorted(flags.items()):
        for flag in names:
            for value in NUMBERS:
                out = work / f"out{len(cases)}"
                argv = with_flag(base_argv(command, world, out), flag, value)
                cases.append({"id": f"{' '.join(command)} {flag}={value}", "argv": argv,
                              "out": str(out)})
    for command in (("validate",), ("check-grad",), ("run",), ("generate",)):
        for value in BUDGETS:
            out = work / f"out{len(cases)}"
            argv = with_flag(base_argv(command, world, out), "--budget", value)
            cases.append({"id": f"{' '.join(command)} --budget={value}", "argv": argv,
                          "out": str(out)})
    return cases


def output_cases(world: Path, work: Path) -> list[dict]:
    places = {"proc": "/proc/hostile/out", "proc-self": "/proc/self/hostile",
              "dev-null-parent": "/dev/null/out", "file-as-parent": str(world / "a-file" / "x"),
              "existing-file": str(world / "a-file"), "missing-parent": None,
              "read-only": str(world / "readonly" / "out"), "root": "/",
              "too-long": str(world / ("n" * 5000))}
    if os.geteuid() == 0:  # root writes anywhere: / would be littered, read-only is not
        del places["root"], places["read-only"]
    cases = []
    for label, place in places.items():
        target = place or str(work / f"missing{len(cases)}" / "deeper" / "out")
        run = base_argv(("run",), world, work / f"run{len(cases)}")
        cases.append({"id": f"run --out {label}", "argv": with_flag(run, "--out", target),
                      "out": target})
        traced = [a for a in run if a != "--no-traffic-log"]
        cases.append({"id": f"run --traffic-log {label}",
                      "argv": traced + ["--traffic-log", target], "out": run[run.index("--out") + 1]})
        cases.append({"id": f"check-grad --traffic-log {label}",
                      "argv": base_argv(("check-grad",), world, work) + ["--traffic-log", target],
                      "out": target})
        for tool, suffix in (("timeline", ".json"), ("plot", ".png")):
            argv = base_argv(("traffic", tool), world, work / "x")
            argv[argv.index("-o") + 1] = target if place else target + suffix
            cases.append({"id": f"traffic {tool} -o {label}", "argv": argv, "out": target})
        gen = base_argv(("generate",), world, work / "x")
        gen[gen.index("-o") + 1] = target if place else target + ".yaml"
        cases.append({"id": f"generate -o {label}", "argv": gen, "out": target})
    return cases


def strict_json(path: Path) -> None:
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    json.loads(path.read_text(), parse_constant=refuse)


def check_outputs(cases, records):
    by_id = {r["id"]: r for r in records}
    problems = []
    for case in cases:
        out = Path(case["out"])
        try:
            if not out.is_dir() or str(out) == "/" or str(out).startswith("/proc"):
                continue
        except OSError:                                # e.g. a name too long to stat
            continue
        code = by_id[case["id"]]["code"]
        if code == 2 and case["argv"][0] == "run" and any(
                (out / name).exists() for name in ("metrics.json", "checkpoint-pc.npz")):
            problems.append(f"{case['id']}: refused, but left {sorted(p.name for p in out.iterdir())}")
        for file in out.glob("*.json"):
            try:
                strict_json(file)
            except ValueError as exc:
                problems.append(f"{case['id']}: {exc}")
    return problems


def test_every_numeric_flag_and_output_path(world, tmp_path):
    cases = flag_cases(world, tmp_path) + output_cases(world, tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda ic: H.run_driver(ic[1], tmp_path / f"driver{ic[0]}"),
                              enumerate([cases[0::2], cases[1::2]])))
    records = [r for part in parts for r in part]
    broken = H.failures(records)
    assert len(records) == len(cases) > 300
    assert not broken, f"{len(broken)} of {len(records)}:\n" + "\n".join(broken[:40])
    assert not check_outputs(cases, records)
    by_id = {r["id"]: r for r in records}
    for refused in ("run --out proc", "run --traffic-log proc", "run --out existing-file",
                    "check-grad --traffic-log proc", "generate -o proc",
                    "generate -n=99999999999999999999999", "run --epochs=18446744073709551616",
                    "check-grad -T=99999999999999999999999", "run --budget=bogus=1"):
        assert by_id[refused]["code"] == 2, (refused, by_id[refused])
    assert by_id["run --out missing-parent"]["code"] == 0, by_id["run --out missing-parent"]


def test_flags_through_the_real_cli(world, tmp_path):
    every = flag_cases(world, tmp_path) + output_cases(world, tmp_path)
    picked = H.stratified(every, 1, key=lambda c: c["id"].split("=")[-1].split(" ")[-1], seed=5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = list(pool.map(lambda c: {"id": c["id"], **H.run_cli(c["argv"])}, picked))
    assert len(records) >= 15
    assert not H.failures(records), H.failures(records)
    assert not check_outputs(picked, records)


@pytest.mark.parametrize("tool", ["timeline", "plot", "report", "export"])
def test_a_directory_as_output_file_is_refused(world, tmp_path, capsys, tool):
    """`traffic plot -o DIR` once wrote DIR/.png and said "wrote DIR"."""
    assert main(["traffic", tool, str(world / "traffic"), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
