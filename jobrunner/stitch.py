"""Stitch the tiles into one array, one labelled dataset and one figure.

The array is created as a ``.npy`` under a partial name, its full size reserved on the disk, and
filled a block of rows at a time: each block is stitched in memory from tile rows read at their
file offsets and written at its place, so resident memory stays at a few blocks, whatever the
grid's size.  The figure is drawn from a decimated copy gathered while stitching, so the array is
never read back (by a drawer process, :mod:`jobrunner.drawer`, that has loaded matplotlib in the
meantime); the dataset (``stitched.nc``, see :mod:`jobrunner.dataset`) is written from the same
blocks.  The files are renamed into place only when all are complete: a refused or failed reduce
leaves an earlier ``stitched.npy``, ``stitched.nc`` and ``stitched.png`` untouched.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import shlex
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner import dataset
from jobrunner.compute import compute_tile
from jobrunner.dataset import DatasetWriter
from jobrunner.drawer import Drawer
from jobrunner.errors import JobRunnerError
from jobrunner.figures import FigureView, field_title, figure_view
from jobrunner.files import create_new, ensure_folder, write_atomically, write_text
from jobrunner.identity import versions
from jobrunner.paths import SpoolPaths
from jobrunner.records import DONE, FAILED, PENDING, RUNNING, Attempt
from jobrunner.spool import JobStatus, Spool
from jobrunner.tilefile import UNVOUCHED, NotATile, checksum_problem, header_problem, identity, open_tile, write_tile
from jobrunner.wording import count_of, size_of
from jobrunner.writer import Writer, writer_tag

#: How many job ids an error message lists before it gives a count.
LISTED = 4


@dataclass(frozen=True)
class ReduceResult:
    array: Path
    figure: Path
    shape: tuple[int, ...]
    missing: list[str]  # jobs stitched as NaN (only with partial=True)
    dataset: Path | None = None  # stitched.nc, unless its writer is not installed
    notes: tuple[str, ...] = ()  # what the user should know (a product not written, and why)


def _listing(ids: list[str]) -> str:
    shown = ", ".join(ids[:LISTED])
    return shown + (f" and {len(ids) - LISTED} more" if len(ids) > LISTED else "")


def _refuse_unfinished(paths: SpoolPaths, unfinished: list[JobStatus], total: int) -> JobRunnerError:
    by_state = {state: [s.id for s in unfinished if s.state == state] for state in (RUNNING, PENDING, FAILED)}
    parts = [f"{state}: {_listing(ids)}" for state, ids in by_state.items() if ids]
    advice = []
    if by_state[RUNNING]:
        # Workers are at it (a supervisor, terminals, an array): another one would only share their tiles.
        advice.append(f"workers are computing it: wait for them to finish (`{paths.command('status', '--watch')}`)")
    elif by_state[PENDING]:
        advice.append(f"run `{paths.command('supervise')}` or `{paths.command('work')}`")
    if by_state[FAILED]:
        advice.append(
            f"`{paths.command('status')}` says why jobs failed; `{paths.command('work', '--retry-failed')}` "
            "runs them again"
        )
    todo = "; ".join(advice)
    return JobRunnerError(
        f"{len(unfinished)} of {total} tiles are missing ({'; '.join(parts)}): {todo}; "
        f"or `{paths.command('reduce', '--partial')}` stitches what is there"
    )


def _checksums(spool: Spool, done: list[JobStatus], done_lines: list) -> dict[str, set[str]]:
    """What the done tiles' bytes hash to, as the attempts that finished them said in their journals."""
    checksums = spool.checksums(done_lines)
    if not spool.tree.is_folder(spool.paths.journals) and any(s.id not in checksums for s in done):
        raise JobRunnerError(
            f"the journals folder {spool.paths.journals} of plan {spool.plan.id} is missing, though "
            f"{count_of(len(done), 'tile')} are in place: was it moved? Move it back; nothing was requeued"
        )
    return checksums


class _CheckedReads:
    """Every done tile's rows, each tile file read once, front to back, and checked as it is read
    (see :mod:`jobrunner.tilefile`): its header and size with its first rows, its checksum with
    its last.  Rows of a tile that turns out bad are stitched all the same, into partial files
    that are then thrown away: reduce puts nothing in place when any tile is bad.

    A tile proven bad (absent from its folder, truncated, of another dtype or shape, or changed
    since its worker wrote it) is noted in :attr:`bad`, and only those are put back in the queue.
    A tile that cannot be read for another reason (permissions, an I/O error) may be fine, and a
    path that holds something no worker writes (a FIFO, a folder, a symbolic link) was put there
    by someone: either refuses the reduce, with one line, and requeues nothing.

    Every read after a tile's first is from the very file first opened (:attr:`checked`, its
    identity: see :func:`jobrunner.tilefile.identity`): one renamed over it or written in place
    since is refused, never stitched.
    """

    def __init__(self, spool: Spool, checksums: dict[str, set[str]]) -> None:
        self.spool = spool
        self.checksums = checksums
        self.checked: dict[str, tuple[int, ...]] = {}  # path -> identity of each tile file as first opened
        self.bad: list[tuple[str, str]] = []  # (job id, why), in the order found
        self._found_bad: set[str] = set()
        self._digests: dict[str, object] = {}  # job id -> the hash of its bytes read so far

    def rows(self, tile, start: int, stop: int) -> np.ndarray | None:
        """Rows ``[start, stop)`` along the first axis of ``tile``, read in order (``start`` 0 first,
        each next ``start`` where the last ``stop`` was); None once the tile is found bad."""
        if tile.id in self._found_bad:
            return None
        path = self.spool.paths.tile(tile.id)
        try:
            fd, info = open_tile(path, self.spool.tree)
        except FileNotFoundError:
            if start == 0:
                return self._found(tile, "missing")
            self.spool.check_current()  # every tile gone at once: its plan was replaced
            raise JobRunnerError(f"tile {path} was removed while reduce was stitching it: reduce again") from None
        except NotATile as error:
            raise JobRunnerError(
                f"{error}: someone put it there; move it away and reduce again (its job is then computed "
                "again); nothing was requeued"
            ) from None
        except OSError as error:
            raise self._unreadable(path, error) from None
        try:
            return self._read(tile, path, fd, info, start, stop)
        except OSError as error:
            raise self._unreadable(path, error) from None
        finally:
            os.close(fd)

    def _read(self, tile, path: Path, fd: int, info: os.stat_result, start: int, stop: int) -> np.ndarray | None:
        shape, dtype = tile.shape, self.spool.plan.tile_dtype
        row = math.prod(shape[1:]) * dtype.itemsize
        header_length = info.st_size - math.prod(shape) * dtype.itemsize  # if it is the tile it should be
        if start == 0:
            self.checked[str(path)] = identity(info)  # good or bad: what was read, for whoever acts on it later
            if not 0 < header_length <= MAX_HEADER:  # not of this size: its own header says what it is
                return self._found(tile, header_problem(os.pread(fd, 4096, 0), info.st_size, shape, dtype))
            header = bytearray(header_length)
            rows = _read_exactly(fd, path, [header], 0, stop - start, shape, dtype)
            problem = header_problem(bytes(header), info.st_size, shape, dtype)
            if problem is not None:
                return self._found(tile, problem)
            digest = self._digests[tile.id] = hashlib.sha256(header)
        else:
            if identity(info) != self.checked.get(str(path)):
                raise JobRunnerError(f"tile {path} changed while reduce was stitching it: reduce again")
            rows = _read_exactly(fd, path, [], header_length + start * row, stop - start, shape, dtype)
            digest = self._digests[tile.id]
        digest.update(memoryview(rows.reshape(-1).view(np.uint8)))
        if stop == shape[0]:  # its last rows: all its bytes are read
            del self._digests[tile.id]
            said = self.checksums.get(tile.id, set())
            if not said:  # re-verified: computed again here, kept if the bytes agree
                said = {_computed_again(self.spool, tile)}
            problem = checksum_problem(digest, said)
            if problem is not None:
                return self._found(tile, UNVOUCHED if not self.checksums.get(tile.id) else problem)
        return rows

    def _found(self, tile, why: str) -> None:
        self._found_bad.add(tile.id)
        self._digests.pop(tile.id, None)
        self.bad.append((tile.id, why))
        return None

    @staticmethod
    def _unreadable(path: Path, error: OSError) -> JobRunnerError:
        return JobRunnerError(
            f"cannot read tile {path} ({error.strerror or error}): fix the disk or its "
            "permissions and reduce again; nothing was requeued"
        )


#: The longest ``.npy`` header a tile file is read with (version 1 headers end by 64 KiB).
MAX_HEADER = 2**16 + 10


def _read_exactly(
    fd: int, path: Path, before: list[bytearray], offset: int, count: int, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """``count`` rows of a tile of ``shape`` read at ``offset``, after filling the buffers ``before``:
    one ``preadv`` straight into a new array, unless it comes short (a signal, a network disk)."""
    rows = np.empty((count, *shape[1:]), dtype=dtype)
    data = memoryview(rows.reshape(-1).view(np.uint8))  # its bytes, fields or not: read straight into them
    buffers = [*(memoryview(b) for b in before), data]
    while buffers:
        got = os.preadv(fd, buffers, offset)
        if got == 0:  # shorter than it was when opened
            raise JobRunnerError(f"tile {path} changed while reduce was stitching it: reduce again")
        offset += got
        while buffers and got >= len(buffers[0]):
            got -= len(buffers[0])
            buffers.pop(0)
        if buffers and got:
            buffers[0] = buffers[0][got:]
    return rows


def _refuse_moved_tiles(spool: Spool, statuses: list[JobStatus]) -> None:
    """No tile in place, though the journals say tiles were done: the tiles folder was moved
    (or emptied).  Computing them all again is not what anyone wants."""
    if any(s.state == DONE for s in statuses) or spool.tree.is_folder(spool.paths.tiles):
        return
    said_done = {job for job, _ in spool.finished_attempts(tail=True)}
    if said_done:
        raise JobRunnerError(
            f"the tiles folder {spool.paths.tiles} of plan {spool.plan.id} is missing, though its workers "
            f"say {count_of(len(said_done), 'tile')} were done: was it moved? Move it back; nothing was requeued"
        )


def _computed_again(spool: Spool, tile) -> str:
    """The checksum the tile's bytes would have if computed now, by this process (whose kernel
    code must be the plan's): what vouches for a tile whose worker's journal was lost."""
    spool.check_code()
    return write_tile(io.BytesIO(), compute_tile(spool.plan, tile), spool.plan.tile_dtype)


#: Bytes of the output array stitched at once.
BLOCK_BYTES = 32 * 2**20


def _stitch(
    spool: Spool,
    done: list[str],
    target: Path,
    fill_holes: bool,
    reads: _CheckedReads,
    view: FigureView,
    labelled: DatasetWriter | None,
) -> np.ndarray:
    """Write every done tile into a new ``.npy`` at ``target`` (and ``labelled``); return ``view`` of it."""
    shape, dtype = spool.plan.shape, spool.plan.tile_dtype
    with create_new(target) as file:  # never through a link planted at the partial's name
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(file, header)
        file.flush()
        offset = file.tell()
        _reserve(file, offset + math.prod(shape) * dtype.itemsize, target.parent)
        return _fill(spool, done, file, offset, view, fill_holes, reads, labelled)


def _reserve(file, size: int, folder: Path) -> None:
    """Give ``file`` its full ``size``, reserved on the disk: a disk without room for the array says
    so before any tile is read.  Where the filesystem cannot reserve space (ZFS, some FUSE), it is
    only sized, and a full disk shows as a failed write."""
    try:
        os.posix_fallocate(file.fileno(), 0, size)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            os.ftruncate(file.fileno(), size)
            return
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise JobRunnerError(
            f"no room for the stitched array in {folder}: it needs {size:,} bytes ({size_of(size)}); "
            "free space there, then reduce again"
        ) from None


def block_rows(plan) -> int:
    """How many indices of the first axis are stitched at once: about BLOCK_BYTES of the array."""
    return max(1, BLOCK_BYTES // (math.prod(plan.shape[1:]) * plan.tile_dtype.itemsize))


def _fill(
    spool: Spool,
    done,
    file,
    offset: int,
    view: FigureView,
    fill_holes: bool,
    reads: _CheckedReads,
    labelled: DatasetWriter | None,
) -> np.ndarray:
    """Fill the reserved array a block of rows (along the first axis) at a time: each block is
    stitched in memory and written at its place in ``file``; gather the figure's view of it, and
    write the dataset's block, on the way."""
    plan = spool.plan
    shape, dtype = plan.shape, plan.tile_dtype
    row = math.prod(shape[1:]) * dtype.itemsize  # bytes of one index of the first axis
    tiles = spool.tiles
    by_band: dict[int, list] = {}
    for job_id in done:
        by_band.setdefault(tiles[job_id].bounds[0][0], []).append(tiles[job_id])
    preview = np.full(view.shape, np.nan)
    step = block_rows(plan)
    # One block's rows, reused: stitching into a map of the file instead faults in each of its
    # pages (0.4 s for 128 MB), and writing from one buffer faults in only the buffer's, once.
    block = np.empty((min(step, shape[0]), *shape[1:]), dtype)
    for row_start in range(0, shape[0], step):
        row_stop = min(shape[0], row_start + step)
        rows = block[: row_stop - row_start]  # every cell written below: by its tile, or as a hole
        computed = None
        if fill_holes:  # every cell of a hole is NaN, and marked not computed
            computed = np.zeros(rows.shape, dtype=np.uint8)
            for name in dtype.names or (None,):
                (rows[name] if name else rows)[...] = np.nan
        for band_start, band in by_band.items():
            lo, hi = max(row_start, band_start), min(row_stop, band[0].bounds[0][1])
            if lo >= hi:
                continue
            for tile in band:
                values = reads.rows(tile, lo - band_start, hi - band_start)
                if values is None:
                    continue  # a bad tile: nothing stitched is put in place
                where = (slice(lo - row_start, hi - row_start), *tile.slices[1:])
                rows[where] = values
                if computed is not None:
                    computed[where] = 1
        view.gather(rows, row_start, row_stop, preview)
        if labelled is not None:
            labelled.write(row_start, row_stop, rows, computed)
        _write_at(file.fileno(), rows, offset + row_start * row)
    return preview


def _write_at(fd: int, rows: np.ndarray, offset: int) -> None:
    """Write the bytes of the C-ordered ``rows`` into the file at ``offset``, whole."""
    data = memoryview(rows.reshape(-1).view(np.uint8))  # its bytes, fields or not
    written = 0
    while written < len(data):  # one call, unless it comes short (a signal, a network disk)
        written += os.pwrite(fd, data[written:], offset + written)


def _requeued(spool: Spool, reads: _CheckedReads) -> JobRunnerError:
    """Put the bad tiles' jobs back in the queue; the line that says so."""
    spool.check_current()  # every tile gone at once: its plan was replaced, and nothing is requeued
    bad = reads.bad
    for job_id, _ in bad:
        spool.requeue(job_id, bad_tile=True, checked=reads.checked.get(str(spool.paths.tile(job_id))))
    first, why = bad[0]
    return JobRunnerError(
        f"tile {spool.paths.tile(first)} is bad: {why}"
        + (f" (and {len(bad) - 1} more bad tiles: {_listing([job for job, _ in bad[1:]])})" if len(bad) > 1 else "")
        + f": {'its job is' if len(bad) == 1 else 'their jobs are'} pending again, so run "
        f"`{spool.paths.command('supervise')}` (or `{spool.paths.command('work')}`), then reduce again"
    )


def _remove_dead_partials(paths: SpoolPaths) -> None:
    """Partials of ``stitched.*`` left by a reduce of this host that was killed (a full-size array, maybe)."""
    for product in paths.stitched:
        for partial in paths.outputs.glob(f".{product.name}.*.partial"):
            writer = Writer.from_tag(partial.name[len(product.name) + 2 : -len(".partial")])
            if writer is not None and writer.dead_here():
                partial.unlink(missing_ok=True)  # unlink removes a planted link, never its target


def _provenance(spool: Spool, missing: list[str]) -> str:
    plan = spool.plan
    return (
        json.dumps(
            {
                "plan": plan.id,
                "code": plan.code,
                "spool": str(spool.paths.spool),
                "kernel": plan.kernel,
                "params": plan.params,
                "fields": list(plan.fields),
                "shape": list(plan.shape),
                "tiles_missing": missing,
                "stitched_at": time.time(),
                "versions": versions(),
            },
            indent=2,
        )
        + "\n"
    )


def _hosts(spool: Spool, done: list[JobStatus], done_lines: list) -> dict[str, int]:
    """How many of the done tiles each host computed (the latest attempt that finished each)."""
    latest: dict[str, Attempt] = {}
    for job_id, attempt in spool.finished_attempts(done_lines=done_lines):
        if job_id not in latest or attempt.started > latest[job_id].started:
            latest[job_id] = attempt
    hosts: dict[str, int] = {}
    for status in done:
        if status.id in latest:
            hosts[latest[status.id].host] = hosts.get(latest[status.id].host, 0) + 1
    return hosts


def reduce(
    spool: Spool, partial: bool = False, field: str | None = None, at: dict[str, float] | None = None
) -> ReduceResult:
    """Stitch every done tile into ``<outputs>/stitched.npy`` and ``stitched.nc``, and draw ``stitched.png``.

    ``field``: the field the figure draws (default the first); ``at``: where along each axis after
    the first two it is drawn (default the middle point; see :func:`jobrunner.figures.slice_indices`).
    """
    view = figure_view(spool.plan, at, field)  # a wrong --field or --slice is refused before any work
    with Drawer.start(spool.plan) as drawer:  # loads matplotlib while the tiles are checked and stitched
        return _reduce(spool, partial, view, drawer)


def _reduce(spool: Spool, partial: bool, view: FigureView, drawer: Drawer) -> ReduceResult:
    spool.check_outputs()
    statuses = spool.statuses()  # with claims: a running tile is not a failed one
    _refuse_moved_tiles(spool, statuses)
    unfinished = [s for s in statuses if s.state != DONE]
    if unfinished and not partial:
        raise _refuse_unfinished(spool.paths, unfinished, len(statuses))
    done_statuses = [s for s in statuses if s.state == DONE]
    done = [s.id for s in done_statuses]
    done_lines = list(spool.journal_lines(done_only=True)) if done else []  # read once: checksums, then hosts
    reads = _CheckedReads(spool, _checksums(spool, done_statuses, done_lines) if done else {})
    hosts = _hosts(spool, done_statuses, done_lines)  # for the dataset's attributes
    del done_lines  # a line per tile: not kept in memory while stitching
    paths = spool.paths
    ensure_folder(paths.outputs, "outputs", "--outputs")
    _remove_dead_partials(paths)
    array, figure, provenance, labelled = paths.stitched
    for target in paths.stitched:
        if target.is_dir():
            raise JobRunnerError(f"{target} is a folder: move it away, or pass --outputs")
    partials = [SpoolPaths.partial(target, writer_tag()) for target in (array, figure, labelled)]
    partial_array, partial_figure, partial_labelled = partials
    missing = [s.id for s in unfinished]
    no_writer = dataset.writer_missing()
    writer = None
    try:
        with ExitStack() as closing:
            if no_writer is None:
                # The dataset's history, not a hint (SpoolPaths.command): the spool in full, as read anywhere.
                command = f"jobrunner reduce --spool {shlex.quote(str(paths.spool))}" + (
                    " --partial" if partial else ""
                )
                attributes = dataset.attributes(spool.plan, spool.manifest.created_at, hosts, len(missing), command)
                nc_file = closing.enter_context(create_new(partial_labelled))
                mask_rows = block_rows(spool.plan) if missing else None
                writer = closing.enter_context(DatasetWriter(nc_file, spool.plan, attributes, mask_rows))
            preview = _stitch(spool, done, partial_array, bool(unfinished), reads, view, writer)
        if reads.bad:
            raise _requeued(spool, reads)
        # One count per line, and they add up: "stitched from 12 of 16 tiles" over "PARTIAL: 4 missing".
        stitched = f"{len(done)} of {len(statuses)}" if missing else f"{len(statuses)}"
        note = f"PARTIAL: {count_of(len(missing), 'tile')} missing, drawn grey" if missing else ""
        title = field_title(spool.plan, f"stitched from {stitched} tiles", note, view)
        png = drawer.png(preview, spool.plan, title, view)
        write_atomically(partial_figure, lambda file: file.write(png))
        spool.check_current()  # a reduce of a plan replaced while it stitched puts nothing in place
        partial_array.replace(array)
        partial_figure.replace(figure)
        if writer is not None:
            partial_labelled.replace(labelled)
        else:
            labelled.unlink(missing_ok=True)  # an older reduce's dataset would not be of these tiles
        write_text(provenance, _provenance(spool, missing))  # names their plan: a replace removes them
    except OSError as error:
        spool.check_current()  # tiles that vanish mid-reduce: the plan was replaced
        raise JobRunnerError(
            f"cannot write the stitched result to {paths.outputs} ({error.strerror or error}): "
            "free space or fix permissions there, or pass --outputs"
        ) from None
    finally:
        for leftover in partials:
            leftover.unlink(missing_ok=True)
    notes = (no_writer,) if no_writer else ()
    return ReduceResult(array, figure, spool.plan.shape, missing, labelled if writer else None, notes)
