"""What the spool's disk can do for its workers: its filesystem, the mount options that decide
whether a lock reaches other machines, a live lock probe, and what to ask the admins for.

Users otherwise find out from lost work: a ``nolock`` NFS mount excludes nothing between nodes,
and nothing says so.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from filelock import SoftFileLease

from jobrunner.errors import JobRunnerError
from jobrunner.files import world_writable_problem
from jobrunner.folders import Tree
from jobrunner.footprint import footprint, free_inodes, inode_warnings
from jobrunner.locking import FLOCK, Choice, Mount, choose_mode, find_mount, probe_flock, read_choice
from jobrunner.paths import SpoolPaths
from jobrunner.publish import current
from jobrunner.writer import writer_tag


@dataclass
class Diagnosis:
    folder: Path  # where the probes ran: the spool's locks folder, or the nearest folder that exists
    mount: Mount | None
    flock_error: OSError | None
    lease_error: OSError | None
    auto: Choice  # what --lock auto picks here
    recorded: Choice | None  # what the spool's workers already use, if any has started
    inodes: tuple[int, int] | None = None  # free and total inodes of the spool's filesystem, where counted
    advice: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth knowing before a big run; nothing refused
    problems: list[str] = field(default_factory=list)  # things that would stop a worker


def diagnose(paths: SpoolPaths) -> Diagnosis:
    """What the disk under ``paths`` can do (``paths.outputs`` is used when the spool has no plan yet)."""
    manifest = _current_or_none(paths)
    if manifest is not None:  # the lock folder and outputs of the spool's current plan
        paths = paths.for_plan(manifest.plan.id, manifest.outputs_folder(paths.spool))
    folder = paths.locks if paths.plan_id and paths.locks.is_dir() else _nearest_existing(paths.spool)
    mount = find_mount(folder)
    tree = Tree(paths.spool if folder.is_relative_to(paths.spool) else folder)
    tree.folder(folder)  # a link planted in place of a folder on the way is refused, naming it: never probed
    flock_error = probe_flock(folder, tree)
    tree.close()
    lease_error = _probe_lease(folder)
    auto = choose_mode(mount, flock_error)
    diagnosis = Diagnosis(folder, mount, flock_error, lease_error, auto, read_choice(paths), free_inodes(folder))
    diagnosis.advice = _advice(diagnosis)
    if manifest is not None:  # what the plan will hold when done, against the files the disks have left
        done = len(list(paths.tiles.glob("*.npy"))) if paths.tiles.is_dir() else 0  # a tile per job done
        diagnosis.warnings = inode_warnings(footprint(manifest.plan), paths.spool, paths.outputs, done)
    tiles = paths.tiles if paths.plan_id else paths.all_tiles
    for candidate, role in ((paths.spool, "spool"), (paths.outputs, "outputs"), (tiles, "tiles")):
        problem = world_writable_problem(candidate, role)
        if problem is not None:
            diagnosis.problems.append(problem)
    if lease_error is not None:
        diagnosis.problems.append(f"cannot create files in {folder} ({lease_error.strerror or lease_error})")
    return diagnosis


def _current_or_none(paths: SpoolPaths):
    try:
        return current(paths) if paths.spool.is_dir() else None
    except JobRunnerError:
        return None  # an unreadable plan: the disk can still be probed


def _nearest_existing(path: Path) -> Path:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _probe_lease(folder: Path) -> OSError | None:
    """Take and drop a lease marker in ``folder``: what lease mode needs (create, write, delete)."""
    try:
        with SoftFileLease(folder / f".lease-probe.{writer_tag()}", lease_duration=5.0, blocking=False):
            pass
    except OSError as error:
        return error
    return None


def _advice(d: Diagnosis) -> list[str]:
    """What to ask the cluster's admins for, or why nothing is needed."""
    fstype = d.mount.fstype if d.mount else "unknown"
    options = set(d.mount.options) if d.mount else set()
    source = d.mount.source if d.mount else str(d.folder)
    if d.flock_error is not None and d.flock_error.errno == errno.ENOLCK:
        return [
            "flock answers ENOLCK: the NFS lock manager is not running. Ask the admins to run rpc.statd/lockd "
            f"on this client (or mount {source} as NFSv4). Until then jobrunner uses leases."
        ]
    if fstype == "lustre" and ("localflock" in options or d.flock_error is not None):
        return [
            f"Lustre without cluster-wide locks: ask the admins to mount {source} with `-o flock`. "
            "Until then jobrunner uses leases, which are safe but hand a dead node's tiles back only after the lease."
        ]
    if fstype.startswith("nfs") and (
        "nolock" in options or any(o.startswith("local_lock=") and o != "local_lock=none" for o in options)
    ):
        return [
            f"NFS mounted with locks kept on each client: ask the admins to mount {source} without `nolock` or "
            "`local_lock` (NFSv4, or NFSv3 with lockd) so locks reach the server. Until then jobrunner uses leases."
        ]
    if d.flock_error is not None:
        return [f"flock does not work here ({d.flock_error.strerror}); jobrunner uses leases instead."]
    if d.auto.mode == FLOCK and (fstype.startswith("nfs") or fstype == "lustre"):
        return ["Nothing to ask for: locks on this filesystem reach every machine that mounts it."]
    if d.auto.mode == FLOCK:
        return [
            "Nothing to ask for on one machine. This looks like a local disk: workers on other machines cannot "
            "see it; put the spool on the cluster's shared filesystem to drain it from several nodes."
        ]
    return [
        f"{fstype} may not pass locks between machines, so jobrunner uses leases: safe, but a dead node's tiles "
        "come back only after the lease runs out. If its locks are cluster-wide, --lock flock is faster."
    ]


def lock_options(mount: Mount | None) -> str:
    return ",".join(mount.lock_options) if mount and mount.lock_options else "none"


def describe_error(error: OSError | None) -> str:
    if error is None:
        return "works"
    name = os.strerror(error.errno) if error.errno else str(error)
    return f"fails: {name}"
