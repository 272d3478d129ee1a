"""The README's lab timings and figures, measured here, with how busy the machine was meanwhile.

    python scripts/lab_timings.py [--figures scripts/figures]

In a fresh clone of this repository's last commit (in a temporary folder, set up from PyPI as a
newcomer's would be):

1. ``bash scripts/main.sh``, the README's first command, timed whole; then its three commands
   timed again on their own, on a new plan of the same grid (``plan --replace``);
2. ``jobrunner serial --step 0.001``, the lab's Task 1;
3. the README's timeline run: ``plan --step 0.002 --tiles 4x4 --replace``, one ``work`` started
   by hand, ``supervise --workers 2`` beside it, then ``report``.

Each step prints its wall time, the load average before it, and the CPU-seconds that processes
other than ours used meanwhile (from /proc/stat: Linux only), so that a figure from a busy
minute says so.  ``--figures`` copies the stitched figure and the timeline there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale_study import children_cpu_seconds, cpu_seconds

REPOSITORY = Path(__file__).resolve().parents[1]


def timed(what: str, command: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``command`` in bash in ``folder``; print how long it took and how busy the machine was."""
    load, (machine, steal), ours = os.getloadavg()[0], cpu_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    result = subprocess.run(["bash", "-c", f"set -euo pipefail\n{command}"], cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - started
    machine_after, steal_after = cpu_seconds()
    others = max((machine_after - machine) - (children_cpu_seconds() - ours), 0.0)
    if result.returncode != 0:
        sys.exit(f"{what} failed:\n{result.stdout}\n{result.stderr}")
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{what}: {wall:.1f} s (load average {load:.2f} before; other processes used {others:.1f} of "
        f"{wall * cpus:.0f} CPU-seconds, the hypervisor took {steal_after - steal:.1f})",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, help="copy stitched.png and timeline.png into this folder")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    with tempfile.TemporaryDirectory(prefix="lab-timings-") as scratch:
        clone = Path(scratch) / "jobrunner"
        subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(clone)], check=True)
        timed(
            "bash scripts/main.sh in a fresh clone (set-up from PyPI, then plan + supervise + reduce)",
            "bash scripts/main.sh",
            clone,
        )
        jobrunner = ".venv/bin/jobrunner"
        timed(
            "  its three commands again, on a new plan",
            f"{jobrunner} plan --replace\n{jobrunner} supervise\n{jobrunner} reduce",
            clone,
        )
        if args.figures:  # before the timeline run's plan replaces this one, and its products go with it
            shutil.copyfile(clone / "outputs" / "stitched.png", args.figures / "stitched.png")
        serial = timed("jobrunner serial --step 0.001", f"{jobrunner} serial --step 0.001", clone)
        print("  " + serial.stdout.splitlines()[0])
        timeline = timed(
            "the timeline run: plan --step 0.002 --replace, work & + supervise --workers 2, report",
            f"{jobrunner} plan --step 0.002 --tiles 4x4 --replace\n{jobrunner} work > /dev/null &\n"
            f"{jobrunner} supervise --workers 2 > /dev/null\nwait\n{jobrunner} report",
            clone,
        )
        print("\n".join("  " + line for line in timeline.stdout.splitlines()))
        if args.figures:
            shutil.copyfile(clone / "outputs" / "timeline.png", args.figures / "timeline.png")
            print(f"copied stitched.png (of the main job) and timeline.png into {args.figures}")


if __name__ == "__main__":
    main()
