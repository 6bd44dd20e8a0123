"""Runs a sweep's jobs in parallel processes (up to the core count), each result
written to DIR/points/<job>.json as it finishes, so a sweep resumes where it stopped."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

from neurolocal.sweep.grid import Job
from neurolocal.sweep.worker import run_job


def point_path(out: Path, job: Job) -> Path:
    return out / "points" / f"{job.key}.json"


#: a point's result file is a few hundred bytes; anything far larger is not one
MAX_POINT_BYTES = 1 << 20


def load_done(out: Path, jobs: list[Job]) -> dict[Job, dict]:
    """The jobs whose result file holds this job's results (a resumed sweep skips them).
    A file that is unreadable JSON or another job's or of the wrong shape is run again
    (its result replaces it); one that is no regular file (a FIFO, a link to /dev/zero,
    a directory) or too large is one line (DataError): remove it."""
    from neurolocal.errors import DataError
    from neurolocal.files import read_bytes

    done = {}
    for job in jobs:
        path = point_path(out, job)
        if not os.path.lexists(path):
            continue
        data = read_bytes(path, MAX_POINT_BYTES, DataError, "sweep point file")
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            continue                     # a torn file: run the job again
        if _is_result_of(document, job):
            done[job] = document["results"]
    return done


def _is_result_of(document, job: Job) -> bool:
    from neurolocal.sweep.worker import RESULTS

    if not isinstance(document, dict) or document.get("seed") != job.seed:
        return False
    if document.get("point") != [list(kv) for kv in job.point]:
        return False
    results = document.get("results")
    return isinstance(results, dict) and all(
        results.get(k) is None or (isinstance(results.get(k), (int, float))
                                   and not isinstance(results.get(k), bool)
                                   and math.isfinite(results[k])) for k in RESULTS)


def _write(out: Path, job: Job, results: dict) -> None:
    from neurolocal.training import write_json_atomic

    write_json_atomic(point_path(out, job), {"point": [list(kv) for kv in job.point],
                                             "seed": job.seed, "results": results})


def run_jobs(topology: str, base: dict, jobs: list[Job], out: Path, workers: int,
             progress: Callable | None = None) -> dict[Job, dict]:
    """Every job's results (the finished ones read back, the others run now)."""
    (out / "points").mkdir(parents=True, exist_ok=True)
    results = load_done(out, jobs)
    todo = [j for j in jobs if j not in results]
    bar = progress(total=len(jobs), initial=len(results)) if progress else None
    try:
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                results[job] = run_job(topology, base, job.settings, job.seed)
                _write(out, job, results[job])
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {pool.submit(run_job, topology, base, job.settings, job.seed): job
                           for job in todo}
                for future in as_completed(futures):
                    job = futures[future]
                    results[job] = future.result()
                    _write(out, job, results[job])
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))
