"""Benchmark 4: reduce's peak resident memory and time at 4,000^2 and 20,000^2 cells.

Plans each grid (numpy kernel, 4x4 tiles), drains it with supervise, then runs `jobrunner reduce`
under /usr/bin/time to read its peak RSS, twice: writing stitched.npy, stitched.nc and the figure
(as it does with the netcdf extra), and again with h5netcdf hidden (stitched.npy and the figure
only), so the dataset's own cost shows beside it.  Target: under 300 MB at 20,000^2 (3.2 GB of
float64) either way, time growing linearly with the number of cells.  Needs about 10 GB of free
disk for 20,000^2.

    python scripts/bench_reduce.py [--sides 4000,20000] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def timed_reduce(jobrunner: list[str], folder: Path, env: dict) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one `jobrunner reduce` in ``folder``."""
    timed = subprocess.run(
        ["/usr/bin/time", "-f", "%M %e", *jobrunner, "reduce"], cwd=folder, check=True, capture_output=True,
        text=True, env=env,
    )  # fmt: skip
    rss_kb, seconds = timed.stderr.strip().splitlines()[-1].split()
    return int(rss_kb) / 1024, float(seconds)


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
            hidden = folder / "without h5netcdf"
            hidden.mkdir()
            (hidden / "h5netcdf.py").write_text("raise ImportError('hidden by bench_reduce')\n")
            without = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])}
            rss_npy, seconds_npy = timed_reduce(jobrunner, folder, without)
            rss, seconds = timed_reduce(jobrunner, folder, dict(os.environ))
            nc = folder / "outputs" / "stitched.nc"
            if not nc.exists():
                sys.exit("stitched.nc was not written: install the netcdf extra (bash scripts/setup.sh netcdf)")
            sizes = {
                name: (folder / "outputs" / name).stat().st_size / 2**30 for name in ("stitched.npy", "stitched.nc")
            }
            rows.append((side, rss, seconds))
            print(
                f"{side:>6d}^2 cells: reduce writing .npy, .nc and .png: peak RSS {rss:7.1f} MB, {seconds:6.2f} s, "
                f"{seconds / side**2 * 1e9:5.2f} ns per cell; writing .npy and .png only: {rss_npy:7.1f} MB, "
                f"{seconds_npy:6.2f} s ({sizes['stitched.npy']:.2f} GiB .npy, {sizes['stitched.nc']:.2f} GiB .nc)",
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
