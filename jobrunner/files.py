"""Publishing files atomically, and making sure a folder can be written.  Used by every writer."""

from __future__ import annotations

import errno
import getpass
import os
import shlex
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from jobrunner.errors import JobRunnerError
from jobrunner.folders import FOLDER, Tree
from jobrunner.paths import SpoolPaths
from jobrunner.writer import writer_tag

#: How every partial file is made: a new file (never one that exists), never through a symbolic link.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(
    target: Path,
    write: Callable[[BinaryIO], None],
    partial: Path | None = None,
    tree: Tree | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write ``target`` through ``write(file)`` under a partial name, then rename it into place.

    ``partial``: where to write it first (same filesystem), if not beside ``target``: a file in a
    writer's own scratch folder (see :meth:`SpoolPaths.scratch`), made when missing and refused
    if it is not this user's own (see :func:`open_own_folder`).  ``tree``: the spool's or outputs'
    folders (see :mod:`jobrunner.folders`), through which ``target``'s folder is reached; without
    one, that folder is opened by path (a file of the user's own choosing, not in a spool).

    Nothing written here follows a symbolic link, at its own name, in place of the scratch
    folder or of any folder of the tree: in a folder shared with a group, a member could plant
    one to make this process write into a file of their choosing.  So the partial is created new
    (``O_EXCL``) without following a link (``O_NOFOLLOW``), inside a folder reached through
    descriptors, and renamed from there; whatever was at the partial name is unlinked first
    (unlinking a link removes the link, never its target).
    """
    if tree is None:
        with Tree(target.parent) as own_tree:
            return write_atomically(target, write, partial, own_tree, before_rename)
    destination = tree.parent(target)
    if partial is None:
        folder, name = destination, SpoolPaths.partial(target, writer_tag()).name
        fd = _create(name, folder)
    else:
        folder, name = _own_folder(partial.parent, tree), partial.name
        try:
            fd = _create(name, folder)
        except FileNotFoundError:  # removed since it was kept (the run's end, the final sweep): make it again
            tree.forget(partial.parent)
            folder = _own_folder(partial.parent, tree)
            fd = _create(name, folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        if before_rename is not None:
            before_rename()
        os.replace(name, target.name, src_dir_fd=folder, dst_dir_fd=destination)
    except BaseException:
        with suppress(OSError):  # on a read-only disk even this fails; the error being raised matters more
            os.unlink(name, dir_fd=folder)
        raise


def _own_folder(folder: Path, tree: Tree) -> int:
    """A writer's scratch folder, checked once (see :func:`open_own_folder`) and then kept by the tree:
    a job's tile and record are each written there, and opening and checking it each time cost
    three system calls."""
    return tree.keep(folder, lambda: open_own_folder(folder, tree))


@contextmanager
def _tree_for(target: Path, tree: Tree | None) -> Iterator[Tree]:
    """``tree``, or one rooted at ``target``'s folder for this one write (closed after it)."""
    if tree is not None:
        yield tree
        return
    with Tree(target.parent) as tree:
        yield tree


def _create(name: str, folder: int, flags: int = _CREATE) -> int:
    try:
        return os.open(name, flags, 0o644, dir_fd=folder)
    except FileExistsError:  # a partial of a killed writer with our pid, or something planted there
        os.unlink(name, dir_fd=folder)
    try:
        return os.open(name, flags, 0o644, dir_fd=folder)
    except FileExistsError:  # planted again at once: someone is racing this process
        raise JobRunnerError(
            f"something is made again at {name} each time it is removed, in a folder of the spool or outputs: "
            "someone who can write there is interfering; see who (`ls -la`)"
        ) from None


def write_new(path: Path, text: str, tree: Tree | None = None) -> None:
    """Write a file that must not exist yet, never through a link (a folder a group may write to
    could have one planted at its name while it is being filled)."""
    with _tree_for(path, tree) as tree, os.fdopen(tree.open(path, _CREATE), "wb") as file:
        file.write(text.encode())


def write_new_files(folder: Path, files: dict[str, str], tree: Tree, mode: int = 0o644) -> None:
    """Write many files that must not exist yet into one folder (a plan's specs), as
    :func:`write_new` does, through one descriptor of the folder: a plan of 100,000 tiles spends
    its time on the disk's creates, not on finding the folder again for each.  ``mode``, less
    the umask."""
    folder_fd = tree.folder(folder)
    for name, text in files.items():
        fd = os.open(name, _CREATE, mode, dir_fd=folder_fd)
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)


def create_new(path: Path, tree: Tree | None = None) -> BinaryIO:
    """A new file at ``path``, open for reading and writing: made as partials are (see
    :func:`write_atomically`), for a writer that maps it (``reduce``'s stitched array)."""
    with _tree_for(path, tree) as tree:
        return os.fdopen(_create(path.name, tree.parent(path), (_CREATE & ~os.O_WRONLY) | os.O_RDWR), "r+b")


def open_own_folder(folder: Path, tree: Tree) -> int:
    """A descriptor of ``folder``, a writer's own scratch folder: made (mode 0700) when missing, and
    refused if it is a symbolic link or another user's (planted by a member of a shared folder's group).

    Its own descriptor, for the caller to close.
    """
    parent = tree.parent(folder)  # FileNotFoundError if it went (a retired plan's)
    made = False
    for _ in range(2):
        try:
            fd = os.open(folder.name, FOLDER, dir_fd=parent)
        except FileNotFoundError:
            try:  # made on first use, or again after the final sweep
                os.mkdir(folder.name, 0o700, dir_fd=parent)
                made = True
            except FileExistsError:
                pass
            continue
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise JobRunnerError(
                    f"{folder}, this worker's own folder for partial files, is a symbolic link or a file: "
                    "someone who can write the spool or outputs folder put it there; remove it"
                ) from None
            raise
        info, me = os.fstat(fd), os.geteuid()
        # Just made by this call: ours, whatever owner the filesystem reports (NFS with broken id
        # mapping, sshfs and CIFS may show every file as someone else's).
        if info.st_uid != me and not made:
            os.close(fd)
            raise JobRunnerError(
                f"{folder}, this worker's own folder for partial files, belongs to another user "
                f"(uid {info.st_uid}): someone who can write the spool or outputs folder made it, or this "
                "filesystem does not report owners as they are; remove it"
            )
        if info.st_mode & 0o077 and info.st_uid == me:
            os.fchmod(fd, 0o700)  # ours, but made open (by an older jobrunner): only we write in it
        return fd
    raise FileNotFoundError(errno.ENOENT, "cannot make the folder", str(folder))


def write_first(target: Path, text: str, tree: Tree | None = None) -> bool:
    """Publish ``target`` with ``text`` unless it exists (``os.link``: the first writer wins, whole).

    True if this call wrote it, False if it was there.  The partial is made as in
    :func:`write_atomically`, so a planted link at its name is not followed.
    """
    partial = SpoolPaths.partial(target, writer_tag())
    with _tree_for(target, tree) as tree:
        folder = tree.parent(target)
        try:
            with os.fdopen(_create(partial.name, folder), "wb") as file:
                file.write(text.encode())
            try:
                os.link(partial.name, target.name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError:
                return False
            return True
        finally:
            with suppress(OSError):
                os.unlink(partial.name, dir_fd=folder)


def write_text(target: Path, text: str, partial: Path | None = None, tree: Tree | None = None) -> None:
    write_atomically(target, lambda file: file.write(text.encode()), partial, tree)


def append_output_to(log: Path, spool: Path) -> None:
    """From now on, this process's stdout and stderr append to the file ``log`` (``work --log``).

    Opened as every file jobrunner writes in a spool is: never through a link at its name or in
    place of a folder on the way from ``spool`` (when ``log`` is in it), never a FIFO or a device.
    Why jobrunner opens it rather than Slurm: ``slurmstepd`` opens ``--output`` by path, as the
    user, so a member of a group-shared spool who put a link in place of ``slurm/logs`` would
    choose which of the user's files each task truncates.
    """
    log = log.absolute()
    root = spool.absolute() if log.is_relative_to(spool.absolute()) else log.parent
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        with Tree(root) as tree:
            fd = os.open(log.name, flags | os.O_CLOEXEC, 0o644, dir_fd=tree.folder(log.parent, create=True))
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO nobody reads
            raise JobRunnerError(f"--log {log} is a symbolic link or a FIFO: someone put it there; remove it") from None
        raise JobRunnerError(f"cannot open the log {log}: {explain_write_error(error)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JobRunnerError(f"--log {log} is not a regular file: pass a file")
        os.set_blocking(fd, True)
        for stream in (1, 2):
            os.dup2(fd, stream)
    finally:
        os.close(fd)


def ensure_folder_in(tree: Tree, path: Path, role: str) -> int:
    """The folder ``path`` of ``tree``, made if missing (never through a planted link); refused if
    every user may write to it.  Its descriptor is the tree's: do not close it."""
    fd = tree.folder(path, create=True)
    refuse_world_writable(path, role, os.fstat(fd))
    return fd


def ensure_folder(path: Path, role: str, option: str) -> None:
    """Create ``path`` if needed; say plainly what to do if it is a file or not writable."""
    if path.exists() and not path.is_dir():
        raise JobRunnerError(f"the {role} path {path} is a file, not a folder: pass {option} with a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JobRunnerError(
            f"cannot create the {role} folder {path} ({error.strerror}): pass {option} with a writable folder"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise JobRunnerError(f"the {role} folder {path} is not writable: fix its permissions or pass {option}")
    refuse_world_writable(path, role)


def world_writable_problem(path: Path, role: str, info: os.stat_result | None = None) -> str | None:
    """Why a folder every user of the machine may write to is refused (None if it is not one).

    Anyone could plant jobs or records there and steer the workers.  A folder shared with a group
    (``g+w``) is fine: the group is trusted with the spool.
    """
    try:
        mode = (info or path.stat()).st_mode
    except FileNotFoundError:
        return None
    if not mode & stat.S_IWOTH:
        return None
    problem = (
        f"the {role} folder {path} can be written by every user of this machine (mode {stat.S_IMODE(mode):o}), "
        "so anyone could plant or change its files"
    )
    owner = (info or path.stat()).st_uid
    if mode & stat.S_ISVTX and owner != os.geteuid():
        # /tmp, a cluster's /scratch: everyone's shared folder, meant to be world-writable.  Taking
        # o-w from it would break it for every other user (and needs its owner, usually root).
        # mktemp, not mkdir of a fixed name, which another user could make first.
        private = shlex.quote(str(path / f"{_user_name()}-XXXXXX"))
        return (
            f"{problem}: it is a shared scratch folder (sticky bit, like /tmp); make a private folder in it, "
            f"`mktemp -d {private}`, and use folders in there"
        )
    return f"{problem}: run `chmod o-w {shlex.quote(str(path))}` (use g+w to share it with your group)"


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a container's --user) and no $USER
        return str(os.geteuid())


def refuse_world_writable(path: Path, role: str, info: os.stat_result | None = None) -> None:
    problem = world_writable_problem(path, role, info)
    if problem is not None:
        raise JobRunnerError(problem)


def explain_write_error(error: OSError) -> str:
    """What a failed write means for the user, and what to do: the disk is full, or read-only."""
    what, then = f"{error.strerror or error}", "then run the workers again"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{what}: the disk is full (or a quota or file-size limit is reached); free space, {then}"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{what}: the folder is read-only; make it writable (or pass another folder), {then}"
    return f"{what}: fix the disk or the folder, {then}"
