"""The lab's Task 1, for any plan: the whole grid in one process, timed.  The reference for everything else.

With the lab's loop kernel this is the lab's point-by-point loop itself; with any other kernel
it is that kernel over the whole grid, which every tiling must reproduce bit for bit.  It is
computed in blocks along the first axis, only so that progress can be shown: a cell's value
never depends on the tile it is computed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner.compute import compute_tile, probe_kernel
from jobrunner.files import ensure_folder, write_atomically
from jobrunner.grid import Grid, Tile, split
from jobrunner.paths import SpoolPaths
from jobrunner.plan import Plan

#: Progress is reported this many times over the grid at most.
BLOCKS = 100


@dataclass(frozen=True)
class SerialResult:
    values: np.ndarray
    seconds: float
    array: Path
    figure: Path


def compute_whole(plan: Plan, on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The plan's kernel over its whole grid, in blocks along the first axis (its tiling is ignored).

    ``plan``: as the probe returns it (:func:`jobrunner.compute.probe_kernel`), if its kernel has fields.
    """
    shape = plan.shape
    values = np.empty(shape, dtype=plan.tile_dtype)
    blocks = split(shape[0], min(shape[0], BLOCKS))
    rest = tuple((0, n) for n in shape[1:])
    for done, (start, stop) in enumerate(blocks, 1):
        values[start:stop] = compute_tile(plan, Tile((done - 1,) + (0,) * len(rest), ((start, stop), *rest)))
        if on_progress:
            on_progress(done, len(blocks))
    return values


def compute_serial(grid: Grid, sigma: float = 1.0, on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``Z[i, j] = g(X[i], Y[j])`` by the lab's loop (the ``loop`` kernel)."""
    return compute_whole(Plan(grid, (1,) * len(grid.axes), "loop", {"sigma": sigma}), on_progress)


def run_serial(
    plan: Plan, outputs: str | Path = "outputs", on_progress: Callable[[int, int], None] | None = None
) -> SerialResult:
    """Time ``plan``'s kernel over its whole grid in this process; save ``<outputs>/serial.npy`` and ``serial.png``."""
    from jobrunner.figures import field_title, save_field_figure

    plan = probe_kernel(plan)  # a kernel that cannot run says so in one line, before the long loop
    paths = SpoolPaths.outputs_only(outputs)
    ensure_folder(paths.outputs, "outputs", "--outputs")
    started = time.perf_counter()
    values = compute_whole(plan, on_progress)
    seconds = time.perf_counter() - started
    array, figure = paths.product("serial.npy"), paths.product("serial.png")
    write_atomically(array, lambda file: np.save(file, values, allow_pickle=False))
    what = "serial loop" if plan.kernel == "loop" else "in one process"
    save_field_figure(values, plan, field_title(plan, f"{what}, {seconds:.1f} s"), figure)
    return SerialResult(values, seconds, array, figure)
