"""Slurm: a job array whose every task is one long-lived ``jobrunner work`` on the spool.

One array task drains many tiles (never one Slurm job per tile), and nothing here polls
``squeue`` or ``sacct``: :func:`submit` runs ``sbatch`` once, and a worker inside a Slurm job
asks for the job's end time once, at start (:func:`job_end_time`), so that it stops claiming
before its walltime instead of being killed in the middle of a tile.

``scancel`` (and the walltime) send SIGTERM: the worker abandons the tile in flight, records
the attempt as interrupted, deletes its partial files and exits 143; the tile is claimable
again at once.  ``jobrunner drain`` is the gentle way: every worker finishes its tile first.

:func:`render_sbatch` is pure: the script's text from the options and the spool's paths.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

from jobrunner.errors import JobRunnerError
from jobrunner.files import ensure_folder_in, explain_write_error, write_atomically
from jobrunner.folders import Tree
from jobrunner.paths import SpoolPaths
from jobrunner.stopping import MAX_DURATION, Deadline


@dataclass(frozen=True)
class ArrayOptions:
    """What ``jobrunner slurm`` puts in the script; None leaves a setting to the cluster's defaults."""

    tasks: int
    throttle: int | None = None  # at most this many tasks at once (%K)
    time: str | None = None
    mem: str | None = None
    partition: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)  # whole "#SBATCH ..." lines

    def check(self) -> None:
        if self.tasks < 1:
            raise JobRunnerError(f"--array takes the number of tasks (workers), at least 1, not {self.tasks}")
        if self.throttle is not None and self.throttle < 1:
            raise JobRunnerError(f"--throttle must be at least 1, got {self.throttle}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise JobRunnerError(f"--cpus-per-task must be at least 1, got {self.cpus_per_task}")
        for name, value in (("--time", self.time), ("--mem", self.mem)):
            if value is not None and not re.fullmatch(r"[0-9A-Za-z:.-]+", value):
                raise JobRunnerError(f"{name} {value!r} is not a Slurm value such as 01:00:00 or 2G")
        for line in self.extra:
            if not line.startswith("#SBATCH ") or "\n" in line:
                raise JobRunnerError(f"--extra takes one whole '#SBATCH --option' line, not {line!r}")


def render_sbatch(options: ArrayOptions, paths: SpoolPaths, python: str, pythonpath: str | None = None) -> str:
    """The batch script: every array task runs ``python -m jobrunner work`` on the spool, logging under it."""
    options.check()
    array = f"0-{options.tasks - 1}" + (f"%{options.throttle}" if options.throttle else "")
    directives = [
        "--job-name=jobrunner",
        f"--array={array}",
        # Slurm opens --output by path, following links: the worker opens its own log (--log below).
        "--output=/dev/null",
        f"--time={options.time}" if options.time else None,
        f"--mem={options.mem}" if options.mem else None,
        f"--partition={options.partition}" if options.partition else None,
        f"--account={options.account}" if options.account else None,
        f"--cpus-per-task={options.cpus_per_task}" if options.cpus_per_task else None,
    ]
    # No --outputs: the worker uses the folder the plan records (and refuses any other).
    command = [python, "-m", "jobrunner", "work", "--spool", str(paths.spool)]
    lines = [
        "#!/bin/bash",
        "# Written by `jobrunner slurm`. Each array task is one worker that drains tiles until none is left,",
        "# the spool is drained (`jobrunner drain`), or its walltime would cut the next tile short.",
        *(f"#SBATCH {d}" for d in directives if d),
        *options.extra,
        "set -euo pipefail",
        # The Python environment that wrote this script, so that the tasks import the same jobrunner and kernels.
        *([f"export PYTHONPATH={shlex.quote(pythonpath)}"] if pythonpath else []),
        f"worker=({shlex.join(command)})",
        "# Inside Slurm, one log per task, which the worker opens itself (a task that fails before its",
        "# worker starts leaves none: run this script by hand to see why); by hand, the terminal.",
        "# exec: the worker itself receives scancel's SIGTERM and leaves its tile claimable for others.",
        'if [[ -n "${SLURM_ARRAY_JOB_ID:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then',
        f'    exec "${{worker[@]}}" --log "{_in_double_quotes(str(paths.slurm_task_log))}"',
        "fi",
        'exec "${worker[@]}"',
        "",
    ]
    return "\n".join(lines)


def _in_double_quotes(text: str) -> str:
    """``text`` for inside a double-quoted shell word, with its ``${...}`` left for the shell to expand."""
    escaped = re.sub(r'([\\"`])', r"\\\1", text)
    return re.sub(r"\$(?!\{SLURM_ARRAY_(JOB_ID|TASK_ID)\})", r"\\$", escaped)


def write_sbatch(options: ArrayOptions, paths: SpoolPaths) -> str:
    """Write ``<spool>/slurm/jobrunner.sbatch`` for this Python; return the command that submits it."""
    text = render_sbatch(options, paths, sys.executable, os.environ.get("PYTHONPATH"))
    with Tree(paths.spool) as tree:
        try:
            ensure_folder_in(tree, paths.slurm, "Slurm")
            ensure_folder_in(tree, paths.slurm_logs, "Slurm logs")
        except OSError as error:
            raise JobRunnerError(f"cannot make {paths.slurm_logs}: {explain_write_error(error)}") from None

        def write(file) -> None:
            file.write(text.encode())
            os.fchmod(file.fileno(), 0o755)

        write_atomically(paths.sbatch_script, write, tree=tree)
    return shlex.join(["sbatch", str(paths.sbatch_script)])


def submit(paths: SpoolPaths) -> str:
    """Submit the script with ``sbatch --parsable`` (once); return the array's job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise JobRunnerError(
            "sbatch is not on PATH: run this on a Slurm login node, or drop --submit and "
            f"submit {paths.sbatch_script} where Slurm is"
        )
    try:
        result = subprocess.run(
            [sbatch, "--parsable", str(paths.sbatch_script)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise JobRunnerError("sbatch did not answer within 120 s: is slurmctld up? try `sinfo`") from None
    if result.returncode != 0:
        why = (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}").splitlines()[-1]
        raise JobRunnerError(f"sbatch refused {paths.sbatch_script}: {why}")
    return result.stdout.strip().split(";")[0]  # "id" or "id;cluster"


def job_end_time(environ=os.environ) -> Deadline | None:
    """When the Slurm job this process runs in will be killed, or None outside Slurm or without a limit.

    ``SLURM_JOB_END_TIME`` where Slurm sets it (23.02 and later); otherwise one ``squeue`` call.
    """
    job = environ.get("SLURM_JOB_ID")
    if not job:
        return None
    what = "the Slurm job's end"
    end = environ.get("SLURM_JOB_END_TIME", "")
    if end.isdigit():
        if not time.time() - MAX_DURATION < float(end) < time.time() + MAX_DURATION:
            raise JobRunnerError(
                f"SLURM_JOB_END_TIME={end} is not a time within a year of now: is it a Slurm job's environment?"
            )
        return Deadline(float(end), what)
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        result = subprocess.run([squeue, "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=30)
        # An ISO time in the cluster's local time; NONE or Unknown without a time limit.
        return Deadline(datetime.fromisoformat(result.stdout.strip()).timestamp(), what)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        return None
