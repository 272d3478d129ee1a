"""What a spool holds right now: counts by state, what is running where, why jobs failed, and
the map of its tiles that ``status --watch`` prints and draws (:func:`tile_map`, one orientation).

Safe while workers are busy: it lists the tiles and records, reads the records there are and
the ends of the workers' journals, looks at the claims only of the attempts in flight there,
and probes the lock only of a job claimed from another host (a probe is a non-blocking try,
released at once; in lease mode it only looks at the lease's marker).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from jobrunner import labels
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
                f"its process is stopped (Ctrl-Z or SIGSTOP), and holds the job until it goes on: `fg` in its "
                f"terminal or `kill -CONT {self.pid}` resumes it; `kill {self.pid}; kill -CONT {self.pid}` ends it "
                "and gives the job back"
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
    # The latest tiles (from the ends of the journals): what a tile takes now, for "overdue".
    durations = [attempt.seconds for _, attempt in spool.finished_attempts(tail=True) if attempt.seconds is not None]
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
        elif status.state == FAILED:
            report.failed.append(FailedJob(status.id, len(record.attempts) if record else 0, status.why_failed()))
    return report


def is_overdue(age: float, median_tile_seconds: float | None) -> bool:
    if median_tile_seconds is None:
        return False
    return age > max(OVERDUE_FACTOR * median_tile_seconds, OVERDUE_MIN_SECONDS)


def _state_map(plan, states: dict[str, str]) -> list[list[str]]:
    """Each tile's state over the plan's first two axes: ``[i][j]`` for the tile ``i`` along the
    first axis and ``j`` along the second (one column on a 1-D grid).  Tiles that differ only
    along further axes share a square: failed if any failed, else running if any runs, else
    pending if any is, else done.  Views draw :func:`tile_map`, which orients this."""
    first, second = plan.tiling[0], plan.tiling[1] if len(plan.tiling) > 1 else 1
    found: list[list[set]] = [[set() for _ in range(second)] for _ in range(first)]
    for tile in plan.tiles():
        found[tile.index[0]][tile.index[1] if len(tile.index) > 1 else 0].add(states.get(tile.id, PENDING))
    return [[next(s for s in MAP_PRECEDENCE if s in square) for square in row] for row in found]


@dataclass(frozen=True)
class TileMap:
    """The tiles' states as every view draws them (the terminal's map and ``tiles.png``), oriented
    as the stitched figure is: the plan's first axis across, left to right, and its second axis up,
    bottom to top.  So ``rows`` come top row first, as a terminal prints them: ``rows[0][0]`` is the
    tile at the start of the first axis and at the end of the second.

    ``columns`` and ``rows_at`` are where the squares' edges fall, as cell indices of the grid: along
    the first axis left to right, along the second top to bottom (on a 1-D grid, one row: 1 to 0)."""

    rows: list[list[str]]
    columns: list[int]
    rows_at: list[int]
    across: str  # the first axis, with its unit
    up: str  # the second axis, with its unit ("" on a 1-D grid)


def tile_map(plan, states: dict[str, str]) -> TileMap:
    squares = _state_map(plan, states)  # [along the first axis][along the second]
    rows = [[column[j] for column in squares] for j in reversed(range(len(squares[0])))]
    edges = [_tile_edges(plan, axis) for axis in range(min(2, len(plan.tiling)))]
    up = labels.axis_label(plan, 1) if len(edges) > 1 else ""
    return TileMap(rows, edges[0], edges[1][::-1] if len(edges) > 1 else [1, 0], labels.axis_label(plan, 0), up)


def _tile_edges(plan, axis: int) -> list[int]:
    """Where the tiles along ``axis`` start, and where the last one stops, as cell indices."""
    bounds = sorted({tile.bounds[axis] for tile in plan.tiles()})
    return [start for start, _ in bounds] + [bounds[-1][1]]
