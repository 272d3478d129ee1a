"""The one drain loop: pass over the claimable jobs on an executor until nothing is left to claim.

``jobrunner work`` and ``jobrunner supervise`` are this loop on different executors
(:mod:`jobrunner.executors`): ``work`` on the inline executor, which runs each job in this
process; ``supervise`` on a process pool, MPI ranks or a Dask cluster.  So every way of running
stops the same way (``jobrunner drain``, ``--max-time``, the Slurm job's end: see
:mod:`jobrunner.stopping`), waits the same way for jobs held briefly by someone else, and ends
with the same totals and clean-up.  How a pass is cut into futures (batches, a first wave that
times the tiles, job timeouts, a pool that breaks) is each executor's business.

Data flow::

    drain: Run scans the records -> engine.run_pass(jobs, run) -> Outcomes -> run.record(outcome)
                                          |                                        ^
    this process, a pool process,        +--> attempt_job(spool, id, ...) per job (jobrunner.protocol):
    an MPI rank or a Dask worker              claim, compute, publish, record; small Outcomes, never arrays

Passes repeat while a pass claimed something (a failed job may be retried, a dead worker's job
may have come free); a pass that claimed nothing ends the run, unless a job was busy with nobody
working on it (see :func:`wait_for_brief_holders`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobrunner.errors import JobRunnerError
from jobrunner.executors import Executor, InlineExecutor, open_executor
from jobrunner.protocol import Outcome
from jobrunner.records import DONE, FAILED
from jobrunner.spool import JobStatus, Spool, UnreadableRecord
from jobrunner.stopping import (
    MAX_DURATION,
    ClaimLimit,
    Deadline,
    drain_requested,
    draining_message,
    next_tile_fits,
    overrun_message,
)
from jobrunner.vocabulary import RESULTS, AttemptResult


@dataclass
class Progress:
    """The running totals a progress display needs, reported after every job."""

    total: int
    done: int
    failed: int = 0
    last: Outcome | None = None


@dataclass
class WorkSummary:
    total: int
    done_at_start: int = 0  # done in the whole spool when the run began
    done: int = 0  # done in the whole spool at the end
    done_here: int = 0  # tiles this worker (or this supervisor's pool) computed
    failed: dict[str, str] = field(default_factory=dict)  # jobs left failed for good: id -> its last error
    busy: int = 0  # claims skipped because another worker held the job
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped claiming before the spool was finished

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def already_finished(self) -> bool:
        """Every tile was done before this run began: it had nothing to do."""
        return self.done_at_start == self.total and not self.failed


class Run:
    """One drain of a spool: its totals, the bookkeeping of each pass, and the rule for when to stop."""

    def __init__(
        self, spool: Spool, retries: int, retry_failed: bool, on_progress, deadline: Deadline | None = None
    ) -> None:
        check_retries(retries)
        self.spool, self.retries, self.on_progress, self.deadline = spool, retries, on_progress, deadline
        self.started = time.perf_counter()
        spool.check_current()
        spool.check_code()  # a worker with another version of the kernel claims nothing
        spool.check_outputs()
        spool.choose_locking()  # chosen (or checked against the spool's) before anything is claimed
        if retry_failed:
            spool.requeue_failed()
        statuses = spool.statuses(probe_locks=False)
        # How long a tile takes, for the deadline and the batches: the latest finished attempts, then ours.
        finished = spool.finished_attempts(tail=True)
        self.durations = [attempt.seconds for _, attempt in finished if attempt.seconds]
        # Jobs said done whose tiles are not in place: a tiles folder moved away, never made again.
        spool.prepare_outputs(jobs_done=max(sum(s.state == DONE for s in statuses), len({job for job, _ in finished})))
        self.progress = Progress(len(statuses), sum(s.state == DONE for s in statuses))
        self.summary = WorkSummary(self.progress.total, done_at_start=self.progress.done)
        self.summary.stopped = draining_message(spool.paths) if drain_requested(spool.paths) else None
        # No look at the whole spool is wasted: this one serves the first pass, and the one that
        # finds nothing left to claim serves the final totals.
        self._unused_scan: list[JobStatus] | None = statuses
        self._last_scan: list[JobStatus] | None = None
        self.rounds_waited = 0
        self._new_pass()

    @property
    def stopped(self) -> bool:
        return self.summary.stopped is not None

    def claim_limit(self) -> ClaimLimit | None:
        """The deadline as the processes of an executor judge it before each claim (None: no deadline)."""
        if self.deadline is None:
            return None
        return ClaimLimit(self.deadline.at, statistics.median(self.durations) if self.durations else None)

    def time_for_another(self) -> bool:
        """Before a claim: would the next tile finish before the deadline?  If not, the run stops."""
        if self.deadline is None or self.stopped:
            return not self.stopped
        if not next_tile_fits(time.time(), self.deadline, self.durations):
            self.summary.stopped = overrun_message(self.deadline, self.durations)
        return not self.stopped

    def claimable(self) -> list[str]:
        """The jobs to try in the next pass, judged from the tiles and records (a held one is skipped at claim time)."""
        scan, self._unused_scan = self._unused_scan, None
        if scan is None:
            scan = self.spool.statuses(probe_locks=False)
        claimable = [s.id for s in scan if s.state not in (DONE, FAILED)]
        self._last_scan = None if claimable else scan  # nothing left: these are the final totals
        return claimable

    def _new_pass(self) -> None:
        self.claimed_any, self.busy = False, []

    def report(self) -> None:
        if self.on_progress:
            self.on_progress(self.progress)

    def record(self, outcome: Outcome) -> None:
        self.claimed_any |= outcome.claimed
        if outcome.result == AttemptResult.BUSY:
            self.busy.append(outcome.job_id)
        elif outcome.result == AttemptResult.STOPPED and not self.stopped:
            self.summary.stopped = draining_message(self.spool.paths)
        elif outcome.result == AttemptResult.PAST_DEADLINE and not self.stopped:
            self.summary.stopped = overrun_message(self.deadline, self.durations)
        elif outcome.result == AttemptResult.DONE_HERE:
            self.durations.append(outcome.seconds)
        tally(outcome, self.progress, self.summary)
        self.report()

    def another_pass(self) -> bool:
        """At the end of a pass: is another one worth it?"""
        if self.stopped:
            return False
        if self.claimed_any:
            self.rounds_waited = 0
        elif wait_for_brief_holders(self.spool, self.busy, self.rounds_waited):
            self.rounds_waited += 1
        else:
            return False
        self._new_pass()
        return True

    def finish(self) -> WorkSummary:
        """The spool-wide totals at the end: every job done, or which ones failed."""
        final = self._last_scan if self._last_scan is not None else self.spool.statuses(probe_locks=False)
        self.summary.done = sum(s.state == DONE for s in final)
        self.summary.failed = {s.id: s.why_failed() for s in final if s.state == FAILED}
        if self.summary.done == self.summary.total:
            self.spool.scratch.sweep()
        else:
            self.spool.scratch.remove_empty()
        self.summary.seconds = time.perf_counter() - self.started
        return self.summary


def drain(
    spool: Spool,
    engine: Executor,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    deadline: Deadline | None = None,
) -> WorkSummary:
    """Drain the spool on ``engine`` until nothing is left to claim, a drain is asked, or the next
    tile would not finish before ``deadline``; the engine is closed (or stopped, on an error) at the end."""
    try:
        run = Run(spool, retries, retry_failed, on_progress, deadline)
        run.report()
        while run.time_for_another():
            jobs = run.claimable()
            if not jobs:
                break
            for outcome in engine.run_pass(jobs, run):
                run.record(outcome)
            if not run.another_pass():
                break
    except BaseException:
        engine.stop()
        raise
    engine.close()
    return run.finish()


def work(
    spool: Spool,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    deadline: Deadline | None = None,
) -> WorkSummary:
    """Drain the spool in this process (``jobrunner work``): the drain loop on the inline executor."""
    return drain(spool, InlineExecutor(spool), retries, retry_failed, on_progress, deadline)


def supervise(
    spool: Spool,
    workers: int | None = None,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    job_timeout: float | None = None,
    executor: str = "process",
    scheduler: str | None = None,
    deadline: Deadline | None = None,
) -> WorkSummary:
    """Drain the spool on ``executor`` (process: ``workers`` processes here; mpi; dask at ``scheduler``).

    ``job_timeout``: seconds after which a job's pool process is ended and the job put back.
    """
    if job_timeout is not None and not 0 < job_timeout <= MAX_DURATION:  # nan and inf too: it would never fire
        raise JobRunnerError(f"--job-timeout must be a positive number of seconds, up to a year, got {job_timeout:g}")
    check_retries(retries)
    engine = open_executor(executor, spool, workers, scheduler, job_timeout)
    return drain(spool, engine, retries, retry_failed, on_progress, deadline)


#: How long to wait, in one round, for a lock held by something other than a running attempt.
BRIEF_HOLD_WAIT = 2.0
#: Rounds of that wait before a worker leaves such a job to others.
BRIEF_HOLD_ROUNDS = 5


def wait_for_brief_holders(spool: Spool, busy: list[str], rounds_waited: int) -> bool:
    """After a pass that claimed nothing: is another pass worth it?

    A job can be busy without anyone working on it: ``status`` or ``reduce`` holding its lock for
    a moment, or a worker between its claim and its record.  Leaving such a job would strand it,
    so wait (on the lock itself, not a timer) until it is free and try again.  A job whose holder
    is provably alive is left to it.  In lease mode a holder on another machine is not (its node
    may be gone), nor a marker that names no live process here (a worker killed while making it):
    wait for its tile, or for its lease to run out and take the job over.
    """
    briefly_held, maybe_dead = [], []
    for job_id in busy:
        try:
            record = spool.read_record(job_id)
        except UnreadableRecord:
            continue
        if spool.tile_in_place(job_id) or (record is not None and record.state == FAILED):
            continue
        claim = spool.locks.read_claim(job_id)
        if claim is None and spool.locks.holder_is_provably_live(job_id):
            briefly_held.append(job_id)
        elif claim is None or not spool.locks.owner_is_provably_live(claim):
            maybe_dead.append(job_id)  # wait for it to finish, or for its lease to run out and take it over
    if maybe_dead:
        time.sleep(min(spool.locking.lease_seconds / 3, 5.0))
        return True
    if not briefly_held or rounds_waited >= BRIEF_HOLD_ROUNDS:
        return False
    for job_id in briefly_held:
        spool.wait_for_lock(job_id, timeout=BRIEF_HOLD_WAIT)
    return True


def tally(outcome: Outcome, progress: Progress, summary: WorkSummary) -> None:
    meaning = RESULTS[outcome.result]
    progress.last = outcome
    progress.done += meaning.done
    progress.failed += meaning.failed
    summary.done_here += meaning.computed_here
    summary.busy += outcome.result is AttemptResult.BUSY


def check_retries(retries: int) -> None:
    if retries < 0:
        raise JobRunnerError(f"--retries must be 0 or more, got {retries}")
