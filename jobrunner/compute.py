"""Applying a plan's kernel to a tile, and checking a kernel before any job is written.

How a kernel is called, by how the plan says it computes (``Plan.pointwise``):

============  ====================================================================================
vectorized    once per tile: ``f(x=..., y=..., **params)``, each axis by its name as the tile's
              slice of it, shaped to broadcast against the others (on the lab's grid ``x`` has
              shape ``(n, 1)`` and ``y`` ``(1, m)``); returns a float array of the tile's shape
pointwise     once per cell, as the lab's own loop does: ``f(x=X[i], y=Y[j], **params)`` with
              each axis's value as a float (NumPy's float64, a subclass of ``float``); returns a
              number
============  ====================================================================================
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid, Tile
from jobrunner.kernels import check_parameters, load_kernel
from jobrunner.plan import Plan

#: The probe tile's shape along the first axes: small enough to cost nothing, never square, so swapped axes show.
PROBE_SHAPE = (2, 3, 2, 2, 2, 2, 2, 2)


@lru_cache(maxsize=4)
def _points(grid: Grid) -> tuple[np.ndarray, ...]:
    return grid.points()


def compute_tile(plan: Plan, tile: Tile) -> np.ndarray:
    """Run the plan's kernel on one tile, on slices of the global axes (never a recomputed arange)."""
    kernel = load_kernel(plan.kernel, plan.kernel_folder)
    pieces = [points[part] for points, part in zip(_points(plan.grid), tile.slices, strict=True)]
    if plan.pointwise:
        values = _pointwise(kernel, plan, pieces, tile.shape)
    else:
        ndim = len(pieces)
        axes = {
            name: piece.reshape([-1 if k == axis else 1 for k in range(ndim)])
            for axis, (name, piece) in enumerate(zip(plan.grid.names, pieces, strict=True))
        }
        values = kernel(**axes, **plan.params)
    if not isinstance(values, np.ndarray) or values.shape != tile.shape or values.dtype.kind != "f":
        got = f"{type(values).__name__} {getattr(values, 'shape', '')} {getattr(values, 'dtype', '')}".strip()
        raise TypeError(f"kernel {plan.kernel} returned {got}, expected a float array of shape {tile.shape}")
    return values


def _pointwise(kernel, plan: Plan, pieces: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    names, params = plan.grid.names, plan.params
    values = np.empty(shape)
    for index in np.ndindex(*shape):
        value = kernel(**{name: piece[i] for name, piece, i in zip(names, pieces, index, strict=True)}, **params)
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            raise TypeError(
                f"pointwise kernel {plan.kernel} returned {type(value).__name__} {value!r:.60}, expected a number"
            )
        values[index] = value
    return values


def probe_kernel(plan: Plan) -> None:
    """Import the kernel and run it on a tiny tile; refuse the plan if that fails."""
    bounds = tuple((0, min(n, p)) for n, p in zip(plan.shape, PROBE_SHAPE, strict=False))
    probe = Tile((0,) * len(bounds), bounds)
    shape = " x ".join(str(stop) for _, stop in bounds)
    check_parameters(plan.kernel, load_kernel(plan.kernel, plan.kernel_folder), plan.grid.names, plan.params)
    try:
        compute_tile(plan, probe)
    except JobRunnerError:
        raise
    except Exception as error:
        hint = ""
        if not plan.pointwise and _works_pointwise(plan, probe):
            hint = (
                "; it works on single numbers, so it computes one cell at a time: pass --pointwise "
                "(or make it take arrays, for speed)"
            )
        raise JobRunnerError(
            f"kernel {plan.kernel} failed on a {shape} probe tile: {type(error).__name__}: {error}{hint}"
        ) from None


def _works_pointwise(plan: Plan, probe: Tile) -> bool:
    import dataclasses

    try:
        compute_tile(dataclasses.replace(plan, pointwise=True), probe)
    except Exception:
        return False
    return True
