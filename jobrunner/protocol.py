"""The protocol: one attempt at one job, step by step, and what SIGKILL at each step leaves behind.

Every way of running workers (``jobrunner work``, a pool process of ``supervise``, an MPI rank,
a Dask worker, a Slurm array task) calls :func:`attempt_job` for each job, so they all drain one
spool under the same rules and may do so at the same time.  The steps below are numbered in the
code as here.  The layout of the files named is in :mod:`jobrunner.paths`; how a plan is
published, replaced and fenced is :mod:`jobrunner.publish`'s; how a job is held (a flock, or a
lease) is :mod:`jobrunner.locking`'s, behind one contract, :class:`jobrunner.locking.Claim`;
where files are written before they are published, and who removes a dead writer's, is
:mod:`jobrunner.scratch`'s.

A job's state is derived (:func:`jobrunner.records.job_state`) from its tile, its record and its
claim: done while its tile is in place; failed if its record says so; running while a claim's
worker is alive; anything else is pending, including a claim whose worker died.  A job's hot
path makes one file, its tile: ``plan`` made its spec and its lock file, and what the worker says
goes into the worker's own journal (:mod:`jobrunner.journal`); a record is written only for an
attempt that does not end done.

Steps of one attempt                                      what SIGKILL here leaves
---------------------------------------------------------  -------------------------------------
0. Not while the spool is drained, nor after the run's     nothing
   deadline; stop if our plan is no longer the spool's or
   this process's kernel code is not the plan's.  (Before
   its first claim a run chose the spool's lock mode:
   :meth:`Spool.choose_locking`.)
1. Skip a job whose tile is in place (a hint: step 3       nothing
   looks again).
2. Take the job's lock without waiting; held: move on.     nothing: the kernel drops a dead
                                                           process's flock; a dead worker's
                                                           lease is taken over
3. Look again: its tile may be in place by now.  Read its  nothing
   record, if it has one (a failed job's, or one with
   failures to count); a record that cannot be read fails
   that job alone.  (The run's scan refused a missing
   records folder; one deleted since fails the record's
   write, naming it.)
4. Close an orphan: a claim left by a holder that died     nothing new
   (or lost its lease) is recorded ``lost`` in the job's
   record, unless the tile is in place (its worker
   finished and died before step 9) or the record
   already has that attempt; its writer's partial files
   go; the claim is cleared.  Then a done or failed job
   ends here.
5. Announce this attempt in the claim, and append a line   a claim: the next holder's step 4
   that says it started to this worker's journal.         closes it
6. Load and validate the spec; compute the tile.           the same
7. Lease mode: if the job is no longer ours, drop the      a partial file: the next holder's
   result and write nothing.  Write the tile in our         step 4 removes it
   scratch, hashing its bytes.
8. Append the done line, with the tile's checksum, to      a done line for a tile not in place,
   the journal.                                            and its partial: the job is pending;
                                                           the next holder's step 4 records the
                                                           attempt lost (the record is what
                                                           counts) and removes the partial
9. ``os.replace`` the tile into place: the job is done.    done, and a claim naming a finished
   Clear the claim; release the lock.                      attempt: see below

A claim left after step 9's rename is stale, not harmful: step 1 skips a done job without
taking its lock, a worker that takes it anyway (step 3 of a run that looked before the rename)
only clears it (step 4: the tile is in place, so nothing is recorded), ``status`` looks at
claims only of jobs not done, and when ``reduce`` puts back a job whose tile is damaged it
clears the claim as it removes the tile.

An attempt that does not end done is written into the job's record, replaced atomically: a
kernel that raises fails the attempt (``--retries`` more tries, then the job is failed); an
invalid spec fails the job at once.  A tile that cannot be written (a full disk: ENOSPC, EFBIG;
a read-only folder: EROFS) ends the attempt ``abandoned``, with the folder and the error in the
record; the job stays claimable and the worker stops, with one line that says which folder.
SIGTERM (``scancel``, a Slurm walltime) and Ctrl-C end the attempt ``interrupted``: its partial
files go, its claim is cleared, its lock released; the job is claimable again at once.  (A
signal after the tile's rename ends nothing: the attempt finished.)

Lease mode, and why computing a tile twice is harmless: a lease can run out while its holder
still runs, so two workers may compute one tile.  A tile is deterministic and is published by
one atomic replace; the late holder checks its lease before writing the tile and before
writing a record, and drops its result when the lease is gone (its successor recorded that
attempt as ``lost`` when it took over).  A holder that loses its lease between that check and
its replace publishes the same bits again, with a done line of its own.

Rules: only the holder of a job's lock writes the job's record, claim or tile; only its own
process writes a journal.  Nothing is written or removed through a symbolic link, at its own
name or in place of any folder on the way (:mod:`jobrunner.folders`).  Records, tiles and
lease claims are published by ``os.replace`` from the writer's scratch, so no reader sees a
half-written one; a journal line is one ``write`` to an ``O_APPEND`` file (a reader skips a
torn last line); a flock-mode claim is written in place into the held lock file, through the
descriptor that holds the lock (a reader tolerates a torn one).  Lock files are never deleted
while their plan is the spool's: unlinking a lock file another process has open splits waiters
across two inodes.  Tiles are not fsynced: ``reduce`` checks every tile against the checksums
its done lines gave, and puts back a job whose tile is damaged by removing the tile; a tile no
line gives a checksum for (its journal lost) it computes again, and keeps if the bytes agree
(see :mod:`jobrunner.stitch`).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from jobrunner.compute import compute_tile
from jobrunner.errors import JobRunnerError
from jobrunner.identity import versions
from jobrunner.locking import Claim
from jobrunner.records import DONE, FAILED, Attempt, JobRecord
from jobrunner.spool import Spool, UnreadableRecord
from jobrunner.stopping import drain_requested
from jobrunner.vocabulary import RESULTS, AttemptResult
from jobrunner.writer import Writer, launched_via


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


#: Why an attempt found orphaned by step 4 ended.
LOST_WHY = "its worker died (killed, out of memory, crashed) or its lease ran out during this attempt"


def attempt_job(
    spool: Spool, job_id: str, retries: int = 2, via: str | None = None, claim_until: float | None = None
) -> Outcome:
    """Try to claim ``job_id`` and, if we get it, run one attempt (steps 0-9).

    ``via``: how this process was started, when an executor started it (see
    :func:`jobrunner.writer.launched_via`).  ``claim_until``: a time (seconds since the epoch)
    after which no job is claimed, set by the run's deadline (see :mod:`jobrunner.stopping`).
    """
    # Step 0.  Every way of running comes through here, so this one look at the drain file stops
    # them all between tiles, and a deadline reaches the processes of every executor.
    if drain_requested(spool.paths):
        return Outcome(job_id, AttemptResult.STOPPED)
    if claim_until is not None and time.time() > claim_until:
        return Outcome(job_id, AttemptResult.PAST_DEADLINE)
    spool.check_current()  # courtesy, not the fence: a replaced plan's paths lead only to its own folders
    spool.check_code()
    # Step 1: a hint (step 3 looks again under the lock).
    if spool.tile_in_place(job_id):
        return Outcome(job_id, AttemptResult.DONE_ELSEWHERE)
    # Step 2.
    with spool.claim(job_id) as claim:
        if claim is None:
            return Outcome(job_id, AttemptResult.BUSY)
        # Step 3.
        done = spool.tile_in_place(job_id)
        try:
            # Most jobs have no record: the run's look at the whole spool saw its folder (a record
            # written into a folder deleted since fails to write, naming it), not one lookup per job.
            record = spool.read_record(job_id, folder_seen=True) or spool.new_record(job_id)
        except UnreadableRecord as error:
            return Outcome(job_id, AttemptResult.FAILED_ELSEWHERE, error=str(error))
        if record.state == DONE and not done:  # a record of a spool planned before journals, its tile gone
            record.requeue()
        # Step 4.
        orphan = close_orphan(spool, claim, record, done, lambda lost: record.close_lost(lost, time.time(), LOST_WHY))
        if done:
            return Outcome(job_id, AttemptResult.DONE_ELSEWHERE)
        if record.state == FAILED:
            return Outcome(
                job_id,
                AttemptResult.FAILED_FOR_GOOD if orphan else AttemptResult.FAILED_ELSEWHERE,
                error=record.last_error,
            )
        return _run_attempt(spool, claim, record, retries, Writer.this_process(launched_via(via)))


def close_orphan(spool: Spool, claim: Claim, record: JobRecord, done: bool, close) -> Attempt | None:
    """Step 4, holding the job: close the attempt a previous holder left in flight, if any.

    ``close(attempt)`` records how that attempt ended (lost, timed out); its writer's half-written
    files go, and the claim is cleared.  ``done``: the job's tile is in place.
    """
    orphan = claim.orphan()
    if orphan is None:
        return None
    spool.scratch.remove_leftovers(record.id, orphan.writer)
    # A holder killed after its tile's rename (step 9) left a claim naming an attempt that
    # finished; one killed after writing a failure's record, an attempt the record already has:
    # neither is closed a second time.  (One killed between its done line and its rename did not
    # finish: no tile is in place, and the attempt is lost.)
    finished = any((a.host, a.pid, a.started) == (orphan.host, orphan.pid, orphan.started) for a in record.attempts)
    if not done and record.state != FAILED and not finished:
        close(orphan)
        spool.write_record(record)
    claim.clear()
    return orphan


def close_timed_out(spool: Spool, job_id: str, why: str, retries: int) -> JobRecord | None:
    """Record as timed out the attempt a process ended for its timeout left behind; the new record.

    None if the job is held by a live worker again, or nothing was left in flight.
    """
    with spool.claim(job_id) as claim:
        if claim is None:
            return None
        record = spool.read_record(job_id) or spool.new_record(job_id)
        orphan = close_orphan(
            spool,
            claim,
            record,
            spool.tile_in_place(job_id),
            lambda ended: record.close_timed_out(ended, time.time(), why, retries),
        )
        return record if orphan is not None else None


def _run_attempt(spool: Spool, claim: Claim, record: JobRecord, retries: int, writer: Writer) -> Outcome:
    """Steps 5-9, holding the job."""
    job_id = record.id
    attempt = record.next_attempt(
        writer.host, writer.pid, time.time(), writer.via, code=spool.code_here, versions=versions()
    )
    started = time.perf_counter()

    def conclude(result: AttemptResult, error: str | None = None) -> Outcome:
        lost = claim.lost()
        if lost is not None and result is AttemptResult.DONE_HERE:  # placed, with its done line: the same bits
            return Outcome(job_id, result, time.perf_counter() - started)  # the claim is the new holder's
        if lost is not None:  # another worker holds the job now: the record and the claim are its own
            spool.scratch.remove_leftovers(job_id, writer)
            return Outcome(job_id, AttemptResult.LEASE_LOST, time.perf_counter() - started, f"result dropped: {lost}")
        if result is not AttemptResult.DONE_HERE:
            spool.write_record(record)  # an attempt that did not end done: its record (step 8's other branch)
        claim.clear()  # step 9; the lock is released as the `with` of step 2 ends
        return Outcome(job_id, result, time.perf_counter() - started, error)

    def said_done(checksum: str) -> None:  # step 8, between writing the tile and renaming it into place
        spool.journal.done(job_id, attempt, time.time(), checksum)

    try:
        claim.announce(attempt)  # step 5, inside the try: a signal during this write is cleaned up too
        spool.journal.started(job_id, attempt)
        # Step 6.
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
        # Step 7.
        if claim.lost() is not None:
            return conclude(AttemptResult.LEASE_LOST)
        spool.publish_tile(job_id, values, before_placing=said_done)  # steps 7-9: write, say done, rename
        return conclude(AttemptResult.DONE_HERE)  # step 9: the claim cleared
    except BaseException as error:  # Ctrl-C, SIGTERM, a disk that refuses the tile: leave the job claimable
        # Not if the attempt ended already: recorded failed, or its tile renamed into place (a
        # signal between the rename and step 9 must not record a finished attempt interrupted).
        if attempt not in record.attempts and not _placed(spool, job_id):
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                record.interrupt(attempt, time.time(), _why_stopped(error))
            else:
                record.abandon(attempt, time.time(), _why_stopped(error))
            spool.scratch.remove_leftovers(job_id, writer)
            try:
                conclude(AttemptResult.WILL_RETRY)
            except JobRunnerError:
                pass  # the spool's disk refuses the record too: the error being raised says what to fix
            spool.scratch.remove_empty()  # this worker stops here: leave no empty folders behind
        raise


def _placed(spool: Spool, job_id: str) -> bool:
    """Whether the job's tile is in place, for an attempt being cut short: an error looking must
    not hide the one that cut it short."""
    try:
        return spool.tile_in_place(job_id)
    except (OSError, JobRunnerError):
        return False


def _why_stopped(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGTERM); the job was left for another worker"
    if isinstance(error, SystemExit):
        return (
            "stopped by its supervisor (Ctrl-C, or --job-timeout on another job); the job was left for another worker"
        )
    return str(error) if isinstance(error, JobRunnerError) else f"{type(error).__name__}: {error}"
