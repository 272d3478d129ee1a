"""The lab's Task 4: runtime against the number of workers, past the core count, until it breaks.

For each worker count the study plans a fresh spool in a temporary folder and drains it with
:func:`~jobrunner.drain.supervise`, timing plan + supervise; the serial computation of the
same grid, timed in the same run, is the baseline.  Before each step it estimates the memory
that many pool processes need (one process's private memory, measured, times the count) and
stops with the reason instead of swapping the machine to death; a run that fails anyway (too
many processes, file descriptors, memory) becomes a row with its error.
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
from jobrunner.drain import supervise
from jobrunner.errors import JobRunnerError
from jobrunner.executors import descriptor_verdict, fork_context
from jobrunner.grid import Grid, Tile
from jobrunner.plan import Plan
from jobrunner.spool import Spool

DEFAULT_WORKERS = (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256)
CSV_COLUMNS = ("workers", "median_s", "min_s", "max_s", "runs", "serial_s", "speedup", "efficiency", "outcome", "note")


@dataclass
class ScaleRow:
    workers: int
    seconds: list[float] = field(default_factory=list)
    outcome: str = "ok"  # ok, or failed (with the error in note)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class ScaleStudy:
    plan: Plan
    cores: int
    serial_seconds: float
    worker_bytes: int
    memory_bytes: int  # what the study allowed itself: available memory, or the given limit
    rows: list[ScaleRow] = field(default_factory=list)
    stop_reason: str | None = None

    def speedup(self, row: ScaleRow) -> float | None:
        return None if row.median is None else self.serial_seconds / row.median

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            speedup = self.speedup(row)
            writer.writerow(
                [
                    row.workers,
                    _fmt(row.median),
                    _fmt(min(row.seconds, default=None)),
                    _fmt(max(row.seconds, default=None)),
                    len(row.seconds),
                    _fmt(self.serial_seconds),
                    _fmt(speedup),
                    _fmt(None if speedup is None else speedup / row.workers),
                    row.outcome,
                    row.note,
                ]
            )
        if self.stop_reason:
            writer.writerow(["", "", "", "", "", "", "", "", "stopped", self.stop_reason])
        return buffer.getvalue()


@dataclass(frozen=True)
class ScaleEvent:
    """Progress of a study: ``what`` is "serial", "run" (one timed run) or "stop"."""

    what: str
    workers: int = 0
    seconds: float = 0.0
    message: str = ""


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


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


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


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
        return f"would need ~{gib(need)} of {gib(memory_bytes)} free ({gib(worker_bytes)} per worker, measured)"
    return None


def time_serial(plan: Plan) -> float:
    """The whole grid in this process, by the plan's kernel: the baseline of the study."""
    started = time.perf_counter()
    compute_tile(plan, Tile((0, 0), ((0, plan.shape[0]), (0, plan.shape[1]))))
    return time.perf_counter() - started


def time_one_run(plan: Plan, workers: int, scratch: Path) -> float:
    """Plan into a fresh spool under ``scratch`` and drain it with ``workers`` processes."""
    with tempfile.TemporaryDirectory(prefix=f"scale-{workers}-", dir=scratch) as folder:
        started = time.perf_counter()
        spool, _ = Spool.create(plan, Path(folder) / "jobs", Path(folder) / "outputs")
        summary = supervise(spool, workers)
        seconds = time.perf_counter() - started
    if not summary.ok:
        raise JobRunnerError(f"{len(summary.failed)} jobs failed")
    return seconds


def run_scale(
    grid: Grid,
    workers: tuple[int, ...] | list[int] = DEFAULT_WORKERS,
    tiles: tuple[int, ...] | None = None,
    kernel: str = "loop",
    repeat: int = 3,
    memory_limit: int | None = None,
    scratch: Path | None = None,
    on_event: Callable[[ScaleEvent], None] | None = None,
    params: dict | None = None,
) -> ScaleStudy:
    """Time plan + supervise at each worker count; stop where the machine would suffer or a run fails."""
    if repeat < 1:
        raise JobRunnerError(f"--repeat must be at least 1, got {repeat}")
    workers = sorted(set(workers))
    plan = probe_kernel(Plan(grid, tiles or auto_tiling(grid.shape, workers), kernel, params or {}))
    emit = on_event or (lambda event: None)
    serial = time_serial(plan)
    emit(ScaleEvent("serial", seconds=serial))
    worker_bytes = measure_worker_memory(plan)
    memory = min(available_memory(), memory_limit or available_memory())
    study = ScaleStudy(plan, os.cpu_count() or 1, serial, worker_bytes, memory)
    scratch = Path(scratch or tempfile.gettempdir())
    for count in workers:
        verdict = descriptor_verdict(count, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) or memory_verdict(
            count, worker_bytes, memory
        )
        if verdict:
            study.stop_reason = f"stopped before {count} workers: {verdict}"
            emit(ScaleEvent("stop", count, message=study.stop_reason))
            break
        row = ScaleRow(count)
        if count > len(plan.tiles()):
            row.note = f"only {len(plan.tiles())} tiles: the pool is capped at that"
        study.rows.append(row)
        try:
            for _ in range(repeat):
                row.seconds.append(time_one_run(plan, count, scratch))
                emit(ScaleEvent("run", count, row.seconds[-1]))
        except (OSError, MemoryError, BrokenProcessPool, JobRunnerError) as error:
            row.outcome, row.note = "failed", f"{type(error).__name__}: {error}"
            study.stop_reason = f"stopped at {count} workers: the run failed ({row.note})"
            emit(ScaleEvent("stop", count, message=study.stop_reason))
            break
    return study
