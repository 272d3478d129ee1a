"""Benchmark: jobrunner side by side with its peers on the same work, N one-cell jobs on 2 workers.

Every contender computes N one-cell results with the same trivial kernel (bench_kernels.zeros on
one-cell x and y arrays), saves each one to a file of its own, and is timed as whole commands from
a fresh folder, so start-up, scheduling and every file it writes are counted:

  jobrunner supervise   `jobrunner plan` (timed, printed on its own line), then `jobrunner supervise --workers 2`
  jobrunner work x2     two hand-started `jobrunner work` processes on a freshly planned spool, until both exit
  ProcessPoolExecutor   the baseline: a hand-written script, submit + as_completed on 2 processes, each job
                        saving its result with np.save to its own .npy file
  Dask                  LocalCluster(n_workers=2, threads_per_worker=1, processes=True) + Client, client.map of a
                        function that computes and np.saves one result, client.gather; cluster start included
  jug                   a jugfile with one Task per job that np.saves its result, two `jug execute` processes
                        started together, until both exit; jug keeps its own store on disk as well
  GNU parallel          only with --with-parallel, if `parallel` is installed: one Python per job, 2 at a time;
                        so slow that it runs the first 200 jobs only and its time is scaled up to N

Rounds are interleaved (each round runs every contender once, starting one further along the list
each time), and each contender's median is printed with its ratio to the baseline's median from
the same run.  A contender that did not leave N result files (they are counted) is reported as
failed, not timed.

Dask, jug and a numpy for them are installed by this script into a scratch venv of its own
(--peers-venv, reused when present), never into jobrunner's; a peer pip cannot install is skipped
with one line saying so.  jobrunner and the baseline run on the interpreter running this script.

    .venv/bin/python scripts/bench_peers.py [--jobs 2500] [--rounds 3] [--with-parallel]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_per_job import one_cell_plan

HERE = Path(__file__).parent
WORKERS = 2
PARALLEL_JOBS = 200  # GNU parallel starts a Python per job: a sample of this many jobs, its time scaled up

# One job of every peer: the same kernel, fed one-cell x and y arrays, its result saved to its own file.
JOB = textwrap.dedent(
    """
    import numpy as np

    from bench_kernels import zeros


    def job(i, out):
        x = np.full((1, 1), float(i))
        y = np.full((1, 1), float(i))
        path = f"{out}/{i}.npy"
        np.save(path, zeros(x, y))
        return path
    """
)

# The baseline, as a student would write it for the lab: each process saves the result it computed.
POOL = JOB + textwrap.dedent(
    """
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if __name__ == "__main__":
        out, jobs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(job, i, out) for i in range(jobs)]
            for future in as_completed(futures):
                future.result()
    """
)

DASK = JOB + textwrap.dedent(
    """
    import sys

    from distributed import Client, LocalCluster

    if __name__ == "__main__":  # Dask's worker processes are spawned: they import this file again
        out, jobs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        # No dashboard: it needs bokeh, which a plain dask[distributed] does not bring, and a port.
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            client.gather(client.map(job, range(jobs), out=out))
    """
)

# jug finds the job count in the environment: `jug execute` takes no arguments for the jugfile.
JUGFILE = JOB + textwrap.dedent(
    """
    import os

    from jug import Task

    for i in range(int(os.environ["BENCH_JOBS"])):
        Task(job, i, "results")
    """
)

# One job, one Python: what GNU parallel runs.
ONE = JOB + textwrap.dedent(
    """
    import sys

    job(int(sys.argv[2]), sys.argv[1])
    """
)


@dataclass
class Run:
    seconds: float = 0.0
    files: int = 0
    error: str = ""  # why the run failed; empty when it ran


@dataclass
class Contender:
    name: str
    run: Callable[[Path], Run]  # runs once in the given fresh folder
    expected: int  # result files a good run leaves
    scale: float = 1.0  # its time is multiplied by this (GNU parallel's sample)
    note: str = ""
    times: list[float] = field(default_factory=list)
    error: str = ""
    files: int = 0  # result files of its failed run


def timed(commands: list[list[str]], folder: Path, env: dict, timeout: float) -> Run:
    """Start the commands together in ``folder`` and time them until all have exited.

    Output goes to log files, not pipes (Dask logs plenty; a full pipe would stall it), and each
    command gets a session of its own so that a run past the timeout is killed with its children.
    """
    logs = [open(folder / f"log-{k}.txt", "w") for k in range(len(commands))]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for command, log in zip(commands, logs, strict=True)
    ]
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.0, started + timeout - time.perf_counter())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    seconds = time.perf_counter() - started
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for log in logs:
        log.close()
    for k, code in enumerate(codes):
        if code != 0:
            tail = (folder / f"log-{k}.txt").read_text(errors="replace").strip().splitlines()[-3:]
            why = "timed out" if code is None else f"exit {code}"
            command = " ".join([Path(commands[k][0]).name, *commands[k][1:3]])
            return Run(seconds, error=f"{command} ...: {why}: {' | '.join(tail)}")
    return Run(seconds)


def count(folder: Path) -> int:
    """Result files under ``folder``, leaving out hidden scratch folders (jobrunner's .partial ones)."""
    if not folder.is_dir():
        return 0
    return sum(
        1 for path in folder.rglob("*.npy") if not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


class Bench:
    def __init__(self, jobs: int, timeout: float, peers: Path | None):
        self.jobs = jobs
        self.side = math.isqrt(jobs)
        self.timeout = timeout
        self.peers = peers  # the scratch venv's python, or None when numpy could not be installed there
        # scripts/ on the path, so that bench_kernels imports in every process of every contender.
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self.jobrunner = [sys.executable, "-m", "jobrunner"]
        self.plans: list[float] = []  # `jobrunner plan`, every time it ran
        self.supervised: list[float] = []  # plan + supervise, round by round

    def plan(self, folder: Path) -> Run:
        command = [*self.jobrunner, *one_cell_plan(self.side)]
        run = timed([command], folder, self.env, self.timeout)
        if not run.error:
            self.plans.append(run.seconds)
        return run

    def supervise(self, folder: Path) -> Run:
        planned = self.plan(folder)
        if planned.error:
            return planned
        run = timed([[*self.jobrunner, "supervise", "--workers", str(WORKERS)]], folder, self.env, self.timeout)
        run.files = count(folder / "outputs" / "tiles")
        if not run.error and run.files == self.jobs:
            self.supervised.append(planned.seconds + run.seconds)
        return run

    def work(self, folder: Path) -> Run:
        planned = self.plan(folder)
        if planned.error:
            return planned
        run = timed([[*self.jobrunner, "work"]] * WORKERS, folder, self.env, self.timeout)
        run.files = count(folder / "outputs" / "tiles")
        return run

    def script(self, python: str, text: str, folder: Path, jobs: int) -> Run:
        """Write a peer's script into the fresh folder and time it as one process."""
        (folder / "results").mkdir()
        (folder / "peer.py").write_text(text)
        command = [python, "peer.py", str(folder / "results"), str(jobs), str(WORKERS)]
        run = timed([command], folder, self.env, self.timeout)
        run.files = count(folder / "results")
        return run

    def pool(self, folder: Path) -> Run:
        return self.script(sys.executable, POOL, folder, self.jobs)

    def dask(self, folder: Path) -> Run:
        return self.script(str(self.peers), DASK, folder, self.jobs)

    def jug(self, folder: Path) -> Run:
        (folder / "results").mkdir()
        (folder / "jugfile.py").write_text(JUGFILE)
        jug = str(self.peers.parent / "jug")
        env = {**self.env, "BENCH_JOBS": str(self.jobs)}
        run = timed([[jug, "execute", "jugfile.py"]] * WORKERS, folder, env, self.timeout)
        run.files = count(folder / "results")
        return run

    def parallel(self, folder: Path) -> Run:
        (folder / "results").mkdir()
        (folder / "one.py").write_text(ONE)
        jobs = min(self.jobs, PARALLEL_JOBS)
        command = ["parallel", "--will-cite", "-j", str(WORKERS), sys.executable, "one.py", str(folder / "results")]
        run = timed([[*command, ":::", *map(str, range(jobs))]], folder, self.env, self.timeout)
        run.files = count(folder / "results")
        return run


def peers_venv(folder: Path) -> tuple[Path | None, dict[str, str]]:
    """Make (or reuse) the scratch venv of the peers; its python, and the version of each peer in it.

    A peer pip cannot install is left out of the versions, and the caller skips it.
    """
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"making a scratch venv for the peers in {folder}", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True)
        if made.returncode != 0:
            print(f"could not make the peers' venv ({made.stderr.strip()[-200:]}): Dask and jug are skipped")
            return None, {}
    versions = {}
    for package, module in (("numpy", "numpy"), ("dask[distributed]", "distributed"), ("jug", "jug")):
        version = [str(python), "-c", f"import {module}; print({module}.__version__)"]
        found = subprocess.run(version, capture_output=True, text=True)
        if found.returncode != 0:
            print(f"installing {package} into {folder}", flush=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", package]
            installed = subprocess.run(pip, capture_output=True, text=True)
            found = subprocess.run(version, capture_output=True, text=True)
            if installed.returncode != 0 or found.returncode != 0:
                print(f"pip could not install {package} into {folder}: skipped ({installed.stderr.strip()[-200:]})")
                if module == "numpy":  # every peer's job needs it
                    return None, {}
                continue
        versions[module] = found.stdout.strip()
    return python, versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2500, help="one-cell jobs (rounded down to a square grid)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed")
    parser.add_argument("--with-parallel", action="store_true", help=f"GNU parallel too, on {PARALLEL_JOBS} jobs")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take before it has failed")
    parser.add_argument(
        "--peers-venv",
        type=Path,
        default=Path.home() / ".cache" / "jobrunner-bench-peers",
        help="scratch venv for Dask and jug, made if missing, reused if present",
    )
    args = parser.parse_args()

    # jobrunner plans a grid of side x side one-cell tiles; every contender gets that many jobs.
    side = math.isqrt(args.jobs)
    jobs = side * side
    if jobs != args.jobs:
        print(f"{args.jobs} jobs rounded down to {jobs} ({side} x {side} one-cell tiles)")

    peers, versions = peers_venv(args.peers_venv.expanduser())
    bench = Bench(jobs, args.timeout, peers)
    import numpy  # here, not at the top: the scratch venv is made even if this interpreter lacked it

    print(
        f"jobrunner {importlib.metadata.version('jobrunner')} and the baseline on Python {sys.version.split()[0]}, "
        f"numpy {numpy.__version__}; peers: "
        + (", ".join(f"{name} {version}" for name, version in versions.items()) or "none")
    )

    baseline = Contender("ProcessPoolExecutor", bench.pool, jobs, note="baseline")
    contenders = [
        Contender("jobrunner supervise", bench.supervise, jobs, note="plan not counted: see below"),
        Contender("jobrunner work x2", bench.work, jobs, note="freshly planned spool"),
        baseline,
    ]
    if "distributed" in versions:
        contenders.append(Contender("Dask LocalCluster", bench.dask, jobs, note="cluster start included"))
    if "jug" in versions:
        contenders.append(Contender("jug execute x2", bench.jug, jobs, note="plus jug's own store"))
    if args.with_parallel:
        if shutil.which("parallel"):
            sample = min(jobs, PARALLEL_JOBS)
            scale = jobs / sample
            note = f"first {sample} jobs, time x{scale:g}" if scale != 1 else ""
            contenders.append(Contender("GNU parallel", bench.parallel, sample, scale=scale, note=note))
        else:
            print("GNU parallel: `parallel` is not installed, skipped")

    print(f"{jobs} one-cell jobs, {WORKERS} workers, {args.rounds} interleaved rounds", flush=True)
    for round_ in range(args.rounds):
        # Each round starts one contender further on, so none is always first (cold caches) or last.
        order = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
        for contender in order:
            if contender.error:  # failed once: its other rounds would not be comparable
                continue
            with tempfile.TemporaryDirectory(prefix="bench-peers-") as name:
                run = contender.run(Path(name))
            if not run.error and run.files != contender.expected:
                run.error = "fewer result files than jobs"
            if run.error:
                contender.error, contender.files = run.error, run.files
                print(f"  round {round_ + 1}: {contender.name} failed: {run.error}", flush=True)
            else:
                contender.times.append(run.seconds * contender.scale)
        print(f"  round {round_ + 1} of {args.rounds} done", flush=True)

    base = statistics.median(baseline.times) if baseline.times else None
    print()
    print(f"{'contender':22s} {'wall s':>8s} {'x baseline':>10s} {'rounds s':>20s} {'result files':>14s}  note")
    for contender in contenders:
        if contender.error:
            files = f"{contender.files}/{contender.expected}"
            print(f"{contender.name:22s} {'failed':>8s} {'':>10s} {'':>20s} {files:>14s}  {contender.error}")
            continue
        wall = statistics.median(contender.times)
        ratio = f"{wall / base:9.2f}x" if base else f"{'n/a':>10s}"
        rounds = " ".join(f"{t:.2f}" for t in contender.times)
        files = f"{contender.expected}/{contender.expected}"
        print(f"{contender.name:22s} {wall:8.2f} {ratio} {rounds:>20s} {files:>14s}  {contender.note}")
    supervised, by_hand = contenders[0], contenders[1]
    if supervised.times and by_hand.times:
        ratio = statistics.median(by_hand.times) / statistics.median(supervised.times)
        print(f"two hand-started `jobrunner work` / `jobrunner supervise --workers 2`: {ratio:.2f}x (target <= 1.10x)")
    if bench.plans:
        plan = statistics.median(bench.plans)
        line = f"jobrunner plan: {plan:.2f} s (median of {len(bench.plans)})"
        if base:
            line += f", {plan / base:.2f}x the baseline"
        if bench.supervised:
            whole = statistics.median(bench.supervised)
            line += f"; plan + supervise: {whole:.2f} s" + (f", {whole / base:.2f}x the baseline" if base else "")
        print(line)


if __name__ == "__main__":
    main()
