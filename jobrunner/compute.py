"""Applying a plan's kernel to a tile, and checking a kernel before any job is written.

How a kernel is called, by how the plan says it computes (``Plan.pointwise``):

============  ====================================================================================
vectorized    once per tile: ``f(x=..., y=..., **params)``, each axis by its name as the tile's
              slice of it, shaped to broadcast against the others (on the lab's grid ``x`` has
              shape ``(n, 1)`` and ``y`` ``(1, m)``); returns a float array of the tile's shape,
              or a dict of them, one per field
pointwise     once per cell, as the lab's own loop does: ``f(x=X[i], y=Y[j], **params)`` with
              each axis's value as a float (NumPy's float64, a subclass of ``float``); returns a
              number, or a dict of numbers, one per field
============  ====================================================================================

A kernel that returns a dict has fields, named by its keys; the probe fixes their names and
order (``Plan.fields``), and every tile must return the same keys.  A tile is then a structured
array with one float64 per field (``Plan.tile_dtype``), so it stays one ``.npy`` file.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid, Tile
from jobrunner.kernels import Kernel, check_parameters, load_kernel
from jobrunner.labels import check_names, describe_kernel
from jobrunner.plan import MAX_FIELDS, Plan, check_field_name

#: The probe tile's shape along the first axes: small enough to cost nothing, never square, so swapped axes show.
PROBE_SHAPE = (2, 3, 2, 2, 2, 2, 2, 2)


@lru_cache(maxsize=4)
def _points(grid: Grid) -> tuple[np.ndarray, ...]:
    return grid.points()


def compute_tile(plan: Plan, tile: Tile) -> np.ndarray:
    """Run the plan's kernel on one tile, on slices of the global axes (never a recomputed arange).

    Returns an array of the tile's shape and of ``plan.tile_dtype``: float64, or one float64 per field.
    """
    return _pack(plan, _call(plan, tile), tile.shape)


def _call(plan: Plan, tile: Tile) -> np.ndarray | dict:
    """What the kernel returns for ``tile``: an array, or a dict of arrays (pointwise: gathered cell by cell)."""
    kernel = load_kernel(plan.kernel, plan.kernel_folder)
    pieces = [points[part] for points, part in zip(_points(plan.grid), tile.slices, strict=True)]
    if plan.pointwise:
        return _pointwise(kernel, plan, pieces, tile.shape)
    ndim = len(pieces)
    axes = {
        name: piece.reshape([-1 if k == axis else 1 for k in range(ndim)])
        for axis, (name, piece) in enumerate(zip(plan.grid.names, pieces, strict=True))
    }
    return kernel(**axes, **plan.params)


def _pack(plan: Plan, values, shape: tuple[int, ...]) -> np.ndarray:
    """Check what the kernel returned against the plan (the probe's fields) and store it as ``plan.tile_dtype``."""
    returned = sorted(values) if isinstance(values, dict) else None
    if returned != (sorted(plan.fields) if plan.fields else None):
        got = f"fields {', '.join(map(str, returned))}" if returned is not None else "one array"
        wanted = f"fields {', '.join(plan.fields)}" if plan.fields else "one array"
        raise TypeError(f"kernel {plan.kernel} returned {got}, but its probe returned {wanted}")
    if not plan.fields:
        return np.ascontiguousarray(_float_array(plan, values, shape), dtype=plan.tile_dtype)
    tile = np.empty(shape, dtype=plan.tile_dtype)
    for name in plan.fields:
        tile[name] = _float_array(plan, values[name], shape, f" for field {name}")
    return tile


def _float_array(plan: Plan, values, shape: tuple[int, ...], what: str = "") -> np.ndarray:
    if not isinstance(values, np.ndarray) or values.shape != shape or values.dtype.kind != "f":
        got = f"{type(values).__name__} {getattr(values, 'shape', '')} {getattr(values, 'dtype', '')}".strip()
        raise TypeError(f"kernel {plan.kernel} returned {got}{what}, expected a float array of shape {shape}")
    return values


def _pointwise(kernel: Kernel, plan: Plan, pieces: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray | dict:
    names, params = plan.grid.names, plan.params
    values: np.ndarray | dict | None = None
    for index in np.ndindex(*shape):
        value = kernel(**{name: piece[i] for name, piece, i in zip(names, pieces, index, strict=True)}, **params)
        if values is None:  # the first cell says whether the kernel has fields
            values = {key: np.empty(shape) for key in value} if isinstance(value, dict) else np.empty(shape)
        if isinstance(values, dict):
            if not isinstance(value, dict) or value.keys() != values.keys():
                raise TypeError(
                    f"pointwise kernel {plan.kernel} returned {_shown(value)} at cell {index}, expected a dict of "
                    f"{', '.join(map(str, values))} as at the first cell"
                )
            for key, number in value.items():
                values[key][index] = _number(plan, number, f" for field {key}")
        else:
            values[index] = _number(plan, value)
    return values


def _number(plan: Plan, value, what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"pointwise kernel {plan.kernel} returned {_shown(value)}{what}, expected a number")
    return value


def _shown(value) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def probe_kernel(plan: Plan) -> Plan:
    """Import the kernel and run it on a tiny tile; refuse the plan if that fails.

    Returns the plan with its fields (the keys of the dict the kernel returned, in its order;
    none for a kernel that returns one array) and what the kernel says of them
    (:func:`jobrunner.labels.describe_kernel`).
    """
    bounds = tuple((0, min(n, p)) for n, p in zip(plan.shape, PROBE_SHAPE, strict=False))
    probe = Tile((0,) * len(bounds), bounds)
    shape = " x ".join(str(stop) for _, stop in bounds)
    kernel = load_kernel(plan.kernel, plan.kernel_folder)
    check_parameters(plan.kernel, kernel, plan.grid.names, plan.params)
    try:
        values = _call(plan, probe)
        fields = tuple(values) if isinstance(values, dict) else ()
        if isinstance(values, dict) and not 1 <= len(fields) <= MAX_FIELDS:
            raise JobRunnerError(
                f"kernel {plan.kernel} returned a dict of {len(fields)} fields: its keys name its fields, "
                f"from 1 to {MAX_FIELDS} of them"
            )
        for name in fields:
            check_field_name(name, f"kernel {plan.kernel} returned a field that")
        plan = dataclasses.replace(
            plan, fields=fields, result=describe_kernel(kernel, plan.kernel, fields, plan.grid.names)
        )
        check_names(plan)
        _pack(plan, values, probe.shape)
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
    return plan


def _works_pointwise(plan: Plan, probe: Tile) -> bool:
    try:
        _call(dataclasses.replace(plan, pointwise=True), probe)
    except Exception:
        return False
    return True
