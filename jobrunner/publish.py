"""A plan's life in a spool: published once, first writer wins; replaced by compare-and-swap; fenced.

The job-level protocol (claims, records, tiles) is in :mod:`jobrunner.protocol`; this module owns
what sits above it: which plan is the spool's, and how one plan gives way to the next without
anything of the old plan reaching the new one.

Layout
------
::

    <spool>/plan.json                     the current plan: a copy of its plan folder's manifest
    <spool>/plans/<id>/plan.json          each plan's own manifest, there from the folder's first moment
    <spool>/plans/<id>/successor.json     the manifest of the plan that replaced it (made once, by link)
    <spool>/plans/<id>/specs, locks, records      the plan's jobs (see jobrunner.protocol)
    <spool>/plans/.<id>.<host>-<pid>.partial/     a plan being written, renamed to plans/<id> when whole
    <outputs>/owner.json                  the spool these outputs belong to: {"spool_id", "spool"}
    <outputs>/tiles/<id>/<job>.npy        the plan's tiles

Identity
--------
A manifest names its plan (``id``, made by ``plan``: :func:`jobrunner.identity.new_plan_id`),
the fingerprint of its kernel's code (``code``), the spool it belongs to (``spool_id``: made by
the spool's first plan, kept by every plan that replaces it) and its outputs folder
(``outputs``: relative to the spool when they share a parent folder, so a spool mounted at
another path on another node still finds them; absolute otherwise).  Every spec, claim and
record names its plan id, and every attempt records the code fingerprint and the versions
that computed it.  A tile's plan is named by its folder.

Publishing (``jobrunner plan``)
-------------------------------
1. Check that the outputs folder is free for this spool (see step 5); another spool's is
   refused with one line, before anything is written in the spool.
2. Write the manifest, the specs and empty ``locks/`` and ``records/`` into a partial folder of
   this process's own, then rename it to ``plans/<id>``: a plan folder is whole from its first
   moment, and always holds its ``plan.json``.
3. Into an empty spool: ``os.link`` the manifest to ``<spool>/plan.json``.  The link fails if the
   name exists, so of two plans racing into one spool exactly one is published; the other
   removes its folder and says so.
   Replacing plan A: ``os.link`` the manifest to ``plans/A/successor.json`` (fails if A already
   has a successor, or if A's folder is gone because another replace retired it: of two
   replaces of A exactly one wins; ``plan.json`` is never replaced without that link), then
   ``os.replace`` it onto ``<spool>/plan.json``.  From the link on, the plan is published.
4. Retire A: rename ``plans/A`` aside in one step (from then on A is gone to whoever looks, and
   nothing can be linked into it), remove reduce's products if ``stitched.json`` names A, then
   A's tiles and the renamed folder.
5. Bind the outputs folder, by the plan that won only: ``owner.json`` is made by link, so the
   first spool to use a folder owns it.  Only ``plan`` takes over a binding, and only from a
   spool that is gone (the folder it names no longer holds that spool: deleted, or planned
   afresh as after ``rm -rf jobs/*``); a ``plan`` killed before this step is finished by the same
   ``plan`` run again, or by the first worker (which binds a folder nobody owns, never takes one
   over).  Workers and reduce refuse an outputs folder whose owner is not their spool.

Reading the current plan: ``<spool>/plan.json``, then, while ``plans/<id>/successor.json``
exists, its successor (a replace killed between its link and its ``os.replace`` still counts);
if ``plans/<id>/plan.json`` is gone, the plan was replaced as we read: read again.

Fencing: what a replaced plan's stragglers can do
-------------------------------------------------
Every worker, supervisor and reduce acts for one plan id, and every path it writes is inside
that plan's folders, so the current plan never reads what a straggler of an older plan writes,
whatever the straggler is doing (waiting on a lock, in the middle of a tile, frozen for a day,
in a container with its own pid namespace, on a node whose clock is off); no pid, clock or
lease is trusted for this.  A straggler can still:

* compute a tile and publish it, or a record, into its own plan's folders while they exist (they
  are removed at step 4, after which its writes fail and it stops with one line);
* make its own plan's empty tile folder again (a worker starting just as its plan goes makes
  it), which the next ``plan``'s clean-up removes;
* finish a ``reduce`` begun before the replace: it looks whether its plan is still the spool's
  just before renaming its products into place, so only a reduce frozen between that look and
  its rename can still put the old plan's ``stitched.npy`` there, and ``stitched.json`` names
  the plan it is of.

It cannot publish, record or delete anything of the current plan.  Workers also look, before
each claim, whether their plan is still the spool's (two ``stat`` calls) and stop with one line
if not; that is courtesy, not the fence.  A ``plan`` killed at any step leaves either the old
plan current with the new one's folder unpublished, or the new plan current with the old one's
folder retired; neither can be adopted, since a plan's records and tiles start empty in folders
named by its own id.

Clean-up, by ``plan`` once it has published (:func:`sweep`): a plan folder goes when it is
retired (it has a ``successor.json``, or lacks its ``plan.json``) and ``plan.json`` does not
name it (its successor link is what leads readers on), or when it was never published and its
writer is a dead process of this host; a partial plan folder goes when its writer is a dead
process of this host.  Tiles of removed plans go first; an empty tile folder of a plan the
spool does not know goes too (a non-empty one is left: it may be another spool's, from before
a binding was taken over).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.errors import JobRunnerError
from jobrunner.files import (
    ensure_folder,
    ensure_folder_in,
    explain_write_error,
    write_first,
    write_new,
    write_new_files,
    write_text,
)
from jobrunner.folders import Tree
from jobrunner.identity import PLAN_ID_PATTERN
from jobrunner.paths import SpoolPaths
from jobrunner.plan import Plan
from jobrunner.writer import Writer, writer_tag

OUTPUTS_FORMAT = "jobrunner-outputs/1"

#: Successors followed from ``plan.json`` before the chain is called broken (a loop planted by hand).
MAX_SUCCESSORS = 64
#: Reads of ``plan.json`` while it is being replaced under us, before giving up.
READ_ATTEMPTS = 20


class PlanReplaced(JobRunnerError):
    """The plan this process acts for is no longer the spool's: it stops, writing nothing more."""


@dataclass(frozen=True)
class Manifest:
    """A published plan: the plan (with its id and code fingerprint) and what binds it to its spool."""

    plan: Plan
    spool_id: str
    outputs: str  # as recorded: relative to the spool folder, or absolute
    created_by: str = ""  # writer tag of the `plan` that wrote it
    created_at: float = 0.0
    versions: str = ""

    def outputs_folder(self, spool: Path) -> Path:
        # From the spool's real path: the kernel resolves ".." after following symlinks, so must we.
        return Path(os.path.normpath(Path(os.path.realpath(spool)) / self.outputs))

    def to_json(self) -> str:
        document = self.plan.to_document()
        document.update(
            spool_id=self.spool_id,
            outputs=self.outputs,
            created_by=self.created_by,
            created_at=self.created_at,
            versions=self.versions,
        )
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        try:
            document: Any = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise JobRunnerError(f"{source} is not a valid jobrunner plan ({error})") from None
        plan = Plan.from_document(document, source)
        fields = {"spool_id": str, "outputs": str, "created_by": str, "created_at": (int, float), "versions": str}
        for name, kind in fields.items():
            if not isinstance(document.get(name), kind) or isinstance(document.get(name), bool):
                raise JobRunnerError(f"{source} is not a valid jobrunner plan ({name} is missing or not a {kind})")
        for name, value in (("id", plan.id), ("spool_id", document["spool_id"])):
            if not PLAN_ID_PATTERN.fullmatch(value):  # it names folders: nothing but what new_plan_id makes
                raise JobRunnerError(f"{source} is not a valid jobrunner plan ({name} {value!r} is malformed)")
        return cls(plan, **{name: document[name] for name in fields})


def recorded_outputs(spool: Path, outputs: Path) -> str:
    """How a manifest records its outputs: relative to the spool when both share a parent folder
    (real paths: a spool reached through a symlink still finds them), else absolute."""
    spool, outputs = Path(os.path.realpath(spool)), Path(os.path.realpath(outputs))
    if os.path.commonpath([spool, outputs]) == os.sep:
        return str(outputs)
    return os.path.relpath(outputs, spool)


def same_folder(a: Path, b: Path) -> bool:
    """The same name, or two names of one folder (a symlink; not two mounts of it, whose devices differ)."""
    if os.path.normpath(a) == os.path.normpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return False


# -- reading ---------------------------------------------------------------------------------------
def _read_manifest(path: Path) -> Manifest:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise JobRunnerError(f"cannot read the plan {path} ({error})") from None
    return Manifest.from_json(text, str(path))


def current(paths: SpoolPaths) -> Manifest | None:
    """The spool's current plan (None if it has none), following successors (see the module doc)."""
    for _ in range(READ_ATTEMPTS):
        try:
            manifest = _read_manifest(paths.manifest)
        except FileNotFoundError:
            return None
        for _ in range(MAX_SUCCESSORS):
            try:
                manifest = _read_manifest(paths.successor(manifest.plan.id))
            except FileNotFoundError:
                break
        else:
            raise JobRunnerError(f"the plans in {paths.plans} name successors in a loop: plan again with --replace")
        if paths.plan_copy(manifest.plan.id).exists():
            return manifest
        time.sleep(0.01)  # its folder is gone: plan.json was replaced while we read it
    return manifest  # a plan whose folder is missing: Spool.open says so, and --replace mends it


def read_plan(paths: SpoolPaths, plan_id: str) -> Manifest:
    """One plan by its id, current or not (a supervisor's pool process opens its parent's plan)."""
    if not PLAN_ID_PATTERN.fullmatch(plan_id):
        raise JobRunnerError(f"{plan_id!r} is not a plan id")
    try:
        return _read_manifest(paths.plan_copy(plan_id))
    except FileNotFoundError:
        raise PlanReplaced(
            f"the plan {plan_id} is no longer in {paths.spool} (it was replaced): this worker stops"
        ) from None


def is_current(paths: SpoolPaths) -> bool:
    """Whether ``paths.plan_id`` is still the spool's plan: its manifest is there and it has no successor.

    Two ``stat`` calls, cheap enough for before every claim.  A retired plan loses its
    ``plan.json`` before anything else of it goes, so a straggler's look is never fooled by a
    folder half removed.
    """
    return paths.plan_copy().exists() and not paths.successor().exists()


def replaced_message(paths: SpoolPaths) -> str:
    """What to say when this process's plan is no longer the spool's."""
    try:
        now = current(paths)
    except JobRunnerError:
        now = None
    successor = f"by plan {now.plan.id}" if now is not None else "or deleted"
    return (
        f"the plan {paths.plan_id} this worker was started for was replaced {successor} in {paths.spool}: "
        "it stops and writes nothing more; start workers again for the new plan"
    )


# -- the outputs folder's owner ----------------------------------------------------------------------
def _read_owner(paths: SpoolPaths) -> dict | None:
    try:
        document = json.loads(paths.owner.read_text())
        if not isinstance(document, dict) or document.get("format") != OUTPUTS_FORMAT:
            raise ValueError(f"format is not {OUTPUTS_FORMAT}")
        if not isinstance(document.get("spool_id"), str) or not isinstance(document.get("spool"), str):
            raise ValueError("spool_id and spool must be strings")
        return document
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as error:
        raise JobRunnerError(
            f"cannot read {paths.owner} ({error}): if no spool uses {paths.outputs} any more, delete that file"
        ) from None


def _spool_id_at(spool: Path) -> str | None:
    """The spool id of the plan in folder ``spool``, or None if it holds no readable plan."""
    try:
        return current(SpoolPaths(spool, spool)).spool_id  # type: ignore[union-attr]
    except (JobRunnerError, AttributeError, OSError):
        return None


def bind_outputs(paths: SpoolPaths, spool_id: str, *, dry_run: bool = False, take_over: bool = True) -> None:
    """Make ``paths.outputs`` this spool's (first writer wins); refuse one that another spool owns.

    ``dry_run``: only check that it could be done (before a plan is published: the binding itself
    is made after, by the plan that won, so a plan that lost a race never binds anything).
    ``take_over``: whether a binding of a spool that is gone may be replaced (``plan`` only: a
    straggler of a deleted spool must never take its successor's outputs).
    """
    ensure_folder(paths.outputs, "outputs", "--outputs")
    for _ in range(2):
        owner = _read_owner(paths)
        if owner is not None and owner["spool_id"] == spool_id:
            return
        if owner is not None:
            theirs = Path(owner["spool"])
            # Stale: that folder no longer holds the spool that bound these outputs (deleted, or
            # planned afresh since, as after `rm -rf jobs/*`).
            if _spool_id_at(theirs) == owner["spool_id"] or not take_over:
                raise JobRunnerError(
                    f"the outputs folder {paths.outputs} belongs to the spool {theirs}: two spools in one outputs "
                    "folder would overwrite each other's results; pass --outputs "
                    f"{shlex.quote(paths.spool.name + '-outputs')} (or another folder of its own)"
                )
        if dry_run:
            return
        text = json.dumps({"format": OUTPUTS_FORMAT, "spool_id": spool_id, "spool": str(paths.spool)}) + "\n"
        try:
            if owner is not None:
                write_text(paths.owner, text)  # replaces a stale binding
                return
            if write_first(paths.owner, text):  # the first spool wins, whole
                return
            continue  # another spool's plan bound it just now: look at whose it is
        except OSError as error:
            raise JobRunnerError(f"cannot write {paths.owner}: {explain_write_error(error)}") from None
    raise JobRunnerError(f"{paths.owner} keeps changing: is another `jobrunner plan` running?")


def check_outputs(paths: SpoolPaths, manifest: Manifest) -> None:
    """Before writing tiles or products: the outputs folder exists and still belongs to this spool."""
    if not paths.outputs.is_dir():
        raise JobRunnerError(
            f"the outputs folder {paths.outputs} that the plan records is missing (moved or deleted?): "
            f"move it back, or `{paths.replan_command(manifest.plan)}` to compute "
            "everything again"
        )
    owner = _read_owner(paths)
    if owner is None:  # a `plan` killed between publishing and binding (step 5): finish its work
        bind_outputs(paths, manifest.spool_id, take_over=False)
        owner = _read_owner(paths)
    if owner is None or owner["spool_id"] != manifest.spool_id:
        whose = "no spool" if owner is None else f"the spool {owner['spool']}"
        raise JobRunnerError(
            f"the outputs folder {paths.outputs} belongs to {whose}, not to this spool {paths.spool} "
            f"(plan {manifest.plan.id}): if that spool is gone, run the same `jobrunner plan` again to take the "
            f"folder back; else `{paths.replan_command(manifest.plan)} --outputs FOLDER` "
            "with a folder of its own"
        )


# -- publishing --------------------------------------------------------------------------------------
def write_plan_folder(paths: SpoolPaths, manifest: Manifest, specs: dict[str, str], locks: list[str]) -> None:
    """Step 2: the plan's folder, whole, under ``plans/<id>`` (``specs``: file name -> text; ``locks``:
    the lock files' names)."""
    plan_id = manifest.plan.id
    with Tree(paths.spool) as tree:
        ensure_folder_in(tree, paths.plans, "spool's plans")
        partial = paths.plans / f".{plan_id}.{writer_tag()}.partial"
        try:
            tree.mkdir(partial)
            write_new(partial / "plan.json", manifest.to_json(), tree)
            for name in ("specs", "locks", "records", "journals"):
                tree.mkdir(partial / name)
            write_new_files(partial / "specs", specs, tree)  # a new folder nobody reads yet: no partial names
            # Every job's lock file, empty, made here once: a worker then makes no file to claim a job.
            # Writable by whoever the umask lets write (a project's group, under umask 002), as
            # filelock makes them: every worker opens its lock file for writing.
            write_new_files(partial / "locks", dict.fromkeys(locks, ""), tree, mode=0o666)
            tree.rename(partial, paths.plan_folder(plan_id))
        except BaseException:
            tree.remove_tree(partial)
            raise


def publish(paths: SpoolPaths, manifest: Manifest, replacing: Manifest | None, *, over_unreadable=False) -> None:
    """Step 3: make ``manifest`` the spool's plan, if ``replacing`` is still the spool's (None: empty spool).

    ``over_unreadable``: the spool's ``plan.json`` cannot be read (``plan --replace`` mends it),
    so there is nothing to swap against.  Raises JobRunnerError if another plan got there first;
    the caller removes its folder unless :func:`current` names it by then.
    """
    text = manifest.to_json()
    try:
        if over_unreadable:
            write_text(paths.manifest, text)
        elif replacing is None:
            if not write_first(paths.manifest, text):  # of two first plans, one wins
                raise FileExistsError(paths.manifest)
        else:
            old = replacing.plan.id
            with Tree(paths.spool) as tree:
                if not tree.exists(paths.plan_copy(old)):
                    _tombstone(paths, old, tree)  # a plan that lost its folder still gets its one successor
                if not write_first(paths.successor(old), text, tree):  # A's one successor: of two replaces, one wins
                    raise FileExistsError(paths.successor(old))
            # From here the plan is published (current() follows successors); this only caches it.
            write_text(paths.manifest, text)
    except FileExistsError:
        raise JobRunnerError(
            f"another plan was published into {paths.spool} while this one was being written: "
            f"`{paths.command('status')}` shows it; pass --replace to replace it"
        ) from None
    except FileNotFoundError:  # A's folder went: someone else replaced and retired it first
        raise JobRunnerError(
            f"another plan replaced the one in {paths.spool} while this one was being written: "
            f"`{paths.command('status')}` shows it; pass --replace again to replace it"
        ) from None
    except OSError as error:
        raise JobRunnerError(f"cannot publish the plan in {paths.spool}: {explain_write_error(error)}") from None


def _tombstone(paths: SpoolPaths, plan_id: str, tree: Tree) -> None:
    """The current plan's folder is missing (removed by hand, or a plan published then lost): make an
    empty one to hold its successor link, after checking it is still the spool's plan."""
    now = current(paths)
    if now is None or now.plan.id != plan_id:
        raise FileNotFoundError(plan_id)  # it was replaced meanwhile: the caller says so
    tree.mkdir(paths.plan_folder(plan_id), exist_ok=True)


def remove_plan(paths: SpoolPaths, manifest: Manifest | None, plan_id: str) -> None:
    """Step 4, and the clean-up's: a plan that is not (or will never be) the spool's, and its tiles.

    Its folder is first renamed aside in one step, so nobody can link a successor into a folder
    half removed, and a straggler's look (:func:`is_current`) sees its plan gone at once.
    """
    folder = paths.plan_folder(plan_id)
    aside = paths.plans / f".{plan_id}.{writer_tag()}.partial"
    outputs = _own_outputs(paths, manifest)
    with Tree(paths.spool, outputs) as tree:
        try:
            tree.rename(folder, aside)
        except FileNotFoundError:
            aside = folder  # nothing to move (a straggler may make it again: the next sweep takes that)
        except (OSError, JobRunnerError):  # JobRunnerError: a link planted in place of plans/
            with suppress(OSError, JobRunnerError):
                tree.unlink(paths.plan_copy(plan_id))  # at least make it garbage to all who look
            aside = folder
        _remove_products(paths.for_plan(plan_id, outputs))
        # Best effort: a straggler may still be making files in there; what it leaves, the next sweep takes.
        tree.remove_tree(paths.for_plan(plan_id, outputs).tiles)
        tree.remove_tree(aside)


def _own_outputs(paths: SpoolPaths, manifest: Manifest | None) -> Path:
    """Where a plan being removed kept its tiles, if that folder is this spool's; else the current one.

    A retired plan's ``plan.json`` can be written by anyone who can write the spool: the folder it
    names is cleaned only if its ``owner.json`` names this spool, never a folder of someone's choosing.
    """
    if manifest is None:
        return paths.outputs
    folder = manifest.outputs_folder(paths.spool)
    try:
        owner = _read_owner(paths.for_plan(paths.plan_id, folder))
    except JobRunnerError:
        owner = None
    ours = _pointer_spool_id(paths)
    return folder if owner is not None and ours is not None and owner["spool_id"] == ours else paths.outputs


def _pointer_spool_id(paths: SpoolPaths) -> str | None:
    try:
        return _read_manifest(paths.manifest).spool_id
    except (OSError, JobRunnerError):
        return None


def _remove_products(paths: SpoolPaths) -> None:
    """reduce's products, if ``stitched.json`` says they are of ``paths.plan_id`` (another plan's stay)."""
    try:
        of = json.loads(paths.stitched[2].read_text()).get("plan")
    except (OSError, ValueError, RecursionError, AttributeError):
        return
    if of == paths.plan_id:
        for product in paths.stitched:
            with suppress(OSError):
                product.unlink(missing_ok=True)


def sweep(paths: SpoolPaths) -> None:
    """Remove retired plans, plans a dead local ``plan`` never published, and their tiles (module doc).

    ``paths`` are the current plan's.  Never the plan that ``plan.json`` itself names, even if it
    is retired: its successor link is what leads readers to the current plan until a later
    ``plan`` replaces ``plan.json``.
    """
    # Best effort, after the plan is published: a folder it cannot list (a link in its place, an
    # I/O error) is left for the next sweep, never turned into a failed `plan`.
    with Tree(paths.spool, paths.outputs) as tree:
        try:
            names = tree.names(paths.plans)
        except (OSError, JobRunnerError):
            return
        _sweep_plans(paths, tree, names)
        try:
            tile_folders = tree.names(paths.all_tiles)
        except (OSError, JobRunnerError):
            return
        for name in tile_folders:  # a retired plan's, made again (empty) by a straggler after its plan went
            if PLAN_ID_PATTERN.fullmatch(name) and name != paths.plan_id and not tree.exists(paths.plan_folder(name)):
                with suppress(OSError):  # only if empty: tiles of a plan this spool does not know are not ours to drop
                    tree.rmdir(paths.all_tiles / name)


def _sweep_plans(paths: SpoolPaths, tree: Tree, names: list[str]) -> None:
    named = _pointer_id(paths)
    for name in names:
        with suppress(OSError, JobRunnerError):  # e.g. a link planted in place of a plan's folder: never followed
            _sweep_plan(paths, tree, name, named)


def _sweep_plan(paths: SpoolPaths, tree: Tree, name: str, named: str | None) -> None:
    if name.startswith("."):  # .<id>.<writer>.partial: ids have no dots, host names may
        plan_id, _, writer = name[1:].removesuffix(".partial").partition(".")
        owner = Writer.from_tag(writer) if name.endswith(".partial") else None
        if owner is not None and owner.dead_here() and PLAN_ID_PATTERN.fullmatch(plan_id):
            # A plan being written, or a retired one set aside (step 4) whose remover died: its
            # tiles first (a plan being written has none), then the folder.
            manifest = _manifest_or_none(paths.plans / name / "plan.json")
            outputs = _own_outputs(paths, manifest)
            with Tree(outputs) as own:
                own.remove_tree(paths.for_plan(plan_id, outputs).tiles)
            tree.remove_tree(paths.plans / name)
        return
    if not PLAN_ID_PATTERN.fullmatch(name) or name in (named, paths.plan_id):
        return  # not ours to judge, or the plan plan.json names, or the current one
    folder_paths = paths.for_plan(name)
    manifest = _manifest_or_none(folder_paths.plan_copy())
    if tree.exists(folder_paths.successor()) or manifest is None:
        remove_plan(paths, manifest, name)
        return
    owner = Writer.from_tag(manifest.created_by)
    # Its writer is dead, so it can no longer be published: if it is not current now, it never will be.
    if owner is not None and owner.dead_here():
        now = current(paths)
        if now is None or now.plan.id != name:
            remove_plan(paths, manifest, name)


def _pointer_id(paths: SpoolPaths) -> str | None:
    """The plan id ``<spool>/plan.json`` names, without following successors."""
    try:
        return _read_manifest(paths.manifest).plan.id
    except (OSError, JobRunnerError):
        return None


def _manifest_or_none(path: Path) -> Manifest | None:
    try:
        return _read_manifest(path)
    except (OSError, JobRunnerError):
        return None
