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


def write_atomically(target: Path, write: Callable[[BinaryIO], None], partial: Path | None = None) -> None:
    """Write ``target`` through ``write(file)`` under a partial name, then rename it into place.

    ``partial``: where to write it first (same filesystem), if not beside ``target``; its folder
    is created when missing (a writer's scratch folder, see :meth:`SpoolPaths.scratch`).
    """
    partial = SpoolPaths.partial(target, writer_tag()) if partial is None else partial
    try:
        with _open_making_folder(partial) as file:
            write(file)
        os.replace(partial, target)
    except BaseException:
        with suppress(OSError):  # on a read-only disk even this fails; the error being raised matters more
            partial.unlink(missing_ok=True)
        raise


def _open_making_folder(partial: Path) -> BinaryIO:
    """Open ``partial`` for writing; make its folder on first use (or after the final sweep)."""
    try:
        return open(partial, "wb")
    except FileNotFoundError:
        partial.parent.mkdir(exist_ok=True)
        return open(partial, "wb")


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
