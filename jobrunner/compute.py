"""Applying a plan's kernel to a tile, and checking a kernel before any job is written."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid, Tile
from jobrunner.kernels import load_kernel
from jobrunner.plan import Plan

#: The probe tile's shape: small enough to cost nothing, not square, so swapped axes show.
PROBE_SHAPE = (2, 3)


@lru_cache(maxsize=4)
def _axes(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return grid.axes()


def compute_tile(plan: Plan, tile: Tile) -> np.ndarray:
    """Run the plan's kernel on one tile, on slices of the global axes (never a recomputed arange)."""
    x, y = _axes(plan.grid)
    kernel = load_kernel(plan.kernel)
    values = kernel(x[tile.rows].reshape(-1, 1), y[tile.cols].reshape(1, -1), **plan.params)
    if not isinstance(values, np.ndarray) or values.shape != tile.shape or values.dtype.kind != "f":
        got = f"{type(values).__name__} {getattr(values, 'shape', '')} {getattr(values, 'dtype', '')}".strip()
        raise TypeError(f"kernel {plan.kernel} returned {got}, expected a float array of shape {tile.shape}")
    return values


def probe_kernel(plan: Plan) -> None:
    """Import the kernel and run it on a tiny tile; refuse the plan if that fails."""
    rows, cols = (min(n, p) for n, p in zip(plan.shape, PROBE_SHAPE, strict=True))
    probe = Tile(0, 0, 0, rows, 0, cols)
    try:
        compute_tile(plan, probe)
    except JobRunnerError:
        raise
    except Exception as error:
        raise JobRunnerError(
            f"kernel {plan.kernel} failed on a {rows} x {cols} probe tile: {type(error).__name__}: {error}"
        ) from None
