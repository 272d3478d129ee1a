"""What a plan will hold on its disks once every tile is done: files and bytes, spool and outputs.

On a cluster the scarce resource is often not the bytes but the files: every file is an inode
and a round trip to the metadata server, and centres cap the files a user may own (a million
on some scratch disks).  So ``plan`` says what it will make, and ``doctor`` sets that against
the free inodes of the spool's filesystem, warning (never refusing) when the plan would take
more than half of them.

Per job, with the layout of :mod:`jobrunner.paths`: its spec and its lock file, made by
``plan``, and two lines of a worker's journal on the spool's disk (lease markers and claims go
when released; a record only for a job with a failed or lost attempt); its tile, the one file
a worker makes for it, on the outputs disk.  Per plan: a few small files and folders on each, a
journal per worker process, and ``reduce``'s products (the stitched array, its dataset, figure
and provenance) as large as all the tiles.  Sizes are measured on a real spec, journal lines
and tile header of the plan, not guessed.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner.identity import versions
from jobrunner.plan import Plan
from jobrunner.records import Attempt
from jobrunner.wording import size_of
from jobrunner.writer import Writer

#: Files a spool holds whatever its size: plan.json (twice: the spool's and the plan folder's),
#: locking.json, and the folders plans/, P/, specs/, locks/, records/, journals/ (a folder is an
#: inode too); and a journal per worker process, which this does not count.
SPOOL_FIXED_FILES = 9
#: The outputs' own: owner.json, the folders tiles/ and tiles/P, and reduce's stitched.npy, .nc,
#: .png and .json.
OUTPUTS_FIXED_FILES = 7
#: stitched.npy, .nc, .png and .json.
REDUCE_PRODUCTS = 4
#: About what locking.json holds: the mode, why, and the lease.
LOCKING_BYTES = 120
#: A plan would be worth a warning when it takes more than this share of the free inodes.
INODE_SHARE_WARNED = 0.5


@dataclass(frozen=True)
class Footprint:
    jobs: int
    spool_files: int  # not counting the journals: one per worker process, however many run
    spool_bytes: int
    outputs_files: int
    outputs_bytes: int  # the tiles, and reduce's stitched.npy and stitched.nc, each as large again

    def still_to_make(self, done: int = 0) -> tuple[int, int]:
        """Files the workers and ``reduce`` will still make, spool and outputs, once ``plan`` has
        written its specs and lock files and ``done`` jobs are done: a tile per job, and reduce's
        four products (and a journal per worker process, not counted)."""
        return 0, self.jobs - done + REDUCE_PRODUCTS

    def describe(self) -> str:
        return (
            f"when done, the spool will hold {self.spool_files:,} files ({size_of(self.spool_bytes)}) and the "
            f"outputs {self.outputs_files:,} files ({size_of(self.outputs_bytes)}, two thirds of it reduce's "
            "stitched.npy and stitched.nc)"
        )


def footprint(plan: Plan) -> Footprint:
    """The files and bytes ``plan`` will hold when every tile is done (see the module docstring)."""
    tiles = plan.tiles()
    spec_bytes = _spec_bytes(plan, tiles)
    journal_bytes = _journal_bytes(plan, tiles[0].id) * len(tiles)
    itemsize = plan.tile_dtype.itemsize
    shapes = Counter(tile.shape for tile in tiles)  # a few shapes: the tiles, and those at the edges
    tile_bytes = sum(
        n * (_npy_header_bytes(plan, shape) + itemsize * int(np.prod(shape))) for shape, n in shapes.items()
    )
    stitched = _npy_header_bytes(plan, plan.shape) + itemsize * int(np.prod(plan.shape))
    return Footprint(
        jobs=len(tiles),
        spool_files=SPOOL_FIXED_FILES + 2 * len(tiles),
        spool_bytes=spec_bytes + journal_bytes + 2 * len(_manifest_text(plan)) + LOCKING_BYTES,
        outputs_files=OUTPUTS_FIXED_FILES + len(tiles),
        outputs_bytes=tile_bytes + 2 * stitched,  # stitched.nc holds the same values as stitched.npy
    )


def free_inodes(folder: Path) -> tuple[int, int] | None:
    """Free and total inodes of the filesystem under ``folder`` (None where it does not count them)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return (stats.f_favail, stats.f_files) if stats.f_files else None  # btrfs and some network disks: 0


def inode_warnings(cost: Footprint, spool: Path, outputs: Path, done: int = 0) -> list[str]:
    """A warning for each disk whose free inodes the files still to make would take more than half
    of (nothing is refused: others use those inodes too, and may free some).  One disk holding both
    the spool and the outputs counts both."""
    spool_files, outputs_files = cost.still_to_make(done)
    try:
        same_disk = os.stat(spool).st_dev == os.stat(outputs).st_dev
    except OSError:
        same_disk = False
    needs = [(spool, spool_files + (outputs_files if same_disk else 0))]
    if not same_disk:
        needs.append((outputs, outputs_files))
    warnings = []
    for folder, files in needs:
        inodes = free_inodes(folder)
        if inodes is not None and files > INODE_SHARE_WARNED * inodes[0]:
            warnings.append(
                f"the workers and reduce will make {files:,} more files on the disk of {folder}, which has "
                f"{inodes[0]:,} free inodes (files) left: fewer, larger tiles (--tiles) make fewer files"
            )
    return warnings


def _spec_bytes(plan: Plan, tiles: list) -> int:
    """What all the specs hold: one measured, the others differing from it only in their ranges'
    digits (ids have the same width in a plan).  Measuring 100,000 specs one by one took a second."""
    from jobrunner.spool import spec_json  # the spool writes them, and imports much more: only here

    def digits(tile) -> int:
        return sum(len(str(start)) + len(str(stop)) for start, stop in tile.bounds)

    first = len(spec_json(tiles[0], plan.id or "20260101-000000-00000000")) - digits(tiles[0])
    per_axis = [Counter(tile.bounds[axis] for tile in tiles) for axis in range(len(plan.shape))]
    return first * len(tiles) + sum(
        n * (len(str(start)) + len(str(stop))) for ranges in per_axis for (start, stop), n in ranges.items()
    )


def _manifest_text(plan: Plan) -> str:
    from jobrunner.publish import Manifest  # as with the specs: measured, not written

    writer = Writer.this_process()
    return Manifest(plan, "20260101-000000-00000000", "../outputs", writer.tag, time.time(), versions()).to_json()


def _journal_bytes(plan: Plan, job_id: str) -> int:
    """The two journal lines of a job done at its first attempt: what most jobs end with."""
    from jobrunner.journal import line_text  # as with the specs: measured, not written

    writer, now = Writer.this_process(), time.time()
    attempt = Attempt(
        1, writer.host, writer.pid, now, via="work", plan=plan.id or "20260101-000000-00000000", code=plan.code,
        versions=versions(),
    )  # fmt: skip
    return len(line_text(job_id, attempt)) + len(line_text(job_id, attempt, now, "sha256:" + "0" * 64))


def _npy_header_bytes(plan: Plan, shape: tuple[int, ...]) -> int:
    """The ``.npy`` header (magic, version and dictionary) of an array of the plan's cells."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(plan.tile_dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.tell()
