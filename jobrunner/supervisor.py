"""The lab's Task 3, and its cluster forms: run the jobs on a ``concurrent.futures`` executor.

Data flow::

    parent: scan the spool -> submit(job) for each claimable job -> as_completed -> .result()
                                   |                                          ^
    pool process, MPI rank         +--> attempt_job(spool, id)  (claim, compute, publish, record)
    or Dask worker:                          returns a small Outcome, never the array

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

from collections.abc import Callable
from concurrent.futures import TimeoutError as FuturesTimeout

from jobrunner.errors import JobRunnerError
from jobrunner.executors import open_executor
from jobrunner.records import FAILED
from jobrunner.spool import Spool
from jobrunner.worker import FAILED_FOR_GOOD, WILL_RETRY, Outcome, Progress, Run, WorkSummary, close_timed_out

#: A pool that breaks this many times in a row without finishing a tile is a problem to report.
MAX_BROKEN_POOLS = 5


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
    if job_timeout is not None and job_timeout <= 0:
        raise JobRunnerError(f"--job-timeout must be a positive number of seconds, got {job_timeout:g}")
    engine = open_executor(executor, spool, workers, scheduler, job_timeout)
    run = Run(spool, retries, retry_failed, on_progress)
    pending = [] if run.stopped else run.claimable()
    broken_in_a_row = 0
    try:
        while pending:
            engine.size_for(len(pending))
            futures = {engine.submit(job_id, retries): job_id for job_id in pending}
            run.report()  # after the first submit: a process pool has forked by now
            timed_out: list[str] = []
            try:
                remaining = set(futures)
                while remaining:
                    try:
                        for future in engine.as_completed(remaining, timeout=_check_interval(job_timeout)):
                            remaining.discard(future)
                            outcome = future.result()
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
                        run.record(Outcome(job_id, FAILED_FOR_GOOD if closed.state == FAILED else WILL_RETRY))
                if timed_out:
                    continue  # our own doing, not a pool that keeps breaking
                broken_in_a_row += 1
                if broken_in_a_row >= MAX_BROKEN_POOLS:
                    raise JobRunnerError(
                        f"the worker pool broke {broken_in_a_row} times in a row (processes killed or out of "
                        "memory): see `jobrunner status`, try fewer --workers"
                    ) from None
                run.claimed_any = True
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
