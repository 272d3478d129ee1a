"""Every path jobrunner reads or writes, owned by one object.  No other module joins path strings.

``P`` below is a plan's folder, ``<spool>/plans/<plan id>``, and ``T`` its tiles folder,
``<outputs>/tiles/<plan id>``.  What each file means to a worker is :mod:`jobrunner.protocol`'s;
which plan is the spool's, and how a plan is published and replaced, :mod:`jobrunner.publish`'s.

Layout
------
::

    <spool>/plan.json               the current plan: grid, tiling, kernel, parameters, identity
    <spool>/locking.json            the lock mode every worker uses, chosen once (see jobrunner.locking)
    <spool>/DRAIN                   while it exists, workers claim nothing more (``jobrunner drain``)
    <spool>/slurm/                  the Slurm array's script, and a log per array task (``jobrunner slurm``)
    P/plan.json                     the plan's own manifest (see jobrunner.publish)
    P/specs/<id>.json               one spec per job: {"id", "plan", "ranges": [[start, stop] per axis]}
    P/locks/<id>.lock               made by plan, empty.  Flock mode: a claim *is* a held flock on it, and
                                    while held it names the attempt in flight: {"attempt", "host", "pid",
                                    "started", "via", "plan"}
    P/locks/<id>.lease              lease mode: the claim is this marker, kept fresh by a heartbeat...
    P/locks/<id>.claim              ...and the attempt in flight is named here
    P/journals/<host>-<pid>-<token>.jsonl
                                    one per worker process: a line when it starts an attempt, and one
                                    when an attempt ends done, with the SHA-256 of its tile's bytes
                                    (jobrunner.journal)
    P/records/<id>.json             only for a job with an attempt that did not end done: its plan,
                                    state, counters, and each such attempt (each with the code
                                    fingerprint and versions that ran it)
    <outputs>/owner.json            the spool these outputs belong to
    T/<id>.npy                      the job's tile, the one file a job makes: it is done when this is in
                                    place.  float64 (one per field: Plan.tile_dtype), C order, the tile's
                                    shape (jobrunner.tilefile)
    .<host>-<pid>.partial/<name>    a tile, record or lease claim being written, in its writer's
                                    own folder inside the folder of its final name (jobrunner.scratch)
    .<name>.<host>-<pid>.partial    any other file being written, beside its final name
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

#: Where commands keep the spool and the results when not told otherwise, relative to where they run.
DEFAULT_SPOOL, DEFAULT_OUTPUTS = Path("jobs"), Path("outputs")


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # deleted under us
        return None


@dataclass(frozen=True)
class SpoolPaths:
    """The paths of a spool, its outputs folder and, once known, one plan's folders in them.

    ``plan_id`` names the plan whose specs, locks, records and tiles the job paths point into
    (see :mod:`jobrunner.publish`): every plan has folders of its own, so a worker holding one
    plan's paths cannot touch another plan's files.
    """

    spool: Path
    outputs: Path
    plan_id: str = ""

    def __init__(self, spool: str | os.PathLike, outputs: str | os.PathLike, plan_id: str = "") -> None:
        object.__setattr__(self, "spool", Path(spool).absolute())
        object.__setattr__(self, "outputs", Path(outputs).absolute())
        object.__setattr__(self, "plan_id", plan_id)

    @classmethod
    def outputs_only(cls, outputs: str | os.PathLike) -> SpoolPaths:
        """Paths for a command with no spool (``serial``): only the outputs half is meaningful."""
        return cls(outputs, outputs)

    def for_plan(self, plan_id: str, outputs: str | os.PathLike | None = None) -> SpoolPaths:
        """The same spool's paths for the plan ``plan_id`` (and its outputs folder, if given)."""
        return SpoolPaths(self.spool, self.outputs if outputs is None else outputs, plan_id)

    # -- the spool: its current plan, and each plan's own folder -------------------------------
    @cached_property
    def manifest(self) -> Path:
        """The spool's current plan (a copy of the one in its plan folder; see jobrunner.publish)."""
        return self.spool / "plan.json"

    @cached_property
    def plans(self) -> Path:
        return self.spool / "plans"

    def plan_folder(self, plan_id: str | None = None) -> Path:
        plan_id = self.plan_id if plan_id is None else plan_id
        assert plan_id, "a plan's folder asked for before its plan is known"
        return self.plans / plan_id

    def plan_copy(self, plan_id: str | None = None) -> Path:
        """The plan's own manifest, inside its folder: what a worker started for that plan reads."""
        return self.plan_folder(plan_id) / "plan.json"

    def successor(self, plan_id: str | None = None) -> Path:
        """Written once, by link, by the plan that replaces this one: the replace's compare-and-swap."""
        return self.plan_folder(plan_id) / "successor.json"

    @cached_property
    def specs(self) -> Path:
        return self.plan_folder() / "specs"

    @cached_property
    def locks(self) -> Path:
        return self.plan_folder() / "locks"

    @cached_property
    def records(self) -> Path:
        return self.plan_folder() / "records"

    @cached_property
    def journals(self) -> Path:
        return self.plan_folder() / "journals"

    def spec(self, job_id: str) -> Path:
        return self.specs / f"{job_id}.json"

    @cached_property
    def locking(self) -> Path:
        """Which lock mode the spool's workers use, chosen once (see :mod:`jobrunner.locking`)."""
        return self.spool / "locking.json"

    def lock(self, job_id: str) -> Path:
        return self.locks / f"{job_id}.lock"

    def lease(self, job_id: str) -> Path:
        return self.locks / f"{job_id}.lease"

    def claim(self, job_id: str) -> Path:
        """The attempt in flight, in lease mode (in flock mode it is written into the lock file)."""
        return self.locks / f"{job_id}.claim"

    def record(self, job_id: str) -> Path:
        return self.records / f"{job_id}.json"

    @cached_property
    def drain_file(self) -> Path:
        """While this file exists, every worker finishes its current tile and exits (``jobrunner drain``)."""
        return self.spool / "DRAIN"

    # -- what a hint tells the user to type -----------------------------------------------------
    def command(self, verb: str, *args: str) -> str:
        """``jobrunner VERB ARGS --spool FOLDER``, as a hint or an error suggests it.

        It carries ``--spool`` unless the command would find this spool without it (``jobs/`` of
        the current folder, or ``JOBRUNNER_SPOOL``), so that it works pasted into the user's shell;
        never ``--outputs``: every command after ``plan`` takes the one the plan records.  The spool
        is shown as the user most likely typed it: relative when it is inside the current folder.
        """
        words = ["jobrunner", verb, *args]
        here = _cwd()  # None if the folder it runs in was deleted: the spool is then given in full
        default = os.environ.get("JOBRUNNER_SPOOL") or DEFAULT_SPOOL
        if here is None or self.spool != here / default:
            shown = self.spool.relative_to(here) if here and self.spool.is_relative_to(here) else self.spool
            # "./" before a name that starts with "-", which would read as an option
            words += ["--spool", str(shown) if shown.is_absolute() or not str(shown).startswith("-") else f"./{shown}"]
        return shlex.join(words)

    def replan_command(self, plan) -> str:
        """The ``jobrunner plan ... --replace`` that plans ``plan`` again, from scratch, into this spool.

        A kernel in a module of the user's own folder is found from the folder where ``plan`` runs:
        the command then starts with ``cd`` there (the spool given in full), or it could plan
        another module of the same name, or none.
        """
        command = self.command("plan", *plan.arguments(), "--replace")
        folder = plan.kernel_folder
        if not folder or _cwd() == Path(folder):
            return command
        in_full = shlex.join(["jobrunner", "plan", *plan.arguments(), "--replace", "--spool", str(self.spool)])
        return f"cd {shlex.quote(str(folder))} && {in_full}"

    # -- Slurm: the batch script and one log per array task --------------------------------------
    @cached_property
    def slurm(self) -> Path:
        return self.spool / "slurm"

    @cached_property
    def sbatch_script(self) -> Path:
        return self.slurm / "jobrunner.sbatch"

    @cached_property
    def slurm_logs(self) -> Path:
        return self.slurm / "logs"

    @cached_property
    def slurm_task_log(self) -> Path:
        """An array task's log as the batch script names it: the shell fills in the array's job id
        and the task's index (``work --log`` opens it: see :func:`jobrunner.files.append_output_to`)."""
        return self.slurm_logs / "task-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log"

    # -- the outputs: tiles and the products made from them -------------------------------------
    @cached_property
    def owner(self) -> Path:
        """Names the spool these outputs belong to: one spool's tiles and products per folder."""
        return self.outputs / "owner.json"

    @cached_property
    def all_tiles(self) -> Path:
        """Every plan's tile folder is in here, named by its plan id."""
        return self.outputs / "tiles"

    @cached_property
    def tiles(self) -> Path:
        assert self.plan_id, "a plan's tiles asked for before its plan is known"
        return self.all_tiles / self.plan_id

    def tile(self, job_id: str) -> Path:
        return self.tiles / f"{job_id}.npy"

    def product(self, name: str) -> Path:
        """``serial.npy``, ``stitched.png`` and the like, directly under the outputs folder."""
        return self.outputs / name

    @cached_property
    def stitched(self) -> tuple[Path, Path, Path, Path]:
        """reduce's products: the array, its figure, ``stitched.json``, which names their plan, and the
        labelled dataset (``stitched.nc``)."""
        names = ("stitched.npy", "stitched.png", "stitched.json", "stitched.nc")
        return tuple(self.product(name) for name in names)

    @staticmethod
    def partial(target: Path, writer: str) -> Path:
        """Where ``writer`` writes ``target`` before renaming it into place: same folder, so the rename is atomic."""
        return target.with_name(f".{target.name}.{writer}.partial")

    @staticmethod
    def scratch(folder: Path, writer: str) -> Path:
        """``writer``'s own folder for partial files, inside a folder that many workers fill at once.

        Creating a file holds its folder's lock while the disk allocates an inode; on this ext4
        that takes 0.3-0.9 ms, and two workers creating in one folder took three times as long
        each as in folders of their own.  A rename into place holds the lock only briefly.
        """
        return folder / f".{writer}.partial"

    @staticmethod
    def scratch_writer(scratch: Path) -> str:
        """The writer a scratch folder was made for (the inverse of :meth:`scratch`)."""
        return scratch.name[1 : -len(".partial")]
