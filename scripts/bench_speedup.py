"""Benchmark 2: `jobrunner supervise --workers 2` against `jobrunner serial`, loop kernel, step 0.001.

The serial time is the loop alone, as `jobrunner serial` reports it.  The parallel time is
measured twice, on the same plan (run before and not counted):

* the whole `jobrunner supervise` command, Python start-up and imports included (about 0.3 s
  here), which the serial figure does not include: the strict ratio;
* the `supervise()` call of the library in a script, pool start and every tile's protocol
  included, after the imports: timed the way a hand-written pool script times its pool, and
  the way the serial loop is timed.

And the main job end to end (issue 17): `plan`, `supervise` and `reduce` (the README's main
command, less its set-up), three whole commands from a fresh folder, against the whole
`jobrunner serial` command (the loop, its array and its figure) and against the loop alone.

Runs alternate; the ratios of medians are printed.

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

LIBRARY_CALL = """
import sys, time
from jobrunner import Spool, supervise
spool = Spool.open("jobs", "outputs")
started = time.perf_counter()
summary = supervise(spool, workers=int(sys.argv[1]))
assert summary.ok and summary.done == summary.total
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", default="0.001")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--tiles", default="4x4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    serial, serial_command, command, call, main_job = [], [], [], [], []
    plan = [*JOBRUNNER, "plan", "--step", args.step, "--tiles", args.tiles]
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            out = subprocess.run(
                [*JOBRUNNER, "serial", "--step", args.step], cwd=folder, check=True, capture_output=True, text=True
            )
            serial_command.append(time.perf_counter() - started)
            serial.append(float(re.search(r"points: ([\d.]+) s", out.stdout).group(1)))
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            for step in (plan, [*JOBRUNNER, "supervise", "--workers", args.workers], [*JOBRUNNER, "reduce"]):
                subprocess.run(step, cwd=folder, check=True, capture_output=True)
            main_job.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(plan, cwd=folder, check=True, capture_output=True)
            started = time.perf_counter()
            subprocess.run(
                [*JOBRUNNER, "supervise", "--workers", args.workers], cwd=folder, check=True, capture_output=True
            )
            command.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(plan, cwd=folder, check=True, capture_output=True)
            library = [sys.executable, "-c", LIBRARY_CALL, args.workers]
            call.append(float(subprocess.run(library, cwd=folder, check=True, capture_output=True, text=True).stdout))
        print(
            f"  serial loop {serial[-1]:6.2f} s (command {serial_command[-1]:6.2f} s)   supervise --workers "
            f"{args.workers} {command[-1]:6.2f} s   supervise() {call[-1]:6.2f} s   plan + supervise + reduce "
            f"{main_job[-1]:6.2f} s",
            flush=True,
        )
    for what, times in (("the whole supervise command", command), ("the supervise() call", call)):
        speedup = statistics.median(serial) / statistics.median(times)
        print(
            f"step {args.step}, tiles {args.tiles}, {args.workers} workers, {what}: speedup {speedup:.3f} "
            "(target >= 1.9 on 2 cores; the limit is 2.0)"
        )
    whole = statistics.median(main_job)
    print(
        f"step {args.step}, tiles {args.tiles}, {args.workers} workers, the main job end to end (plan + supervise + "
        f"reduce, {whole:.2f} s): speedup {statistics.median(serial_command) / whole:.3f} against the whole serial "
        f"command, {statistics.median(serial) / whole:.3f} against the loop alone (target >= 1.9)"
    )


if __name__ == "__main__":
    main()
