"""The lab's Task 3, and its cluster forms: run the jobs on a ``concurrent.futures`` executor.

Data flow::

    parent: scan the spool -> submit(batch) for the claimable jobs -> as_completed -> .result()
                                   |                                            ^
    pool process, MPI rank         +--> attempt_job(spool, id) for each job of the batch
    or Dask worker:                     (claim, compute, publish, record): small Outcomes, never arrays

A batch is one job, unless tiles are quick: the executor costs the parent about 0.3 ms of CPU per
future here, so a future per millisecond tile would nearly double the run (two pool processes
and the parent share two cores).  Then a batch holds about :data:`BATCH_SECONDS` of tiles,
judged by the tiles finished so far (on a new spool, a first wave of one job per worker times
them), and there are still at least :data:`BATCHES_PER_WORKER` futures per worker.

The executor is a local ``ProcessPoolExecutor`` by default, or MPI or Dask
(:mod:`jobrunner.executors`).  Whichever it is, the same claim protocol as ``jobrunner work``
runs underneath, so hand-started workers, a Slurm array and supervisors can drain one spool at
the same time and no job is done twice.  A pool process that dies (``BrokenProcessPool``) costs
a new pool, not the run: its job's lock died with it, so the job is claimable again.  Ctrl-C
cancels what has not started and stops the jobs in flight where the executor can (see
:mod:`jobrunner.executors`); finished tiles stay.  ``jobrunner drain`` makes every job not yet
started come back ``stopped`` without being tried, and the supervisor ends after its pass.

``--job-timeout`` (process executor): the parent looks at the claims of the jobs in flight every
second or so, and SIGKILLs a pool process whose job has run past the timeout (a stuck kernel may
never return to Python, so nothing gentler is sure to work).  That breaks the pool, as any death
does; the other jobs in flight are stopped and left claimable, the parent records the stuck
attempt as ``timed-out`` (counted against ``--retries``) and carries on with a new pool.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from concurrent.futures import TimeoutError as FuturesTimeout

from jobrunner.errors import JobRunnerError
from jobrunner.executors import open_executor
from jobrunner.records import FAILED
from jobrunner.spool import Spool
from jobrunner.stopping import MAX_DURATION
from jobrunner.vocabulary import AttemptResult
from jobrunner.worker import Outcome, Progress, Run, WorkSummary, close_timed_out

#: A pool that breaks this many times in a row without finishing a tile is a problem to report.
MAX_BROKEN_POOLS = 5

#: Seconds of tiles per future when tiles are quick: enough to hide the future's own cost, short
#: enough that progress still moves smoothly and a Ctrl-C leaves little to redo.
BATCH_SECONDS = 0.05
#: At least this many futures per worker, so that the workers' last batches end together.
BATCHES_PER_WORKER = 4
#: A new spool with more jobs than this per worker runs one job per worker first, to time them.
FIRST_WAVE_ABOVE = 32


def batch_size(jobs: int, workers: int, durations: list[float]) -> int:
    """Jobs per future for a pass over ``jobs`` jobs, given the durations of tiles finished so far."""
    if not durations:
        return 1
    typical = statistics.median(durations)
    by_time = int(BATCH_SECONDS / typical) if typical > 0 else jobs
    return max(1, min(by_time, jobs // (workers * BATCHES_PER_WORKER)))


def batches(job_ids: list[str], size: int) -> list[list[str]]:
    return [job_ids[start : start + size] for start in range(0, len(job_ids), size)]


def supervise(
    spool: Spool,
    workers: int | None = None,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    job_timeout: float | None = None,
    executor: str = "process",
    scheduler: str | None = None,
) -> WorkSummary:
    """Drain the spool on ``executor`` (process: ``workers`` processes here; mpi; dask at ``scheduler``).

    ``job_timeout``: seconds after which a job's pool process is ended and the job put back.
    """
    if job_timeout is not None and not 0 < job_timeout <= MAX_DURATION:  # nan and inf too: it would never fire
        raise JobRunnerError(f"--job-timeout must be a positive number of seconds, up to a year, got {job_timeout:g}")
    engine = open_executor(executor, spool, workers, scheduler, job_timeout)
    run = Run(spool, retries, retry_failed, on_progress)
    pending = [] if run.stopped else run.claimable()
    broken_in_a_row, timed_a_first_wave = 0, False
    try:
        while pending:
            engine.size_for(len(pending))
            workers, later = max(1, engine.workers), []  # a Dask cluster may have no workers yet
            if not (timed_a_first_wave or run.durations) and len(pending) > workers * FIRST_WAVE_ABOVE:
                pending, later = pending[:workers], pending[workers:]  # time a few tiles first
                timed_a_first_wave = True
            size = batch_size(len(pending), workers, run.durations)
            futures: dict = {}
            timed_out: list[str] = []
            try:
                # Inside the try: a pool process killed while the batches are still being
                # submitted breaks the pool under submit() itself.
                for batch in batches(pending, size):
                    futures[engine.submit(batch, retries)] = batch
                run.report()  # after the first submit: a process pool has forked by now
                remaining = set(futures)
                while remaining:
                    try:
                        for future in engine.as_completed(remaining, timeout=_check_interval(job_timeout)):
                            remaining.discard(future)
                            for outcome in future.result():
                                broken_in_a_row = 0 if outcome.claimed else broken_in_a_row
                                run.record(outcome)
                    except FuturesTimeout:  # only with a job timeout: time to look for stuck jobs
                        timed_out += engine.end_overdue(futures, remaining, job_timeout)
            except engine.broken:
                # A pool process died (killed, out of memory, or ended by us for its timeout).  Its
                # lock died with it, so its job is claimable again; open a new pool and go on.
                engine.renew()
                for job_id in timed_out:
                    why = f"ran past --job-timeout {job_timeout:g} s; its pool process was ended"
                    closed = close_timed_out(spool, job_id, why, retries)
                    if closed is not None:
                        run.record(
                            Outcome(
                                job_id,
                                AttemptResult.FAILED_FOR_GOOD if closed.state == FAILED else AttemptResult.WILL_RETRY,
                            )
                        )
                if timed_out:
                    pending += later  # the whole pass again, on a new pool
                    continue  # our own doing, not a pool that keeps breaking
                broken_in_a_row += 1
                if broken_in_a_row >= MAX_BROKEN_POOLS:
                    raise JobRunnerError(
                        f"the worker pool broke {broken_in_a_row} times in a row (processes killed or out of "
                        "memory): see `jobrunner status`, try fewer --workers"
                    ) from None
                run.claimed_any = True
            if later and not run.stopped:  # the rest of this pass, in batches sized by the first wave
                pending = later
                continue
            if not run.another_pass():
                break
            pending = run.claimable()
    except BaseException:
        engine.stop()
        raise
    engine.close()
    return run.finish()


def _check_interval(job_timeout: float | None) -> float | None:
    """How often to look for stuck jobs: often enough to end one soon after its timeout."""
    return None if job_timeout is None else min(1.0, job_timeout / 4)
