"""The spool: one plan's jobs, their records and claims, and the outputs folder its tiles go to.

:class:`Spool` is the store the protocol (:mod:`jobrunner.protocol`) works on: it opens or
creates a plan (publishing and replacing plans is :mod:`jobrunner.publish`'s), loads and checks
specs, reads and writes records and this process's journal, takes claims through the spool's lock mode
(:mod:`jobrunner.locking`), publishes tiles through its writer's scratch
(:mod:`jobrunner.scratch`), and derives every job's state.  Where each file lives is
:mod:`jobrunner.paths`'s.

Job ids are ``tile-rRRR-cCCC`` on a 2-D grid (row and column of the tile, zero-padded so ids
sort in plan order), ``tile-III-JJJ-KKK`` (one index per axis) on a grid of other dimensions.
A spec carries its id, its plan's id and index ranges, never a path; it is validated when
loaded (well-formed id equal to its file name, its plan's id, ranges inside the grid), so no
spool file can make a worker write outside its plan's tiles folder.  A record is read only if
it names its folder's plan.  Spool files are JSON; nothing is ever unpickled.  A spool or
outputs folder that every user of the machine may write to is refused (a group may).

States (:func:`jobrunner.records.job_state`, from the tile, the record and the claim):

* done: the tile is in place (renamed there only after its worker's journal gave its checksum).
* failed: the kernel failed more than ``--retries`` times, the spec is invalid, or workers died
  on it :data:`~jobrunner.records.MAX_LOST_ATTEMPTS` times; claimed again only with
  ``--retry-failed``.
* running: a claim names an attempt and its worker is alive (the lock or lease is held).
* pending: anything else, including a claim whose worker died: claimable again at once in
  flock mode (and in lease mode on the same host), or once its lease runs out.

``status`` judges a claim on its own host by its pid, and probes the lock only for claims from
other hosts (:meth:`jobrunner.locking.JobLocks.peek`), so that looking never makes a worker
find a job busy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from jobrunner import publish
from jobrunner.compute import probe_kernel
from jobrunner.errors import JobRunnerError
from jobrunner.files import ensure_folder, ensure_folder_in, explain_write_error, refuse_world_writable
from jobrunner.folders import Tree
from jobrunner.grid import JOB_ID_PATTERN, Tile
from jobrunner.identity import code_fingerprint, new_plan_id, versions
from jobrunner.journal import TAIL_BYTES, FollowedJournals, Journal, Line, in_flight, read_lines
from jobrunner.locking import AUTO, LEASE, Choice, Claim, JobLocks, locks_for, read_choice, resolve
from jobrunner.paths import DEFAULT_OUTPUTS, SpoolPaths
from jobrunner.plan import Plan
from jobrunner.publish import Manifest, PlanReplaced
from jobrunner.records import FAILED, Attempt, JobRecord, job_state
from jobrunner.scratch import Scratch
from jobrunner.tilefile import identity, write_tile
from jobrunner.vocabulary import AttemptOutcome
from jobrunner.writer import Writer


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: str
    record: JobRecord | None
    claim: Attempt | None = None  # the live attempt, for a running job
    problem: str | None = None  # why its record cannot be read (the job then counts as failed)

    def why_failed(self) -> str:
        """For a failed job, one line: its last error (a traceback's last line), or why its record is unreadable."""
        if self.problem is not None:
            return self.problem
        error = (self.record.last_error if self.record else None) or "no error recorded"
        return error.strip().splitlines()[-1]


class UnreadableRecord(JobRunnerError):
    """One job's record cannot be read: that job is left alone (failed), the others go on."""


class Spool:
    """One plan of a spool, and the outputs folder its tiles go to.

    Every path it reads or writes is inside that plan's folders (see :mod:`jobrunner.publish`),
    so a ``Spool`` kept open after its plan was replaced can touch nothing of the new plan.
    """

    def __init__(
        self, paths: SpoolPaths, manifest: Manifest, lock: str = AUTO, lease_seconds: float | None = None
    ) -> None:
        self.paths = paths
        self.manifest = manifest
        self.plan = manifest.plan
        self.lock_request, self.lease_request = lock, lease_seconds
        #: Every folder this spool writes in, reached without following a link (jobrunner.folders).
        self.tree = Tree(paths.spool, paths.outputs)
        #: Where this process writes tiles and records before publishing them, and who cleans what.
        self.scratch = Scratch(paths, self.tree)
        #: This process's journal of the attempts it starts and finishes (jobrunner.journal).
        self.journal = Journal(paths, self.tree)
        self._locking: Choice | None = None  # chosen by choose_locking()
        self._followed: FollowedJournals | None = None  # see follow_journals()

    @cached_property
    def _job_ids(self) -> list[str]:
        return self.plan.job_ids()

    @cached_property
    def _planned(self) -> frozenset[str]:
        """The plan's job ids, for telling a job's file from anything else in its folders."""
        return frozenset(self._job_ids)

    @cached_property
    def tiles(self) -> dict[str, Tile]:
        """The plan's tiles by id, built once (10,000 tiles take 40 ms): when a spec is checked
        against its tile (a worker), and for reduce's checking and stitching."""
        return self.plan.tile_by_id()

    def choose_locking(self) -> Choice:
        """The lock mode of this spool's workers: the one recorded in the spool (checked against
        this spool's ``lock`` and ``lease_seconds``), or chosen now and recorded.  Every writer's
        first step, before any claim; readers use :meth:`locking_if_chosen`, which writes nothing."""
        if self._locking is None:
            self._locking = resolve(self.paths, self.lock_request, self.lease_request, self.tree)
        return self._locking

    @property
    def locking(self) -> Choice:
        """The lock mode :meth:`choose_locking` chose (asking before that is a bug, not a user's mistake)."""
        if self._locking is None:
            raise RuntimeError("Spool.locking read before choose_locking()")
        return self._locking

    def locking_if_chosen(self) -> Choice | None:
        """The recorded lock mode, without choosing one (None until a worker has started)."""
        return read_choice(self.paths)

    @cached_property
    def locks(self) -> JobLocks:
        """The claims of this spool's jobs, in its lock mode (a claim needs one: chosen here if not yet)."""
        return locks_for(self.paths, self.choose_locking(), self.tree)

    # -- opening and planning --------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        spool: str | os.PathLike,
        outputs: str | os.PathLike | None = None,
        lock: str = AUTO,
        lease_seconds: float | None = None,
        plan_id: str | None = None,
    ) -> Spool:
        """Open a planned spool: its current plan, or the plan ``plan_id`` (current or not).

        ``outputs``: None for the folder the plan records; another folder is refused.  ``lock``
        (auto, flock, lease) and ``lease_seconds`` are chosen once per spool, by the first to use
        its locks; later ones must agree (see :mod:`jobrunner.locking`).
        """
        paths = SpoolPaths(spool, spool)
        if not paths.spool.is_dir():
            what = "is a file, not a spool folder" if paths.spool.exists() else "does not exist"
            raise JobRunnerError(
                f"the spool {paths.spool} {what}: run `{paths.command('plan')}` first, or pass --spool with an "
                "existing one"
            )
        refuse_world_writable(paths.spool, "spool")
        manifest = publish.current(paths) if plan_id is None else publish.read_plan(paths, plan_id)
        if manifest is None:
            raise JobRunnerError(
                f"the spool {paths.spool} has no plan: run `{paths.command('plan')}` first, or pass --spool with one "
                "that has"
            )
        recorded = manifest.outputs_folder(paths.spool)
        if outputs is not None and not publish.same_folder(Path(outputs).absolute(), recorded):
            raise JobRunnerError(
                f"the spool {paths.spool} keeps its results in {recorded}, not {Path(outputs).absolute()}: "
                f"drop --outputs (and JOBRUNNER_OUTPUTS), or pass --outputs '{recorded}'"
            )
        paths = paths.for_plan(manifest.plan.id, recorded)
        if not paths.plan_copy().is_file():
            raise JobRunnerError(
                f"the spool {paths.spool} names plan {manifest.plan.id}, whose folder {paths.plan_folder()} is "
                "missing (a `jobrunner plan` killed while publishing it?): plan again, "
                f"`{paths.replan_command(manifest.plan)}`"
            )
        for folder in (paths.plans, paths.specs, paths.locks, paths.records, paths.journals):
            refuse_world_writable(folder, f"spool's {folder.name}")
        return cls(paths, manifest, lock, lease_seconds)

    @classmethod
    def create(
        cls,
        plan: Plan,
        spool: str | os.PathLike,
        outputs: str | os.PathLike | None = None,
        *,
        replace: bool = False,
        lock: str = AUTO,
    ) -> tuple[Spool, bool]:
        """Publish ``plan`` into ``spool``; return the spool and whether anything was written.

        ``outputs``: None for the folder the spool's plan records, or ``outputs`` in a new spool.
        The same plan, with the same kernel code and outputs, is a no-op.  Anything else is
        refused unless ``replace``, which always publishes a new plan (a new id, none of the old
        plan's progress) and retires the old one (see :mod:`jobrunner.publish`).
        """
        plan = probe_kernel(plan)  # with the fields the kernel returns
        plan = dataclasses.replace(plan, code=code_fingerprint(plan.kernel, plan.kernel_folder))
        folder = SpoolPaths(spool, spool).spool
        ensure_folder(folder, "spool", "--spool")
        existing, unreadable = None, False
        try:
            existing = publish.current(SpoolPaths(folder, folder))
        except JobRunnerError:
            if not replace:
                raise
            unreadable = True  # --replace mends a spool whose plan cannot be read
        if outputs is None:
            outputs = existing.outputs_folder(folder) if existing is not None else DEFAULT_OUTPUTS
        paths = SpoolPaths(folder, outputs)
        if existing is not None and not replace:
            refuse_replanning(existing, plan, paths)
            publish.bind_outputs(paths.for_plan(existing.plan.id), existing.spool_id)  # a killed plan's step 5
            return cls.open(paths.spool, None, lock), False
        created = time.time()
        manifest = Manifest(
            dataclasses.replace(plan, id=new_plan_id(created)),
            existing.spool_id if existing is not None else new_plan_id(created),
            publish.recorded_outputs(paths.spool, paths.outputs),
            Writer.this_process().tag,
            created,
            versions(),
        )
        paths = paths.for_plan(manifest.plan.id)
        publish.bind_outputs(paths, manifest.spool_id, dry_run=True)  # a plan that loses a race binds nothing
        tiles, suffix = plan.tiles(), paths.spec("").name
        specs = {tile.id + suffix: spec_json(tile, manifest.plan.id) for tile in tiles}
        locks = [tile.id + paths.lock("").name for tile in tiles]
        try:
            publish.write_plan_folder(paths, manifest, specs, locks)
            publish.publish(paths, manifest, existing, over_unreadable=unreadable)
        except BaseException as error:
            if not _is_current(paths, manifest):  # a Ctrl-C after the link must not undo a published plan
                publish.remove_plan(paths, manifest, manifest.plan.id)  # never published: nobody has seen it
            if isinstance(error, OSError):
                raise JobRunnerError(
                    f"cannot write the plan into {paths.spool}: {explain_write_error(error)}"
                ) from None
            raise
        if existing is not None:
            publish.remove_plan(paths, existing, existing.plan.id)
        publish.sweep(paths)
        publish.bind_outputs(paths, manifest.spool_id)
        return cls(paths, manifest, lock), True

    def still_current(self) -> bool:
        """Whether this spool's plan is still the spool's (see :func:`jobrunner.publish.is_current`)."""
        return publish.is_current(self.paths)

    def check_current(self) -> None:
        if not self.still_current():
            raise PlanReplaced(publish.replaced_message(self.paths))

    def check_code(self) -> None:
        """Refuse to compute with kernel code other than the plan's (edited since it was planned)."""
        here = self.code_here
        if here != self.plan.code:
            again = self.paths.replan_command(self.plan)
            raise JobRunnerError(
                f"kernel {self.plan.kernel}: its code here ({here}) is not the code plan {self.plan.id} was made "
                f"with ({self.plan.code}), so it was edited since `jobrunner plan`; this worker claims nothing: "
                f"restore the code to finish this plan, or `{again}` to compute every tile with the new code"
            )

    @cached_property
    def code_here(self) -> str:
        """The kernel's code fingerprint in this process (once per process: it reads the module's source)."""
        return code_fingerprint(self.plan.kernel, self.plan.kernel_folder)

    def check_outputs(self) -> None:
        publish.check_outputs(self.paths, self.manifest)

    def new_record(self, job_id: str) -> JobRecord:
        return JobRecord(job_id, self.plan.id)

    def prepare_outputs(self, jobs_done: int = 0) -> None:
        """Before a worker's first tile: the outputs are this spool's, and its plan's tile folder is there.

        ``jobs_done``: how many jobs are recorded done.  Their tiles' folder is then never made
        again if it is missing (moved away?): that would make every one of them look lost.
        """
        self.check_outputs()
        refuse_world_writable(self.paths.outputs, "outputs")
        if jobs_done and not self.tree.is_folder(self.paths.tiles):
            raise JobRunnerError(
                f"the tiles folder {self.paths.tiles} of plan {self.plan.id} is missing, though {jobs_done} jobs "
                "are recorded done: was it moved? Move it back before starting workers"
            )
        try:
            ensure_folder_in(self.tree, self.paths.all_tiles, "tiles")
            ensure_folder_in(self.tree, self.paths.tiles, "tiles")  # both refuse world-writable folders
        except OSError as error:
            raise JobRunnerError(
                f"cannot make the tiles folder {self.paths.tiles}: {explain_write_error(error)}"
            ) from None

    # -- jobs ------------------------------------------------------------------------------------
    @property
    def job_ids(self) -> list[str]:
        return list(self._job_ids)

    def load_spec(self, job_id: str) -> Tile:
        """The job's tile, from its spec file, checked against the plan."""
        path = self.paths.spec(job_id)
        try:
            spec = json.loads(path.read_text())
            if not isinstance(spec, dict) or set(spec) != {"id", "plan", "ranges"}:
                raise ValueError("expected exactly the keys id, plan and ranges")
            if spec["plan"] != self.plan.id:
                raise ValueError(f"it belongs to plan {spec['plan']!r}, not this spool's plan {self.plan.id}")
            if not isinstance(spec["id"], str) or not JOB_ID_PATTERN.fullmatch(spec["id"]):
                raise ValueError(f"id {spec['id']!r} is not a tile id such as tile-r000-c000")
            if spec["id"] != job_id:
                raise ValueError(f"id {spec['id']!r} does not match the file name")
            ranges, shape = spec["ranges"], self.plan.shape
            if not isinstance(ranges, list) or len(ranges) != len(shape):
                raise ValueError(f"ranges {ranges!r:.80} is not one [start, stop] per axis ({len(shape)})")
            for bounds, length, name in zip(ranges, shape, self.plan.grid.names, strict=True):
                if (
                    not isinstance(bounds, list)
                    or len(bounds) != 2
                    or not all(type(b) is int for b in bounds)
                    or not 0 <= bounds[0] < bounds[1] <= length
                ):
                    raise ValueError(f"range {bounds!r:.40} of axis {name} is not a [start, stop] inside 0..{length}")
        except (OSError, ValueError, RecursionError) as error:
            raise JobRunnerError(f"invalid job spec {path}: {error}") from None
        planned = self.tiles.get(job_id)
        if planned is None or [list(b) for b in planned.bounds] != ranges:
            raise JobRunnerError(f"invalid job spec {path}: its ranges are not the plan's tile {job_id}")
        return planned

    def read_record(self, job_id: str, folder_seen: bool = False) -> JobRecord | None:
        """The job's record; None if it has none yet.

        A missing record is told from a missing records folder (every failure forgotten:
        refused) by a look at the folder, one more lookup on the metadata server.
        ``folder_seen``: the caller's scan looked at it already, once for every job (protocol
        step 3, after its run's scan), so a missing record costs one.
        """
        path = self.paths.record(job_id)
        try:
            text = self._read_in_tree(path).decode()
        except FileNotFoundError:
            if not folder_seen:
                self._check_records_folder()
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise UnreadableRecord(f"cannot read the job record {path} ({error})") from None
        try:
            record = JobRecord.from_json(text)
            if record.id != job_id:
                raise ValueError(f"it names job {record.id!r}")
            if record.plan != self.plan.id:
                raise ValueError(f"it belongs to plan {record.plan!r}, not {self.plan.id}")
            return record
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            raise UnreadableRecord(
                f"the job record {path} is unreadable ({error}): delete it to run the job again"
            ) from None

    def _read_in_tree(self, path: Path) -> bytes:
        """A file's bytes, read through the descriptor of its folder that this process writes
        through too (so a scan, a read and a write see one folder, whatever is renamed or linked
        in its place meanwhile), never through a link at its name, never waiting on a FIFO."""
        fd = self.tree.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            return file.read()

    def _check_records_folder(self) -> None:
        if not self.tree.is_folder(self.paths.records):  # a link in its place: refused (PlantedLink)
            self.check_current()  # the usual reason: the plan was replaced and its folder removed
            raise JobRunnerError(
                f"the spool {self.paths.spool} has no records folder {self.paths.records}: its progress is lost; "
                f"plan again, `{self.paths.replan_command(self.plan)}`"
            )

    def write_record(self, record: JobRecord) -> None:
        """Replace the job's record.  Only the holder of the job's lock may call this."""
        try:
            self.scratch.publish_text(self.paths.record(record.id), record.to_json())
        except OSError as error:
            self.check_current()  # a replaced plan's folder is removed under its stragglers
            raise JobRunnerError(
                f"cannot write the job record {self.paths.record(record.id)}: {explain_write_error(error)}"
            ) from None

    # -- claims (the lock mode's business: see jobrunner.locking) ---------------------------------
    @contextmanager
    def claim(self, job_id: str) -> Iterator[Claim | None]:
        """Hold the job for the ``with`` block if nobody else does; yield the claim, or None."""
        try:
            claim = self.locks.acquire(job_id)
        except JobRunnerError:
            self.check_current()  # the lock's folder went with a replaced plan: say that, not "cannot lock"
            raise
        if claim is None:
            yield None  # someone else has it: the normal case, not an error
            return
        try:
            yield claim
        except JobRunnerError:
            self.check_current()  # a replaced plan's folders are removed under its stragglers: say that
            raise
        finally:
            self.locks.release(job_id)

    def wait_for_lock(self, job_id: str, timeout: float) -> None:
        """Block until the job's lock is free (then let it go at once), or ``timeout`` seconds pass."""
        try:
            self.locks.wait_until_free(job_id, timeout)
        except JobRunnerError:
            self.check_current()
            raise

    # -- tiles -------------------------------------------------------------------------------------
    def publish_tile(self, job_id: str, tile: np.ndarray, before_placing: Callable[[str], None]) -> str:
        """Put the tile in place atomically; the checksum of its bytes.

        ``before_placing(checksum)`` runs once the tile is written in this process's scratch and
        before it is renamed into place (protocol step 8: the journal's done line), so a tile in
        place always has its checksum said.  Not fsynced: reduce checks every tile against its
        checksum, after a crash too.
        """
        target = self.paths.tile(job_id)
        checksum = []
        try:
            self.scratch.publish(
                target,
                lambda file: checksum.append(write_tile(file, tile, self.plan.tile_dtype)),
                before_rename=lambda: before_placing(checksum[0]),
            )
        except OSError as error:
            self.check_current()
            raise JobRunnerError(
                f"cannot write tile {job_id} to {target.parent}: {explain_write_error(error)}"
            ) from None
        return checksum[0]

    # -- the whole spool ---------------------------------------------------------------------------
    def statuses(self, probe_locks: bool = True) -> list[JobStatus]:
        """Every job's state, from one listing of the tiles folder and of the records folder (and
        the records listed): a tile in place is a done job.  ``probe_locks=False`` looks at no
        claim: running jobs show as pending.  Otherwise the claims looked at are those of the
        attempts in flight at the end of the journals (:func:`jobrunner.journal.in_flight`)."""
        result = []
        self._check_records_folder()  # once, not once per job without a record
        # A snapshot, as the whole scan is: a worker decides only under the job's lock (step 3).
        in_place, recorded = self.tiles_in_place(), set(self.tree.names(self.paths.records))
        suffix = self.paths.record("").name
        flying: set[str] = set()
        if probe_locks and (mode := self.locking_if_chosen()) is not None:  # else no worker has claimed anything
            flying = set(in_flight(list(self.journal_lines(tail=True))))
            if mode.mode == LEASE:  # a claim file exists only while claimed: one listing finds them all
                flying |= self.locks.claimed_jobs()
        for job_id in self._job_ids:
            try:
                record = self.read_record(job_id, folder_seen=True) if job_id + suffix in recorded else None
            except UnreadableRecord as error:  # that job only: it is reported, and left alone
                result.append(JobStatus(job_id, FAILED, None, problem=str(error)))
                continue
            done = job_id in in_place
            claim = self.locks.peek(job_id) if job_id in flying and not done else None
            result.append(JobStatus(job_id, job_state(done, record, claim is not None), record, claim))
        return result

    def tiles_in_place(self) -> set[str]:
        """The jobs whose tile is in place: the done ones (one listing of the plan's tiles folder)."""
        suffix = self.paths.tile("").name
        try:
            names = self.tree.names(self.paths.tiles)
        except FileNotFoundError:
            return set()  # no tile yet (the folder is made by the first worker)
        return self._planned.intersection(name[: -len(suffix)] for name in names if name.endswith(suffix))

    def tile_in_place(self, job_id: str) -> bool:
        """Whether the job is done: something is at its tile's name (one lookup).  Anything: a
        FIFO, a folder or a link planted there is no tile, and ``reduce`` refuses it by name (see
        :func:`jobrunner.tilefile.open_tile`); a worker leaves it alone rather than replace it."""
        return self.tree.exists(self.paths.tile(job_id))

    def journal_lines(self, tail: bool = False, done_only: bool = False) -> Iterator[Line]:
        """What every worker's journal says (``tail``: only the ends of the journals, where the
        attempts in flight and the latest tiles are; ``done_only``: only attempts that ended done).

        With the journals followed (:meth:`follow_journals`), every line: they are all at hand."""
        if self._followed is not None:
            return iter(self._followed.lines(self.paths, self.tree, self.plan.id, done_only))
        return read_lines(self.paths, self.tree, self.plan.id, TAIL_BYTES if tail else None, done_only)

    def follow_journals(self) -> FollowedJournals:
        """From now on, each look at the journals reads only what was appended since the last, and
        keeps every line (for a reader that looks again and again: ``status --watch``)."""
        if self._followed is None:
            self._followed = FollowedJournals()
        return self._followed

    def history(self, tail: bool = False, done_lines: list[Line] | None = None) -> dict[str, list[Attempt]]:
        """Every ended attempt, by job, in order of start: those that ended done from the journals
        (``tail``: only the latest, from their ends; ``done_lines``: the journals' done lines,
        already read by the caller, which ``tail`` then does not change), the others from the records.

        An attempt said done in a journal and then recorded otherwise (lost: its worker died
        between its done line and its tile's rename) is the record's.
        """
        by_job = {record.id: list(record.attempts) for record in self.records()}
        recorded = {(job, a.host, a.pid, a.started) for job, attempts in by_job.items() for a in attempts}
        for line in self.journal_lines(tail, done_only=True) if done_lines is None else done_lines:
            if (line.job, *line.key) not in recorded:
                by_job.setdefault(line.job, []).append(line.attempt)
        for attempts in by_job.values():
            attempts.sort(key=lambda attempt: attempt.started)
        return by_job

    def finished_attempts(self, tail: bool = False, done_lines: list[Line] | None = None) -> list[tuple[str, Attempt]]:
        """(job, attempt) of every attempt that ended done (``tail``: the latest ones; ``done_lines``:
        see :meth:`history`)."""
        return [
            (job_id, attempt)
            for job_id, attempts in self.history(tail, done_lines).items()
            for attempt in attempts
            if attempt.outcome == AttemptOutcome.DONE
        ]

    def checksums(self, done_lines: list[Line] | None = None) -> dict[str, set[str]]:
        """Every checksum a finished attempt gave each job's tile: what a tile in place must match
        (from the journals, and from the records of a spool planned before journals;
        ``done_lines``: see :meth:`history`)."""
        sums: dict[str, set[str]] = {}
        for line in self.journal_lines(done_only=True) if done_lines is None else done_lines:
            sums.setdefault(line.job, set()).add(line.tile)
        for record in self.records():
            if record.tile is not None:
                sums.setdefault(record.id, set()).add(record.tile)
        return sums

    def records(self) -> list[JobRecord]:
        """The records there are (jobs with an attempt that did not end done); unreadable ones left out."""
        suffix, found = self.paths.record("").name, []
        for name in self.tree.names(self.paths.records):
            job_id = name[: -len(suffix)]
            if name.endswith(suffix) and job_id in self._planned:
                with suppress(UnreadableRecord):
                    record = self.read_record(job_id, folder_seen=True)
                    if record is not None:
                        found.append(record)
        return found

    # -- putting jobs back -------------------------------------------------------------------------
    def requeue(self, job_id: str, bad_tile: bool = False, checked: tuple[int, ...] | None = None) -> bool:
        """Make a job claimable again (under its lock), with a fresh allowance of retries; False if
        a worker holds it now.  ``bad_tile``: its tile is proven bad (reduce), so it goes: a job is
        done while its tile is in place.  ``checked``: the identity of the file found bad
        (:func:`jobrunner.tilefile.identity`); another one in its place since is left alone."""
        with self.claim(job_id) as claim:
            if claim is None:
                return False
            try:
                record = self.read_record(job_id)
            except UnreadableRecord:
                return False  # its message says to delete it; nothing here can tell what it held
            if bad_tile and self._is_the_checked_file(job_id, checked):
                self.tree.unlink(self.paths.tile(job_id))  # a link planted there goes, never its target
                # A claim on a done job is stale (its holder was killed after the tile's rename,
                # before step 9, or was a lease's late holder): that attempt finished, and must not
                # be recorded lost later; what its writer left half-written goes.
                orphan = claim.orphan()
                if orphan is not None:
                    self.scratch.remove_leftovers(job_id, orphan.writer)
                claim.clear()
            if record is not None:
                record.requeue()
                self.write_record(record)
            return True

    def _is_the_checked_file(self, job_id: str, checked: tuple[int, ...] | None) -> bool:
        if checked is None:
            return True
        try:
            return identity(self.tree.stat(self.paths.tile(job_id))) == checked
        except FileNotFoundError:
            return False

    def requeue_failed(self) -> list[str]:
        """Give every failed job a fresh allowance of retries."""
        failed = [s.id for s in self.statuses(probe_locks=False) if s.state == FAILED]
        return [job_id for job_id in failed if self.requeue(job_id)]


def _is_current(paths: SpoolPaths, manifest: Manifest) -> bool:
    try:
        now = publish.current(paths)
    except (JobRunnerError, OSError):
        return False
    return now is not None and now.plan.id == manifest.plan.id


def spec_json(tile: Tile, plan_id: str) -> str:
    spec = {"id": tile.id, "plan": plan_id, "ranges": [[start, stop] for start, stop in tile.bounds]}
    return json.dumps(spec) + "\n"


def refuse_replanning(existing: Manifest, plan: Plan, paths: SpoolPaths) -> None:
    """Planning into a spool that has a plan, without --replace: fine only if nothing would change."""
    spool = paths.spool
    recorded = existing.outputs_folder(spool)
    if existing.plan.same_computation(plan) and publish.same_folder(recorded, paths.outputs):
        return
    if existing.plan == plan and existing.plan.code != plan.code:
        raise JobRunnerError(
            f"{spool} already holds this plan ({existing.plan.id}), but the kernel {plan.kernel}'s code changed since "
            f"(fingerprint {existing.plan.code}, now {plan.code}), so its tiles were computed by the old code: "
            "pass --replace to compute every tile again with the new code"
        )
    if existing.plan == plan:
        raise JobRunnerError(
            f"{spool} already holds this plan ({existing.plan.id}) with its results in {recorded}, not "
            f"{paths.outputs}: drop --outputs (and JOBRUNNER_OUTPUTS), or pass --replace to start again there"
        )
    raise JobRunnerError(
        f"{spool} already holds a different plan ({existing.plan.id}: {existing.plan.describe()}): "
        "pass --replace (replace=True) to discard it and its progress, "
        "or --spool to plan into another folder"
    )
