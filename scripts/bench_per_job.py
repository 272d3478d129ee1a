"""Benchmark 3: jobrunner's own cost per job, with a trivial kernel and thousands of tiny tiles.

For 1 and 2 workers, both `supervise` and hand-started `jobrunner work` processes, it times
draining spools of N one-cell jobs and reports the marginal cost per job, (T(N) - T(1)) / (N - 1)
(so Python start-up and pool start are not counted as per-job cost), and that cost times the
number of workers: the protocol cost per job per worker (target <= 1 ms on a local disk).  It
also compares 10,000 jobs with 100 (target: within 1.5x per job).

    python scripts/bench_per_job.py [--jobs 100,1000,10000]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def plan(folder: Path, jobs: int) -> dict:
    side = math.isqrt(jobs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    step = 1.0 / side
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jobrunner",
            "plan",
            "--step",
            str(step),
            "--extent",
            "0",
            "1",
            "0",
            "1",
            "--tiles",
            f"{side}x{side}",
            "--kernel",
            "bench_kernels:zeros",
        ],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def drain(mode: str, workers: int, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = plan(folder, jobs)
        command = [sys.executable, "-m", "jobrunner"]
        started = time.perf_counter()
        if mode == "supervise":
            subprocess.run(
                [*command, "supervise", "--workers", str(workers)], cwd=folder, env=env, check=True, capture_output=True
            )
        else:
            processes = [
                subprocess.Popen([*command, "work"], cwd=folder, env=env, stdout=subprocess.DEVNULL)
                for _ in range(workers)
            ]
            if any(p.wait() for p in processes):
                raise SystemExit("a worker failed")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="100,1000,10000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.jobs.split(",")]
    print(
        f"{'mode':10s} {'workers':>7s} {'jobs':>7s} {'wall s':>8s} {'jobs/s':>8s} {'ms/job':>7s} {'ms/job/worker':>14s}"
    )
    for mode in ("supervise", "work"):
        for workers in (1, 2):
            base = drain(mode, workers, 1)
            per_job = {}
            for jobs in sizes:
                wall = drain(mode, workers, jobs)
                per_job[jobs] = (wall - base) / (jobs - 1)
                print(
                    f"{mode:10s} {workers:7d} {jobs:7d} {wall:8.2f} {jobs / wall:8.0f} {per_job[jobs] * 1e3:7.3f} "
                    f"{per_job[jobs] * workers * 1e3:14.3f}",
                    flush=True,
                )
            if len(sizes) > 1:
                growth = per_job[sizes[-1]] / per_job[sizes[0]]
                print(f"{'':10s} {'':7s} per job, {sizes[-1]} jobs against {sizes[0]}: {growth:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
