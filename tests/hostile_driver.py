"""Run many CLI cases in ONE process, each bounded, and report how each ended (issue 19).

    python tests/hostile_driver.py CASES.json RESULTS.jsonl

CASES.json is a list of {"id": ..., "argv": [...]} (arguments of `neurolocal`). Each
case runs `neurolocal.cli.main(argv)` with stdout/stderr captured, under an
ITIMER_PROF alarm of CPU_SECONDS (CPU time of this process, so a loaded machine does
not fail a case): a case that runs longer is stopped and reported as a timeout. The
test that starts this driver puts the whole process under RLIMIT_AS (1 GB) and
RLIMIT_CPU, so a case that allocates too much fails with MemoryError, reported too.

RESULTS.jsonl gets one JSON line per case: id, code (exit code, None if an exception
escaped), stderr, error (the escaped exception's last traceback lines), timeout.
The driver is the in-process half of the promise; tests also run a sample of cases
as real subprocesses for the exit-code/stderr half.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
import sys
import traceback

CPU_SECONDS = 10


class CaseTimeout(BaseException):
    """Raised by the CPU alarm; a BaseException so no `except Exception` swallows it."""


def _alarm(signum, frame):
    raise CaseTimeout()


def run_case(argv: list[str]) -> dict:
    from neurolocal.cli import main

    out, err = io.StringIO(), io.StringIO()
    record = {"code": None, "stderr": "", "error": None, "timeout": False}
    started = resource.getrusage(resource.RUSAGE_SELF)
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                record["code"] = main(argv)
            except SystemExit as exc:          # argparse
                record["code"] = exc.code if isinstance(exc.code, int) else 2
    except CaseTimeout:
        record["timeout"] = True
    except BaseException as exc:               # noqa: BLE001 - the point is to report it
        lines = traceback.format_exception(exc)
        record["error"] = "".join(lines[-6:])[-2000:]
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    record["stderr"] = err.getvalue()[-4000:]
    ended = resource.getrusage(resource.RUSAGE_SELF)
    record["cpu"] = round(ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime, 4)
    return record


def main(cases_path: str, results_path: str) -> None:
    import warnings

    warnings.simplefilter("default")
    signal.signal(signal.SIGPROF, _alarm)
    with open(cases_path) as handle:
        cases = json.load(handle)
    with open(results_path, "w") as handle:    # one JSON line per case: partial results
        for case in cases:                       # survive a hard kill
            record = run_case(case["argv"])
            record["id"] = case["id"]
            handle.write(json.dumps(record) + "\n")
            handle.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
