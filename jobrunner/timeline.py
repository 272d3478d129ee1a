"""Where the time went: every attempt of every job, per worker, from the journals, records and live claims.

This answers the lab's question "why was the parallel run not N times faster?".  Two measures,
each over the span it is fair to:

- a worker's busy fraction is over its own lifetime, from its first claim to its last release
  (now, while it holds a tile): a worker started late, or stopped by Ctrl-C and started again as
  a new process, was not idle before it started or after it stopped.  Its start-up before the
  first claim and its last look for work after the last release leave no file, so they are not
  counted;
- the load imbalance (slowest worker's busy time over the mean) is over the run's span, from the
  first claim of any worker to the last release: it compares how much work each process did, so
  uneven tiles and a worker that did little because it lived briefly both show.

It reads only what workers write anyway, so it works while the spool is still draining.  A
``lost`` attempt ends when the next claimant found it, not when its worker died (no file says
when that was), so a worker that died is counted busy until then.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from jobrunner.records import Attempt
from jobrunner.spool import JobStatus, Spool
from jobrunner.vocabulary import AttemptOutcome


def covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the ``(start, end)`` intervals, overlaps counted once: a busy fraction
    never passes 100 %, even when a pid reused by a later process merges two workers' attempts."""
    total, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


@dataclass
class WorkerTimeline:
    host: str
    pid: int
    via: str
    attempts: list[tuple[str, Attempt]] = field(default_factory=list)  # (job id, attempt)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def intervals(self, now: float) -> list[tuple[float, float]]:
        """Each attempt's ``(start, end)``; an attempt in flight ends ``now``."""
        return [(a.started, now if a.ended is None else a.ended) for _, a in self.attempts]

    def busy(self, now: float) -> float:
        return covered(self.intervals(now))

    def lifetime(self, now: float) -> tuple[float, float]:
        """From its first claim to its last release (``now`` while an attempt is in flight)."""
        spans = self.intervals(now)
        return min(start for start, _ in spans), max(end for _, end in spans)

    def lived(self, now: float) -> float:
        first, last = self.lifetime(now)
        return last - first

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
        """Busy time over the worker's own lifetime (see the module docstring); a worker whose
        attempts took no measurable time was busy for all of it."""
        lived = worker.lived(self.end)
        return worker.busy(self.end) / lived if lived > 0 else 1.0

    @property
    def imbalance(self) -> float | None:
        """Slowest worker's busy time over the mean, within the run's span: 1.0 is perfectly even."""
        busy = [w.busy(self.end) for w in self.workers]
        return max(busy) / statistics.mean(busy) if busy and statistics.mean(busy) > 0 else None


def timeline(spool: Spool, statuses: list[JobStatus] | None = None) -> RunTimeline:
    """Every attempt so far, grouped by the worker that made it, in order of first start.

    ``statuses`` is a fresh :meth:`Spool.statuses` reading, if the caller has one already.
    """
    now = time.time()
    by_worker: dict[tuple[str, int], WorkerTimeline] = {}
    running = 0
    history = spool.history()
    for status in spool.statuses() if statuses is None else statuses:
        attempts = [(status.id, a) for a in history.get(status.id, [])]
        if status.claim is not None:
            attempts.append((status.id, status.claim))
            running += 1
        for job_id, attempt in attempts:
            key = (attempt.host, attempt.pid)
            if key not in by_worker:
                by_worker[key] = WorkerTimeline(attempt.host, attempt.pid, attempt.via)
            by_worker[key].attempts.append((job_id, attempt))
    workers = sorted(by_worker.values(), key=lambda w: w.lifetime(now)[0])
    lifetimes = [w.lifetime(now) for w in workers]
    return RunTimeline(
        workers, min((s for s, _ in lifetimes), default=now), max((e for _, e in lifetimes), default=now), running
    )
