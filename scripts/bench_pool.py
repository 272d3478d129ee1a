"""Benchmark 1: jobrunner (plan + supervise + reduce) against the hand-written ProcessPoolExecutor script.

Both compute the same tiles with the same kernel on the same number of workers and save the same
array and a figure; the hand-written one is the script a student writes for the lab's Task 3
(submit + as_completed, stitch in memory, np.save, the lab's imshow figure).  Runs alternate, and
the ratio of medians is printed, so a noisy machine affects both sides alike.

    python scripts/bench_pool.py                       # step 0.001, 2 workers, 4x4 tiles, both kernels
    python scripts/bench_pool.py --repeat 5 --kernels numpy
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HAND_WRITTEN = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jobrunner.kernels import gaussian_loop, gaussian_numpy

    KERNELS = {"loop": gaussian_loop, "numpy": gaussian_numpy}


    def tile(kernel, x, y, r0, r1, c0, c1):
        return r0, c0, KERNELS[kernel](x[r0:r1].reshape(-1, 1), y[c0:c1].reshape(1, -1), 1.0)


    def bounds(n, parts):
        edges = [n * k // parts for k in range(parts + 1)]
        return list(zip(edges[:-1], edges[1:]))


    if __name__ == "__main__":
        step, kernel, workers, rows, cols = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), 4, 4
        x, y = np.arange(-2.0, 2.0, step), np.arange(-2.0, 2.0, step)
        z = np.empty((len(x), len(y)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(tile, kernel, x, y, r0, r1, c0, c1)
                       for r0, r1 in bounds(len(x), rows) for c0, c1 in bounds(len(y), cols)]
            for future in as_completed(futures):
                r0, c0, values = future.result()
                z[r0:r0 + values.shape[0], c0:c0 + values.shape[1]] = values
        np.save("stitched.npy", z)
        plt.imshow(z.T)
        plt.gca().invert_yaxis()
        plt.xlabel("X"); plt.ylabel("Y"); plt.title(f"{z.shape} points")
        plt.colorbar()
        plt.savefig("stitched.png")
    """
)


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def jobrunner_run(step: float, kernel: str, workers: int, folder: Path) -> float:
    jobrunner = [sys.executable, "-m", "jobrunner"]
    started = time.perf_counter()
    subprocess.run(
        [*jobrunner, "plan", "--step", str(step), "--tiles", "4x4", "--kernel", kernel],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    subprocess.run([*jobrunner, "supervise", "--workers", str(workers)], cwd=folder, check=True, capture_output=True)
    subprocess.run([*jobrunner, "reduce"], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=0.001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kernels", default="loop,numpy")
    args = parser.parse_args()
    targets = {"loop": 1.05, "numpy": 1.25}
    print(f"step {args.step}, {args.workers} workers, 4x4 tiles, median of {args.repeat} alternating runs")
    for kernel in args.kernels.split(","):
        ours, theirs = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                script = Path(b) / "hand_written.py"
                script.write_text(HAND_WRITTEN)
                theirs.append(timed([sys.executable, str(script), str(args.step), kernel, str(args.workers)], Path(b)))
                ours.append(jobrunner_run(args.step, kernel, args.workers, Path(a)))
        ratio = statistics.median(ours) / statistics.median(theirs)
        verdict = "meets" if ratio <= targets.get(kernel, float("inf")) else "MISSES"
        print(
            f"  kernel {kernel:5s}: jobrunner {statistics.median(ours):6.2f} s, hand-written pool "
            f"{statistics.median(theirs):6.2f} s, ratio {ratio:.3f} ({verdict} the target {targets.get(kernel)})"
        )


if __name__ == "__main__":
    main()
