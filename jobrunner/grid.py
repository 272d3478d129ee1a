"""The grid and its tiling: pure values, no I/O.

A grid is one or more named axes, in the order they were declared; that order is the order of
the dimensions of every array over the grid (a tile, the stitched array, the dataset, the
figure).  On the lab's grid, axes ``x`` then ``y``, cell ``(i, j)`` holds ``f(x=X[i], y=Y[j])``
and the array has shape ``(len(X), len(Y))``: the first index is x, not the row of a map
drawn with ``meshgrid``'s convention.  On ``x, y, depth`` cell ``(i, j, k)`` holds
``f(x=X[i], y=Y[j], depth=D[k])``.

How an axis is given (:class:`Spacing`, and ``--axis NAME=...``):

============  =====================  ==============================================================
spacing       ``--axis``             points
============  =====================  ==============================================================
``arange``    ``x=START:STOP:STEP``  ``np.arange(START, STOP, STEP)``: STOP excluded as in the lab,
                                     though rounding can let a point land on it (``1:1.3:0.1``
                                     gives 1.0, 1.1, 1.2 and 1.3000000000000003)
``count``     ``x=START:STOP/N``     ``np.linspace(START, STOP, N)``: N points, both ends included
``values``    ``x=V1,V2,...``        exactly those, in that order (increasing or decreasing)
============  =====================  ==============================================================

A tile is one index range per axis.  Workers slice the global axes rather than recomputing
``np.arange`` from a shifted start, which would round differently and break the bit-for-bit
equality with the serial loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import keyword
import math
import re
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import NamedTuple

import numpy as np

from jobrunner.errors import JobRunnerError

#: An axis longer than this is almost certainly a typo in its step (and would not fit in memory).
MAX_AXIS_POINTS = 1_000_000
#: The most axes a grid may have (tiles are named by one index per axis).
MAX_AXES = 8
#: How many of a values axis's values a description shows.
SHOWN_VALUES = 6

#: Tile ids: ``tile-r003-c007`` on a 2-D grid (row and column of tiles, as on a map of the
#: lab's x and y), ``tile-003-007-001`` on a grid of any other number of axes.
JOB_ID_PATTERN = re.compile(r"tile-(?:r\d{3,}-c\d{3,}|\d{3,}(?:-\d{3,})*)")


class Spacing(str, Enum):
    """How an axis's points are made (the module docstring's table says what each gives)."""

    ARANGE = "arange"
    COUNT = "count"
    VALUES = "values"


@dataclass(frozen=True)
class Axis:
    """One named axis of a grid, and the unit of its values ("" when unknown)."""

    name: str
    spacing: Spacing
    start: float = 0.0
    stop: float = 0.0
    step: float = 0.0  # arange
    count: int = 0  # count
    values: tuple[float, ...] = ()  # values
    unit: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise JobRunnerError(
                f"axis name {self.name!r} must be a Python name (letters, digits, _; not starting with a digit), "
                "since the kernel receives each axis by its name: try x, y, depth"
            )
        object.__setattr__(self, "spacing", Spacing(self.spacing))
        for what in ("start", "stop", "step"):
            object.__setattr__(self, what, _finite(getattr(self, what), f"axis {self.name}: {what}"))
        values = tuple(_finite(v, f"axis {self.name}: a value") for v in self.values)
        object.__setattr__(self, "values", values)
        if not isinstance(self.unit, str) or "\n" in self.unit:
            raise JobRunnerError(f"axis {self.name}: its unit must be one line of text, got {self.unit!r}")
        self._check()

    def _check(self) -> None:
        name = self.name
        if self.spacing is Spacing.ARANGE:
            if self.step <= 0:
                raise JobRunnerError(f"axis {name}: step must be positive, got {self.step:g}: try {name}=0:1:0.01")
            if self.start >= self.stop:
                raise JobRunnerError(
                    f"axis {name}: {self.start:g}:{self.stop:g} is empty: START must be below STOP "
                    f"(np.arange({self.start:g}, {self.stop:g}, {self.step:g}) has no points)"
                )
            if (self.stop - self.start) / self.step > MAX_AXIS_POINTS:
                raise JobRunnerError(
                    f"axis {name}: step {self.step:g} gives more than {MAX_AXIS_POINTS:,} points: use a larger step"
                )
        elif self.spacing is Spacing.COUNT:
            if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count:
                raise JobRunnerError(
                    f"axis {name}: the number of points must be a whole number >= 1, got {self.count!r}"
                )
            if self.count > MAX_AXIS_POINTS:
                raise JobRunnerError(f"axis {name}: {self.count:,} points is more than {MAX_AXIS_POINTS:,}")
            if self.count > 1 and self.start == self.stop:
                raise JobRunnerError(f"axis {name}: {self.count} points from {self.start:g} to itself")
        else:
            if not self.values:
                raise JobRunnerError(f"axis {name}: give at least one value, as in {name}=0,5,10")
            if len(self.values) > MAX_AXIS_POINTS:
                raise JobRunnerError(f"axis {name}: more than {MAX_AXIS_POINTS:,} values")
            steps = np.diff(self.values)
            if len(steps) and not ((steps > 0).all() or (steps < 0).all()):
                raise JobRunnerError(
                    f"axis {name}: its values must all increase or all decrease (no repeats), as coordinates do"
                )

    @classmethod
    def arange(cls, name: str, start: float, stop: float, step: float, unit: str = "") -> Axis:
        return cls(name, Spacing.ARANGE, start=start, stop=stop, step=step, unit=unit)

    @classmethod
    def parse(cls, text: str, unit: str = "") -> Axis:
        """An axis from ``--axis``'s ``NAME=START:STOP:STEP``, ``NAME=START:STOP/N`` or ``NAME=V1,V2,...``."""
        name, sep, spec = text.partition("=")
        name, spec = name.strip(), spec.strip()
        usage = (
            f"--axis takes NAME=START:STOP:STEP (np.arange), NAME=START:STOP/N (N points, both ends) "
            f"or NAME=V1,V2,... (those values), not {text!r}"
        )
        if not sep or not name or not spec:
            raise JobRunnerError(usage)
        try:
            if "/" in spec:
                ends, _, count = spec.partition("/")
                start, stop = ends.split(":")
                if not count.strip().isdigit():
                    raise ValueError(count)
                return cls(name, Spacing.COUNT, start=float(start), stop=float(stop), count=int(count), unit=unit)
            if ":" in spec:
                start, stop, step = spec.split(":")
                return cls.arange(name, float(start), float(stop), float(step), unit)
            return cls(name, Spacing.VALUES, values=tuple(float(v) for v in spec.split(",") if v.strip()), unit=unit)
        except ValueError:
            raise JobRunnerError(usage) from None

    def points(self) -> np.ndarray:
        """The axis's values, exactly as every process computes them (float64)."""
        if self.spacing is Spacing.ARANGE:
            return np.arange(self.start, self.stop, self.step)
        if self.spacing is Spacing.COUNT:
            return np.linspace(self.start, self.stop, self.count)
        return np.array(self.values, dtype=np.float64)

    def describe(self, exact: bool = False) -> str:
        """The axis as ``--axis`` takes it: short, or ``exact`` (every number as it is stored)."""
        number = repr if exact else (lambda value: f"{value:g}")
        if self.spacing is Spacing.ARANGE:
            spec = f"{number(self.start)}:{number(self.stop)}:{number(self.step)}"
        elif self.spacing is Spacing.COUNT:
            spec = f"{number(self.start)}:{number(self.stop)}/{self.count}"
        elif exact or len(self.values) <= SHOWN_VALUES:
            spec = ",".join(number(v) for v in self.values)
        else:  # a title or a message, not a command: thousands of values would bury it
            shown = self.values[: SHOWN_VALUES - 1]
            spec = f"{','.join(map(number, shown))},...,{number(self.values[-1])} ({len(self.values)} values)"
        return f"{self.name}={spec}"

    def to_document(self) -> dict:
        document: dict = {"name": self.name, "spacing": self.spacing.value, "unit": self.unit}
        if self.spacing is Spacing.ARANGE:
            document.update(start=self.start, stop=self.stop, step=self.step)
        elif self.spacing is Spacing.COUNT:
            document.update(start=self.start, stop=self.stop, count=self.count)
        else:
            document.update(values=list(self.values))
        return document

    @classmethod
    def from_document(cls, document: dict) -> Axis:
        if not isinstance(document, dict):
            raise ValueError("an axis is not an object")
        fields = {k: document[k] for k in ("start", "stop", "step", "count") if k in document}
        values = document.get("values", ())
        if not isinstance(values, list | tuple):
            raise ValueError("an axis's values are not a list")
        return cls(
            document["name"], Spacing(document["spacing"]), values=tuple(values), unit=document["unit"], **fields
        )


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JobRunnerError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Grid:
    """The named axes of a grid, in the order of the dimensions of every array over it."""

    axes: tuple[Axis, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(self.axes))
        if not 1 <= len(self.axes) <= MAX_AXES:
            raise JobRunnerError(f"a grid has 1 to {MAX_AXES} axes, got {len(self.axes)}")
        names = [axis.name for axis in self.axes]
        if len(set(names)) != len(names):
            raise JobRunnerError(f"two axes share a name: {', '.join(names)}")

    @classmethod
    def lab(
        cls, xmin: float = -2.0, xmax: float = 2.0, ymin: float = -2.0, ymax: float = 2.0, step: float = 0.001
    ) -> Grid:
        """The lab's grid: ``X = np.arange(xmin, xmax, step)`` by ``Y = np.arange(ymin, ymax, step)``."""
        for name, value in (("xmin", xmin), ("xmax", xmax), ("ymin", ymin), ("ymax", ymax), ("step", step)):
            _finite(value, name)
        if step <= 0:
            raise JobRunnerError(f"step must be a positive number, got {step:g}: try --step 0.001")
        if xmin >= xmax or ymin >= ymax:
            raise JobRunnerError(
                f"the extent [{xmin:g}, {xmax:g}] x [{ymin:g}, {ymax:g}] is empty: "
                "give --extent XMIN XMAX YMIN YMAX with XMIN < XMAX and YMIN < YMAX"
            )
        for axis, lo, hi in (("x", xmin, xmax), ("y", ymin, ymax)):
            if (hi - lo) / step > MAX_AXIS_POINTS:
                raise JobRunnerError(
                    f"step {step:g} gives more than {MAX_AXIS_POINTS:,} points along {axis}: use a larger --step"
                )
        return cls((Axis.arange("x", xmin, xmax, step), Axis.arange("y", ymin, ymax, step)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)

    def points(self) -> tuple[np.ndarray, ...]:
        """Every axis's values, in order."""
        return tuple(axis.points() for axis in self.axes)

    @cached_property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(points) for points in self.points())

    @property
    def cells(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> str:
        """``x=-2:2:0.001 y=-2:2:0.001``: the grid as ``--axis`` options take it."""
        return " ".join(axis.describe() for axis in self.axes)


class Tile(NamedTuple):
    """One job's share of the grid: the index range ``[start, stop)`` along each axis.

    A named tuple, not a frozen dataclass: a plan of 100,000 tiles builds them all on every
    ``status``, and a tuple is built ten times faster (ordered and hashable the same way)."""

    index: tuple[int, ...]  # which tile along each axis
    bounds: tuple[tuple[int, int], ...]  # (start, stop) along each axis
    id_digits: int = 3

    @property
    def id(self) -> str:
        return job_id(self.index, self.id_digits)

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(start, stop) for start, stop in self.bounds)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(stop - start for start, stop in self.bounds)

    @property
    def cells(self) -> int:
        return math.prod(self.shape)


def job_id(index: tuple[int, ...], digits: int = 3) -> str:
    """``tile-r003-c007`` (2-D) or ``tile-003-007-001``: ids sort in plan order and say where the tile is."""
    if len(index) == 2:
        return f"tile-r{index[0]:0{digits}d}-c{index[1]:0{digits}d}"
    return "tile-" + "-".join(f"{i:0{digits}d}" for i in index)


def parse_tiling(text: str) -> tuple[int, ...]:
    """Parse ``"4x4"`` or ``"4x4x2"``: how many tiles along each axis, in the axes' order."""
    parts = text.strip().lower().split("x")
    if not all(part.strip().isdigit() for part in parts):
        raise JobRunnerError(f"--tiles takes one count per axis, such as 4x4, 3x5 or 4x4x2, not {text!r}")
    counts = tuple(int(part) for part in parts)
    if min(counts) < 1:
        raise JobRunnerError(f"--tiles {text.strip()} has no tiles: every count must be at least 1, as in 2x2")
    return counts


def split(length: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``range(length)`` into ``parts`` contiguous pieces whose sizes differ by at most one."""
    base, extra = divmod(length, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def check_tiling(shape: tuple[int, ...], tiling: tuple[int, ...], names: tuple[str, ...] | None = None) -> None:
    """Refuse a tiling that does not fit the grid: one count per axis, none above its points."""
    names = names or tuple(f"axis {k + 1}" for k in range(len(shape)))
    if len(tiling) != len(shape):
        raise JobRunnerError(
            f"--tiles {'x'.join(map(str, tiling))} gives {len(tiling)} counts for a grid of {len(shape)} axes "
            f"({', '.join(names)}): give one count per axis, as in {'x'.join('2' * len(shape))}"
        )
    too_many = [f"{name} has {n}" for name, n, t in zip(names, shape, tiling, strict=True) if t > n]
    if too_many:
        raise JobRunnerError(
            f"--tiles {'x'.join(map(str, tiling))} asks for more tiles than the grid has points "
            f"({'; '.join(too_many)}): use at most {'x'.join(map(str, shape))}"
        )


def tile_grid(shape: tuple[int, ...], tiling: tuple[int, ...]) -> list[Tile]:
    """The tiles of a grid of ``shape`` cut into ``tiling`` pieces along its axes, in plan order."""
    check_tiling(shape, tiling)
    digits = id_digits(tiling)
    pieces = [split(n, t) for n, t in zip(shape, tiling, strict=True)]
    indices = itertools.product(*(range(t) for t in tiling))  # the last axis fastest, as np.ndindex
    return [Tile(index, bounds, digits) for index, bounds in zip(indices, itertools.product(*pieces), strict=True)]


def id_digits(tiling: tuple[int, ...]) -> int:
    """How many digits each index has in the plan's job ids (at least 3, so ids sort in plan order)."""
    return max(3, len(str(max(tiling) - 1)))


def job_ids(tiling: tuple[int, ...]) -> list[str]:
    """Every tile's id in plan order, as :attr:`Tile.id` names it, without building the tiles:
    what a look at a spool of 100,000 jobs needs (``status``), ten times faster."""
    digits = id_digits(tiling)
    if len(tiling) == 2:
        rows = [f"tile-r{i:0{digits}d}" for i in range(tiling[0])]
        columns = [f"-c{j:0{digits}d}" for j in range(tiling[1])]
        return [row + column for row in rows for column in columns]
    return [job_id(index, digits) for index in itertools.product(*(range(t) for t in tiling))]


#: The lab's grid when no axis is given: --extent and --step's defaults.
LAB_EXTENT, LAB_STEP = (-2.0, 2.0, -2.0, 2.0), 0.001


def parse_units(units: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--unit NAME=UNIT`` options, each naming an axis or a field of the kernel's result."""
    unit_of: dict[str, str] = {}
    for text in units:
        name, sep, unit = text.partition("=")
        if not sep or not name.strip():
            raise JobRunnerError(f"--unit takes NAME=UNIT, such as depth=m, not {text!r}")
        if name.strip() in unit_of:
            raise JobRunnerError(f"--unit {name.strip()} is given twice: give each axis or field one unit")
        unit_of[name.strip()] = unit.strip()
    return unit_of


def grid_from_options(
    axes: list[str] | tuple[str, ...] = (),
    units: dict[str, str] | None = None,
    step: float | None = None,
    extent: tuple[float, float, float, float] | None = None,
) -> Grid:
    """The grid that ``--axis`` (repeatable, in order), or the lab's ``--step`` and ``--extent``
    describe (not both kinds), with the ``units`` that name its axes (others name fields: see
    :func:`field_units`)."""
    if axes and (step is not None or extent is not None):
        raise JobRunnerError(
            "give the grid either by --axis (one per axis) or by the lab's --step and --extent, not both"
        )
    if axes:
        grid = Grid(tuple(Axis.parse(text) for text in axes))
    else:
        grid = Grid.lab(*(extent if extent is not None else LAB_EXTENT), step=LAB_STEP if step is None else step)
    unit_of = units or {}
    return Grid(tuple(dataclasses.replace(a, unit=unit_of.get(a.name, a.unit)) for a in grid.axes))


def field_units(units: dict[str, str], grid: Grid) -> dict[str, str]:
    """The ``--unit``s that name no axis of ``grid``: units of the kernel's fields (the probe checks the names)."""
    return {name: unit for name, unit in units.items() if name not in grid.names}
