"""Benchmark: the commands that look at the whole spool, on big spools (issue 17's targets).

Each figure is printed with a baseline measured in the same run, because this disk's cost of
making a file swings 30x from minute to minute:

* ``plan`` of N one-cell jobs (target: under 10 s at 100,000), against making its files (a
  spec and a lock file per job) with bare system calls in a loop, just before;
* ``status`` on those N jobs all pending, then all done (target: under 1 s), and while W
  hand-started ``work`` processes drain them (target: at most 2 s at 64 workers), against
  ``jobrunner --help`` (Python, the package and its command line, and nothing else);
* ``reduce`` of M tiles (target: under 2 s at 10,000 tiles of 40 x 40 cells, 128 MB), against
  reading the same tile files back and hashing them with bare calls.

    python scripts/bench_spool_scale.py [--jobs 100000] [--workers 64] [--reduce-tiles 10000] [--reduce-only]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_per_job import one_cell_plan

HERE = Path(__file__).parent
JOBRUNNER = [sys.executable, "-m", "jobrunner"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - started


def median_of(times: int, command: list[str], cwd: Path) -> float:
    return statistics.median(timed(command, cwd) for _ in range(times))


def bare_creates(folder: Path, files: int) -> float:
    """Seconds to make ``files`` small files in two folders, as plan's specs and locks are."""
    for name in ("a", "b"):
        (folder / name).mkdir()
    started = time.perf_counter()
    for k in range(files):
        fd = os.open(folder / ("a" if k % 2 else "b") / f"tile-{k:06d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, b'{"id": "tile-r000-c000", "plan": "20260101-000000-00000000", "ranges": [[0, 1], [0, 1]]}\n')
        os.close(fd)
    return time.perf_counter() - started


def status_while_working(folder: Path, workers: int, samples: int = 5) -> tuple[list[float], int]:
    """``status`` timed while ``workers`` hand-started workers drain the spool; and how many ran."""
    processes = [
        subprocess.Popen(
            [*JOBRUNNER, "work"], cwd=folder, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    journals = next((folder / "jobs" / "plans").iterdir()) / "journals"
    deadline = time.monotonic() + 300
    while len(list(journals.glob("*.jsonl"))) < workers and time.monotonic() < deadline:
        time.sleep(0.2)  # every worker has started its first tile
    times = []
    try:
        for _ in range(samples):
            times.append(timed([*JOBRUNNER, "status"], folder))
    finally:
        running = sum(p.poll() is None for p in processes)
        for process in processes:
            process.wait()
    return times, running


def bare_reduce_floor(tiles: Path) -> float:
    """Read every tile file and hash its bytes: what reduce must do at least."""
    started = time.perf_counter()
    for path in sorted(tiles.iterdir()):
        if path.suffix == ".npy":
            hashlib.sha256(path.read_bytes()).hexdigest()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--reduce-tiles", type=int, default=10_000)
    parser.add_argument("--reduce-only", action="store_true", help="time reduce alone, not plan and status")
    args = parser.parse_args()
    side = math.isqrt(args.jobs)
    with tempfile.TemporaryDirectory(prefix="jr-scale-") as name:
        root = Path(name)
        floor_folder, spool_folder = root / "floor", root / "spool"
        floor_folder.mkdir()
        spool_folder.mkdir()
        start_up = median_of(3, [*JOBRUNNER, "--help"], root)
        print(f"jobrunner --help (Python and the command line alone): {start_up:.2f} s")
        if not args.reduce_only:
            plan_and_status(floor_folder, spool_folder, side, args.workers, start_up)
        time_reduce(root, args.reduce_tiles)


def plan_and_status(floor_folder: Path, spool_folder: Path, side: int, workers: int, start_up: float) -> None:
    """``plan`` of side^2 jobs, then ``status`` of them pending, beside ``workers`` workers, and done."""
    jobs = side * side
    bare = bare_creates(floor_folder, 2 * jobs)
    plan = timed([*JOBRUNNER, *one_cell_plan(side)], spool_folder)
    print(f"plan of {jobs:,} jobs: {plan:.2f} s (target < 10 s); making its {2 * jobs:,} files with bare "
          f"calls just before: {bare:.2f} s; plan / bare {plan / bare:.2f}x")  # fmt: skip

    pending = median_of(3, [*JOBRUNNER, "status"], spool_folder)
    print(f"status, {jobs:,} jobs pending: {pending:.2f} s (target < 1 s); {pending - start_up:.2f} s above start-up")

    during, running = status_while_working(spool_folder, workers)
    middle, slowest = statistics.median(during), max(during)
    print(f"status while {workers} hand-started workers drain them ({running} still running at the last "
          f"look): median {middle:.2f} s, slowest {slowest:.2f} s (target <= 2 s)")  # fmt: skip

    subprocess.run([*JOBRUNNER, "supervise", "--workers", "2"], cwd=spool_folder, env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    done = median_of(3, [*JOBRUNNER, "status"], spool_folder)
    print(f"status, {jobs:,} jobs done: {done:.2f} s (target < 1 s); {done - start_up:.2f} s above start-up")


def time_reduce(root: Path, tiles_wanted: int, rounds: int = 3) -> None:
    """``reduce`` of about ``tiles_wanted`` tiles of the lab's main job, beside reading and hashing them bare."""
    reduce_folder = root / "reduce"
    reduce_folder.mkdir()
    tiles_side = math.isqrt(tiles_wanted)
    subprocess.run([*JOBRUNNER, "plan", "--step", "0.001", "--tiles", f"{tiles_side}x{tiles_side}", "--kernel",
                    "numpy"], cwd=reduce_folder, env=ENV, check=True, capture_output=True)  # fmt: skip
    subprocess.run([*JOBRUNNER, "supervise", "--workers", "2"], cwd=reduce_folder, env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    tiles = next((reduce_folder / "outputs" / "tiles").iterdir())
    floors, reduces = [], []
    for _ in range(rounds):  # interleaved: both see the same moments of a noisy disk
        floors.append(bare_reduce_floor(tiles))
        reduces.append(timed([*JOBRUNNER, "reduce"], reduce_folder))
    reduce, floor = statistics.median(reduces), statistics.median(floors)
    size = sum(p.stat().st_size for p in tiles.iterdir())
    print(f"reduce of {tiles_side**2:,} tiles ({size / 2**20:.0f} MiB): median {reduce:.2f} s of "
          f"{', '.join(f'{r:.2f}' for r in reduces)} (target < 2 s); reading and hashing them with bare calls: "
          f"{floor:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
