"""Run `jobrunner scale` a few times and say how busy the machine was with other work meanwhile.

A scaling study on a shared machine measures the other users too.  Around each run this reads
/proc/stat (every CPU's busy time, and the time a hypervisor gave to other machines) and the CPU
time of the study's own processes, so the report can say how many CPU-seconds went to other
processes: with 2 CPUs, 2 workers only get both when nobody else wants them.  (The load average
is printed too, but it counts the study's own workers: 32 of them make it jump.)  For each run
it prints the two numbers the README quotes (one worker against serial, and the speedup at 2
workers) and keeps the CSV and figure of the run.

    python scripts/scale_study.py [--times 2] [--keep DIR] [-- extra options for jobrunner scale]

Linux only (/proc/stat).  The last run's figure is copied to ``--figure`` if given.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> tuple[float, float]:
    """CPU-seconds the machine's CPUs have run processes since boot, and those the hypervisor took
    from this virtual machine for others (steal), from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick  # guest time is inside user already


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_study(folder: Path, extra: list[str]) -> dict:
    """One `jobrunner scale` in ``folder``: its rows, wall time, and the CPU-seconds others used meanwhile."""
    load_before = os.getloadavg()[0]
    (machine, steal), ours, started = cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    command = [sys.executable, "-m", "jobrunner", "scale", "--outputs", str(folder), *extra]
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    machine_after, steal_after = cpu_seconds()
    others = (machine_after - machine) - (children_cpu_seconds() - ours)
    if result.returncode != 0:
        sys.exit(f"jobrunner scale failed:\n{result.stderr}")
    rows = list(csv.DictReader((folder / "scale.csv").open()))
    return {
        "rows": {int(row["workers"]): row for row in rows if row["workers"]},
        "stdout": result.stdout,
        "wall": wall,
        "others": max(others, 0.0),
        "steal": steal_after - steal,
        "load": (load_before, os.getloadavg()[0]),
    }


def summary(number: int, study: dict) -> str:
    rows = study["rows"]
    serial = float(next(iter(rows.values()))["serial_s"])
    cpus = int(next(iter(rows.values()))["cpus"])
    one = float(rows[1]["median_s"]) if 1 in rows else float("nan")
    two = float(rows[2]["speedup"]) if 2 in rows else float("nan")
    available = study["wall"] * cpus
    return (
        f"run {number}: {study['wall']:.0f} s; serial {serial:.2f} s; 1 worker {one:.2f} s "
        f"({one / serial - 1:+.0%} of serial); speedup at 2 workers {two:.2f}; other processes used "
        f"{study['others']:.1f} of {available:.0f} CPU-seconds ({study['others'] / available:.0%}), the "
        f"hypervisor took {study['steal']:.1f}; "
        f"load average {study['load'][0]:.2f} before, {study['load'][1]:.2f} after"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=2, help="how many studies to run, one after the other")
    parser.add_argument("--keep", type=Path, help="keep each run's outputs in DIR/run-<n> (default: temporary)")
    parser.add_argument("--figure", type=Path, help="copy the last run's scale.png here")
    parser.add_argument("extra", nargs="*", help="options for jobrunner scale, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-study-") as scratch:
        root = args.keep or Path(scratch)
        for number in range(1, args.times + 1):
            folder = root / f"run-{number}"
            folder.mkdir(parents=True, exist_ok=True)
            study = one_study(folder, args.extra)
            print(study["stdout"], end="")
            print(summary(number, study), flush=True)
        if args.figure:
            shutil.copyfile(folder / "scale.png", args.figure)
            print(f"copied the last figure to {args.figure}")


if __name__ == "__main__":
    main()
