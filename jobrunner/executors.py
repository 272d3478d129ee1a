"""The engines the drain loop (:mod:`jobrunner.drain`) runs jobs on, and how each cuts a pass into work.

=========  ==========================================================  ==========================
name       the executor                                                its workers
=========  ==========================================================  ==========================
inline     this process, one job after another (``jobrunner work``)    this process
process    ``concurrent.futures.ProcessPoolExecutor`` (forked)          ``--workers`` processes here
mpi        ``mpi4py.futures.MPIPoolExecutor``, under                   the other ranks: ``-n`` - 1
           ``mpiexec -n N python -m mpi4py.futures -m jobrunner ...``
dask       ``distributed.Client`` of a running Dask scheduler           whatever workers it has
=========  ==========================================================  ==========================

Every executor runs :func:`jobrunner.protocol.attempt_job` for each job, so the claim protocol
is the same under all of them.  :meth:`Executor.run_pass` takes the jobs of one pass and yields
their outcomes as they come.

The inline executor tries the jobs from a starting point of its own (:func:`rotated`), so that
hand-started workers do not all contend for the same job first, goes on half-way through the
rest when it finds a job held (:func:`away_from_its_holder`), so that it does not follow the
holder job by job, and checks the deadline before each claim.

The others submit futures through their ``concurrent.futures`` interface.  A future carries a
batch of jobs, run one after another: one job each, unless tiles are quick.  The executor costs
the parent about 0.3 ms of CPU per future here, so a future per millisecond tile would nearly
double the run (two pool processes and the parent share two cores); then a batch holds about
:data:`BATCH_SECONDS` of tiles, judged by the tiles finished so far (on a new spool, a first
wave of one job per worker times them), with still at least :data:`BATCHES_PER_WORKER` futures
per worker.  Each batch carries the last moment its jobs may be claimed (the run's deadline),
which the far side checks before each claim.  The process pool opens the spool once per process
in its initializer; MPI ranks and Dask workers are separate programs started by someone else,
so they get :func:`run_jobs`, a module-level function given the spool's folders, which opens
the spool itself (once per process).  mpi4py and distributed are imported only when asked for.

A pool process that dies (``BrokenProcessPool``) costs a new pool, not the run: its job's lock
died with it, so the job is claimable again.  ``--job-timeout`` (process executor only): the
parent looks at the claims of the jobs in flight every second or so, and SIGKILLs a pool process
whose job has run past the timeout (a stuck kernel may never return to Python, so nothing
gentler is sure to work).  That breaks the pool, as any death does; the other jobs in flight are
stopped and left claimable, the stuck attempt is recorded ``timed-out`` (counted against
``--retries``), and the pass goes on with a new pool.

How each one stops on Ctrl-C or SIGTERM: the process pool stops the jobs in flight, which
record their attempt as interrupted; MPI and Dask cannot stop a running call, so they cancel
what has not started and let the tiles in flight finish on their workers.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import resource
import signal
import statistics
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from jobrunner.cpus import usable_cpus
from jobrunner.errors import JobRunnerError
from jobrunner.protocol import Outcome, attempt_job, close_timed_out
from jobrunner.records import FAILED
from jobrunner.spool import Spool
from jobrunner.stopping import ClaimLimit
from jobrunner.vocabulary import AttemptResult
from jobrunner.writer import Writer

if TYPE_CHECKING:  # the drain loop imports this module; a Run is only passed in
    from jobrunner.drain import Run

EXECUTORS = ("process", "mpi", "dask")


class Executor:
    """What the drain loop needs of an engine: run a pass over some jobs, then close (or stop)."""

    name = ""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    @property
    def workers(self) -> int:
        raise NotImplementedError

    def run_pass(self, job_ids: list[str], run: Run) -> Iterator[Outcome]:
        """Try each of ``job_ids`` once (or until ``run`` stops); yield the outcomes as they come."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ctrl-C or an error: cancel what has not started; stop what runs, where the engine can."""

    def close(self) -> None:
        """The normal end: every job handed out has its outcome."""


# -- inline: this process ------------------------------------------------------------------------
class InlineExecutor(Executor):
    """``jobrunner work``: each job in this process, in turn, the deadline checked before each claim."""

    name = "inline"

    @property
    def workers(self) -> int:
        return 1

    def run_pass(self, job_ids: list[str], run: Run) -> Iterator[Outcome]:
        order = collections.deque(rotated(job_ids))
        while order:
            if not run.time_for_another():
                return
            outcome = attempt_job(self.spool, order.popleft(), run.retries)
            if outcome.result is AttemptResult.BUSY:
                away_from_its_holder(order)
            yield outcome
            if run.stopped:  # the drain loop has recorded the outcome by the time we resume
                return


def away_from_its_holder(order: collections.deque) -> None:
    """After a job found held: go on half-way through the jobs left to try, the half skipped
    coming last.

    Its holder is another worker going through the same jobs in the same order, which tries the
    next job as soon as it is done.  Trying the next job too, this worker would take it first,
    leaving the holder to find it held, and so on: the two would leapfrog to the end, one failed
    lock attempt per job.  Half-way on, each has a half to itself (by the time this worker comes
    back to the skipped half, the holder has done most of it, and a done job costs one lookup).
    With more workers the halving repeats.  Simulated on 2,500 jobs, failed lock attempts fell
    from about 1,500 to 2.5 with two workers, from 2,350 to 72 with four, from 5,400 to 460 with eight.
    """
    order.rotate(-(len(order) // 2))


def rotated(job_ids: list[str]) -> list[str]:
    """The jobs in plan order, starting from a place of this worker's own.

    Workers started together would otherwise all try the same job first, and then the next: on
    every job but one the lock attempt fails, which costs about as much as a successful one.
    """
    if not job_ids:
        return job_ids
    start = zlib.crc32(Writer.this_process().tag.encode()) % len(job_ids)
    return job_ids[start:] + job_ids[:start]


# -- engines with futures: batches, a first wave, job timeouts, broken pools --------------------------
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


class FuturesExecutor(Executor):
    """An engine with a ``concurrent.futures`` interface: submit batches, collect their outcomes."""

    #: Exceptions from ``result()`` that mean the engine lost a worker: start afresh, the run goes on.
    broken: tuple[type[BaseException], ...] = ()

    def __init__(self, spool: Spool, job_timeout: float | None = None) -> None:
        super().__init__(spool)
        self.job_timeout = job_timeout
        self._timed_a_first_wave = False
        self._broken_in_a_row = 0

    def size_for(self, jobs: int) -> None:
        """Told before each round of submits how many jobs it will get."""

    def submit(self, job_ids: list[str], retries: int, limit: ClaimLimit | None) -> Future:
        """A future of the batch's outcomes, in order (see :func:`run_batch`)."""
        raise NotImplementedError

    def as_completed(self, futures: Iterable, timeout: float | None = None) -> Iterable:
        return as_completed(futures, timeout=timeout)

    def end_overdue(self, futures: dict[Future, list[str]], remaining: set[Future]) -> list[str]:
        """End the jobs in flight that ran past the job timeout; their ids."""
        return []

    def renew(self) -> None:
        """After a ``broken`` error: a new pool for what is left."""

    def run_pass(self, job_ids: list[str], run: Run) -> Iterator[Outcome]:
        pending = job_ids
        while pending and run.time_for_another():
            self.size_for(len(pending))
            workers, later = max(1, self.workers), []  # a Dask cluster may have no workers yet
            if not (self._timed_a_first_wave or run.durations) and len(pending) > workers * FIRST_WAVE_ABOVE:
                pending, later = pending[:workers], pending[workers:]  # time a few tiles first
                self._timed_a_first_wave = True
            size = batch_size(len(pending), workers, run.durations)
            limit = run.claim_limit()
            futures: dict[Future, list[str]] = {}
            timed_out: list[str] = []
            try:
                # Inside the try: a pool process killed while the batches are still being
                # submitted breaks the pool under submit() itself.
                for batch in batches(pending, size):
                    futures[self.submit(batch, run.retries, limit)] = batch
                run.report()  # after the first submit: a process pool has forked by now
                remaining = set(futures)
                while remaining:
                    try:
                        for future in self.as_completed(remaining, timeout=self._check_interval()):
                            remaining.discard(future)
                            for outcome in future.result():
                                self._broken_in_a_row = 0 if outcome.claimed else self._broken_in_a_row
                                yield outcome
                    except FuturesTimeout:  # only with a job timeout: time to look for stuck jobs
                        timed_out += self.end_overdue(futures, remaining)
            except self.broken:
                # A pool process died (killed, out of memory, or ended by us for its timeout).  Its
                # lock died with it, so its job is claimable again; open a new pool and go on.
                self.renew()
                yield from self._close_timed_out(timed_out, run.retries)
                if timed_out:
                    pending += later  # the whole pass again, on a new pool
                    continue  # our own doing, not a pool that keeps breaking
                self._broken_in_a_row += 1
                if self._broken_in_a_row >= MAX_BROKEN_POOLS:
                    raise JobRunnerError(
                        f"the worker pool broke {self._broken_in_a_row} times in a row (processes killed or out of "
                        f"memory): see `{self.spool.paths.command('status')}`, try fewer --workers"
                    ) from None
                run.claimed_any = True  # the pass was cut short: another one is worth it
            pending = later  # the rest of this pass, in batches sized by the first wave

    def _close_timed_out(self, job_ids: list[str], retries: int) -> Iterator[Outcome]:
        for job_id in job_ids:  # only with a job timeout: nothing else ends a pool process on purpose
            why = f"ran past --job-timeout {self.job_timeout:g} s; its pool process was ended"
            closed = close_timed_out(self.spool, job_id, why, retries)
            if closed is not None:
                failed = closed.state == FAILED
                yield Outcome(job_id, AttemptResult.FAILED_FOR_GOOD if failed else AttemptResult.WILL_RETRY)

    def _check_interval(self) -> float | None:
        """How often to look for stuck jobs: often enough to end one soon after its timeout."""
        return None if self.job_timeout is None else min(1.0, self.job_timeout / 4)


def open_executor(
    name: str, spool: Spool, workers: int | None = None, scheduler: str | None = None, job_timeout: float | None = None
) -> Executor:
    if name not in EXECUTORS:
        raise JobRunnerError(f"--executor takes one of {', '.join(EXECUTORS)}, not {name!r}")
    if name != "process" and job_timeout is not None:
        # Ending a stuck job means killing the process that runs it, which only our own pool lets us do.
        raise JobRunnerError(f"--job-timeout is for --executor process; {name} cannot stop a running job")
    if name != "process" and workers is not None:
        raise JobRunnerError(
            f"--workers is for --executor process; with {name} the workers are "
            + ("mpiexec's ranks minus one (-n)" if name == "mpi" else "the Dask cluster's")
        )
    if name != "dask" and scheduler is not None:
        raise JobRunnerError("--scheduler is for --executor dask")
    if name == "process":
        # Not os.cpu_count(): the CPUs this process may use (taskset, a cgroup, the Slurm allocation).
        return ProcessExecutor(spool, usable_cpus().count if workers is None else workers, job_timeout)
    if name == "mpi":
        return MPIExecutor(spool)
    return DaskExecutor(spool, scheduler)


def _missing(extra: str, module: str, error: ImportError) -> JobRunnerError:
    return JobRunnerError(
        f"--executor {extra} needs {module}, which does not import here ({error}): pip install 'jobrunner[{extra}]'"
    )


# -- what MPI ranks and Dask workers run ------------------------------------------------------------
_opened: dict[tuple[str, str], Spool] = {}


def run_jobs(
    spool_dir: str, plan_id: str, lock: str, job_ids: list[str], retries: int, via: str, limit: ClaimLimit | None
) -> list[Outcome]:
    """A batch of jobs, in a process that opens the spool itself (module level, so it pickles by name).

    It opens the supervisor's plan by its id, never whatever plan is current by then: a process
    started after a replace is one more straggler of the old plan, fenced like any other.
    """
    key = (spool_dir, plan_id)
    if key not in _opened:
        _opened[key] = Spool.open(spool_dir, None, lock, plan_id=plan_id)
    return run_batch(_opened[key], job_ids, retries, via, limit)


#: How long the tiles this process computed took, by plan: its own median judges a deadline
#: before the run knew one (see :class:`jobrunner.stopping.ClaimLimit`).  By plan, because a Dask
#: worker or MPI rank outlives one run and may serve another plan's, with other tiles, next.
_durations_here: dict[str, list[float]] = {}


def run_batch(spool: Spool, job_ids: list[str], retries: int, via: str, limit: ClaimLimit | None) -> list[Outcome]:
    """The jobs of one future, one after another, in the process that runs the future."""
    outcomes, durations = [], _durations_here.setdefault(spool.plan.id, [])
    for job_id in job_ids:
        until = None if limit is None else limit.claim_until(durations)
        outcome = attempt_job(spool, job_id, retries, via, until)
        if outcome.result is AttemptResult.DONE_HERE:
            durations.append(outcome.seconds)
        outcomes.append(outcome)
    return outcomes


# -- process: a local pool ------------------------------------------------------------------------
#: A pool process's state, set once by its initializer: its plan's spool (or why it cannot be
#: opened), and how the process was started, for its attempts' records.
_spool_in_this_process: Spool | JobRunnerError | None = None
_via_in_this_process = "supervise"


def _start_pool_process(spool_dir: str, plan_id: str, lock: str) -> None:
    """Initializer of each pool process: open the parent's plan once; let the parent decide about Ctrl-C."""
    global _spool_in_this_process, _via_in_this_process
    _via_in_this_process = f"supervise {os.getppid()}"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for us
    signal.signal(signal.SIGTERM, _exit_now)
    try:
        _spool_in_this_process = Spool.open(spool_dir, None, lock, plan_id=plan_id)
    except JobRunnerError as error:  # raised by the first batch instead: an initializer's error breaks the pool
        _spool_in_this_process = error


#: Whether this pool process is running a batch of ours (else it is in the pool's own code).
_in_a_batch = False


def _exit_now(signum, frame):
    # Once only: when the first stopped process exits, the executor sees a broken pool and sends
    # SIGTERM to every process again, which must not cut this one's clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not _in_a_batch:
        # Between batches, in the pool's queues: nothing of ours to clean up, and unwinding there
        # can block for ever on a queue lock held by a sibling that was SIGKILLed (seen here: a
        # process left behind, SIGTERM ignored, holding its parent's pipes open).
        os._exit(128 + signum)
    raise SystemExit(128 + signum)  # unwinds attempt_job, which records the attempt as interrupted


def run_pool_jobs(job_ids: list[str], retries: int, limit: ClaimLimit | None) -> list[Outcome]:
    """What a pool process runs for a batch of jobs (module level, so it pickles)."""
    assert _spool_in_this_process is not None, "pool process started without _start_pool_process"
    if isinstance(_spool_in_this_process, JobRunnerError):
        raise _spool_in_this_process
    global _in_a_batch
    _in_a_batch = True
    try:
        return run_batch(_spool_in_this_process, job_ids, retries, _via_in_this_process, limit)
    except SystemExit as stop:
        # Told to stop: the attempt is recorded as interrupted by now.  Exit at once rather than go
        # back to the pool's call queue, which may still hold jobs queued before the cancel.
        os._exit(stop.code if isinstance(stop.code, int) else 1)
    finally:
        _in_a_batch = False


def fork_context():
    """fork where there is one: pool processes start in milliseconds and inherit NumPy already imported.

    The pool forks all its processes at its first submit, before any progress thread exists.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


#: Open files the parent holds per pool process (its pipes and sentinel), and for everything else.
FILES_PER_WORKER, FILES_BASE = 3, 16


def descriptor_verdict(workers: int, open_files_allowed: int) -> str | None:
    """Why a pool of ``workers`` would run out of file descriptors (``ulimit -n``), or None.

    Running out in the middle of starting a pool can hang the interpreter, so stop before.
    """
    need = FILES_BASE + FILES_PER_WORKER * workers
    if need > open_files_allowed:
        return f"would need ~{need} open files of {open_files_allowed} allowed (raise `ulimit -n`)"
    return None


class ProcessExecutor(FuturesExecutor):
    name = "process"
    broken = (BrokenProcessPool,)

    def __init__(self, spool: Spool, workers: int, job_timeout: float | None = None) -> None:
        if workers < 1:
            raise JobRunnerError(f"--workers must be at least 1, got {workers}")
        verdict = descriptor_verdict(workers, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if verdict is not None:
            raise JobRunnerError(f"a pool of {workers} processes {verdict}, or use fewer --workers")
        super().__init__(spool, job_timeout)
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._size = workers

    @property
    def workers(self) -> int:
        return self._workers

    def size_for(self, jobs: int) -> None:
        """No more processes than jobs: a pool forks them all at its first submit."""
        if self._pool is None:
            self._size = max(1, min(self._workers, jobs))

    def submit(self, job_ids: list[str], retries: int, limit: ClaimLimit | None) -> Future:
        if self._pool is None:
            paths = self.spool.paths
            self._pool = ProcessPoolExecutor(
                max_workers=self._size,
                mp_context=fork_context(),
                initializer=_start_pool_process,
                initargs=(str(paths.spool), paths.plan_id, self.spool.choose_locking().mode),
            )
        return self._pool.submit(run_pool_jobs, job_ids, retries, limit)

    def end_overdue(self, futures: dict[Future, list[str]], remaining: set[Future]) -> list[str]:
        """SIGKILL the pool process of each job in flight that has run past the job timeout; their ids."""
        ours = set(getattr(self._pool, "_processes", {}))  # the pool's pids (see stop)
        ended = []
        now = time.time()
        for future in remaining:
            if not future.running():  # queued: not started in any process yet
                continue
            for job_id in futures[future]:  # the batch's job in flight is the one a pool process claims
                claim = self.spool.locks.read_claim(job_id)
                if claim is not None and claim.pid in ours:
                    if now - claim.started > self.job_timeout:
                        os.kill(claim.pid, signal.SIGKILL)
                        ended.append(job_id)
                    break
        return ended

    def renew(self) -> None:
        # A pool process died (killed, out of memory).  Its lock died with it, so its job is
        # claimable again; the next submit opens a new pool.
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def stop(self) -> None:
        """Cancel queued jobs and stop running ones; each records its attempt as interrupted."""
        if self._pool is None:
            return
        # The executor has no public way to stop a running call; its own process table (stable since
        # Python 3.2) names exactly its processes, and no other child of ours.
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# -- mpi: the ranks of an mpiexec ------------------------------------------------------------------
class MPIExecutor(FuturesExecutor):
    name = "mpi"

    def __init__(self, spool: Spool) -> None:
        super().__init__(spool)
        try:
            from mpi4py.futures import MPIPoolExecutor
        except ImportError as error:
            raise _missing("mpi", "mpi4py", error) from None
        # Under `python -m mpi4py.futures` the pool is the other ranks of the mpiexec, already running.
        self._pool = MPIPoolExecutor()
        self._workers = self._pool.num_workers
        if self._workers < 1:
            raise JobRunnerError(
                "MPI gave this pool no workers: start it as "
                "`mpiexec -n 4 python -m mpi4py.futures -m jobrunner supervise --executor mpi` (3 workers)"
            )

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, job_ids: list[str], retries: int, limit: ClaimLimit | None) -> Future:
        paths = self.spool.paths
        lock = self.spool.choose_locking().mode
        return self._pool.submit(run_jobs, str(paths.spool), paths.plan_id, lock, job_ids, retries, "mpi", limit)

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- dask: a running Dask cluster --------------------------------------------------------------------
class DaskExecutor(FuturesExecutor):
    name = "dask"

    def __init__(self, spool: Spool, scheduler: str | None) -> None:
        super().__init__(spool)
        if not scheduler:
            raise JobRunnerError(
                "--executor dask needs the scheduler's address: --scheduler tcp://HOST:8786 "
                "(or DASK_SCHEDULER_ADDRESS); start one with `dask scheduler` and `dask worker tcp://HOST:8786`"
            )
        try:
            import distributed
        except ImportError as error:
            raise _missing("dask", "distributed", error) from None
        self._distributed = distributed
        try:
            self._client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as error:
            raise JobRunnerError(
                f"cannot reach the Dask scheduler at {scheduler} ({error}): is `dask scheduler` running there?"
            ) from None

    @property
    def workers(self) -> int:
        return len(self._client.scheduler_info().get("workers", {}))

    def submit(self, job_ids: list[str], retries: int, limit: ClaimLimit | None) -> Future:
        paths = self.spool.paths
        # pure=False: the same job submitted again (another pass) must run again, not reuse a result.
        lock = self.spool.choose_locking().mode
        return self._client.submit(
            run_jobs, str(paths.spool), paths.plan_id, lock, job_ids, retries, "dask", limit, pure=False
        )

    def as_completed(self, futures: Iterable, timeout: float | None = None) -> Iterator:
        return self._distributed.as_completed(futures)  # no job timeout here: open_executor refuses one

    def stop(self) -> None:
        self._client.close()

    def close(self) -> None:
        self._client.close()
