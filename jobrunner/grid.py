"""The grid and its tiling: pure values, no I/O.

A grid is the lab's ``X = np.arange(xmin, xmax, step)`` by ``Y = np.arange(ymin, ymax, step)``;
cell ``(i, j)`` holds ``f(X[i], Y[j])``, so an array over the grid has shape ``(len(X), len(Y))``.
A tile is a pair of index ranges into those axes.  Workers slice the global axes rather than
recomputing ``np.arange`` from a shifted start, which would round differently and break the
bit-for-bit equality with the serial loop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from jobrunner.errors import JobRunnerError

#: An axis longer than this is almost certainly a typo in ``--step`` (and would not fit in memory).
MAX_AXIS_POINTS = 1_000_000

JOB_ID_PATTERN = re.compile(r"tile-r(\d{3,})-c(\d{3,})")


@dataclass(frozen=True)
class Grid:
    """A rectangular grid with spacing ``step`` over ``[xmin, xmax) x [ymin, ymax)``."""

    xmin: float = -2.0
    xmax: float = 2.0
    ymin: float = -2.0
    ymax: float = 2.0
    step: float = 0.001

    def __post_init__(self) -> None:
        for name in ("xmin", "xmax", "ymin", "ymax", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise JobRunnerError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.step <= 0:
            raise JobRunnerError(f"step must be a positive number, got {self.step:g}: try --step 0.001")
        if self.xmin >= self.xmax or self.ymin >= self.ymax:
            raise JobRunnerError(
                f"the extent [{self.xmin:g}, {self.xmax:g}] x [{self.ymin:g}, {self.ymax:g}] is empty: "
                "give --extent XMIN XMAX YMIN YMAX with XMIN < XMAX and YMIN < YMAX"
            )
        for axis, lo, hi in (("x", self.xmin, self.xmax), ("y", self.ymin, self.ymax)):
            if (hi - lo) / self.step > MAX_AXIS_POINTS:
                raise JobRunnerError(
                    f"step {self.step:g} gives more than {MAX_AXIS_POINTS:,} points along {axis}: use a larger --step"
                )

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.xmax, self.ymin, self.ymax)

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """The lab's ``X`` and ``Y`` axes, exactly as the serial script builds them."""
        return np.arange(self.xmin, self.xmax, self.step), np.arange(self.ymin, self.ymax, self.step)

    @property
    def shape(self) -> tuple[int, int]:
        x, y = self.axes()
        return (len(x), len(y))


@dataclass(frozen=True, order=True)
class Tile:
    """One job's share of the grid: rows ``[row_start, row_stop)`` and columns ``[col_start, col_stop)``."""

    row: int
    col: int
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    id_digits: int = 3

    @property
    def id(self) -> str:
        return job_id(self.row, self.col, self.id_digits)

    @property
    def rows(self) -> slice:
        return slice(self.row_start, self.row_stop)

    @property
    def cols(self) -> slice:
        return slice(self.col_start, self.col_stop)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row_stop - self.row_start, self.col_stop - self.col_start)


def job_id(row: int, col: int, digits: int = 3) -> str:
    """``tile-r003-c007``: ids sort in plan order and say where the tile is."""
    return f"tile-r{row:0{digits}d}-c{col:0{digits}d}"


def parse_tiling(text: str) -> tuple[int, int]:
    """Parse ``"RxC"`` (rows by columns of tiles)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise JobRunnerError(f"--tiles takes ROWSxCOLS, such as 4x4 or 3x5, not {text!r}")
    rows, cols = int(match.group(1)), int(match.group(2))
    if rows < 1 or cols < 1:
        raise JobRunnerError(f"--tiles {text.strip()} has no tiles: both counts must be at least 1, as in 2x2")
    return rows, cols


def split(length: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``range(length)`` into ``parts`` contiguous pieces whose sizes differ by at most one."""
    base, extra = divmod(length, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def tile_grid(shape: tuple[int, int], tiling: tuple[int, int]) -> list[Tile]:
    """The tiles of a grid of ``shape`` cut into ``tiling`` = (rows, cols) pieces, in plan order."""
    (nx, ny), (rows, cols) = shape, tiling
    if rows > nx or cols > ny:
        raise JobRunnerError(
            f"--tiles {rows}x{cols} asks for more tiles than the grid has rows or columns ({nx} x {ny}): "
            f"use at most {nx}x{ny}"
        )
    digits = max(3, len(str(max(rows, cols) - 1)))
    return [
        Tile(r, c, r0, r1, c0, c1, digits)
        for r, (r0, r1) in enumerate(split(nx, rows))
        for c, (c0, c1) in enumerate(split(ny, cols))
    ]
