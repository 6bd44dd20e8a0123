"""Runs a sweep's jobs in parallel processes (up to the core count), each result
written to DIR/points/<job>.json as it finishes, so a sweep resumes where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from neurolocal.sweep.grid import Job
from neurolocal.sweep.worker import run_job


def point_path(out: Path, job: Job) -> Path:
    return out / "points" / f"{job.key}.json"


def load_done(out: Path, jobs: list[Job]) -> dict[Job, dict]:
    """The jobs whose result file exists (a resumed sweep skips them)."""
    done = {}
    for job in jobs:
        path = point_path(out, job)
        if path.exists():
            try:
                done[job] = json.loads(path.read_text())["results"]
            except (ValueError, KeyError, OSError):
                continue                 # a torn file: run the job again
    return done


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
