"""Benchmark 4: reduce's peak resident memory and time at 4,000^2 and 20,000^2 cells.

Plans each grid (numpy kernel, 4x4 tiles), drains it with supervise, then runs `jobrunner reduce`
under /usr/bin/time to read its peak RSS.  Target: under 300 MB at 20,000^2 (3.2 GB of float64),
time growing linearly with the number of cells.  Needs about 7 GB of free disk for 20,000^2.

    python scripts/bench_reduce.py [--sides 4000,20000] [--folder DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="4000,20000")
    parser.add_argument("--folder", default=None, help="where the spool and outputs go [default: a temporary folder]")
    args = parser.parse_args()
    jobrunner = [sys.executable, "-m", "jobrunner"]
    rows = []
    for side in (int(s) for s in args.sides.split(",")):
        with tempfile.TemporaryDirectory(dir=args.folder) as name:
            folder = Path(name)
            step = 4.0 / side
            subprocess.run(
                [*jobrunner, "plan", "--step", repr(step), "--tiles", "4x4", "--kernel", "numpy"],
                cwd=folder,
                check=True,
                capture_output=True,
            )
            subprocess.run([*jobrunner, "supervise", "--workers", "2"], cwd=folder, check=True, capture_output=True)
            timed = subprocess.run(
                ["/usr/bin/time", "-f", "%M %e", *jobrunner, "reduce"],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
            )
            rss_kb, seconds = timed.stderr.strip().splitlines()[-1].split()
            shape = subprocess.run(
                [sys.executable, "-c", "import numpy; print(numpy.load('outputs/stitched.npy', mmap_mode='r').shape)"],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            rows.append((side, int(rss_kb) / 1024, float(seconds)))
            print(
                f"{shape:>16s} cells: reduce peak RSS {int(rss_kb) / 1024:7.1f} MB, {float(seconds):6.2f} s, "
                f"{float(seconds) / side**2 * 1e9:5.2f} ns per cell",
                flush=True,
            )
    if len(rows) > 1:
        (a, _, ta), (b, rss, tb) = rows[0], rows[-1]
        print(
            f"time ratio {tb / ta:.1f}x for {b**2 / a**2:.0f}x the cells; "
            f"peak RSS at {b}^2: {rss:.0f} MB (target < 300 MB)"
        )


if __name__ == "__main__":
    main()
