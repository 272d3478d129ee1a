"""The lab's Task 4: runtime against the number of workers, past the CPUs, until it breaks.

For each worker count the study plans a fresh spool in a temporary folder and drains it with
:func:`~jobrunner.drain.supervise`, timing plan + supervise, and reads from that spool's records
how long each tile took to compute.  The baseline is the serial computation of the same grid in
this process, timed ``repeat`` times like the parallel runs, so its spread is known too.  It
runs in rounds (serial, then each count once; ``repeat`` rounds) and keeps the medians.

The figure and the CSV answer the lab's questions from these numbers alone:

* the ideal runtime is the serial time over ``min(N, CPUs)`` and the ideal speedup is
  ``min(N, CPUs)``: built from the serial loop, not from jobrunner's own one-worker run, so
  jobrunner's overhead shows as a gap instead of being hidden in the baseline;
* a speedup above N, or above the CPUs, is flagged: no pool can do that, so it is noise (the
  serial runs were slowed by someone else) or caches;
* the median compute time of one tile stays flat up to the CPUs, then grows about N / CPUs:
  the processes take turns on the CPUs (oversubscription), which is why more workers stop helping;
* one tile's overhead (claim, spec, tile file, record, future) is the one-worker time minus the
  serial time, over the tiles.

The CPUs are :func:`jobrunner.cpus.usable_cpus`: the logical CPUs this process may use (Slurm,
CPU affinity, or ``os.cpu_count()``); with hyperthreading two of them share a physical core.

Before the first round the study estimates, for each count, the memory that many pool processes
need (one process's private memory, measured, times the count) and the file descriptors they
need, and stops before the first count that would not fit, with the reason, instead of swapping
the machine to death; a run that fails anyway (too many processes, file descriptors, memory)
becomes the last row, with its error.
"""

from __future__ import annotations

import csv
import io
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from jobrunner.compute import compute_tile, probe_kernel
from jobrunner.cpus import CpuCount, usable_cpus
from jobrunner.drain import supervise
from jobrunner.errors import JobRunnerError
from jobrunner.executors import descriptor_verdict, fork_context
from jobrunner.grid import Grid, Tile
from jobrunner.plan import Plan
from jobrunner.spool import Spool
from jobrunner.wording import count_of, size_of

#: The lab's grid at this step is 4 to 5 s of the loop kernel on the 2-CPU machine here: big
#: enough that the tiles' overhead (about 3 ms each, 36 tiles) is a few per cent of it, small enough
#: that the default study (7 worker counts, 3 rounds) takes 60 to 85 s there.
DEFAULT_STEP = 0.002
#: The default counts go one by one to one past the CPUs, but not beyond this + 1; then by powers of two...
DENSE_WORKERS = 8
#: ...up to this many times the CPUs: far enough past them that more workers are seen to stop
#: helping and then to hurt (see :func:`default_workers`).
OVERSUBSCRIBE = 16
CSV_COLUMNS = (
    "workers",
    "median_s",
    "min_s",
    "max_s",
    "runs",
    "serial_s",
    "serial_min_s",
    "serial_max_s",
    "ideal_s",
    "speedup",
    "ideal_speedup",
    "efficiency",
    "median_tile_s",
    "cpus",
    "outcome",
    "flags",
    "note",
)
#: The flags of a row whose speedup beats its ideal: noise in the timings, or caches.
ABOVE_N, ABOVE_CPUS = "speedup>N", "speedup>CPUs"


@dataclass(frozen=True)
class TimedRun:
    """One plan + supervise: its wall time, and each tile's compute time from the spool's records."""

    seconds: float
    tile_seconds: tuple[float, ...]

    @property
    def outside_tiles(self) -> float:
        """The wall time not spent in any tile's attempt; with one worker, jobrunner's own cost."""
        return self.seconds - sum(self.tile_seconds)


@dataclass
class ScaleRow:
    workers: int
    runs: list[TimedRun] = field(default_factory=list)
    outcome: str = "ok"  # ok, or failed (with the error in note)
    note: str = ""

    @property
    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    @property
    def tile_seconds(self) -> list[float]:
        """Every tile's compute time, over all the runs at this count."""
        return [seconds for run in self.runs for seconds in run.tile_seconds]

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.runs else None

    @property
    def median_tile(self) -> float | None:
        tiles = self.tile_seconds
        return statistics.median(tiles) if tiles else None


@dataclass
class ScaleStudy:
    plan: Plan
    cpus: CpuCount
    serial: list[float]  # each timed serial run of the whole grid
    worker_bytes: int
    memory_bytes: int  # what the study allowed itself: available memory, or the given limit
    rows: list[ScaleRow] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def serial_seconds(self) -> float:
        return statistics.median(self.serial)

    @property
    def tiles(self) -> int:
        return len(self.plan.tiles())

    def ideal_speedup(self, workers: int) -> float:
        """N workers are at best N times faster, never faster than all the CPUs together, and never
        busier than there are tiles to share among them."""
        return float(min(workers, self.cpus.count, self.tiles))

    def ideal_seconds(self, workers: int) -> float:
        return self.serial_seconds / self.ideal_speedup(workers)

    def speedup(self, row: ScaleRow) -> float | None:
        return None if row.median is None else self.serial_seconds / row.median

    def efficiency(self, row: ScaleRow) -> float | None:
        speedup = self.speedup(row)
        return None if speedup is None else speedup / row.workers

    def flags(self, row: ScaleRow) -> list[str]:
        """Which of its limits this row's speedup beats, so that nobody takes it as a result unchecked."""
        speedup = self.speedup(row)
        if speedup is None:
            return []
        return [flag for flag, limit in ((ABOVE_N, row.workers), (ABOVE_CPUS, self.cpus.count)) if speedup > limit]

    @property
    def serial_tile_seconds(self) -> float:
        """One tile's share of the serial time: what a tile costs a process that has a CPU to itself."""
        return self.serial_seconds / self.tiles

    def expected_tile_seconds(self, workers: int) -> float:
        """A tile's compute time when the pool's processes (no more than the tiles) take turns on the CPUs."""
        return self.serial_tile_seconds * max(1.0, min(workers, self.tiles) / self.cpus.count)

    def _one_worker(self) -> ScaleRow | None:
        return next((row for row in self.rows if row.workers == 1 and row.runs), None)

    @property
    def tile_overhead(self) -> float | None:
        """What jobrunner adds per tile: the one-worker time minus the serial time, over the tiles.

        Two timings taken seconds apart: on a busy machine the noise can exceed the overhead.
        """
        one = self._one_worker()
        return None if one is None else (one.median - self.serial_seconds) / self.tiles

    @property
    def tile_overhead_from_records(self) -> float | None:
        """The same from within each one-worker run: its wall time outside the tiles' attempts (planning,
        the pool, claims, records, futures), over the tiles; the median of the runs.  Loading the spec
        and writing the tile happen inside an attempt, so they are not in it."""
        one = self._one_worker()
        return None if one is None else statistics.median(run.outside_tiles for run in one.runs) / self.tiles

    @property
    def contention(self) -> float | None:
        """How much longer a tile took with one worker per CPU than with one worker: 1.0 if the CPUs are
        independent; more if they slow each other (hyperthreads, shared caches, a busy host)."""
        at = {row.workers: row.median_tile for row in self.rows if row.median_tile}
        return at[self.cpus.count] / at[1] if 1 in at and self.cpus.count in at and self.cpus.count > 1 else None

    def notes(self) -> list[str]:
        """The lines that say how to read the numbers: the CPUs, the baseline, the overhead, the flags."""
        lines = [f"CPUs: {self.cpus.describe()}", f"serial: {_spread(self.serial)}"]
        overhead, outside = self.tile_overhead, self.tile_overhead_from_records
        if overhead is not None and outside is not None:
            noise = " (below the timing noise)" if overhead <= 0 else ""
            lines.append(
                f"overhead per tile, the run's fixed costs included ({count_of(self.tiles, 'tile')} of "
                f"{self.serial_tile_seconds * 1000:.3g} ms serially): "
                f"{outside * 1000:.1f} ms outside the tiles' attempts in the 1-worker runs (records); "
                f"{overhead * 1000:.1f} ms from 1-worker median minus serial median{noise}"
            )
        contention = self.contention
        if contention is not None and contention > 1:
            n = self.cpus.count
            lines.append(
                f"a tile took {contention - 1:.0%} longer with {n} workers than with 1: the CPUs slow each other "
                f"(shared cores or caches, a busy host), so {n} workers can be at most ~{n / contention:.2f}x faster"
            )
        for row in self.rows:
            if self.flags(row):
                lines.append(
                    f"flagged: {count_of(row.workers, 'worker')}, speedup {self.speedup(row):.2f} "
                    f"({', '.join(self.flags(row))}): beyond the ideal, so timing noise (a slow serial run) or "
                    "caches (a tile fits where the whole grid did not)"
                )
        return lines

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        serial = [_fmt(self.serial_seconds), _fmt(min(self.serial)), _fmt(max(self.serial))]
        for row in self.rows:
            writer.writerow(
                [
                    row.workers,
                    _fmt(row.median),
                    _fmt(min(row.seconds, default=None)),
                    _fmt(max(row.seconds, default=None)),
                    len(row.seconds),
                    *serial,
                    _fmt(self.ideal_seconds(row.workers)),
                    _fmt(self.speedup(row)),
                    _fmt(self.ideal_speedup(row.workers)),
                    _fmt(self.efficiency(row)),
                    _fmt(row.median_tile),
                    self.cpus.count,
                    row.outcome,
                    ";".join(self.flags(row)),
                    row.note,
                ]
            )
        if self.stop_reason:
            stop = {"outcome": "stopped", "note": self.stop_reason}
            writer.writerow([stop.get(column, "") for column in CSV_COLUMNS])
        return buffer.getvalue()


@dataclass(frozen=True)
class ScaleEvent:
    """Progress of a study: ``what`` is "serial" (one timed serial run), "run" (one timed run) or "stop"."""

    what: str
    workers: int = 0
    seconds: float = 0.0
    message: str = ""


def _spread(seconds: list[float]) -> str:
    low, high = min(seconds), max(seconds)
    runs = count_of(len(seconds), "run")
    return f"{statistics.median(seconds):.2f} s, median of {runs} (min {low:.2f}, max {high:.2f})"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def default_workers(cpus: int) -> list[int]:
    """The lab's sequence: one by one until just past the CPUs, then larger steps (powers of two) to
    :data:`OVERSUBSCRIBE` times the CPUs; on 2 CPUs 1, 2, 3, 4, 8, 16, 32.  The one-by-one part
    stops at :data:`DENSE_WORKERS` + 1, so that a 64-CPU node is not timed at 65 counts."""
    most = OVERSUBSCRIBE * cpus
    dense = set(range(1, min(cpus, DENSE_WORKERS) + 2))
    powers = {2**k for k in range(most.bit_length()) if 2**k <= most}
    return sorted(dense | powers | {cpus, cpus + 1, most})


def parse_workers(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise JobRunnerError(
            f"--workers takes a comma-separated list of counts, such as 1,2,4,8, not {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise JobRunnerError(f"--workers needs counts of at least 1, got {text!r}")
    return sorted(set(counts))


def parse_bytes(text: str) -> int:
    """``512M``, ``2G``, ``1.5GiB`` or a plain number of bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:] in units and cleaned[-1:] != "" else (cleaned, "")
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise JobRunnerError(f"a memory size is a number with K, M, G or T, such as 4G, not {text!r}") from None
    if not 0 < value < 2**60:  # nan, inf, zero, negative, or absurd
        raise JobRunnerError(f"a memory size is a positive number with K, M, G or T, such as 4G, not {text!r}")
    return int(value)


def auto_tiling(shape: tuple[int, int], workers: list[int]) -> tuple[int, int]:
    """A square-ish tiling with at least as many tiles as the largest worker count (so no process idles)."""
    side = math.ceil(math.sqrt(max(workers)))
    return (min(side, shape[0]), min(side, shape[1]))


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (what can be used without swapping), or physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _private_bytes_after_a_tile(plan: Plan) -> int:
    """Runs in a pool process: compute a small tile, then report this process's private memory."""
    compute_tile(plan, Tile((0, 0), ((0, min(64, plan.shape[0])), (0, min(64, plan.shape[1])))))
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if ":" in line)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("Private_Clean", "Private_Dirty"))
    except (OSError, KeyError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_worker_memory(plan: Plan) -> int:
    """The private memory of one pool process that has computed a tile, as supervise starts them."""
    with ProcessPoolExecutor(max_workers=1, mp_context=fork_context()) as pool:
        return pool.submit(_private_bytes_after_a_tile, plan).result()


def memory_verdict(workers: int, worker_bytes: int, memory_bytes: int) -> str | None:
    """Why ``workers`` processes would hurt the machine, or None if they fit."""
    need = workers * worker_bytes
    if need > memory_bytes:
        each = f"{size_of(worker_bytes)} per worker, measured"
        return f"would need ~{size_of(need)} of {size_of(memory_bytes)} free ({each})"
    return None


def time_serial(plan: Plan) -> float:
    """The whole grid in this process, by the plan's kernel: the baseline of the study."""
    started = time.perf_counter()
    compute_tile(plan, Tile((0, 0), ((0, plan.shape[0]), (0, plan.shape[1]))))
    return time.perf_counter() - started


def time_one_run(plan: Plan, workers: int, scratch: Path) -> TimedRun:
    """Plan into a fresh spool under ``scratch`` and drain it with ``workers`` processes."""
    with tempfile.TemporaryDirectory(prefix=f"scale-{workers}-", dir=scratch) as folder:
        started = time.perf_counter()
        spool, _ = Spool.create(plan, Path(folder) / "jobs", Path(folder) / "outputs")
        summary = supervise(spool, workers)
        seconds = time.perf_counter() - started
        if not summary.ok:
            first, why = next(iter(summary.failed.items()))
            raise JobRunnerError(f"{len(summary.failed)} of {summary.total} jobs failed (first {first}: {why})")
        return TimedRun(seconds, tile_seconds(spool))  # read after the clock stopped, before the folder goes


def tile_seconds(spool: Spool) -> tuple[float, ...]:
    """Each finished tile's compute time (its attempt's start to end, as its worker recorded it)."""
    return tuple(attempt.seconds for _, attempt in spool.finished_attempts() if attempt.seconds is not None)


def run_scale(
    grid: Grid,
    workers: tuple[int, ...] | list[int] | None = None,
    tiles: tuple[int, ...] | None = None,
    kernel: str = "loop",
    repeat: int = 3,
    memory_limit: int | None = None,
    scratch: Path | None = None,
    on_event: Callable[[ScaleEvent], None] | None = None,
    params: dict | None = None,
) -> ScaleStudy:
    """Time plan + supervise at each worker count; stop where the machine would suffer or a run fails.

    ``workers``: the counts to time (default :func:`default_workers` of the CPUs).  ``tiles``: the
    tiling of every run (default :func:`auto_tiling`, fixed for the whole study, so that a tile is
    the same work at every worker count and its compute time can be compared).
    """
    if repeat < 1:
        raise JobRunnerError(f"--repeat must be at least 1, got {repeat}")
    cpus = usable_cpus()
    workers = sorted(set(workers or default_workers(cpus.count)))
    plan = probe_kernel(Plan(grid, tiles or auto_tiling(grid.shape, workers), kernel, params or {}))
    emit = on_event or (lambda event: None)
    worker_bytes = _kernel_runs(measure_worker_memory, plan, "on a 64 x 64 tile in a pool process")
    memory = min(available_memory(), memory_limit or available_memory())
    study = ScaleStudy(plan, cpus, [], worker_bytes, memory)
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    study.rows, study.stop_reason = rows_that_fit(workers, study.tiles, worker_bytes, memory, open_files)
    if study.stop_reason:
        emit(ScaleEvent("stop", message=study.stop_reason))
    scratch = Path(scratch or tempfile.gettempdir())
    # Round by round (the serial loop, then each count once), not count by count: on a shared
    # machine a burst of someone else's work then spoils one run of several counts, which their
    # medians discard, rather than every run of one count.
    for _ in range(repeat):
        study.serial.append(_kernel_runs(time_serial, plan, "on the whole grid, serially"))
        emit(ScaleEvent("serial", seconds=study.serial[-1]))
        for row in study.rows:
            try:
                row.runs.append(time_one_run(plan, row.workers, scratch))
            except (OSError, MemoryError, BrokenProcessPool, JobRunnerError) as error:
                stop_at(study, row, f"{type(error).__name__}: {error}")
                emit(ScaleEvent("stop", row.workers, message=study.stop_reason))
                return study
            emit(ScaleEvent("run", row.workers, row.seconds[-1]))
    return study


def _kernel_runs(call: Callable[[Plan], float], plan: Plan, where: str):
    """``call(plan)``, which runs the plan's kernel: a kernel that raises (the user's code, which
    passed plan's small probe) is one line, not a traceback."""
    try:
        return call(plan)
    except (JobRunnerError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:
        raise JobRunnerError(f"kernel {plan.kernel} failed {where}: {type(error).__name__}: {error}") from None


def rows_that_fit(
    workers: list[int], tiles: int, worker_bytes: int, memory_bytes: int, open_files: int
) -> tuple[list[ScaleRow], str | None]:
    """A row for each count, up to the first that would run out of memory or file descriptors (and why)."""
    rows = []
    for count in workers:
        verdict = descriptor_verdict(count, open_files) or memory_verdict(count, worker_bytes, memory_bytes)
        if verdict:
            return rows, f"stopped before {count_of(count, 'worker')}: {verdict}"
        rows.append(ScaleRow(count, note=f"only {tiles} tiles: the pool is capped at that" if count > tiles else ""))
    return rows, None


def stop_at(study: ScaleStudy, row: ScaleRow, error: str) -> None:
    """A run at ``row``'s count failed: the study ends there, without the counts above it (an
    earlier round may have timed them, but "it breaks at N" is the finding)."""
    row.outcome, row.note = "failed", error
    study.rows = study.rows[: study.rows.index(row) + 1]
    study.stop_reason = f"stopped at {count_of(row.workers, 'worker')}: the run failed ({error})"
