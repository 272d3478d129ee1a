"""Stitch the tiles into one array and one figure.

The array is written into a memory-mapped ``.npy`` under a partial name, so memory stays small
for grids much larger than RAM, and the figure is drawn from a strided view of it.  Both are
renamed into place only when both are complete: a refused or failed reduce leaves an earlier
``stitched.npy`` and ``stitched.png`` untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner.errors import JobRunnerError
from jobrunner.figures import field_title, save_field_figure
from jobrunner.files import ensure_folder
from jobrunner.paths import SpoolPaths, writer_tag
from jobrunner.records import DONE, FAILED
from jobrunner.spool import JobStatus, Spool

#: How many job ids an error message lists before it gives a count.
LISTED = 4


@dataclass(frozen=True)
class ReduceResult:
    array: Path
    figure: Path
    shape: tuple[int, int]
    missing: list[str]  # jobs stitched as NaN (only with partial=True)


def _listing(ids: list[str]) -> str:
    shown = ", ".join(ids[:LISTED])
    return shown + (f" and {len(ids) - LISTED} more" if len(ids) > LISTED else "")


def _refuse_unfinished(unfinished: list[JobStatus], total: int) -> JobRunnerError:
    failed = [s.id for s in unfinished if s.state == FAILED]
    other = [s.id for s in unfinished if s.state != FAILED]
    parts = []
    if other:
        parts.append(f"not done: {_listing(other)}")
    if failed:
        parts.append(f"failed: {_listing(failed)}")
    todo = "`jobrunner supervise` or `jobrunner work`" + (" with --retry-failed" if failed else "")
    return JobRunnerError(
        f"{len(unfinished)} of {total} tiles are missing ({'; '.join(parts)}): run {todo} to finish them "
        "(`jobrunner status` says why they failed), or `jobrunner reduce --partial` to stitch what is there"
    )


def _unreadable_tiles(spool: Spool, done: list[str]) -> list[tuple[str, str]]:
    """Tiles recorded done whose file is missing, truncated or of the wrong shape."""
    bad = []
    tiles = spool.plan.tile_by_id()
    for job_id in done:
        try:
            tile = np.load(spool.paths.tile(job_id), mmap_mode="r", allow_pickle=False)
            if tile.shape != tiles[job_id].shape or tile.dtype.kind != "f":
                raise ValueError(f"holds {tile.dtype} {tile.shape}, expected float {tiles[job_id].shape}")
        except FileNotFoundError:
            bad.append((job_id, "missing"))
        except (OSError, ValueError, EOFError) as error:
            bad.append((job_id, f"unreadable: {error}"))
    return bad


def reduce(spool: Spool, partial: bool = False) -> ReduceResult:
    """Stitch every done tile into ``<outputs>/stitched.npy`` and draw ``stitched.png``."""
    statuses = spool.statuses(probe_locks=False)
    unfinished = [s for s in statuses if s.state != DONE]
    if unfinished and not partial:
        raise _refuse_unfinished(unfinished, len(statuses))
    done = [s.id for s in statuses if s.state == DONE]
    bad = _unreadable_tiles(spool, done)
    if bad:
        for job_id, _ in bad:
            spool.requeue(job_id)
        first, why = bad[0]
        raise JobRunnerError(
            f"tile {spool.paths.tile(first)} is {why}"
            + (f" (and {len(bad) - 1} more bad tiles)" if len(bad) > 1 else "")
            + ": its job is pending again, so run `jobrunner supervise` (or `jobrunner work`), then reduce again"
        )
    paths = spool.paths
    ensure_folder(paths.outputs, "outputs", "--outputs")
    array, figure = paths.product("stitched.npy"), paths.product("stitched.png")
    for target in (array, figure):
        if target.is_dir():
            raise JobRunnerError(f"{target} is a folder: move it away, or pass --outputs")
    partial_array = SpoolPaths.partial(array, writer_tag())
    partial_figure = SpoolPaths.partial(figure, writer_tag())
    tiles = spool.plan.tile_by_id()
    try:
        stitched = np.lib.format.open_memmap(partial_array, mode="w+", dtype=np.float64, shape=spool.plan.shape)
        if unfinished:
            stitched[...] = np.nan
        for job_id in done:
            tile = tiles[job_id]
            stitched[tile.rows, tile.cols] = np.load(paths.tile(job_id), mmap_mode="r", allow_pickle=False)
        stitched.flush()
        missing = [s.id for s in unfinished]
        note = f"PARTIAL: {len(missing)} of {len(statuses)} tiles missing (grey)" if missing else ""
        title = field_title(spool.plan, f"stitched from {len(statuses)} tiles", note)
        save_field_figure(stitched, spool.plan, title, partial_figure)
        del stitched
        partial_array.replace(array)
        partial_figure.replace(figure)
    except OSError as error:
        raise JobRunnerError(
            f"cannot write the stitched result to {paths.outputs} ({error.strerror or error}): "
            "free space or fix permissions there, or pass --outputs"
        ) from None
    finally:
        partial_array.unlink(missing_ok=True)
        partial_figure.unlink(missing_ok=True)
    return ReduceResult(array, figure, spool.plan.shape, missing)
