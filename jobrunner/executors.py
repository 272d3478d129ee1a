"""The engines ``supervise`` can run jobs on, each through its ``concurrent.futures`` interface.

=========  ==========================================================  ==========================
name       the executor                                                its workers
=========  ==========================================================  ==========================
process    ``concurrent.futures.ProcessPoolExecutor`` (forked)          ``--workers`` processes here
mpi        ``mpi4py.futures.MPIPoolExecutor``, under                   the other ranks: ``-n`` - 1
           ``mpiexec -n N python -m mpi4py.futures -m jobrunner ...``
dask       ``distributed.Client`` of a running Dask scheduler           whatever workers it has
=========  ==========================================================  ==========================

Every executor runs :func:`jobrunner.worker.attempt_job` on the far side, so the claim protocol
is the same under all of them.  A future carries a batch of jobs, run one after another: one
job each, unless tiles are quick enough for the futures themselves to cost more than the tiles
(see :func:`jobrunner.supervisor.batch_size`).  The process pool opens the spool once per process in its
initializer; MPI ranks and Dask workers are separate programs started by someone else, so
they get :func:`run_jobs`, a module-level function given the spool's folders, which opens the
spool itself (once per process).  mpi4py and distributed are imported only when asked for.

How each one stops on Ctrl-C or SIGTERM: the process pool stops the jobs in flight, which
record their attempt as interrupted; MPI and Dask cannot stop a running call, so they cancel
what has not started and let the tiles in flight finish on their workers.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from jobrunner.errors import JobRunnerError
from jobrunner.spool import Spool
from jobrunner.worker import Outcome, attempt_job

EXECUTORS = ("process", "mpi", "dask")


class Executor:
    """What ``supervise`` needs of an engine: submit a batch of jobs, collect their outcomes, stop."""

    name = ""
    #: Exceptions from ``result()`` that mean the engine lost a worker: start afresh, the run goes on.
    broken: tuple[type[BaseException], ...] = ()

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    @property
    def workers(self) -> int:
        raise NotImplementedError

    def size_for(self, jobs: int) -> None:
        """Told before each pass how many jobs it will get."""

    def submit(self, job_ids: list[str], retries: int) -> Future:
        """A future of the batch's outcomes, in order."""
        raise NotImplementedError

    def as_completed(self, futures: Iterable, timeout: float | None = None) -> Iterable:
        return as_completed(futures, timeout=timeout)

    def end_overdue(self, futures: dict[Future, list[str]], remaining: set[Future], job_timeout: float) -> list[str]:
        """End the jobs in flight that ran past ``job_timeout`` (``--job-timeout``); their ids."""
        return []

    def renew(self) -> None:
        """After a ``broken`` error: a new pool for what is left."""

    def stop(self) -> None:
        """Ctrl-C or an error: cancel what has not started; stop what runs, where the engine can."""

    def close(self) -> None:
        """The normal end: every future has its result."""


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
        return ProcessExecutor(spool, (os.cpu_count() or 1) if workers is None else workers)
    if name == "mpi":
        return MPIExecutor(spool)
    return DaskExecutor(spool, scheduler)


def _missing(extra: str, module: str, error: ImportError) -> JobRunnerError:
    return JobRunnerError(
        f"--executor {extra} needs {module}, which does not import here ({error}): pip install 'jobrunner[{extra}]'"
    )


# -- what MPI ranks and Dask workers run ------------------------------------------------------------
_opened: dict[tuple[str, str], Spool] = {}


def run_jobs(spool_dir: str, plan_id: str, lock: str, job_ids: list[str], retries: int, via: str) -> list[Outcome]:
    """A batch of jobs, in a process that opens the spool itself (module level, so it pickles by name).

    It opens the supervisor's plan by its id, never whatever plan is current by then: a process
    started after a replace is one more straggler of the old plan, fenced like any other.
    """
    key = (spool_dir, plan_id)
    if key not in _opened:
        _opened[key] = Spool.open(spool_dir, None, lock, plan_id=plan_id)
    return [attempt_job(_opened[key], job_id, retries, via) for job_id in job_ids]


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


def _exit_now(signum, frame):
    # Once only: when the first stopped process exits, the executor sees a broken pool and sends
    # SIGTERM to every process again, which must not cut this one's clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds attempt_job, which records the attempt as interrupted


def run_pool_jobs(job_ids: list[str], retries: int) -> list[Outcome]:
    """What a pool process runs for a batch of jobs (module level, so it pickles)."""
    assert _spool_in_this_process is not None, "pool process started without _start_pool_process"
    if isinstance(_spool_in_this_process, JobRunnerError):
        raise _spool_in_this_process
    try:
        return [attempt_job(_spool_in_this_process, job_id, retries, _via_in_this_process) for job_id in job_ids]
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


class ProcessExecutor(Executor):
    name = "process"
    broken = (BrokenProcessPool,)

    def __init__(self, spool: Spool, workers: int) -> None:
        if workers < 1:
            raise JobRunnerError(f"--workers must be at least 1, got {workers}")
        verdict = descriptor_verdict(workers, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if verdict is not None:
            raise JobRunnerError(f"a pool of {workers} processes {verdict}, or use fewer --workers")
        super().__init__(spool)
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

    def submit(self, job_ids: list[str], retries: int) -> Future:
        if self._pool is None:
            paths = self.spool.paths
            self._pool = ProcessPoolExecutor(
                max_workers=self._size,
                mp_context=fork_context(),
                initializer=_start_pool_process,
                initargs=(str(paths.spool), paths.plan_id, self.spool.choose_locking().mode),
            )
        return self._pool.submit(run_pool_jobs, job_ids, retries)

    def end_overdue(self, futures: dict[Future, list[str]], remaining: set[Future], job_timeout: float) -> list[str]:
        """SIGKILL the pool process of each job in flight that has run past ``job_timeout``; their ids."""
        ours = set(getattr(self._pool, "_processes", {}))  # the pool's pids (see stop)
        ended = []
        now = time.time()
        for future in remaining:
            if not future.running():  # queued: not started in any process yet
                continue
            for job_id in futures[future]:  # the batch's job in flight is the one a pool process claims
                claim = self.spool.read_claim(job_id)
                if claim is not None and claim.pid in ours:
                    if now - claim.started > job_timeout:
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
class MPIExecutor(Executor):
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

    def submit(self, job_ids: list[str], retries: int) -> Future:
        paths = self.spool.paths
        return self._pool.submit(
            run_jobs, str(paths.spool), paths.plan_id, self.spool.choose_locking().mode, job_ids, retries, "mpi"
        )

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- dask: a running Dask cluster --------------------------------------------------------------------
class DaskExecutor(Executor):
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

    def submit(self, job_ids: list[str], retries: int) -> Future:
        paths = self.spool.paths
        # pure=False: the same job submitted again (another pass) must run again, not reuse a result.
        lock = self.spool.choose_locking().mode
        return self._client.submit(
            run_jobs, str(paths.spool), paths.plan_id, lock, job_ids, retries, "dask", pure=False
        )

    def as_completed(self, futures: Iterable, timeout: float | None = None) -> Iterator:
        return self._distributed.as_completed(futures)  # no job timeout here: open_executor refuses one

    def stop(self) -> None:
        self._client.close()

    def close(self) -> None:
        self._client.close()
