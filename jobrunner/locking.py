"""How a worker makes a job its own: a ``flock``, or a lease where a lock cannot be trusted.

Two modes behind one interface, :class:`JobLocks`; the rest of the protocol (see
:mod:`jobrunner.protocol`) is the same in both.

flock
    ``locks/<id>.lock`` held with ``flock`` through :class:`filelock.FileLock`.  The kernel
    (or the file server) drops it when its holder dies, so a dead worker's job is claimable at
    once.  The attempt in flight is written into the lock file itself, through the descriptor
    the flock is held on (filelock's ``on_acquired``), never by opening the path again, and only
    once that descriptor is proven to be the file in the plan's own ``locks`` folder: filelock
    opens the lock file by path (``O_NOFOLLOW`` guards only its last name), so a link planted in
    place of a folder on the way would have it open a file elsewhere (see jobrunner.folders).
    ``fallback_to_soft=False``: a disk whose ``flock`` answers ENOSYS is reported, never
    silently downgraded.
lease
    ``locks/<id>.lease`` is a :class:`filelock.SoftFileLease` marker: created with ``O_EXCL``,
    refreshed by a heartbeat thread every third of the lease, deleted on release.  The attempt in
    flight is ``locks/<id>.claim``.  A contender takes a marker whose owner is provably dead (same
    host, pid gone) at once, and any other marker once it has watched it go unrefreshed for the
    whole lease on its own monotonic clock, so clocks that disagree between hosts cannot expire a
    live claim.

A lease can expire while its holder still runs (suspended, swapping, cut off from the disk), so
two workers may compute one tile.  That is harmless only because a tile is deterministic, is
published by one atomic ``os.replace``, and is recorded done after that: both publish the same
bits.  A holder that finds its lease gone (:meth:`Claim.lost`, checked before it publishes and
before it writes the record) drops its result and writes nothing more; the successor has
already recorded that attempt as ``lost`` when it took the job over.

Which mode
----------
Every worker on a spool must use the same mode, so the mode is chosen once per spool and
written to ``<spool>/locking.json`` (``{"mode", "reason", "lease_seconds", "chosen_by"}``); later
workers read it.  ``auto`` (:func:`choose_mode`) looks at the spool's filesystem and tries a
real lock there: a ``flock`` that fails (Lustre ``noflock``: ENOSYS; NFS without a lock daemon:
ENOLCK) or a filesystem whose locks may stay on one machine (NFS ``nolock`` or ``local_lock``,
Lustre ``localflock``, FUSE, SMB and the like) gives leases; a local disk, NFS with its lock
manager or Lustre with ``-o flock`` gives flock.
"""

from __future__ import annotations

import errno
import json
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, SoftFileLease, Timeout

from jobrunner.errors import JobRunnerError
from jobrunner.files import explain_write_error, write_first
from jobrunner.folders import PlantedLink, Tree
from jobrunner.paths import SpoolPaths
from jobrunner.records import Attempt
from jobrunner.scratch import Scratch
from jobrunner.writer import Writer

AUTO, FLOCK, LEASE = "auto", "flock", "lease"
LOCK_MODES = (AUTO, FLOCK, LEASE)

#: Seconds a lease lasts without a refresh.  Long enough that a busy file server does not expire
#: a live worker; short enough that a dead node's tiles come back within a minute.
DEFAULT_LEASE_SECONDS = 30.0


class Claim:
    """A job this process holds: the one way the protocol touches a job's claim, in either mode.

    Taken by :meth:`JobLocks.acquire` and released by :meth:`JobLocks.release`; between them the
    holder reads the attempt a previous holder left in flight (:meth:`orphan`, step 4 of the
    protocol in :mod:`jobrunner.protocol`), names its own (:meth:`announce`, step 5), clears it
    (:meth:`clear`, step 9), and asks whether the job is still its own (:meth:`lost`, step 7).
    """

    def __init__(self, locks: JobLocks, job_id: str, lease: SoftFileLease | None = None) -> None:
        self.locks, self.job_id, self._lease = locks, job_id, lease

    def orphan(self) -> Attempt | None:
        """The attempt a previous holder named and never cleared: its worker died, or lost its lease."""
        return self.locks.read_claim(self.job_id)

    def announce(self, attempt: Attempt) -> None:
        """Name the attempt in flight, for status and for the next holder if this process dies."""
        self._write(attempt)

    def clear(self) -> None:
        self._write(None)

    def _write(self, attempt: Attempt | None) -> None:
        try:
            self.locks.write_claim(self.job_id, attempt)
        except OSError as error:
            raise JobRunnerError(
                f"cannot write the claim of job {self.job_id} in {self.locks.paths.locks}: {explain_write_error(error)}"
            ) from None

    def lost(self) -> str | None:
        """Why the job may no longer be ours (a lease taken over), or None while it is.

        A flock cannot be lost while its holder lives: the kernel drops it only when it dies."""
        if self._lease is None:
            return None
        if self._lease.compromise is not None:
            return f"its lease was lost ({self._lease.compromise.reason})"
        token = self._lease.token
        try:
            marker = Path(self._lease.lock_file).read_text()
        except OSError:
            marker = ""
        if token is None or token not in marker:
            return "its lease expired and another worker took the job over"
        return None


class JobLocks:
    """The claims of one spool: who holds which job, and the attempt each holder is running."""

    mode: str

    def __init__(self, paths: SpoolPaths, tree: Tree) -> None:
        self.paths, self.tree = paths, tree
        self.scratch = Scratch(paths, tree)  # where a lease claim is written before it is published
        self._locks: dict[str, FileLock | SoftFileLease] = {}  # reused: lease expiry is judged across tries
        self._locks_folder: tuple[int, int] | None = None  # (device, inode) of the locks folder, as reached

    def acquire(self, job_id: str) -> Claim | None:
        """Take the job's lock without waiting; None if someone else holds it."""
        raise NotImplementedError

    def release(self, job_id: str) -> None:
        self._locks[job_id].release()

    def is_held(self, job_id: str) -> bool:
        """Whether another process holds the job's lock now."""
        raise NotImplementedError

    def wait_until_free(self, job_id: str, timeout: float) -> None:
        """Block until the job's lock is free (without keeping it), or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.is_held(job_id) and time.monotonic() < deadline:
            time.sleep(0.05)

    def write_claim(self, job_id: str, attempt: Attempt | None) -> None:
        """Name the attempt in flight, or clear it.  Only the holder calls this."""
        raise NotImplementedError

    def claim_path(self, job_id: str) -> Path:
        """Where the job's claim is written (the lock file itself in flock mode)."""
        raise NotImplementedError

    def read_claim(self, job_id: str) -> Attempt | None:
        return _read_claim(self.claim_path(job_id))

    def claimed_jobs(self) -> set[str]:
        """The jobs with a claim file, live or not, from one listing of the locks folder (in lease
        mode, where a claim file exists only while a job is claimed: ``status`` peeks at these)."""
        suffix = self.claim_path("").name
        try:
            names = self.tree.names(self.paths.locks)
        except FileNotFoundError:
            return set()  # nothing claimed yet
        return {name[: -len(suffix)] for name in names if name.endswith(suffix)}

    def peek(self, job_id: str) -> Attempt | None:
        """The attempt in flight on the job if its worker is still at it, as far as can be told from
        here; for ``status``, never for deciding who may claim.

        A claim from this host is judged by its pid, without touching the lock, so that looking
        never makes a worker find the job busy; one from another host, by probing its lock.
        """
        claim = self.read_claim(job_id)
        if claim is None:
            return None
        if claim.writer.is_here():
            return claim if claim.writer.alive_here() else None
        return claim if self.is_held(job_id) else None

    def _check_locks_folder(self) -> None:
        """Before filelock opens a lock by path: the path still leads to the locks folder this
        process reached through the tree (one ``stat``).  A link put in place of it, or of a folder
        above it, since then would have filelock make its file in the folder the link names.  (A
        swap in the moment between this look and filelock's open is caught after it, by the
        identity check on what filelock opened; it can still leave an empty file behind.)"""
        fd = self.tree.folder(self.paths.locks)  # a link in its place now is refused here
        if self._locks_folder is None:
            info = os.fstat(fd)
            self._locks_folder = (info.st_dev, info.st_ino)
        # FileNotFoundError if it is gone: retired with its plan (Spool.claim then says so), or a
        # link in place of a folder above it names a folder without one, where filelock would make it.
        there = os.stat(self.paths.locks)
        if (there.st_dev, there.st_ino) != self._locks_folder:
            raise PlantedLink(
                f"{self.paths.locks} no longer leads to the locks folder this worker opened: a symbolic link was put "
                f"in place of it or of a folder above it, by someone who can write the spool {self.paths.spool}; "
                "nothing was written through it; see `ls -la` of those folders"
            )

    def owner_is_provably_live(self, claim: Attempt) -> bool:
        """Whether a busy job can be left to its holder: a worker that ends must not strand a job
        whose holder may be dead on a machine where nothing will release it soon."""
        return True

    def holder_is_provably_live(self, job_id: str) -> bool:
        """Whether whoever holds the job's lock now, naming no attempt yet, is alive: a held flock's
        holder is (the kernel drops a dead process's), so waiting on it is enough."""
        return True

    def _cannot_lock(self, path: Path, error: OSError) -> JobRunnerError:
        if error.errno == errno.ELOOP or path.is_symlink():
            return JobRunnerError(_planted(path) + " (the disk's locks are fine)")
        if error.errno == errno.ENOENT:
            return JobRunnerError(
                f"the locks folder {self.paths.locks} is gone (its plan replaced, or the folder moved or deleted): "
                f"`{self.paths.command('status')}` shows the spool's plan"
            )
        return JobRunnerError(
            f"cannot lock {path} ({error.strerror or error}): this disk does not do {self.mode} locks; "
            f"run `{self.paths.command('doctor')}` to see what it can do"
        )


class FlockLocks(JobLocks):
    mode = FLOCK

    def __init__(self, paths: SpoolPaths, tree: Tree) -> None:
        super().__init__(paths, tree)
        self._held: dict[str, int] = {}  # job id -> the descriptor its flock is held on (filelock's, borrowed)

    def _lock(self, job_id: str) -> FileLock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = FileLock(
                self.paths.lock(job_id),
                blocking=False,
                fallback_to_soft=False,
                thread_local=False,
                on_acquired=lambda fd, job_id=job_id: self._acquired(job_id, fd),
            )
            self._locks[job_id] = lock
        return lock

    def _acquired(self, job_id: str, fd: int) -> None:
        # filelock opened the lock file by path: it is ours only if it is the very file in the
        # plan's locks folder as reached through the tree's descriptors.  Raising here makes
        # filelock let go of the lock again, so nothing is ever written through a planted link.
        path = self.paths.lock(job_id)
        held = os.fstat(fd)
        here = self.tree.stat(path)  # FileNotFoundError: its folder went with a retired plan
        if (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):
            raise PlantedLink(
                f"{path} led somewhere else than the plan's locks folder when it was opened: a symbolic link stands "
                f"in place of a folder on the way, put there by someone who can write the spool {self.paths.spool}; "
                "nothing was written through it; see `ls -la` of its folders"
            )
        self._held[job_id] = fd

    def release(self, job_id: str) -> None:
        self._held.pop(job_id, None)
        super().release(job_id)

    def acquire(self, job_id: str) -> Claim | None:
        try:
            self._check_locks_folder()
            self._lock(job_id).acquire()
        except Timeout:
            return None  # someone else has it: the normal case, not an error
        except OSError as error:
            raise self._cannot_lock(self.paths.lock(job_id), error) from None
        return Claim(self, job_id)

    def is_held(self, job_id: str) -> bool:
        hold = self.acquire(job_id)
        if hold is None:
            return True
        self.release(job_id)
        return False

    def wait_until_free(self, job_id: str, timeout: float) -> None:
        try:
            self._check_locks_folder()
            with self._lock(job_id).acquire(timeout=timeout, blocking=True):
                pass
        except Timeout:
            pass
        except OSError as error:
            raise self._cannot_lock(self.paths.lock(job_id), error) from None
        finally:
            self._held.pop(job_id, None)  # let go at once: no claim is written through it

    def claim_path(self, job_id: str) -> Path:
        return self.paths.lock(job_id)

    def write_claim(self, job_id: str, attempt: Attempt | None) -> None:
        # In place, in the file we hold the lock on: no new file per claim (a claim is torn only if
        # the writer dies mid-write, and a torn claim still reads as an unknown worker's).  Through
        # the very descriptor the flock is held on, never by opening the path again: in a folder
        # shared with a group, a member could have swapped the lock file for a link to a file of
        # ours, which an open of the path would truncate.  filelock opens the lock file itself
        # with O_NOFOLLOW.  This relies on filelock 4 neither truncating the file when it opens it
        # nor unlinking it on release (the claim of a dead holder must outlive it): guarded by
        # tests/test_filelock_contract.py.
        data = attempt.claim_json() if attempt is not None else b""
        fd = self._held[job_id]
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))


class LeaseLocks(JobLocks):
    mode = LEASE

    def __init__(self, paths: SpoolPaths, tree: Tree, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        super().__init__(paths, tree)
        self.lease_seconds = lease_seconds
        self._watched: dict[str, tuple[tuple[int, int, int], float]] = {}  # marker identity, first seen

    def _lock(self, job_id: str) -> SoftFileLease:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = SoftFileLease(
                self.paths.lease(job_id), lease_duration=self.lease_seconds, blocking=False, thread_local=False
            )
            self._locks[job_id] = lock
        return lock

    def acquire(self, job_id: str) -> Claim | None:
        lease = self._lock(job_id)
        try:
            self._check_locks_folder()
        except OSError as error:
            raise self._cannot_lock(self.paths.lease(job_id), error) from None
        for _ in range(2):  # a second try after breaking an expired marker
            try:
                lease.acquire()
            except Timeout:
                expired = self._expired_marker(job_id)
                if expired is None:
                    return None
                self._break(job_id, expired)
                continue
            except OSError as error:
                raise self._cannot_lock(self.paths.lease(job_id), error) from None
            self._check_marker(job_id, lease)
            self._watched.pop(job_id, None)
            return Claim(self, job_id, lease)
        return None

    def _check_marker(self, job_id: str, lease: SoftFileLease) -> None:
        # filelock made the marker by path: it is this job's only if it is the file in the plan's
        # locks folder as reached through the tree (the flock mode's check, after the fact: a
        # lease has no hook at acquisition).  Else let it go, write nothing, and say why.
        path = self.paths.lease(job_id)
        try:
            made, here = os.stat(path, follow_symlinks=False), self.tree.stat(path)
            same = (made.st_dev, made.st_ino) == (here.st_dev, here.st_ino)
        except FileNotFoundError:
            same = False
        if not same:
            lease.release()
            raise PlantedLink(
                f"{path} led somewhere else than the plan's locks folder when its lease was taken: a symbolic link "
                f"stands in place of a folder on the way, put there by someone who can write the spool "
                f"{self.paths.spool}; the marker made there was removed again, and nothing else written; see "
                "`ls -la` of its folders"
            )

    # filelock takes over an expired or dead owner's marker by exchanging two names in one step
    # (renameat2 RENAME_EXCHANGE); where the filesystem refuses that (NFS, FUSE: exactly where
    # leases are used) it never takes it over.  So expiry is also judged here, the same way (the
    # marker unchanged for a whole lease on this process's monotonic clock, or its owner a dead
    # process on this host), and the marker is moved aside by one rename.  If two contenders
    # race, a holder may be displaced: it notices (``Claim.lost``) before publishing and drops.
    def _expired_marker(self, job_id: str) -> tuple[int, int] | None:
        """The (inode, mtime) of the job's marker if it has expired, else None."""
        path = self.paths.lease(job_id)
        try:
            marker = self.tree.stat(path)
        except FileNotFoundError:
            return (0, 0)  # gone since the try: nothing to break, try again
        identity = (marker.st_ino, marker.st_mtime_ns)
        owner = _marker_owner(path)
        if owner is not None and owner.dead_here():
            return identity
        now, key = time.monotonic(), (*identity, marker.st_ctime_ns)
        seen = self._watched.get(job_id)
        if seen is None or seen[0] != key:
            self._watched[job_id] = (key, now)
            return None
        return identity if now - seen[1] >= self.lease_seconds else None

    def _break(self, job_id: str, identity: tuple[int, int]) -> None:
        path = self.paths.lease(job_id)
        aside = SpoolPaths.partial(path, Writer.this_process().tag)
        try:
            self.tree.rename(path, aside)
        except FileNotFoundError:
            return
        moved = self.tree.stat(aside)
        if (moved.st_ino, moved.st_mtime_ns) != identity:  # a newer marker: someone took over first
            try:
                self.tree.link(aside, path)  # put it back (fails, harmlessly, if the name is taken again)
            except FileExistsError:
                pass
        self.tree.unlink(aside)

    def is_held(self, job_id: str) -> bool:
        """A marker whose owner is alive (this host) or was refreshed within the lease (elsewhere).

        Judged without taking the lease; the age of a marker from another host is read against
        this host's clock, so this is for showing, not for deciding who may claim.
        """
        try:
            marker = self.tree.stat(self.paths.lease(job_id))
        except FileNotFoundError:
            return False
        owner = _marker_owner(self.paths.lease(job_id))
        if owner is not None and owner.is_here():
            return owner.alive_here()
        return time.time() - marker.st_mtime < self.lease_seconds

    def claim_path(self, job_id: str) -> Path:
        return self.paths.claim(job_id)

    def write_claim(self, job_id: str, attempt: Attempt | None) -> None:
        if attempt is None:
            self.tree.unlink(self.paths.claim(job_id))
        else:
            self.scratch.publish_text(self.paths.claim(job_id), attempt.claim_json().decode())

    def owner_is_provably_live(self, claim: Attempt) -> bool:
        # A holder on another machine is known alive only by its heartbeat; wait for its tile or
        # for its lease to run out rather than end and leave the job to a node that may be gone.
        return claim.writer.alive_here()

    def holder_is_provably_live(self, job_id: str) -> bool:
        # A marker that names no live process of this host may be a dead worker's: one killed
        # between filelock making the marker and writing its owner into it leaves an empty one,
        # which only its lease running out frees.  Leaving it would strand the job.
        owner = _marker_owner(self.paths.lease(job_id))
        return owner is not None and owner.alive_here()


def _read_claim(path: Path) -> Attempt | None:
    try:
        # O_NONBLOCK, O_NOFOLLOW: a FIFO or a link planted at a claim's path is not waited on or followed.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise JobRunnerError(_planted(path)) from None
        raise JobRunnerError(f"cannot read the claim in {path} ({error})") from None
    try:
        data = os.read(fd, 64 * 1024)  # a claim is a line of JSON: more is not a claim
    except OSError as error:
        raise JobRunnerError(f"cannot read the claim in {path} ({error})") from None
    finally:
        os.close(fd)
    return Attempt.from_claim(data) if data.strip() else None


def _planted(path: Path) -> str:
    """What to say of a symbolic link at a lock or claim path: jobrunner never makes one."""
    return f"{path} is a symbolic link, which no worker makes: someone who can write the spool put it there; remove it"


def _marker_owner(path: Path) -> Writer | None:
    """The writer a lease marker names; its format is filelock's ``key=value`` lines.

    filelock 4 writes ``host=`` (``filelock/_soft/_records.py``); reading ``hostname=``, as this
    once did, found no owner, so a dead owner on this host was waited out for the whole lease
    and a worker could give up on its job first, leaving it stranded.
    """
    try:
        fields = dict(line.partition("=")[::2] for line in path.read_text().splitlines() if "=" in line)
        return Writer(fields.get("host") or fields["hostname"], int(fields["pid"]))
    except (OSError, KeyError, ValueError, UnicodeDecodeError):
        return None


# -- choosing a mode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on, from ``/proc/self/mounts``."""

    point: str
    fstype: str
    source: str
    options: tuple[str, ...]

    @property
    def lock_options(self) -> list[str]:
        """The mount options that decide whether a lock reaches other machines."""
        keys = ("nolock", "lock", "local_lock", "localflock", "noflock", "flock", "vers", "nfsvers")
        return [o for o in self.options if o.split("=")[0] in keys]


#: Filesystems whose locks may not be seen from other machines (or whose locking we cannot know).
_UNSURE_FILESYSTEMS = ("fuse", "cifs", "smb3", "smbfs", "9p", "afs", "beegfs", "glusterfs", "sshfs")


def find_mount(path: Path, mounts_file: str = "/proc/self/mounts") -> Mount | None:
    """The mount holding ``path``: the longest mount point that contains it."""
    real = os.path.realpath(path)
    best: Mount | None = None
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        point = _unescape(fields[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, fields[2], _unescape(fields[0]), tuple(fields[3].split(",")))
    return best


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash in octal: "a\040b".
    return field.encode().decode("unicode_escape") if "\\" in field else field


def probe_flock(folder: Path, tree: Tree | None = None) -> OSError | None:
    """Take and drop a real ``flock`` on a probe file in ``folder``; the error if that fails.

    ``tree``: the spool's, when ``folder`` is in it (the probe is then removed through it).
    """
    if tree is None:
        with Tree(folder) as own:
            return probe_flock(folder, own)
    probe = folder / f".flock-probe.{Writer.this_process().tag}"
    tree.folder(folder)  # a link in its place is refused before filelock looks there
    try:
        lock = FileLock(probe, blocking=False, fallback_to_soft=False, thread_local=False)
        with lock.acquire():
            pass
    except Timeout:
        return None
    except OSError as error:
        return error
    finally:
        with suppress(OSError):
            tree.unlink(probe)
    return None


@dataclass(frozen=True)
class Choice:
    mode: str
    reason: str
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    chosen_by: str = ""


def auto_choice(folder: Path, tree: Tree | None = None) -> Choice:
    """What ``auto`` picks for a spool whose locks live in ``folder``: measured there, then decided."""
    return choose_mode(find_mount(folder), probe_flock(folder, tree))


def choose_mode(mount: Mount | None, flock_error: OSError | None) -> Choice:
    """What ``auto`` picks, and why, given the mount and what a live flock probe did there."""
    if flock_error is not None:
        name = errno.errorcode.get(flock_error.errno or 0, "error")
        return Choice(LEASE, f"flock fails on this disk ({name}: {flock_error.strerror or flock_error})")
    if mount is None:
        return Choice(FLOCK, "flock works here and the filesystem is unknown")
    fstype, options = mount.fstype, set(mount.options)
    if fstype.startswith("nfs"):
        local = sorted(o for o in options if o == "nolock" or o.startswith("local_lock=") and o != "local_lock=none")
        if local:
            return Choice(LEASE, f"NFS mounted {','.join(local)}: locks stay on each client")
        return Choice(FLOCK, "NFS with its lock manager: flock reaches the server as a POSIX lock")
    if fstype == "lustre":
        if "localflock" in options:
            return Choice(LEASE, "Lustre mounted localflock: locks hold only within one node")
        return Choice(FLOCK, "Lustre with flock: locks are cluster-wide")
    if fstype.split(".")[0] in _UNSURE_FILESYSTEMS or fstype.startswith("fuse"):
        return Choice(LEASE, f"{fstype} may not pass locks between machines")
    return Choice(FLOCK, f"{fstype} is a local filesystem and flock works on it")


def resolve(
    paths: SpoolPaths, requested: str = AUTO, lease_seconds: float | None = None, tree: Tree | None = None
) -> Choice:
    """The spool's mode: the one recorded in it, or (first time) ``requested`` or ``auto``'s pick, recorded.

    A worker that asks for a mode other than the recorded one is refused: workers that disagree
    on the mode do not exclude each other.
    """
    if requested not in LOCK_MODES:
        raise JobRunnerError(f"--lock must be one of {', '.join(LOCK_MODES)}, got {requested!r}")
    recorded = read_choice(paths)
    if recorded is not None:
        if requested not in (AUTO, recorded.mode):
            raise JobRunnerError(
                f"the spool {paths.spool} is drained with {recorded.mode} locks ({recorded.reason}), "
                f"not {requested}: every worker on a spool must use the same mode; drop --lock (or "
                f"JOBRUNNER_LOCK), or stop all workers and delete {paths.locking} to choose again"
            )
        return recorded
    flock_error = probe_flock(paths.locks, tree) if requested in (AUTO, FLOCK) else None
    if flock_error is not None and flock_error.errno in (errno.ENOSPC, errno.EDQUOT):
        # The probe's file found no room: that says nothing of flock, and the workers would find none either.
        raise JobRunnerError(f"cannot try a lock in {paths.locks}: {explain_write_error(flock_error)}")
    if requested == AUTO:
        choice = choose_mode(find_mount(paths.locks), flock_error)
    else:
        choice = Choice(requested, f"--lock {requested} was asked for")
    if choice.mode == FLOCK and requested == FLOCK and (error := flock_error) is not None:
        raise JobRunnerError(
            f"--lock flock: flock fails in {paths.locks} ({error.strerror or error}): use --lock lease or auto"
        )
    lease_seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else lease_seconds
    check_lease(lease_seconds, "--lease")  # before it is written anywhere: every later worker reads it
    choice = Choice(choice.mode, choice.reason, lease_seconds, Writer.this_process().tag)
    return _record_first(paths, choice)


#: Leases shorter than this would expire under a busy file server; longer, a dead node's jobs wait too long.
LEASE_RANGE = (1.0, 24 * 3600.0)


def check_lease(seconds: float, what: str) -> None:
    low, high = LEASE_RANGE
    if not low <= seconds <= high:  # nan and inf fail this too
        raise JobRunnerError(f"{what} must be between {low:g} and {high:g} seconds, got {seconds:g}")


def _record_first(paths: SpoolPaths, choice: Choice) -> Choice:
    """Write the choice unless another worker got there first; either way, return the one on disk."""
    try:
        write_first(paths.locking, json.dumps(asdict(choice)) + "\n")  # the first writer wins, whole
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):  # a worker that recorded nothing could disagree with the next
            raise JobRunnerError(
                f"cannot record the lock mode in {paths.locking}: {explain_write_error(error)}"
            ) from None
        return choice  # a spool we may not write to (status on someone else's): choose without recording
    return read_choice(paths) or choice


def read_choice(paths: SpoolPaths) -> Choice | None:
    try:
        document = json.loads(paths.locking.read_text())
        choice = Choice(
            str(document["mode"]),
            str(document["reason"]),
            float(document["lease_seconds"]),
            str(document.get("chosen_by", "")),
        )
        check_lease(choice.lease_seconds, "its lease_seconds")
        return choice
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, JobRunnerError) as error:
        raise JobRunnerError(
            f"cannot read {paths.locking} ({error}): delete it to choose the lock mode again"
        ) from None


def locks_for(paths: SpoolPaths, choice: Choice, tree: Tree) -> JobLocks:
    if choice.mode == LEASE:
        return LeaseLocks(paths, tree, choice.lease_seconds)
    if choice.mode == FLOCK:
        return FlockLocks(paths, tree)
    raise JobRunnerError(f"{paths.locking} names an unknown lock mode {choice.mode!r}: delete it to choose again")
