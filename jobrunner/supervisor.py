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
"""

from __future__ import annotations

from collections.abc import Callable

from jobrunner.errors import JobRunnerError
from jobrunner.executors import open_executor
from jobrunner.spool import Spool
from jobrunner.worker import Progress, Run, WorkSummary

#: A pool that breaks this many times in a row without finishing a tile is a problem to report.
MAX_BROKEN_POOLS = 5


def supervise(
    spool: Spool,
    workers: int | None = None,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    executor: str = "process",
    scheduler: str | None = None,
) -> WorkSummary:
    """Drain the spool on ``executor`` (process: ``workers`` processes here; mpi; dask at ``scheduler``)."""
    run = Run(spool, retries, retry_failed, on_progress)
    pending = [] if run.stopped else spool.claimable()
    if not pending:
        return run.finish()
    engine = open_executor(executor, spool, workers, scheduler)
    broken_in_a_row = 0
    try:
        while pending:
            engine.size_for(len(pending))
            futures = [engine.submit(job_id, retries) for job_id in pending]
            run.report()  # after the first submit: a process pool has forked by now
            try:
                for future in engine.as_completed(futures):
                    outcome = future.result()
                    broken_in_a_row = 0 if outcome.claimed else broken_in_a_row
                    run.record(outcome)
            except engine.broken:
                engine.renew()
                broken_in_a_row += 1
                if broken_in_a_row >= MAX_BROKEN_POOLS:
                    raise JobRunnerError(
                        f"the worker pool broke {broken_in_a_row} times in a row (processes killed or out of "
                        "memory): see `jobrunner status`, try fewer --workers"
                    ) from None
                run.claimed_any = True
            if not run.another_pass():
                break
            pending = spool.claimable()
    except BaseException:
        engine.stop()
        raise
    engine.close()
    return run.finish()
