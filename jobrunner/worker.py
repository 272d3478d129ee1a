"""A worker: claim jobs from a spool one at a time, compute their tiles, record the outcome.

:func:`attempt_job` is one pass of the protocol in :mod:`jobrunner.spool` over one job; both
``jobrunner work`` (:func:`work`) and the supervisor's pool processes call it, so every way of
running workers drains the same spool under the same rules.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from jobrunner.compute import compute_tile
from jobrunner.errors import JobRunnerError
from jobrunner.identity import versions
from jobrunner.locking import Hold
from jobrunner.paths import writer_tag
from jobrunner.records import DONE, FAILED, Attempt, JobRecord
from jobrunner.spool import JobStatus, Spool, UnreadableRecord
from jobrunner.stopping import DRAINING, Deadline, drain_requested, next_tile_fits, overrun_message
from jobrunner.vocabulary import RESULTS, AttemptOutcome, AttemptResult


@dataclass(frozen=True)
class Outcome:
    """What one call of :func:`attempt_job` came to (:data:`jobrunner.vocabulary.RESULTS` says what each means)."""

    job_id: str
    result: AttemptResult
    seconds: float = 0.0
    error: str | None = None

    @property
    def claimed(self) -> bool:
        """Whether this worker ran an attempt (so the spool changed because of it)."""
        return RESULTS[self.result].claimed


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
    done: int = 0  # done in the whole spool at the end
    done_here: int = 0  # tiles this worker (or this supervisor's pool) computed
    failed: list[str] = field(default_factory=list)  # jobs left failed for good
    busy: int = 0  # claims skipped because another worker held the job
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped claiming before the spool was finished

    @property
    def ok(self) -> bool:
        return not self.failed


def launcher(via: str | None = None) -> str:
    """How this worker was started, for the records: a Slurm array task says which; else ``via``,
    which the executors give (``supervise <pid>``, an MPI rank, a Dask worker); else ``work``, and
    a terminal says so."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is not None:
        return f"slurm {os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{task}"
    if via is not None:
        return via
    if sys.stdin is not None and sys.stdin.isatty():
        return "work (terminal)"
    return "work"


def attempt_job(spool: Spool, job_id: str, retries: int = 2, via: str | None = None) -> Outcome:
    """Try to claim ``job_id`` and, if we get it, run one attempt (steps 1-9 of the protocol).

    ``via``: how this process was started, when an executor started it (see :func:`launcher`).

    Not while the spool is being drained: every way of running workers comes through here, so
    this one look at the drain file stops them all between tiles.  Not for a plan that is no
    longer the spool's, nor with kernel code other than the plan's: both raise, one line each.
    """
    if drain_requested(spool.paths):
        return Outcome(job_id, AttemptResult.STOPPED)
    spool.check_current()  # step 0: courtesy, not the fence (a replaced plan's paths lead only to its own folders)
    spool.check_code()
    try:
        record = spool.read_record(job_id)
    except UnreadableRecord as error:  # this job only: the others go on
        return Outcome(job_id, AttemptResult.FAILED_ELSEWHERE, error=str(error))
    if record is not None and record.state in (DONE, FAILED):
        return Outcome(job_id, AttemptResult.DONE_ELSEWHERE if record.state == DONE else AttemptResult.FAILED_ELSEWHERE)
    with spool.claim(job_id) as hold:
        if hold is None:
            return Outcome(job_id, AttemptResult.BUSY)
        try:
            record = spool.read_record(job_id) or spool.new_record(job_id)  # look again: it may be done by now
        except UnreadableRecord as error:
            return Outcome(job_id, AttemptResult.FAILED_ELSEWHERE, error=str(error))
        orphan = close_orphan_claim(spool, record, lambda claim: record.close_lost(claim, time.time(), LOST_WHY))
        if record.state == DONE:
            return Outcome(job_id, AttemptResult.DONE_ELSEWHERE)
        if record.state == FAILED:
            return Outcome(
                job_id,
                AttemptResult.FAILED_FOR_GOOD if orphan else AttemptResult.FAILED_ELSEWHERE,
                error=record.last_error,
            )
        return _run_attempt(spool, record, hold, retries, launcher(via))


LOST_WHY = "its worker died (killed, out of memory, crashed) or its lease ran out during this attempt"


def close_orphan_claim(spool: Spool, record: JobRecord, close: Callable[[Attempt], None]) -> Attempt | None:
    """Step 4, under the job's lock: close the attempt a previous holder left in flight, if any.

    ``close`` records how that attempt ended (lost, timed out); its half-written files go.
    """
    orphan = spool.read_claim(record.id)
    if orphan is None:
        return None
    spool.remove_partials(record.id, orphan.writer)
    # A holder killed between recording its attempt and clearing its claim left a claim naming
    # an attempt the record already has: that one finished, and is not closed a second time.
    finished = any((a.host, a.pid, a.started) == (orphan.host, orphan.pid, orphan.started) for a in record.attempts)
    if record.state not in (DONE, FAILED) and not finished:
        close(orphan)
        spool.write_record(record)
    spool.write_claim(record.id, None)
    return orphan


def close_timed_out(spool: Spool, job_id: str, why: str, retries: int) -> JobRecord | None:
    """Record as timed out the attempt a process ended for its timeout left behind; the new record.

    None if the job is held by a live worker again, or nothing was left in flight.
    """
    with spool.claim(job_id) as hold:
        if hold is None:
            return None
        record = spool.read_record(job_id) or spool.new_record(job_id)
        orphan = close_orphan_claim(
            spool, record, lambda claim: record.close_timed_out(claim, time.time(), why, retries)
        )
        return record if orphan is not None else None


def _run_attempt(spool: Spool, record: JobRecord, hold: Hold, retries: int, via: str) -> Outcome:
    job_id = record.id
    attempt = record.next_attempt(
        socket.gethostname(), os.getpid(), time.time(), via, code=spool.code_here, versions=versions()
    )
    started = time.perf_counter()

    def conclude(result: AttemptResult, error: str | None = None) -> Outcome:
        lost = hold.lost()
        if lost is not None:  # another worker holds the job now: the record and the claim are its own
            spool.remove_partials(job_id, attempt.writer)
            return Outcome(job_id, AttemptResult.LEASE_LOST, time.perf_counter() - started, f"result dropped: {lost}")
        spool.write_record(record)
        spool.write_claim(job_id, None)
        return Outcome(job_id, result, time.perf_counter() - started, error)

    try:
        spool.write_claim(job_id, attempt)  # inside the try: a signal during this write is cleaned up too
        try:
            tile = spool.load_spec(job_id)
        except JobRunnerError as error:  # a bad spec fails the same way every time: no retries
            record.fail(attempt, time.time(), str(error), traceback.format_exc(), retries, permanent=True)
            return conclude(AttemptResult.FAILED_FOR_GOOD, str(error))
        try:
            values = compute_tile(spool.plan, tile)
        except Exception as error:  # the kernel's failure is the job's, recorded with its traceback
            message = f"{type(error).__name__}: {error}"
            record.fail(attempt, time.time(), message, traceback.format_exc(), retries)
            return conclude(
                AttemptResult.FAILED_FOR_GOOD if record.state == FAILED else AttemptResult.WILL_RETRY, message
            )
        if hold.lost() is not None:
            return conclude(AttemptResult.LEASE_LOST)
        checksum = spool.publish_tile(job_id, values)
        record.finish(attempt, time.time(), checksum)
        return conclude(AttemptResult.DONE_HERE)
    except BaseException as error:  # Ctrl-C, SIGTERM, a disk that refuses the tile: leave the job claimable
        if attempt not in record.attempts:
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                record.interrupt(attempt, time.time(), _why_stopped(error))
            else:
                record.abandon(attempt, time.time(), _why_stopped(error))
            spool.remove_partials(job_id, attempt.writer)
            try:
                conclude(AttemptResult.WILL_RETRY)
            except JobRunnerError:
                pass  # the spool's disk refuses the record too: the error being raised says what to fix
            spool.remove_empty_scratch()  # this worker stops here: leave no empty folders behind
        raise


def _why_stopped(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGTERM); the job was left for another worker"
    if isinstance(error, SystemExit):
        return (
            "stopped by its supervisor (Ctrl-C, or --job-timeout on another job); the job was left for another worker"
        )
    return str(error) if isinstance(error, JobRunnerError) else f"{type(error).__name__}: {error}"


class Run:
    """One drain of a spool, by a worker or by a supervisor: its totals, the bookkeeping of each
    pass over the claimable jobs, and the rule for when to stop.

    Passes repeat while a pass claimed something (a failed job may be retried, a dead worker's
    job may have come free); a pass that claimed nothing ends the run, unless a job was busy
    with nobody working on it (see :func:`wait_for_brief_holders`).
    """

    def __init__(
        self, spool: Spool, retries: int, retry_failed: bool, on_progress, deadline: Deadline | None = None
    ) -> None:
        check_retries(retries)
        self.spool, self.on_progress, self.deadline = spool, on_progress, deadline
        self.started = time.perf_counter()
        spool.check_current()
        spool.check_code()  # a worker with another version of the kernel claims nothing
        spool.check_outputs()
        spool.choose_locking()  # chosen (or checked against the spool's) before anything is claimed
        if retry_failed:
            spool.requeue_failed()
        statuses = spool.statuses(probe_locks=False)
        spool.prepare_outputs(jobs_done=sum(s.state == DONE for s in statuses))
        self.progress = Progress(len(statuses), sum(s.state == DONE for s in statuses))
        self.summary = WorkSummary(self.progress.total)
        self.summary.stopped = DRAINING if drain_requested(spool.paths) else None
        # How long a tile takes, for the deadline: every finished attempt in the spool, then ours.
        self.durations = [
            a.seconds
            for s in statuses
            if s.record
            for a in s.record.attempts
            if a.outcome == AttemptOutcome.DONE and a.seconds
        ]
        # Each look at the whole spool reads every record, so none is wasted: this one serves the
        # first pass, and the one that finds nothing left to claim serves the final totals.
        self._unused_scan: list[JobStatus] | None = statuses
        self._last_scan: list[JobStatus] | None = None
        self.rounds_waited = 0
        self._new_pass()

    @property
    def stopped(self) -> bool:
        return self.summary.stopped is not None

    def time_for_another(self) -> bool:
        """Before a claim: would the next tile finish before the deadline?  If not, the run stops."""
        if self.deadline is not None and not self.stopped:
            if not next_tile_fits(time.time(), self.deadline, self.durations):
                self.summary.stopped = overrun_message(self.deadline, self.durations)
        return not self.stopped

    def claimable(self) -> list[str]:
        """The jobs to try in the next pass, judged from the records (a held one is skipped at claim time)."""
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
            self.summary.stopped = DRAINING
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
        self.summary.failed = [s.id for s in final if s.state == FAILED]
        if self.summary.done == self.summary.total:
            self.spool.sweep_partials()
        else:
            self.spool.remove_empty_scratch()
        self.summary.seconds = time.perf_counter() - self.started
        return self.summary


def work(
    spool: Spool,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    deadline: Deadline | None = None,
) -> WorkSummary:
    """Drain the spool in this process until nothing is left to claim, a drain is asked, or the
    next tile would not finish before ``deadline`` (see :mod:`jobrunner.stopping`)."""
    run = Run(spool, retries, retry_failed, on_progress, deadline)
    run.report()
    while not run.stopped:
        for job_id in _rotated(run.claimable()):
            if not run.time_for_another():
                break
            run.record(attempt_job(spool, job_id, retries))
            if run.stopped:
                break
        if not run.another_pass():
            break
    return run.finish()


def _rotated(job_ids: list[str]) -> list[str]:
    """The jobs in plan order, starting from a place of this worker's own.

    Workers started together would otherwise all try the same job first, and then the next: on
    every job but one the lock attempt fails, which costs about as much as a successful one.
    """
    if not job_ids:
        return job_ids
    start = zlib.crc32(writer_tag().encode()) % len(job_ids)
    return job_ids[start:] + job_ids[:start]


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
        if record is not None and record.state in (DONE, FAILED):
            continue
        claim = spool.read_claim(job_id)
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
