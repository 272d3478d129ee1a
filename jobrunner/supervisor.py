"""The lab's Task 3: run the jobs under ``concurrent.futures.ProcessPoolExecutor``.

Data flow::

    parent: scan the spool -> submit(run_job, id) for each claimable job -> as_completed -> .result()
                                   |                                               ^
    pool process:                  +--> attempt_job(spool, id)  (claim, compute, publish, record)
                                                         returns a small Outcome, never the array

The pool processes run the same claim protocol as ``jobrunner work``, so hand-started workers
can drain the same spool at the same time and no job is done twice.  A pool process that dies
(``BrokenProcessPool``) costs a new pool, not the run: its job's lock died with it, so the job
is claimable again.  Ctrl-C cancels what has not started and stops the jobs in flight, which
record the attempt as interrupted and become claimable again; finished tiles stay.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from jobrunner import worker
from jobrunner.errors import JobRunnerError
from jobrunner.spool import Spool
from jobrunner.worker import Outcome, Progress, Run, WorkSummary, attempt_job

#: A pool that breaks this many times in a row without finishing a tile is a problem to report.
MAX_BROKEN_POOLS = 5

_spool_in_this_process: Spool | None = None


def _start_pool_process(spool_dir: str, outputs_dir: str) -> None:
    """Initializer of each pool process: open the spool once; let the parent decide about Ctrl-C."""
    global _spool_in_this_process
    worker.LAUNCHED_BY = f"supervise {os.getppid()}"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for us
    signal.signal(signal.SIGTERM, _exit_now)
    _spool_in_this_process = Spool.open(spool_dir, outputs_dir)


def _exit_now(signum, frame):
    # Once only: when the first stopped process exits, the executor sees a broken pool and sends
    # SIGTERM to every process again, which must not cut this one's clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds attempt_job, which records the attempt as interrupted


def run_job(job_id: str, retries: int) -> Outcome:
    """What a pool process runs for one job (module level, so it pickles)."""
    assert _spool_in_this_process is not None, "pool process started without _start_pool_process"
    try:
        return attempt_job(_spool_in_this_process, job_id, retries)
    except SystemExit as stop:
        # Told to stop: the attempt is recorded as interrupted by now.  Exit at once rather than go
        # back to the pool's call queue, which may still hold jobs queued before the cancel.
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def fork_context():
    """fork where there is one: pool processes start in milliseconds and inherit NumPy already imported.

    The pool forks all its processes at its first submit, before any progress thread exists.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _new_pool(spool: Spool, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=fork_context(),
        initializer=_start_pool_process,
        initargs=(str(spool.paths.spool), str(spool.paths.outputs)),
    )


def supervise(
    spool: Spool,
    workers: int,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> WorkSummary:
    """Drain the spool with a pool of ``workers`` processes; return what happened."""
    if workers < 1:
        raise JobRunnerError(f"--workers must be at least 1, got {workers}")
    run = Run(spool, retries, retry_failed, on_progress)
    pending = spool.claimable()
    pool: ProcessPoolExecutor | None = None
    broken_in_a_row = 0
    try:
        while pending:
            if pool is None:
                pool = _new_pool(spool, min(workers, len(pending)))
            futures = [pool.submit(run_job, job_id, retries) for job_id in pending]
            run.report()  # after the first submit: the pool has forked by now
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    broken_in_a_row = 0 if outcome.claimed else broken_in_a_row
                    run.record(outcome)
            except BrokenProcessPool:
                # A pool process died (killed, out of memory).  Its lock died with it, so its job
                # is claimable again; open a new pool and go on with whatever is left.
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
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
        if pool is not None:
            _stop_in_flight(pool)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return run.finish()


def _stop_in_flight(pool: ProcessPoolExecutor) -> None:
    """Cancel queued jobs and stop running ones; each records its attempt as interrupted."""
    # The executor has no public way to stop a running call; its own process table (stable since
    # Python 3.2) names exactly its processes, and no other child of ours.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
