"""Where the time went: every attempt of every job, per worker, from the records and live claims.

This answers the lab's question "why was the parallel run not N times faster?": a worker's
busy fraction shows idle time (start-up, waiting for the last tiles), and the load imbalance
(slowest worker's busy time over the mean) shows uneven tiles.  It reads only what workers
write anyway, so it works while the spool is still draining.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from jobrunner.records import Attempt
from jobrunner.spool import JobStatus, Spool
from jobrunner.vocabulary import AttemptOutcome


@dataclass
class WorkerTimeline:
    host: str
    pid: int
    via: str
    attempts: list[tuple[str, Attempt]] = field(default_factory=list)  # (job id, attempt)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def busy(self, now: float) -> float:
        return sum((a.ended or now) - a.started for _, a in self.attempts)

    @property
    def tiles_done(self) -> int:
        return sum(a.outcome == AttemptOutcome.DONE for _, a in self.attempts)


@dataclass
class RunTimeline:
    workers: list[WorkerTimeline]
    start: float
    end: float  # the last attempt's end, or now while attempts are running
    running: int

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-9)

    def busy_fraction(self, worker: WorkerTimeline) -> float:
        return worker.busy(self.end) / self.span

    @property
    def imbalance(self) -> float | None:
        """Slowest worker's busy time over the mean: 1.0 is perfectly even."""
        busy = [w.busy(self.end) for w in self.workers]
        return max(busy) / statistics.mean(busy) if busy and statistics.mean(busy) > 0 else None


def timeline(spool: Spool, statuses: list[JobStatus] | None = None) -> RunTimeline:
    """Every attempt so far, grouped by the worker that made it, in order of first start.

    ``statuses`` is a fresh :meth:`Spool.statuses` reading, if the caller has one already.
    """
    now = time.time()
    by_worker: dict[tuple[str, int], WorkerTimeline] = {}
    running = 0
    for status in spool.statuses() if statuses is None else statuses:
        attempts = [(status.id, a) for a in (status.record.attempts if status.record else [])]
        if status.claim is not None:
            attempts.append((status.id, status.claim))
            running += 1
        for job_id, attempt in attempts:
            key = (attempt.host, attempt.pid)
            if key not in by_worker:
                by_worker[key] = WorkerTimeline(attempt.host, attempt.pid, attempt.via)
            by_worker[key].attempts.append((job_id, attempt))
    workers = sorted(by_worker.values(), key=lambda w: min(a.started for _, a in w.attempts))
    starts = [a.started for w in workers for _, a in w.attempts]
    ends = [a.ended or now for w in workers for _, a in w.attempts]
    return RunTimeline(workers, min(starts, default=now), max(ends, default=now), running)
