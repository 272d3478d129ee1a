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

``--job-timeout``: the parent looks at the claims of the jobs in flight every second or so, and
SIGKILLs a pool process whose job has run past the timeout (a stuck kernel may never return to
Python, so nothing gentler is sure to work).  That breaks the pool, as any death does; the other
jobs in flight are stopped and left claimable, the parent records the stuck attempt as
``timed-out`` (counted against ``--retries``) and carries on with a new pool.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool

from jobrunner import worker
from jobrunner.errors import JobRunnerError
from jobrunner.records import FAILED
from jobrunner.spool import Spool
from jobrunner.worker import (
    FAILED_FOR_GOOD,
    WILL_RETRY,
    Outcome,
    Progress,
    Run,
    WorkSummary,
    attempt_job,
    close_timed_out,
)

#: A pool that breaks this many times in a row without finishing a tile is a problem to report.
MAX_BROKEN_POOLS = 5

_spool_in_this_process: Spool | None = None


def _start_pool_process(spool_dir: str, outputs_dir: str, lock: str) -> None:
    """Initializer of each pool process: open the spool once; let the parent decide about Ctrl-C."""
    global _spool_in_this_process
    worker.LAUNCHED_BY = f"supervise {os.getppid()}"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for us
    signal.signal(signal.SIGTERM, _exit_now)
    _spool_in_this_process = Spool.open(spool_dir, outputs_dir, lock)


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
        initargs=(str(spool.paths.spool), str(spool.paths.outputs), spool.locking.mode),
    )


def supervise(
    spool: Spool,
    workers: int,
    retries: int = 2,
    retry_failed: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    job_timeout: float | None = None,
) -> WorkSummary:
    """Drain the spool with a pool of ``workers`` processes; return what happened.

    ``job_timeout``: seconds after which a job's pool process is ended and the job put back.
    """
    if workers < 1:
        raise JobRunnerError(f"--workers must be at least 1, got {workers}")
    if job_timeout is not None and job_timeout <= 0:
        raise JobRunnerError(f"--job-timeout must be a positive number of seconds, got {job_timeout:g}")
    run = Run(spool, retries, retry_failed, on_progress)
    pending = spool.claimable()
    pool: ProcessPoolExecutor | None = None
    broken_in_a_row = 0
    try:
        while pending:
            if pool is None:
                pool = _new_pool(spool, min(workers, len(pending)))
            futures = {pool.submit(run_job, job_id, retries): job_id for job_id in pending}
            run.report()  # after the first submit: the pool has forked by now
            timed_out: list[str] = []
            try:
                remaining = set(futures)
                while remaining:
                    try:
                        for future in as_completed(remaining, timeout=_check_interval(job_timeout)):
                            remaining.discard(future)
                            outcome = future.result()
                            broken_in_a_row = 0 if outcome.claimed else broken_in_a_row
                            run.record(outcome)
                    except FuturesTimeout:  # only with a job timeout: time to look for stuck jobs
                        timed_out += _end_overdue(spool, pool, futures, remaining, job_timeout)
            except BrokenProcessPool:
                # A pool process died (killed, out of memory, or ended by us for its timeout).  Its
                # lock died with it, so its job is claimable again; open a new pool and go on.
                pool.shutdown(wait=True, cancel_futures=True)
                pool = None
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


def _check_interval(job_timeout: float | None) -> float | None:
    """How often to look for stuck jobs: often enough to end one soon after its timeout."""
    return None if job_timeout is None else min(1.0, job_timeout / 4)


def _end_overdue(
    spool: Spool, pool: ProcessPoolExecutor, futures: dict[Future, str], remaining: set[Future], job_timeout: float
) -> list[str]:
    """SIGKILL the pool process of each job in flight that has run past ``job_timeout``; their ids."""
    ours = set(getattr(pool, "_processes", {}))  # the pool's pids (see _stop_in_flight)
    ended = []
    now = time.time()
    for future in remaining:
        if not future.running():  # queued: not started in any process yet
            continue
        job_id = futures[future]
        claim = spool.read_claim(job_id)
        if claim is not None and claim.pid in ours and now - claim.started > job_timeout:
            os.kill(claim.pid, signal.SIGKILL)
            ended.append(job_id)
    return ended


def _stop_in_flight(pool: ProcessPoolExecutor) -> None:
    """Cancel queued jobs and stop running ones; each records its attempt as interrupted."""
    # The executor has no public way to stop a running call; its own process table (stable since
    # Python 3.2) names exactly its processes, and no other child of ours.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
