"""What a spool holds right now: counts by state, what is running where, why jobs failed.

Safe while workers are busy: it reads records and claims, and probes the lock only of a job
claimed from another host (a probe is a non-blocking try, released at once; in lease mode it
only looks at the lease's marker).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from jobrunner.locking import Choice
from jobrunner.records import DONE, FAILED, PENDING, RUNNING
from jobrunner.spool import Spool
from jobrunner.stopping import drain_requested
from jobrunner.vocabulary import MAP_PRECEDENCE

#: A running job is marked overdue once it has run this many times the median finished tile...
OVERDUE_FACTOR = 4.0
#: ...and at least this many seconds (tiny tiles vary a lot relative to their length).
OVERDUE_MIN_SECONDS = 5.0


@dataclass(frozen=True)
class RunningJob:
    id: str
    host: str
    pid: int
    seconds: float
    via: str = "work"  # how its worker was started: work, supervise, mpi, dask, slurm JOBID_TASK
    overdue: bool = False  # far longer than finished tiles took: stuck, or a much heavier tile
    stopped: bool = False  # its process (on this host) is stopped: SIGSTOP, Ctrl-Z, a debugger

    @property
    def advice(self) -> str:
        """What to do about it, for this kind of worker: only a supervisor's pool has --job-timeout."""
        if self.stopped:
            return (
                f"its process is stopped (Ctrl-Z or SIGSTOP), and holds the job until it goes on: "
                f"`kill -CONT {self.pid}` resumes it; `kill {self.pid}; kill -CONT {self.pid}` gives the job back"
            )
        if self.via.startswith("supervise"):
            return "stuck? `supervise --job-timeout SECONDS` ends such jobs"
        return f"stuck? `kill {self.pid}` on {self.host} gives the job back (its attempt is recorded interrupted)"


@dataclass(frozen=True)
class FailedJob:
    id: str
    attempts: int
    error: str


@dataclass
class SpoolStatus:
    total: int
    locking: Choice | None  # None until a worker has chosen
    counts: Counter = field(default_factory=Counter)
    running: list[RunningJob] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    median_tile_seconds: float | None = None  # of the finished tiles
    draining: bool = False  # `jobrunner drain` asked every worker to stop after its tile

    @property
    def finished(self) -> bool:
        return self.counts[DONE] == self.total


def spool_status(spool: Spool) -> SpoolStatus:
    statuses = spool.statuses()
    report = SpoolStatus(
        len(statuses), spool.locking_if_chosen(), Counter({PENDING: 0, RUNNING: 0, DONE: 0, FAILED: 0})
    )
    durations = [
        attempt.seconds
        for status in statuses
        if status.record is not None
        for attempt in status.record.attempts
        if attempt.outcome == DONE and attempt.seconds is not None
    ]
    report.median_tile_seconds = statistics.median(durations) if durations else None
    report.draining = drain_requested(spool.paths)
    now = time.time()
    for status in statuses:
        report.counts[status.state] += 1
        record, claim = status.record, status.claim
        if status.state == RUNNING and claim is not None:
            age = now - claim.started
            overdue = is_overdue(age, report.median_tile_seconds)
            stopped = claim.writer.stopped_here()
            report.running.append(RunningJob(status.id, claim.host, claim.pid, age, claim.via, overdue, stopped))
        elif status.state == FAILED and record is not None:
            last_line = (record.last_error or "no error recorded").strip().splitlines()[-1]
            report.failed.append(FailedJob(status.id, len(record.attempts), last_line))
        elif status.state == FAILED and status.problem is not None:
            report.failed.append(FailedJob(status.id, 0, status.problem))
    return report


def is_overdue(age: float, median_tile_seconds: float | None) -> bool:
    if median_tile_seconds is None:
        return False
    return age > max(OVERDUE_FACTOR * median_tile_seconds, OVERDUE_MIN_SECONDS)


def state_map(plan, states: dict[str, str]) -> list[list[str]]:
    """Each tile's state over the plan's first two axes: ``[i][j]`` for the tile ``i`` along the
    first axis and ``j`` along the second (one column on a 1-D grid).  Tiles that differ only
    along further axes share a square: failed if any failed, else running if any runs, else
    pending if any is, else done."""
    first, second = plan.tiling[0], plan.tiling[1] if len(plan.tiling) > 1 else 1
    found: list[list[set]] = [[set() for _ in range(second)] for _ in range(first)]
    for tile in plan.tiles():
        found[tile.index[0]][tile.index[1] if len(tile.index) > 1 else 0].add(states.get(tile.id, PENDING))
    return [[next(s for s in MAP_PRECEDENCE if s in square) for square in row] for row in found]
