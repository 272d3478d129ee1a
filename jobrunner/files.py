"""Publishing files atomically, and making sure a folder can be written.  Used by every writer."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from jobrunner.errors import JobRunnerError
from jobrunner.paths import SpoolPaths, writer_tag

#: How every partial file is made: a new file (never one that exists), never through a symbolic link.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(target: Path, write: Callable[[BinaryIO], None], partial: Path | None = None) -> None:
    """Write ``target`` through ``write(file)`` under a partial name, then rename it into place.

    ``partial``: where to write it first (same filesystem), if not beside ``target``: a file in a
    writer's own scratch folder (see :meth:`SpoolPaths.scratch`), made when missing and refused
    if it is not this user's own (see :func:`open_own_folder`).

    Nothing written here follows a symbolic link at its own name or in place of the scratch
    folder: in a folder shared with a group, a member could plant one there to make this process
    write into a file of their choosing.  (The folders above are still opened by path: a link in
    place of one of them is not refused yet.)  So the partial is created new (``O_EXCL``) without
    following a link (``O_NOFOLLOW``), inside a folder opened once and then used through its
    descriptor, and renamed from there; whatever was at the partial name is unlinked first
    (unlinking a link removes the link, never its target).
    """
    if partial is None:
        partial = SpoolPaths.partial(target, writer_tag())
        folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        folder = open_own_folder(partial.parent)
    name = partial.name
    try:
        fd = _create(name, folder)
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
            os.replace(name, target, src_dir_fd=folder)
        except BaseException:
            with suppress(OSError):  # on a read-only disk even this fails; the error being raised matters more
                os.unlink(name, dir_fd=folder)
            raise
    finally:
        os.close(folder)


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


def write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet, never through a link (a folder a group may write to
    could have one planted at its name while it is being filled)."""
    with os.fdopen(os.open(path, _CREATE, 0o644), "wb") as file:
        file.write(text.encode())


def create_new(path: Path) -> BinaryIO:
    """A new file at ``path``, open for reading and writing: made as partials are (see
    :func:`write_atomically`), for a writer that maps it (``reduce``'s stitched array)."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.fdopen(_create(path.name, folder, (_CREATE & ~os.O_WRONLY) | os.O_RDWR), "r+b")
    finally:
        os.close(folder)


def open_own_folder(folder: Path) -> int:
    """A descriptor of ``folder``, a writer's own scratch folder: made (mode 0700) when missing, and
    refused if it is a symbolic link or another user's (planted by a member of a shared folder's group)."""
    made = False
    for _ in range(2):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            try:  # made on first use, or again after the final sweep
                folder.mkdir(mode=0o700)  # FileNotFoundError if its parent went (a retired plan's)
                made = True
            except FileExistsError:
                pass
            continue
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise JobRunnerError(
                    f"{folder}, this worker's own folder for partial files, is a symbolic link or a file: "
                    "someone who can write the spool or outputs folder put it there; remove it, "
                    "and see `jobrunner doctor` about who may write there"
                ) from None
            raise
        info = os.fstat(fd)
        # Just made by this call: ours, whatever owner the filesystem reports (NFS with broken id
        # mapping, sshfs and CIFS may show every file as someone else's).
        if info.st_uid != os.geteuid() and not made:
            os.close(fd)
            raise JobRunnerError(
                f"{folder}, this worker's own folder for partial files, belongs to another user "
                f"(uid {info.st_uid}): someone who can write the spool or outputs folder made it, or this "
                "filesystem does not report owners as they are; remove it"
            )
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o700)  # ours, but made open (by an older jobrunner): only we write in it
        return fd
    raise FileNotFoundError(errno.ENOENT, "cannot make the folder", str(folder))


def write_first(target: Path, text: str) -> bool:
    """Publish ``target`` with ``text`` unless it exists (``os.link``: the first writer wins, whole).

    True if this call wrote it, False if it was there.  The partial is made as in
    :func:`write_atomically`, so a planted link at its name is not followed.
    """
    partial = SpoolPaths.partial(target, writer_tag())
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
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
        os.close(folder)


def write_text(target: Path, text: str, partial: Path | None = None) -> None:
    write_atomically(target, lambda file: file.write(text.encode()), partial)


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


def world_writable_problem(path: Path, role: str) -> str | None:
    """Why a folder every user of the machine may write to is refused (None if it is not one).

    Anyone could plant jobs or records there and steer the workers.  A folder shared with a group
    (``g+w``) is fine: the group is trusted with the spool.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not mode & stat.S_IWOTH:
        return None
    return (
        f"the {role} folder {path} can be written by every user of this machine (mode {stat.S_IMODE(mode):o}), "
        f"so anyone could plant or change its files: run `chmod o-w '{path}'` (use g+w to share it with your group)"
    )


def refuse_world_writable(path: Path, role: str) -> None:
    problem = world_writable_problem(path, role)
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
