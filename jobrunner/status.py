"""What a spool holds right now: counts by state, what is running where, why jobs failed.

Safe while workers are busy: it reads records and lock files, and probes the lock only of a job
claimed from another host (a probe is a non-blocking try, released at once).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from jobrunner.records import DONE, FAILED, PENDING, RUNNING
from jobrunner.spool import Spool
from jobrunner.stopping import drain_requested


@dataclass(frozen=True)
class RunningJob:
    id: str
    host: str
    pid: int
    seconds: float
    via: str  # how its worker was started: work, supervise, mpi, dask, slurm JOBID_TASK


@dataclass(frozen=True)
class FailedJob:
    id: str
    attempts: int
    error: str


@dataclass
class SpoolStatus:
    total: int
    counts: Counter = field(default_factory=Counter)
    running: list[RunningJob] = field(default_factory=list)
    failed: list[FailedJob] = field(default_factory=list)
    draining: bool = False  # `jobrunner drain` asked every worker to stop after its tile

    @property
    def finished(self) -> bool:
        return self.counts[DONE] == self.total


def spool_status(spool: Spool) -> SpoolStatus:
    statuses = spool.statuses()
    report = SpoolStatus(len(statuses), Counter({PENDING: 0, RUNNING: 0, DONE: 0, FAILED: 0}))
    report.draining = drain_requested(spool.paths)
    now = time.time()
    for status in statuses:
        report.counts[status.state] += 1
        record, claim = status.record, status.claim
        if status.state == RUNNING and claim is not None:
            report.running.append(RunningJob(status.id, claim.host, claim.pid, now - claim.started, claim.via))
        elif status.state == FAILED and record is not None:
            last_line = (record.last_error or "no error recorded").strip().splitlines()[-1]
            report.failed.append(FailedJob(status.id, len(record.attempts), last_line))
    return report
