"""The folders of a spool and its outputs, reached from their roots without following a link.

A spool shared with a group (``g+w``, which jobrunner accepts by design) lets any member rename
a folder in it and put a symbolic link in its place: ``plans/<id>/records -> /home/you/notes``.
A process of yours that then opened ``<spool>/plans/<id>/records/<job>.json`` by path would
write into your notes, as you.  ``O_NOFOLLOW`` guards only the last name of a path, so every
folder below a root is reached here from the root one name at a time, each opened with
``O_DIRECTORY | O_NOFOLLOW`` through the descriptor of the one above, and then used only
through its own descriptor: whatever is made, renamed, unlinked or removed is then inside the
tree whatever was planted, and a link found in place of a folder is refused with its path.

The roots themselves, the folders the user named (``--spool``, ``--outputs``), are opened by
path: a link there is the user's own (a scratch disk reached through ``$SCRATCH``).

Descriptors are kept (a job's writes would otherwise walk the tree again each time) and stay
valid when their folder is renamed or removed: a straggler of a retired plan, whose folders were
renamed aside and deleted, writes into nothing (ENOENT) rather than into whatever now has their
names.  Reading follows the same walk only where a planted file could block or mislead a
reader (tiles: see :mod:`jobrunner.tilefile`); anything else a group member can make a worker
read, they could as well have written in place, and every file read is validated.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

from jobrunner.errors import JobRunnerError

#: How a folder below a root is opened: only a folder, never through a link at its name.
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: What ``open(O_NOFOLLOW)`` answers for a link: ELOOP on Linux, EMLINK or EFTYPE on some BSDs.
_LINK_ERRORS = {errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", errno.ELOOP)}


class PlantedLink(JobRunnerError):
    """A symbolic link (or a file) where jobrunner keeps a folder: someone who can write there made it."""


class Tree:
    """Descriptors of the folders below ``roots``, each reached name by name (module doc).

    One per :class:`~jobrunner.spool.Spool` (its spool and outputs roots), kept for its life;
    short-lived ones for a single write (``Tree(target.parent)``).  Safe to share between
    threads.  Its descriptors are closed when it is garbage-collected, or by :meth:`close`.
    """

    def __init__(self, *roots: Path) -> None:
        # The deepest root first: an outputs folder inside its spool is reached from itself.
        self.roots = sorted({Path(root).absolute() for root in roots}, key=lambda root: -len(root.parts))
        self._open: dict[str, int] = {}  # by the folder's path as a string: cheaper to look up than a Path
        self._guard = threading.RLock()
        self._finalizer = weakref.finalize(self, _close_all, self._open)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def root_of(self, path: Path) -> Path:
        for root in self.roots:
            if path == root or path.is_relative_to(root):
                return root
        raise AssertionError(f"{path} is outside the folders this Tree was made for: {self.roots}")

    def folder(self, path: Path, *, create: bool = False) -> int:
        """A descriptor of the folder ``path`` (a root, or a folder below one), made if ``create``.

        Raises :class:`PlantedLink` if a link or a file stands in place of a folder on the way,
        FileNotFoundError if one is missing (and not ``create``).  Do not close it: it is kept.
        """
        key = os.fspath(path)
        fd = self._open.get(key)
        if fd is not None:
            return fd
        with self._guard:  # reentrant: a folder's walk opens its parent first
            fd = self._open.get(key)
            if fd is None:
                root = self.root_of(path)
                # A root by path (a link there is the user's own choice), unless it lies inside
                # another root: an outputs folder inside its spool is reached from the spool.
                if path == root and not any(path != other and path.is_relative_to(other) for other in self.roots):
                    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                else:
                    fd = open_folder(path.name, self.folder(path.parent, create=create), create=create, shown=path)
                self._open[key] = fd
            return fd

    def keep(self, path: Path, opener: Callable[[], int]) -> int:
        """The kept descriptor of the folder ``path``, or the one ``opener()`` gives, kept from now on
        (a writer's scratch folder, opened with its own checks)."""
        key = os.fspath(path)
        fd = self._open.get(key)
        if fd is None:
            with self._guard:
                fd = self._open.get(key)
                if fd is None:
                    fd = self._open[key] = opener()
        return fd

    def forget(self, path: Path) -> None:
        """Drop the kept descriptors of ``path`` and of every folder below it (after removing it)."""
        key = os.fspath(path)
        with self._guard:
            for kept in [k for k in self._open if k == key or k.startswith(key + os.sep)]:
                os.close(self._open.pop(kept))

    def parent(self, path: Path, *, create: bool = False) -> int:
        """The descriptor of the folder ``path`` is in: ``os.*(path.name, dir_fd=...)`` then acts inside it."""
        fd = self._open.get(os.path.dirname(os.fspath(path)))  # the usual case, without making a Path
        return fd if fd is not None else self.folder(path.parent, create=create)

    # -- what is done to names inside the tree, never through a link on the way ------------------
    def unlink(self, path: Path) -> bool:
        """Remove the file (or link: never its target) at ``path``; False if nothing was there."""
        try:
            os.unlink(path.name, dir_fd=self.parent(path))
        except FileNotFoundError:
            return False
        return True

    def rename(self, source: Path, target: Path) -> None:
        """``os.rename`` between two folders of the tree (replacing a file at ``target``)."""
        os.rename(source.name, target.name, src_dir_fd=self.parent(source), dst_dir_fd=self.parent(target))

    def link(self, source: Path, target: Path) -> None:
        """A second name for the file at ``source`` (FileExistsError if ``target`` is taken)."""
        os.link(
            source.name,
            target.name,
            src_dir_fd=self.parent(source),
            dst_dir_fd=self.parent(target),
            follow_symlinks=False,
        )

    def mkdir(self, path: Path, mode: int = 0o777, *, exist_ok: bool = False) -> None:
        try:
            os.mkdir(path.name, mode, dir_fd=self.parent(path))
        except FileExistsError:
            if not exist_ok:
                raise
            self.folder(path)  # refuses a link or a file in its place

    def rmdir(self, path: Path) -> None:
        os.rmdir(path.name, dir_fd=self.parent(path))
        self.forget(path)

    def stat(self, path: Path) -> os.stat_result:
        """The file at ``path`` itself (a link is not followed)."""
        return os.stat(path.name, dir_fd=self.parent(path), follow_symlinks=False)

    def exists(self, path: Path) -> bool:
        """Whether anything is at ``path`` (a link counts); a link on the way raises PlantedLink."""
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    def is_folder(self, path: Path) -> bool:
        """Whether the folder ``path`` is there; a link in its place (or on the way) raises PlantedLink."""
        try:
            mode = self.stat(path).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(mode):
            raise planted(path)
        return stat.S_ISDIR(mode)

    def names(self, path: Path) -> list[str]:
        """The names in the folder ``path`` (``os.listdir`` through its descriptor)."""
        return os.listdir(self.folder(path))

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        """``os.open`` of a name inside the tree; add ``O_NOFOLLOW`` to refuse a link at the name itself."""
        return os.open(path.name, flags | os.O_CLOEXEC, mode, dir_fd=self.parent(path))

    def remove_tree(self, path: Path) -> None:
        """Delete the folder ``path`` and all in it, never leaving the tree (best effort, as
        ``shutil.rmtree(ignore_errors=True)``: a straggler may still be making files in there)."""
        with suppress(OSError, PlantedLink):
            _remove_below(path.name, self.parent(path))
        self.forget(path)


def open_folder(name: str, parent: int, *, create: bool = False, shown: Path | None = None) -> int:
    """Open the folder ``name`` inside the folder ``parent`` without following a link (made if
    ``create`` and missing); ``shown``: its path, for the message."""
    for _ in range(2):
        try:
            return os.open(name, FOLDER, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with suppress(FileExistsError):  # made by another worker just now: open theirs
                os.mkdir(name, 0o777, dir_fd=parent)
        except OSError as error:
            if error.errno in _LINK_ERRORS or error.errno == errno.ENOTDIR:
                raise planted(shown if shown is not None else Path(name)) from None
            raise
    raise FileNotFoundError(errno.ENOENT, "cannot make the folder", str(shown or name))


def planted(where: Path) -> PlantedLink:
    return PlantedLink(
        f"{where} is a symbolic link or a file, where jobrunner keeps a folder: someone who can write "
        f"{where.parent} put it there, perhaps to make jobrunner write elsewhere; nothing was written "
        f"through it; see `ls -la '{where.parent}'`, and remove it"
    )


def _remove_below(name: str, parent: int) -> None:
    """``rm -r`` of ``name`` inside ``parent``, by descriptors (``shutil.rmtree(dir_fd=)`` is Python 3.11+)."""
    try:
        fd = os.open(name, FOLDER, dir_fd=parent)
    except OSError as error:
        if error.errno in _LINK_ERRORS or error.errno == errno.ENOTDIR:
            os.unlink(name, dir_fd=parent)  # a file or a link: remove the name, never a link's target
            return
        raise
    try:
        for entry in _entries(fd):
            if entry.is_dir(follow_symlinks=False):
                with suppress(OSError):
                    _remove_below(entry.name, fd)
            else:
                with suppress(OSError):
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _entries(fd: int) -> Iterator[os.DirEntry]:
    with os.scandir(fd) as entries:  # scandir reads a duplicate of ``fd``, from the start
        yield from list(entries)


def _close_all(descriptors: dict[str, int]) -> None:
    for fd in descriptors.values():
        with suppress(OSError):
            os.close(fd)
    descriptors.clear()
