"""A tile on disk: a C-ordered ``.npy`` file of float64 (one per field of a kernel that has
fields: ``Plan.tile_dtype``), and the checksum of its bytes.

A worker writes a tile through :func:`write_tile`, which hashes the bytes as they go out; the
checksum goes into its worker's journal, in the line that says the job is done
(:mod:`jobrunner.journal`).  ``reduce`` checks each file as it reads it to stitch it
(``jobrunner.stitch._CheckedReads``): the header must say exactly the plan's dtype, C order and
the tile's shape (:func:`header_problem`), the size must match, and the bytes must hash to the
checksum its worker gave (:func:`checksum_problem`), so a flipped bit, a truncated or rewritten
file (float32, ``.npz``), or another tile's file is a bad tile, never a wrong result (unless a
journal line was forged to match, by someone who may write in the spool): reduce then puts
nothing in place.  Every read of a file after its first is of the very file first read
(:func:`identity`).  :func:`check_tile` checks one file whole by the same rules.  A path that is
not a regular file (a FIFO, a device, a folder, a symbolic link) is refused without being opened
for reading in a way that could block.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import stat
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jobrunner.folders import Tree

#: What a tile of a one-array kernel is stored as: the stitched array's dtype, so no value is
#: converted on the way (a kernel with fields stores one of these per field).
TILE_DTYPE = np.dtype("<f8")
#: Bytes read at a time while checking a tile.
CHUNK = 2**20


class _HashingStream:
    """A file that NumPy sees as a plain stream, so it writes with ``file.write``, whose OSError keeps
    its errno (a full disk, a read-only folder); for a real file it calls ``ndarray.tofile``, whose
    error says only how many bytes it wrote.  It hashes what it writes."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self._file.write(data)


def write_tile(file: BinaryIO, values: np.ndarray, dtype: np.dtype = TILE_DTYPE) -> str:
    """Write ``values`` as a ``.npy`` of ``dtype`` into ``file``; the checksum of the bytes written."""
    stream = _HashingStream(file)
    np.save(stream, np.ascontiguousarray(values, dtype=dtype), allow_pickle=False)
    return f"sha256:{stream.digest.hexdigest()}"


class NotATile(Exception):
    """A path that holds something other than a tile file: refused, not read, not requeued."""


def identity(info: os.stat_result) -> tuple[int, ...]:
    """What says a file is still the one that was checked: another file renamed over it has another
    inode, and a file written in place has another change time."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def open_tile(path: Path, tree: Tree | None = None) -> tuple[int, os.stat_result]:
    """A descriptor of the tile file at ``path``, and what it is: never through a link, never
    waiting on a FIFO.

    ``tree``: the spool's folders, so that a link in place of the tiles folder is refused too
    (see :mod:`jobrunner.folders`).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags) if tree is None else tree.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotATile(f"{path} is a symbolic link, which no worker writes") from None
        raise
    info = os.fstat(fd)
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:  # before any read, which would fail (a folder) or find nothing (a FIFO)
        os.close(fd)
        what = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}.get(kind, "a device")
        raise NotATile(f"{path} is {what}, not a tile file")
    return fd, info


def check_tile(
    path: Path,
    shape: tuple[int, ...],
    checksums: str | Collection[str],
    seen: dict | None = None,
    tree: Tree | None = None,
    dtype: np.dtype = TILE_DTYPE,
) -> str | None:
    """Why the tile at ``path`` is bad (missing, truncated, another dtype or shape, other bytes), or None.

    ``checksums``: what the attempts that finished it said its bytes hash to (usually one).

    Raises :class:`NotATile` for a path that is not a regular file, and OSError for a file that
    cannot be read (which proves nothing about the tile).  ``seen``: where to note the identity
    of the file read, so that whoever reads it (or removes it) later can tell it is still that file.
    """
    if isinstance(checksums, str):
        checksums = {checksums}  # one, not the characters of one
    try:
        fd, info = open_tile(path, tree)
    except FileNotFoundError:
        return "missing"
    try:
        digest = hashlib.sha256()
        # Each read asks for what the file should still hold, and one byte more, up to CHUNK: a
        # buffer of CHUNK for a 13 kB tile costs more than reading it.  Until a read finds nothing:
        # a file that grew since it was looked at is read whole too.
        head = os.read(fd, min(CHUNK, max(info.st_size, 4095) + 1))  # the header whole, whatever was seen
        digest.update(head)
        size = len(head)
        while chunk := os.read(fd, min(CHUNK, max(info.st_size - size, 0) + 1)):
            digest.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if seen is not None:
        seen[str(path)] = identity(info)  # good or bad: what was checked, for whoever acts on it later
    return header_problem(head, size, shape, dtype) or checksum_problem(digest, checksums)


#: Why a tile in place that no worker's journal gives a checksum for cannot be checked as it is.
UNVOUCHED = (
    "no worker's journal gives its checksum (its journal was lost, or the file was put there by hand), "
    "and computing it again here gave other bytes"
)


def checksum_problem(digest, checksums: Collection[str]) -> str | None:
    """Why a tile file whose bytes hash to ``digest`` (a finished ``hashlib.sha256``) is not the
    one its workers wrote, given the ``checksums`` they said it has; None if it is."""
    if not checksums:
        return UNVOUCHED
    if f"sha256:{digest.hexdigest()}" not in checksums:
        return "changed since its worker wrote it (its bytes do not match the checksum its worker gave)"
    return None


def describe_dtype(dtype: np.dtype) -> str:
    """``float64``, or ``float64 fields misfit, origin_time``."""
    if dtype.names:
        return f"{dtype[0]} fields {', '.join(dtype.names)}"
    return str(dtype)


#: Headers found good, by shape and dtype: every tile of one shape has the very same header, so
#: after the first the others are recognised by their bytes (parsing one costs 50 us: a second
#: for reduce's 20,000 tiles).
_GOOD_HEADERS: dict[tuple, bytes] = {}


def header_problem(head: bytes, size: int, shape: tuple[int, ...], expected_dtype: np.dtype) -> str | None:
    """Why a file of ``size`` bytes that starts with ``head`` (its header whole, or more) is not a
    tile file of ``shape`` and ``expected_dtype``; None if it is."""
    key = (tuple(shape), expected_dtype)
    known = _GOOD_HEADERS.get(key)
    if known is not None and head.startswith(known):
        return _size_problem(size, len(known) + expected_dtype.itemsize * math.prod(shape))
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            return f"not a tile file (.npy version {version})"
        found, fortran, dtype = read_header[version](stream, max_header_size=10_000)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as error:
        return f"not a tile file ({error})"
    if dtype != expected_dtype or fortran or found != tuple(shape):
        return (
            f"holds {describe_dtype(dtype)} {found}{' in Fortran order' if fortran else ''}, "
            f"expected {describe_dtype(expected_dtype)} {tuple(shape)}"
        )
    problem = _size_problem(size, stream.tell() + expected_dtype.itemsize * math.prod(shape))
    if problem is None:
        _GOOD_HEADERS[key] = head[: stream.tell()]
    return problem


def _size_problem(size: int, expected: int) -> str | None:
    if size != expected:
        return f"{'truncated' if size < expected else 'too long'}: {size} bytes, expected {expected}"
    return None
