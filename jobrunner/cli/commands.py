"""The ``jobrunner`` commands: each parses its options and calls the library, nothing more.

Errors the user can fix arrive as :class:`~jobrunner.errors.JobRunnerError` and are printed
once, by :func:`main`, as one line.  Options live in :mod:`jobrunner.cli.options`, what the
commands show in :mod:`jobrunner.cli.views`, and signal handling in :mod:`jobrunner.cli.signals`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from jobrunner.cli.options import (
    AxisOption,
    ExtentOption,
    KernelOption,
    LeaseOption,
    LockOption,
    MaxTimeOption,
    OutputsOption,
    ParamOption,
    PlanOutputsOption,
    PointwiseOption,
    RetriesOption,
    RetryFailedOption,
    SerialOutputsOption,
    SpoolOption,
    StepOption,
    UnitOption,
    open_spool,
)
from jobrunner.cli.signals import interruptible
from jobrunner.cli.views import (
    announced_deadline,
    counts_table,
    err,
    out,
    progress_bar,
    report_summary,
    styled,
    watch_spool,
)
from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid, field_units, grid_from_options, parse_tiling, parse_units
from jobrunner.kernels import local_kernel_folder, params_from_options
from jobrunner.plan import Plan
from jobrunner.wording import count_of

#: The help lists the commands in these panels, each in the order of the file: the lab's first.
LAB, LOOK, CLUSTER = "The lab's path", "Looking inside", "On a cluster"

app = typer.Typer(
    help="Run embarrassingly parallel grid work: plan tiles into a spool, drain it with workers, stitch the result.\n\n"
    "The lab's path: `jobrunner serial`, then `jobrunner plan`, then `jobrunner work` in several terminals "
    "or `jobrunner supervise --workers N`, then `jobrunner reduce`.\n\n"
    "On a cluster: `jobrunner slurm --array N --submit` (a Slurm job array of workers), "
    "`mpiexec -n N python -m mpi4py.futures -m jobrunner supervise --executor mpi`, or "
    "`jobrunner supervise --executor dask --scheduler tcp://HOST:8786`; `jobrunner drain` stops them all.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)


@app.command(rich_help_panel=LAB)
def serial(
    axis: AxisOption = None,
    unit: UnitOption = None,
    step: StepOption = None,
    extent: ExtentOption = None,
    kernel: KernelOption = "loop",
    pointwise: PointwiseOption = False,
    sigma: Annotated[
        Optional[float], typer.Option("--sigma", metavar="WIDTH", help="Width of the Gaussian (default: 1).")
    ] = None,
    param: ParamOption = None,
    outputs: SerialOutputsOption = Path("outputs"),
) -> None:
    """The lab's Task 1: the whole grid in one process, timed (by default the lab's point-by-point loop).

    Takes the grid and kernel options of `plan`, so every kernel has its one-process reference:
    the stitched result of any tiling equals it bit for bit. Writes serial.npy and serial.png.
    """
    from jobrunner.serial import run_serial

    units = parse_units(unit or [])
    grid = grid_from_options(axis or [], units, step, extent)
    here = local_kernel_folder(kernel, Path.cwd())
    params = params_from_options(param, sigma)
    the_plan = Plan(grid, (1,) * len(grid.axes), kernel, params, pointwise, here, units=field_units(units, grid))
    with progress_bar("serial", unit="blocks") as advance:
        result = run_serial(the_plan, outputs, on_progress=lambda done, total: advance(done, total))
    size = " x ".join(str(n) for n in grid.shape)
    what = "serial loop" if kernel == "loop" else f"kernel {kernel}, one process,"
    out.print(f"{what} over {size} points: {result.seconds:.2f} s")
    out.print(f"wrote {result.array} and {result.figure}")


@app.command(rich_help_panel=LAB)
def plan(
    axis: AxisOption = None,
    unit: UnitOption = None,
    step: StepOption = None,
    tiles: Annotated[
        str,
        typer.Option(
            "--tiles", metavar="N1xN2...", help="How many tiles along each axis, in their order: 4x4, 3x5, 4x4x2."
        ),
    ] = "4x4",
    kernel: KernelOption = "loop",
    pointwise: PointwiseOption = False,
    extent: ExtentOption = None,
    sigma: Annotated[
        Optional[float], typer.Option("--sigma", metavar="WIDTH", help="Width of the Gaussian (default: 1).")
    ] = None,
    param: ParamOption = None,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Discard a different plan already in the spool, with its records and tiles."),
    ] = False,
    spool: SpoolOption = Path("jobs"),
    outputs: PlanOutputsOption = None,
) -> None:
    """Write one JSON job spec per tile into the spool. Planning the same plan again changes nothing.

    Each plan gets an id and a fingerprint of its kernel's code; workers refuse other code, and a
    plan replaced (--replace) under running workers is safe: they stop, writing nothing into the new one.
    """
    from jobrunner.spool import Spool

    units = parse_units(unit or [])
    grid = grid_from_options(axis or [], units, step, extent)
    here = local_kernel_folder(kernel, Path.cwd())  # workers started anywhere import it from here
    params = params_from_options(param, sigma)
    the_plan = Plan(grid, parse_tiling(tiles), kernel, params, pointwise, here, units=field_units(units, grid))
    created, wrote = Spool.create(the_plan, spool, outputs, replace=replace)
    verb = "planned" if wrote else "already planned (nothing changed)"
    out.print(
        f"{verb}: {the_plan.describe()}, {count_of(len(created.job_ids), 'job')} in {created.paths.spool}, "
        f"results in {created.paths.outputs} (plan {created.plan.id}, kernel code {created.plan.code})",
        highlight=False,
    )
    if wrote:
        from jobrunner.footprint import footprint, inode_warnings

        cost = footprint(created.plan)
        out.print(cost.describe(), highlight=False)
        for warning in inode_warnings(cost, created.paths.spool, created.paths.outputs):
            err.print(styled(("warning:", "yellow"), f" {warning}"), highlight=False)
        paths = created.paths
        out.print(
            f"next: `{paths.command('supervise', '--workers', 'N')}`, or `{paths.command('work')}` in as many "
            "terminals as you like",
            highlight=False,
        )


@app.command(rich_help_panel=LAB)
def work(
    retries: RetriesOption = 2,
    retry_failed: RetryFailedOption = False,
    max_time: MaxTimeOption = None,
    lock: LockOption = "auto",
    lease: LeaseOption = None,
    spool: SpoolOption = Path("jobs"),
    outputs: OutputsOption = None,
    log: Annotated[
        Optional[Path],
        typer.Option(
            "--log",
            metavar="FILE",
            help="Append everything this worker prints to FILE (made if missing; never through a symbolic link, "
            "even in place of a folder on the way from the spool). The Slurm script passes one per array task.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """One independent worker: claim jobs until none is left. Start as many as you like, anywhere the spool is.

    It stops claiming, after finishing its tile, when `jobrunner drain` is asked or when the next
    tile would overrun --max-time or its Slurm job's end. SIGTERM (scancel) and Ctrl-C abandon the
    tile in flight at once: its attempt is recorded as interrupted and another worker takes it.
    """
    from jobrunner.drain import work as run_worker

    if log is not None:
        from jobrunner.files import append_output_to

        append_output_to(log, spool)
    started = time.time()
    the_spool = open_spool(spool, outputs, lock, lease)
    deadline = announced_deadline(max_time, started)
    drain_in_view(
        the_spool,
        "tiles",
        f"worker {socket.gethostname()}:{os.getpid()}",
        lambda on_progress: run_worker(the_spool, retries, retry_failed, on_progress, deadline),
    )


def drain_in_view(the_spool, label: str, who: str, drain) -> None:
    """Run ``drain(on_progress)`` under a progress bar, Ctrl-C and SIGTERM turned into a clean stop; report it."""
    with interruptible(), progress_bar(label, unit="tiles") as advance:
        summary = drain(lambda progress: advance(progress.done + progress.failed, progress.total))
    report_summary(summary, who, the_spool)


@app.command(rich_help_panel=LAB)
def supervise(
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            metavar="N",
            help="Processes in the pool, with --executor process (default: the CPUs this run may use: its "
            "Slurm allocation, else its CPU affinity, e.g. under taskset).",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            envvar="JOBRUNNER_EXECUTOR",
            metavar="process|mpi|dask",
            # \[ : typer reads help as rich markup, where [mpi] would be a style and vanish.
            help="process: a pool on this machine. "
            "mpi: the ranks of `mpiexec -n N python -m mpi4py.futures -m jobrunner supervise --executor mpi` "
            "(N-1 workers; pip install 'jobrunner\\[mpi]'). "
            "dask: the workers of a running Dask scheduler, see --scheduler (pip install 'jobrunner\\[dask]').",
        ),
    ] = "process",
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            envvar="DASK_SCHEDULER_ADDRESS",
            metavar="tcp://HOST:PORT",
            help="The Dask scheduler's address, with --executor dask.",
        ),
    ] = None,
    retries: RetriesOption = 2,
    retry_failed: RetryFailedOption = False,
    max_time: MaxTimeOption = None,
    job_timeout: Annotated[
        Optional[float],
        typer.Option(
            "--job-timeout",
            metavar="SECONDS",
            help="End a job's process when the job runs longer than this, and put the job back (counted as a "
            "failed attempt against --retries). Other jobs in flight are restarted. With --executor process only.",
            show_default=False,
        ),
    ] = None,
    lock: LockOption = "auto",
    lease: LeaseOption = None,
    spool: SpoolOption = Path("jobs"),
    outputs: OutputsOption = None,
) -> None:
    """The lab's Task 3: drain the spool on a concurrent.futures executor (submit + as_completed).

    A local ProcessPoolExecutor by default; on a cluster, MPI's or Dask's executor. Whichever it
    is, the workers claim jobs under the same protocol as `jobrunner work`, so supervisors,
    hand-started workers and Slurm arrays can drain one spool together. Like `work`, it stops
    handing out tiles when `jobrunner drain` is asked or when the next tile would overrun
    --max-time or its Slurm job's end.
    """
    from jobrunner.cpus import usable_cpus
    from jobrunner.drain import supervise as run_supervisor

    started = time.time()
    the_spool = open_spool(spool, outputs, lock, lease)
    deadline = announced_deadline(max_time, started)
    label, who = f"{executor} workers", f"supervisor with {executor} workers"
    if executor == "process":
        cpus = usable_cpus()
        workers = cpus.count if workers is None else workers  # one count for the label and the pool
        pool = min(workers, len(the_spool.job_ids))  # the pool never starts more processes than jobs
        label = count_of(pool, "worker")
        if pool < workers:
            who = f"supervisor with {label}, one per job of the plan"
        else:
            who = f"supervisor with {label}" + (", one per CPU this run may use" if workers == cpus.count else "")
        who += f" ({cpus.describe()})"
    drain_in_view(
        the_spool,
        label,
        who,
        lambda on_progress: run_supervisor(
            the_spool, workers, retries, retry_failed, on_progress, job_timeout, executor, scheduler, deadline
        ),
    )


@app.command(rich_help_panel=CLUSTER)
def slurm(
    array: Annotated[
        int, typer.Option("--array", metavar="N", help="Array tasks: N workers, each draining many tiles.")
    ],
    throttle: Annotated[
        Optional[int], typer.Option("--throttle", metavar="K", help="Run at most K tasks at once (--array=0-N%K).")
    ] = None,
    time: Annotated[
        Optional[str],
        typer.Option(
            "--time", metavar="D-HH:MM:SS", help="Each task's walltime, e.g. 01:00:00; workers stop before it."
        ),
    ] = None,
    mem: Annotated[Optional[str], typer.Option("--mem", metavar="SIZE", help="Memory per task, e.g. 2G.")] = None,
    partition: Annotated[Optional[str], typer.Option("--partition", metavar="NAME", help="Slurm partition.")] = None,
    account: Annotated[
        Optional[str], typer.Option("--account", metavar="NAME", help="Slurm account to charge.")
    ] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task", metavar="N", help="CPUs per task.")] = None,
    extra: Annotated[
        Optional[list[str]],
        typer.Option("--extra", metavar='"#SBATCH ..."', help="A whole extra #SBATCH line. Repeatable."),
    ] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Submit it with sbatch and print the job id.")] = False,
    spool: SpoolOption = Path("jobs"),
    outputs: OutputsOption = None,
) -> None:
    """Write SPOOL/slurm/jobrunner.sbatch: a Slurm job array whose every task runs `jobrunner work`.

    Each task is one long-lived worker (this Python, absolute paths) that drains tiles until none
    is left, logging to SPOOL/slurm/logs/task-JOBID_TASK.log. Without --submit it prints the
    sbatch command; with it, it submits once and prints the job id. Then `jobrunner status` shows
    which array tasks work on which tiles, `jobrunner drain` stops them after their tiles, and
    `scancel` stops them at once (their tiles go back to the queue).
    """
    from jobrunner.slurm import ArrayOptions, write_sbatch
    from jobrunner.slurm import submit as run_sbatch

    options = ArrayOptions(array, throttle, time, mem, partition, account, cpus_per_task, tuple(extra or ()))
    the_spool = open_spool(spool, outputs)
    command = write_sbatch(options, the_spool.paths)
    out.print(f"wrote {the_spool.paths.sbatch_script}", highlight=False)
    if not submit:
        out.print(f"submit it with: {command}", highlight=False)
        return
    job = run_sbatch(the_spool.paths)
    out.print(f"submitted job array {job} ({array} tasks); logs in {the_spool.paths.slurm_logs}", highlight=False)
    paths = the_spool.paths
    out.print(
        f"follow it with `{paths.command('status')}`; stop it with `{paths.command('drain')}` or `scancel {job}`",
        highlight=False,
    )


@app.command(rich_help_panel=CLUSTER)
def drain(spool: SpoolOption = Path("jobs")) -> None:
    """Tell every worker of the spool, wherever it runs, to finish its current tile and exit.

    Writes the file SPOOL/DRAIN, which workers look for before each claim; new workers exit at
    once while it is there. `jobrunner resume` removes it.
    """
    from jobrunner.stopping import request_drain

    the_spool = open_spool(spool, None)
    verb = "draining" if request_drain(the_spool.paths) else "already draining"
    out.print(f"{verb}: workers finish their current tile and exit ({the_spool.paths.drain_file})", highlight=False)
    paths = the_spool.paths
    out.print(
        f"see them go with `{paths.command('status')}`; `{paths.command('resume')}` lets workers claim again",
        highlight=False,
    )


@app.command(rich_help_panel=CLUSTER)
def resume(spool: SpoolOption = Path("jobs")) -> None:
    """Undo `jobrunner drain`: workers started from now on claim jobs again (stopped ones stay stopped)."""
    from jobrunner.stopping import cancel_drain

    the_spool = open_spool(spool, None)
    if cancel_drain(the_spool.paths):
        paths = the_spool.paths
        out.print(
            f"resumed: new workers claim jobs again; start them with `{paths.command('work')}` or "
            f"`{paths.command('slurm', '--array', 'N', '--submit')}`",
            highlight=False,
        )
    else:
        out.print("the spool was not being drained: nothing to resume")


@app.command(rich_help_panel=LOOK)
def kernels() -> None:
    """The built-in kernels, with their parameters and defaults, and how to plug in your own."""
    import inspect

    from jobrunner.kernels import BUILTIN_KERNELS, kernel_parameters, load_kernel

    for name, reference in BUILTIN_KERNELS.items():
        function = load_kernel(name)
        summary = (inspect.getdoc(function) or "").splitlines()[0]
        axes = getattr(function, "axes", ("x", "y"))
        taken = kernel_parameters(function, axes) or {}
        params = ", ".join(
            f"{p}={d!r}" if d is not inspect.Parameter.empty else f"{p} (required)" for p, d in taken.items()
        )
        how = ", one cell at a time: pass --pointwise" if getattr(function, "pointwise", False) else ""
        out.print(styled((name, "bold"), f"  ({reference})  {summary}"), highlight=False)
        out.print(f"    axes: {', '.join(axes)}{how}; parameters: {params or 'none'}", highlight=False)
    out.print(
        "Your own: --kernel module:function, a function of the axes by name (x, y, or those of --axis) and its "
        "parameters (--param NAME=VALUE), returning a float array of the tile's shape (or a dict of them, one per "
        "field); or one number (or a dict of numbers) per cell with --pointwise. A module in the folder where you "
        "run `plan` is found by every worker.",
        highlight=False,
    )


@app.command(rich_help_panel=CLUSTER)
def doctor(spool: SpoolOption = Path("jobs"), outputs: OutputsOption = None) -> None:
    """What the spool's disk can do: filesystem, mount options that matter for locks, a live lock
    probe, the lock mode `--lock auto` picks and why, and what to ask the cluster's admins for.

    Run it on each kind of node (login, compute) before a big run: a lock that does not reach
    other machines loses no error, only work.
    """
    from jobrunner.doctor import describe_error, diagnose, lock_options
    from jobrunner.paths import SpoolPaths

    d = diagnose(SpoolPaths(spool, outputs or "outputs"))
    table = Table(box=None, show_header=False)
    table.add_row("probed in", str(d.folder))
    if d.mount:
        table.add_row("filesystem", f"{d.mount.fstype} ({d.mount.source} on {d.mount.point})")
        table.add_row("lock options", lock_options(d.mount))
    else:
        table.add_row("filesystem", "unknown (no /proc/self/mounts)")
    table.add_row("flock", describe_error(d.flock_error))
    table.add_row("lease markers", describe_error(d.lease_error))
    table.add_row("--lock auto", f"{d.auto.mode}: {d.auto.reason}")
    if d.inodes is not None:
        table.add_row("free inodes", f"{d.inodes[0]:,} of {d.inodes[1]:,} (each file or folder takes one)")
    if d.recorded:
        table.add_row("this spool uses", f"{d.recorded.mode} ({d.recorded.reason})")
    out.print(table, highlight=False)
    for line in d.advice:
        out.print(f"advice: {line}", highlight=False)
    for line in d.warnings:
        out.print(styled(("warning:", "yellow"), f" {line}"), highlight=False)
    for problem in d.problems:
        err.print(styled(("problem:", "red"), f" {problem}"), highlight=False)
    if d.problems:
        raise typer.Exit(1)


@app.command(rich_help_panel=LAB)
def reduce(
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Stitch even with tiles missing; holes are NaN (stitched.nc marks them)."),
    ] = False,
    field: Annotated[
        Optional[str],
        typer.Option(
            "--field",
            metavar="NAME",
            help="The field the figure draws, for a kernel with several (default: the first).",
        ),
    ] = None,
    slice_at: Annotated[
        Optional[list[str]],
        typer.Option(
            "--slice",
            metavar="NAME=VALUE",
            help="Where the figure cuts an axis after the first two: the point nearest VALUE (default: the middle "
            "point). Repeatable, one per axis.",
        ),
    ] = None,
    spool: SpoolOption = Path("jobs"),
    outputs: OutputsOption = None,
) -> None:
    """Stitch the tiles into OUTPUTS/stitched.npy and stitched.nc, and draw stitched.png.

    stitched.nc is the labelled result (NetCDF-4, CF conventions): a coordinate per axis and a
    variable per field, for xarray.open_dataset("outputs/stitched.nc"). The figure draws one
    field over the first two axes, at one point of each further axis.
    """
    from jobrunner.figures import parse_slices
    from jobrunner.stitch import reduce as run_reduce

    result = run_reduce(open_spool(spool, outputs), partial, field, parse_slices(slice_at or []))
    size = " x ".join(str(n) for n in result.shape)
    products = [result.array, *([result.dataset] if result.dataset else []), result.figure]
    out.print(f"stitched {size}: wrote {', '.join(map(str, products[:-1]))} and {products[-1]}", highlight=False)
    for note in result.notes:
        out.print(Text.assemble(("note: ", "yellow"), note))  # not markup: [netcdf] is no style
    if result.missing:
        out.print(styled(("partial:", "yellow"), f" {count_of(len(result.missing), 'tile')} missing, stored as NaN"))


@app.command(rich_help_panel=LOOK)
def status(
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep a live view of workers and tiles on screen until the spool is done.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Seconds between refreshes with --watch.")
    ] = 1.0,
    spool: SpoolOption = Path("jobs"),
    outputs: OutputsOption = None,
) -> None:
    """Pending, running (lock held now), done and failed jobs, and why each failed job failed.

    With --watch: a live table of every worker (however it was started), its current tile and
    rate, and a map of the tiles (in the terminal for small plans, and as OUTPUTS/tiles.png),
    both drawn as stitched.png is: the first axis across, the second up.
    """
    from jobrunner.status import spool_status

    if not 0.05 <= interval <= 3600:  # nan fails this too
        raise JobRunnerError(f"--interval takes seconds between refreshes, from 0.05 to 3600, not {interval:g}")
    the_spool = open_spool(spool, outputs)
    if watch:
        return watch_spool(the_spool, interval)
    report = spool_status(the_spool)
    out.print(f"{the_spool.plan.describe()}, spool {the_spool.paths.spool}")
    out.print(
        f"plan {the_spool.plan.id}, kernel code {the_spool.plan.code}, results in {the_spool.paths.outputs}",
        highlight=False,
    )
    if report.locking is None:
        out.print(
            f"locks: not chosen yet (the first worker chooses; `{the_spool.paths.command('doctor')}` shows what "
            "auto would)",
            highlight=False,
        )
    else:
        out.print(f"locks: {report.locking.mode} ({report.locking.reason})", highlight=False)
    out.print(counts_table(report.counts))
    if report.draining:
        resume = the_spool.paths.command("resume")
        out.print(
            styled("  ", ("draining", "yellow"), f": workers exit after their current tile; `{resume}` undoes it"),
            highlight=False,
        )
    for job in report.running:
        line = styled(f"  running {job.id} on {job.host} pid {job.pid} ({job.via}) for {job.seconds:.0f} s")
        if job.stopped:
            line.append_text(styled("  ", ("stopped", "yellow"), f": {job.advice}"))
        elif job.overdue:
            took = f": finished tiles took {report.median_tile_seconds:.1f} s (median); {job.advice}"
            line.append_text(styled("  ", ("overdue", "yellow"), took))
        out.print(line, highlight=False)
    for job in report.failed:
        out.print(
            styled("  ", ("failed", "red"), f" {job.id} after {count_of(job.attempts, 'attempt')}: {job.error}"),
            highlight=False,
        )
    if report.failed:
        out.print(
            f"  rerun them with `{the_spool.paths.command('work', '--retry-failed')}`; each record in "
            f"{the_spool.paths.records} has the traceback",
            highlight=False,
        )


@app.command(rich_help_panel=LAB)
def scale(
    step: Annotated[  # not StepOption: its help names the lab's default, and the study's is another
        float,
        typer.Option(
            "--step",
            metavar="SPACING",
            help="The lab's grid: spacing of x and y (default 0.002: a few seconds of the loop kernel serially).",
            show_default=False,
        ),
    ] = 0.002,  # jobrunner.scaling.DEFAULT_STEP: that module is imported only when scale runs
    workers: Annotated[
        Optional[str],
        typer.Option(
            "--workers",
            metavar="N,N,...",
            help="Comma-separated worker counts to time; they may go far past the CPUs "
            "(default: one by one to just past the CPUs, then powers of two to 16 times the CPUs).",
        ),
    ] = None,
    tiles: Annotated[
        Optional[str],
        typer.Option(
            "--tiles",
            metavar="ROWSxCOLS",
            help="Tiling of every run (default: at least as many tiles as the most workers, the same for all).",
        ),
    ] = None,
    kernel: Annotated[
        str,
        typer.Option(
            "--kernel",
            metavar="loop|numpy|sphere|MODULE:FUNCTION",
            help="The kernel to time over the lab's 2-D grid: a built-in one (see `jobrunner kernels`) or your own.",
        ),
    ] = "loop",
    param: ParamOption = None,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat", metavar="N", help="Runs per worker count, and of the serial baseline; the median is plotted."
        ),
    ] = 3,
    memory_limit: Annotated[
        Optional[str],
        typer.Option(
            "--memory-limit",
            metavar="SIZE",
            help="Stop before the pool would need more than this, e.g. 4G (default: available memory).",
        ),
    ] = None,
    extent: ExtentOption = (-2.0, 2.0, -2.0, 2.0),
    outputs: SerialOutputsOption = Path("outputs"),
) -> None:
    """The lab's Task 4: time plan + supervise at each worker count, past the CPUs, until it would break.

    Writes OUTPUTS/scale.csv and OUTPUTS/scale.png; the serial computation, timed --repeat
    times in the same run, is the baseline, and the CPUs are the logical CPUs this run may use.
    """
    from jobrunner.cpus import usable_cpus
    from jobrunner.figures import save_scale_figure
    from jobrunner.files import ensure_folder, write_text
    from jobrunner.paths import SpoolPaths
    from jobrunner.scaling import default_workers, parse_bytes, parse_workers, run_scale

    counts = parse_workers(workers) if workers is not None else default_workers(usable_cpus().count)
    limit = parse_bytes(memory_limit) if memory_limit else None
    grid = Grid.lab(*extent, step=step)
    paths = SpoolPaths.outputs_only(outputs)
    ensure_folder(paths.outputs, "outputs", "--outputs")
    # A line per run and no live progress bar: the bar's refresh thread would take the GIL from the
    # serial loop being timed in this process, and the pools would fork while it runs.
    total, done = repeat + len(counts) * repeat, 0

    def on_event(event) -> None:
        nonlocal done
        if event.what in ("serial", "run"):
            done += 1
            label = "serial" if event.what == "serial" else count_of(event.workers, "worker")
            err.print(f"  [{done:>{len(str(total))}}/{total}] {label:>11}: {event.seconds:.2f} s", highlight=False)
        else:
            err.print(styled("  ", (event.message, "yellow")), highlight=False)

    tiling = parse_tiling(tiles) if tiles else None
    params = params_from_options(param, None)
    study = run_scale(grid, counts, tiling, kernel, repeat, limit, on_event=on_event, params=params)
    csv_path, figure_path = paths.product("scale.csv"), paths.product("scale.png")
    write_text(csv_path, study.to_csv())
    if not any(row.seconds for row in study.rows):  # nothing to draw: a study that failed at its first count
        raise JobRunnerError(f"{study.stop_reason}: no worker count was timed (its row is in {csv_path})")
    save_scale_figure(study, figure_path)
    out.print(f"{'workers':>7} {'median s':>9} {'speedup':>8} {'ideal':>6} {'tile ms':>8}  flags", highlight=False)
    for row in (row for row in study.rows if row.seconds):
        tile = f"{row.median_tile * 1000:8.1f}" if row.median_tile is not None else f"{'':>8}"
        out.print(
            f"{row.workers:>7} {row.median:>9.2f} {study.speedup(row):>8.2f} {study.ideal_speedup(row.workers):>6.0f} "
            f"{tile}  {', '.join(study.flags(row))}",
            highlight=False,
        )
    for note in study.notes():
        out.print(note, highlight=False, soft_wrap=True)
    best = min((row for row in study.rows if row.seconds), key=lambda row: row.median, default=None)
    if best:
        out.print(
            f"fastest: {count_of(best.workers, 'worker')}, {best.median:.2f} s, "
            f"speedup {study.speedup(best):.2f} over serial "
            f"({study.serial_seconds:.2f} s) on {study.cpus.describe()}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"wrote {csv_path} and {figure_path}")


@app.command(rich_help_panel=LOOK)
def report(spool: SpoolOption = Path("jobs"), outputs: OutputsOption = None) -> None:
    """Where the time went: a timeline of every attempt per worker, busy fractions and load imbalance.

    Draws OUTPUTS/timeline.png (one row per worker, one bar per attempt, coloured by outcome)
    and prints each worker's totals: its busy fraction is over its own lifetime (first claim to last
    release), the imbalance over the whole run. Works while the spool is still draining.
    """
    from jobrunner.figures import save_timeline_figure
    from jobrunner.timeline import timeline

    the_spool = open_spool(spool, outputs)
    run = timeline(the_spool)
    if not run.workers:
        raise JobRunnerError(
            f"no job in {the_spool.paths.spool} has been attempted yet: start workers first "
            f"(`{the_spool.paths.command('supervise')}` or `{the_spool.paths.command('work')}`)"
        )
    table = Table("worker", "started by", "tiles", "attempts", "lived s", "busy s", "busy %", box=None)
    for worker in run.workers:
        table.add_row(
            worker.name,
            worker.via,
            str(worker.tiles_done),
            str(len(worker.attempts)),
            f"{worker.lived(run.end):.2f}",
            f"{worker.busy(run.end):.2f}",
            f"{100 * run.busy_fraction(worker):.0f}",
        )
    out.print(table)
    out.print("lived: from a worker's first claim to its last release; busy %: of that", style="dim")
    imbalance = run.imbalance
    out.print(
        f"{count_of(len(run.workers), 'worker')} over {run.span:.2f} s; load imbalance (slowest / mean busy time) "
        + (f"{imbalance:.2f}" if imbalance else "n/a")
        + (f"; {count_of(run.running, 'attempt')} still running" if run.running else ""),
        highlight=False,
    )
    the_spool.check_outputs()
    target = the_spool.paths.product("timeline.png")
    title = f"{the_spool.plan.describe()}\n{count_of(len(run.workers), 'worker')}, {run.span:.1f} s" + (
        f", imbalance {imbalance:.2f}" if imbalance else ""
    )
    save_timeline_figure(run, title, target)
    out.print(f"wrote {target}")


def main() -> None:
    """Entry point: run the app and render a user's mistake as one line, without a traceback."""
    try:
        app()
    except JobRunnerError as error:
        err.print(styled(("error:", "red"), f" {error}"), soft_wrap=True, highlight=False)
        raise SystemExit(1) from None
