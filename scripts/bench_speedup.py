"""Benchmark 2: `jobrunner supervise --workers 2` against `jobrunner serial`, loop kernel, step 0.001.

The serial time is the loop alone, as `jobrunner serial` reports it; the parallel time is the
whole `jobrunner supervise` command, Python start-up and pool included (plan is run before and
not counted).  Runs alternate; the ratio of medians is printed.

    python scripts/bench_speedup.py [--step 0.001] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time

JOBRUNNER = [sys.executable, "-m", "jobrunner"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", default="0.001")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--tiles", default="4x4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    serial, parallel = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run(
                [*JOBRUNNER, "serial", "--step", args.step], cwd=folder, check=True, capture_output=True, text=True
            )
            serial.append(float(re.search(r"points: ([\d.]+) s", out.stdout).group(1)))
            subprocess.run(
                [*JOBRUNNER, "plan", "--step", args.step, "--tiles", args.tiles],
                cwd=folder,
                check=True,
                capture_output=True,
            )
            started = time.perf_counter()
            subprocess.run(
                [*JOBRUNNER, "supervise", "--workers", args.workers], cwd=folder, check=True, capture_output=True
            )
            parallel.append(time.perf_counter() - started)
        print(
            f"  serial loop {serial[-1]:6.2f} s   supervise --workers {args.workers} {parallel[-1]:6.2f} s", flush=True
        )
    speedup = statistics.median(serial) / statistics.median(parallel)
    print(
        f"step {args.step}, tiles {args.tiles}: speedup {speedup:.3f} with {args.workers} workers "
        f"(target >= 1.9 on 2 cores; the limit is 2.0)"
    )


if __name__ == "__main__":
    main()
