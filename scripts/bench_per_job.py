"""Benchmark 3: jobrunner's own cost per job, with a trivial kernel and thousands of tiny tiles.

For 1 and 2 workers, both `supervise` and hand-started `jobrunner work` processes, it times
draining spools of N one-cell jobs and reports the marginal cost per job, (T(N) - T(1)) / (N - 1)
(so Python start-up and pool start are not counted as per-job cost), and that cost times the
number of workers: the protocol cost per job per worker (target <= 1 ms on a local disk).  It
also compares 10,000 jobs with 100 (target: within 1.5x per job).

The floor, measured in the same run: the file operations every job needs, done by bare system
calls in a loop with no Python framework around them (W processes, each its share of the
jobs): take and drop a flock on the job's lock file (made by plan), read its spec, append a
line to the worker's journal, write a tile to a scratch name, append a second line, and rename
the tile into place.  jobrunner's cost is printed against it; what
it adds above the floor is its own (filelock, JSON records, checks).  The floor itself costs
more per job in a long run than in a short one on this disk, so the growth from the smallest
spool to the largest is printed both plainly and as a multiple of the floor.

    python scripts/bench_per_job.py [--jobs 100,1000,10000] [--repeat 3] [--folder /dev/shm]

``--folder``: where the spools are made (default: the system's temporary folder).  On a tmpfs
(``/dev/shm``) no disk is involved, and the cost per job is jobrunner's software alone.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent

FLOOR = """
import fcntl, json, os, sys, time
spool, out, share, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
plan = json.load(open(spool + "/plan.json"))
folder = f"{spool}/plans/{plan['id']}" if "id" in plan else spool  # or a spool of jobrunner < 0.2
ids = sorted(name[:-5] for name in os.listdir(folder + "/specs"))[share::workers]
tile = bytes(136)  # a one-cell .npy: 128 bytes of header and one float64
os.makedirs(f"{out}/tiles/.{share}.partial", exist_ok=True)
journal = os.open(f"{out}/journal-{share}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
started = time.perf_counter()
for job in ids:
    fd = os.open(f"{folder}/locks/{job}.lock", os.O_RDWR)  # made by plan, as jobrunner's are
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(f"{folder}/specs/{job}.json") as spec:
        json.loads(spec.read())
    os.write(journal, json.dumps({"job": job, "started": time.time()}).encode() + b"\\n")
    partial = f"{out}/tiles/.{share}.partial/{job}"
    with open(partial, "wb") as file:
        file.write(tile)
    os.write(journal, json.dumps({"job": job, "outcome": "done"}).encode() + b"\\n")
    os.replace(partial, f"{out}/tiles/{job}")
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
print(time.perf_counter() - started)
"""


def one_cell_plan(side: int) -> list[str]:
    """``jobrunner plan``'s arguments for side x side one-cell jobs of the trivial kernel (the
    benchmarks that time jobrunner's own cost per job all plan this)."""
    return ["plan", "--step", str(1.0 / side), "--extent", "0", "1", "0", "1", "--tiles", f"{side}x{side}",
            "--kernel", "bench_kernels:zeros"]  # fmt: skip


def plan(folder: Path, jobs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "jobrunner", *one_cell_plan(math.isqrt(jobs))]
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return env


#: Where the spools are made (--folder); None: the system's temporary folder.
FOLDER: str | None = None


def drain(mode: str, workers: int, jobs: int) -> float:
    with tempfile.TemporaryDirectory(dir=FOLDER) as name:
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


def floor(workers: int, jobs: int) -> float:
    """Seconds per job per worker for the bare file operations, ``workers`` processes at once."""
    with tempfile.TemporaryDirectory(dir=FOLDER) as name:
        folder = Path(name)
        plan(folder, jobs)
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", FLOOR, str(folder / "jobs"), str(folder / "floor"), str(k), str(workers)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(workers)
        ]
        loops = [float(p.communicate()[0]) for p in processes]
        return max(loops) / jobs * workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating with the floor; medians")
    parser.add_argument("--folder", help="where the spools are made (a tmpfs such as /dev/shm: no disk involved)")
    args = parser.parse_args()
    global FOLDER
    FOLDER = args.folder
    sizes = [int(n) for n in args.jobs.split(",")]
    print(
        f"{'mode':10s} {'workers':>7s} {'jobs':>7s} {'wall s':>8s} {'jobs/s':>8s} {'ms/job':>7s} "
        f"{'ms/job/worker':>14s} {'floor':>7s} {'ratio':>6s} {'above floor':>12s}"
    )
    for mode in ("supervise", "work"):
        for workers in (1, 2):
            base = statistics.median(drain(mode, workers, 1) for _ in range(args.repeat))
            per_job, above_floor = {}, {}
            for jobs in sizes:
                # The disk's cost of making a file swings 3x from minute to minute here: each run
                # of jobrunner is paired with a run of the floor just before it.
                floors, walls = [], []
                for _ in range(args.repeat):
                    floors.append(floor(workers, jobs))
                    walls.append(drain(mode, workers, jobs))
                wall, bare = statistics.median(walls), statistics.median(floors)
                per_job[jobs] = (wall - base) / (jobs - 1)
                cost = per_job[jobs] * workers
                above_floor[jobs] = cost / bare
                print(
                    f"{mode:10s} {workers:7d} {jobs:7d} {wall:8.2f} {jobs / wall:8.0f} {per_job[jobs] * 1e3:7.3f} "
                    f"{cost * 1e3:14.3f} {bare * 1e3:7.3f} {cost / bare:5.2f}x {(cost - bare) * 1e3:9.3f} ms",
                    flush=True,
                )
            if len(sizes) > 1:
                growth = per_job[sizes[-1]] / per_job[sizes[0]]
                own = above_floor[sizes[-1]] / above_floor[sizes[0]]
                print(
                    f"{'':10s} {'':7s} per job, {sizes[-1]} jobs against {sizes[0]}: {growth:.2f}x (target <= 1.5x); "
                    f"as a multiple of the floor: {own:.2f}x"
                )


if __name__ == "__main__":
    main()
