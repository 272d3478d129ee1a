"""The command line's options: each with its help text and, where it names a folder or a mode,
its environment variable (the command line beats the environment, which beats the default).

Shared by the commands (:mod:`jobrunner.cli.commands`) so that an option reads the same in every
command that takes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

SpoolOption = Annotated[
    Path,
    typer.Option(
        "--spool",
        envvar="JOBRUNNER_SPOOL",
        metavar="FOLDER",
        help="Spool folder holding the plan and its jobs.",
        show_default=True,
    ),
]

OutputsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--outputs",
        envvar="JOBRUNNER_OUTPUTS",
        metavar="FOLDER",
        help="Folder for tiles, arrays and figures. Default: the one the plan records; another is refused.",
        show_default=False,
    ),
]

PlanOutputsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--outputs",
        envvar="JOBRUNNER_OUTPUTS",
        metavar="FOLDER",
        help="Folder for tiles, arrays and figures; the plan records it, and every later command uses it. "
        "One spool per outputs folder. Default: outputs/ for a new spool, else the folder its plan records.",
        show_default=False,
    ),
]

SerialOutputsOption = Annotated[
    Path,
    typer.Option("--outputs", envvar="JOBRUNNER_OUTPUTS", metavar="FOLDER", help="Folder for arrays and figures."),
]

StepOption = Annotated[
    Optional[float],
    typer.Option(
        "--step", metavar="SPACING", help="The lab's grid: spacing of x and y (default 0.001).", show_default=False
    ),
]

ExtentOption = Annotated[
    Optional[tuple[float, float, float, float]],
    typer.Option(
        "--extent",
        metavar="XMIN XMAX YMIN YMAX",
        help="The lab's grid (default -2 2 -2 2): x is np.arange(XMIN, XMAX, STEP) and y np.arange(YMIN, YMAX, STEP). "
        "The end is left out, but rounding can let the last point land on it: --extent 1 1.3 0 1 --step 0.1 "
        "gives x = 1.0, 1.1, 1.2, 1.3000000000000003.",
        show_default=False,
    ),
]

AxisOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--axis",
        metavar="NAME=SPEC",
        help="One axis of the grid, repeatable, in the order of the result's dimensions: NAME=START:STOP:STEP "
        "(np.arange: STOP left out), NAME=START:STOP/N (N points, both ends), or NAME=V1,V2,... (those values). "
        "Instead of --step and --extent. The kernel receives each axis by its NAME.",
        show_default=False,
    ),
]

UnitOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--unit",
        metavar="NAME=UNIT",
        help="The unit of an axis's values (depth=km), or of a field the kernel returns (misfit=s). Repeatable.",
    ),
]

KernelOption = Annotated[
    str,
    typer.Option(
        "--kernel",
        metavar="loop|numpy|sphere|quake|MODULE:FUNCTION",
        help="loop (the lab's point-by-point loop), numpy (the same bits, ~300x faster), sphere (a buried "
        "sphere's gravity), quake (an earthquake-location misfit over x, y, depth; --pointwise), or "
        "package.module:function (a module in the folder where you run `plan` is found). See `jobrunner kernels`.",
    ),
]

ParamOption = Annotated[
    Optional[list[str]],
    typer.Option("--param", metavar="NAME=VALUE", help="A kernel parameter; VALUE is a JSON literal. Repeatable."),
]

PointwiseOption = Annotated[
    bool,
    typer.Option(
        "--pointwise",
        help="The kernel takes one number per axis and returns one number (as the lab's loop does), "
        "and is called once per cell; without it, once per tile with arrays.",
    ),
]


RetriesOption = Annotated[
    int,
    typer.Option(
        "--retries", metavar="N", help="Run a job whose kernel raised this many more times before leaving it failed."
    ),
]

RetryFailedOption = Annotated[
    bool, typer.Option("--retry-failed", help="Give jobs already left failed a fresh set of retries first.")
]

MaxTimeOption = Annotated[
    Optional[str],
    typer.Option(
        "--max-time",
        envvar="JOBRUNNER_MAX_TIME",
        metavar="DURATION",
        help="Stop claiming when the next tile would not finish within this time from the start (judged by the "
        "tiles' median duration): 3h, 90m, 45s, 01:00:00. Inside a Slurm job the job's end time counts too.",
    ),
]

LockOption = Annotated[
    str,
    typer.Option(
        "--lock",
        envvar="JOBRUNNER_LOCK",
        metavar="auto|flock|lease",
        help="How workers claim jobs: flock (the disk's locks), lease (a marker kept fresh by a heartbeat, for "
        "disks whose locks do not reach other machines), or auto (look at the disk). Chosen once per spool by "
        "its first worker; see `jobrunner doctor`.",
    ),
]

LeaseOption = Annotated[
    Optional[float],
    typer.Option(
        "--lease",
        envvar="JOBRUNNER_LEASE_SECONDS",
        metavar="SECONDS",
        help="In lease mode: how long a worker's claim lasts without a heartbeat before others may take its job "
        "(default 30; chosen once per spool).",
        show_default=False,
    ),
]


def open_spool(spool: Path, outputs: Path | None, lock: str | None = None, lease: float | None = None):
    """Open the spool; commands without a --lock option still honour JOBRUNNER_LOCK."""
    from jobrunner.spool import Spool

    lock = lock or os.environ.get("JOBRUNNER_LOCK") or "auto"
    return Spool.open(spool, outputs, lock, lease)
