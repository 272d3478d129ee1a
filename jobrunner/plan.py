"""A plan: the grid, how it is cut into tiles, and the kernel that fills them.  Pure values, no I/O.

Two plans are equal when they ask for the same work (grid, tiling, kernel, parameters, the
units of its fields); a plan also carries the names of its kernel's fields (fixed by the probe,
:func:`jobrunner.compute.probe_kernel`) and its identity once published (``id``, and ``code``,
the fingerprint of the kernel's source it is to be computed with; see :mod:`jobrunner.identity`),
which equality ignores: :meth:`Plan.same_computation` compares the code too.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobrunner.errors import JobRunnerError
from jobrunner.grid import Axis, Grid, Spacing, Tile, check_tiling, job_ids, tile_grid
from jobrunner.kernels import default_params, kernel_reference

PLAN_FORMAT = "jobrunner-plan/3"
#: The most jobs a plan may have: each makes a spec, a lock, a record and a tile file.
MAX_JOBS = 100_000
#: Formats of older jobrunners (/1 before plans had an identity, /2 before grids had named axes):
#: a spool of one is refused with a line that says to plan again, never adopted.
OLD_PLAN_FORMATS = ("jobrunner-plan/1", "jobrunner-plan/2")


@dataclass(frozen=True)
class Plan:
    grid: Grid
    tiling: tuple[int, ...]  # how many tiles along each axis
    kernel: str = "loop"
    params: dict[str, Any] = field(default_factory=dict)
    pointwise: bool = False  # the kernel takes one float per axis and returns one cell (see jobrunner.compute)
    kernel_folder: str = field(default="", compare=False)  # where plan found the kernel's module, if not installed
    id: str = field(default="", compare=False)  # made when published (jobrunner.publish)
    code: str = field(default="", compare=False)  # the kernel's code fingerprint at planning time
    #: The names of the fields a kernel returns as a dict, in the probe's order; () for a kernel that
    #: returns one array.  Fixed by the probe, so derived from the kernel: equality ignores it.
    fields: tuple[str, ...] = field(default=(), compare=False)
    units: dict[str, str] = field(default_factory=dict)  # --unit of a field (NAME=UNIT), checked by the probe
    #: What the kernel's attributes say of its result (titles, units, markers: jobrunner.labels),
    #: read by the probe, so that reduce and the figures never import the kernel.
    result: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        kernel_reference(self.kernel)  # an unknown kernel name fails here, before anything is written
        object.__setattr__(self, "tiling", tuple(self.tiling))
        if not all(type(count) is int and count >= 1 for count in self.tiling):
            raise JobRunnerError(f"a tiling needs at least one tile along each axis, got {self.tiling_text}")
        check_tiling(self.shape, self.tiling, self.grid.names)
        jobs = math.prod(self.tiling)
        if jobs > MAX_JOBS:  # checked before any tile is made: 10^12 of them would fill memory
            raise JobRunnerError(
                f"{self.tiling_text} tiles is {jobs:,} jobs, more than the {MAX_JOBS:,} a plan may have "
                "(each job makes a few files, and clusters cap the files a user may have): use fewer, larger tiles"
            )
        merged = {**default_params(self.kernel), **self.params}
        for name, value in merged.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise JobRunnerError(f"parameter {name} must be finite, got {value!r}")
        object.__setattr__(self, "params", merged)
        reserved = set(self.grid.names) & set(merged)
        if reserved:
            raise JobRunnerError(
                f"parameter {', '.join(sorted(reserved))} has the name of an axis: the kernel receives each axis "
                "by its name, so rename the axis or the parameter"
            )
        object.__setattr__(self, "pointwise", bool(self.pointwise))
        object.__setattr__(self, "fields", tuple(self.fields))
        for name in self.fields:
            check_field_name(name, "a field")
        if len(set(self.fields)) != len(self.fields) or len(self.fields) > MAX_FIELDS:
            raise JobRunnerError(f"a result has 1 to {MAX_FIELDS} fields, each named once: got {self.fields}")
        if not all(isinstance(k, str) and isinstance(v, str) and "\n" not in v for k, v in self.units.items()):
            raise JobRunnerError("the units of fields must be one line of text each")
        if not isinstance(self.result, dict) or (self.result and not _valid_result(self.result)):
            raise JobRunnerError("the description of the kernel's result is malformed: plan again")

    @classmethod
    def create(
        cls,
        step: float,
        tiles: tuple[int, ...],
        kernel: str = "loop",
        extent: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0),
        **params: Any,
    ) -> Plan:
        return cls(Grid.lab(*extent, step=step), tiles, kernel, params)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.grid.shape

    @property
    def tile_dtype(self) -> np.dtype:
        """What each cell of a tile (and of the stitched array) holds: one float64, or one per field."""
        if not self.fields:
            return np.dtype("<f8")
        return np.dtype([(name, "<f8") for name in self.fields])

    @property
    def tiling_text(self) -> str:
        return "x".join(str(count) for count in self.tiling)

    def tiles(self) -> list[Tile]:
        return tile_grid(self.shape, self.tiling)

    def job_ids(self) -> list[str]:
        """Every job's id, in plan order (the tiles' ids, without building the tiles)."""
        return job_ids(self.tiling)

    def tile_by_id(self) -> dict[str, Tile]:
        return {tile.id: tile for tile in self.tiles()}

    def same_computation(self, other: Plan) -> bool:
        """The same work with the same kernel code: planning it again would change nothing."""
        return self == other and self.code == other.code

    def to_document(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "id": self.id,
            "code": self.code,
            "axes": [axis.to_document() for axis in self.grid.axes],
            "shape": list(self.shape),
            "tiles": list(self.tiling),
            "jobs": math.prod(self.tiling),
            "kernel": self.kernel,
            "pointwise": self.pointwise,
            "kernel_folder": self.kernel_folder,
            "params": self.params,
            "fields": list(self.fields),
            "units": self.units,
            "result": self.result,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=2) + "\n"

    @classmethod
    def from_document(cls, document: Any, source: str = "plan") -> Plan:
        if isinstance(document, dict) and document.get("format") in OLD_PLAN_FORMATS:
            raise JobRunnerError(
                f"{source} was written by an older jobrunner, before plans had an identity: "
                "move that spool away (its tiles stay in its outputs folder) and plan again"
            )
        try:
            if not isinstance(document, dict):
                raise ValueError("it is not a JSON object")
            if document.get("format") != PLAN_FORMAT:
                raise ValueError(f"format is {document.get('format')!r}, expected {PLAN_FORMAT!r}")
            tiles, params, axes = document["tiles"], document["params"], document["axes"]
            if not isinstance(params, dict):
                raise ValueError("params is not an object")
            if not isinstance(axes, list) or not isinstance(tiles, list) or not all(type(t) is int for t in tiles):
                raise ValueError("axes and tiles must be lists (tiles of whole numbers)")
            identity = {key: document[key] for key in ("id", "code")}
            if not all(isinstance(value, str) for value in identity.values()):
                raise ValueError("id and code must be strings")
            if not isinstance(document["pointwise"], bool):
                raise ValueError("pointwise must be true or false")
            grid = Grid(tuple(Axis.from_document(axis) for axis in axes))
            kernel, folder = str(document["kernel"]), document["kernel_folder"]
            if not isinstance(folder, str):
                raise ValueError("kernel_folder must be a string")
            fields, units, result = document.get("fields", []), document.get("units", {}), document.get("result", {})
            if not isinstance(fields, list) or not isinstance(units, dict):
                raise ValueError("fields must be a list and units an object")
            return cls(
                grid,
                tuple(tiles),
                kernel,
                params,
                document["pointwise"],
                folder,
                **identity,
                fields=tuple(fields),
                units=units,
                result=result,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, JobRunnerError) as error:
            raise JobRunnerError(f"{source} is not a valid jobrunner plan ({error})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> Plan:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise JobRunnerError(f"{source} is not a valid jobrunner plan ({error})") from None
        return cls.from_document(document, source)

    def command(self) -> str:
        """The ``jobrunner plan`` command that makes this plan, every number exact (the dataset's history)."""
        return shlex.join(["jobrunner", "plan", *self.arguments()])

    def arguments(self) -> list[str]:
        """The options of ``jobrunner plan`` that make this plan (a hint adds ``--replace`` and the spool)."""
        words = []
        for axis in self.grid.axes:
            words += ["--axis", axis.describe(exact=True)] + (
                ["--unit", f"{axis.name}={axis.unit}"] if axis.unit else []
            )
        words += ["--tiles", self.tiling_text, "--kernel", self.kernel] + (["--pointwise"] if self.pointwise else [])
        for name, value in self.params.items():
            words += ["--param", f"{name}={json.dumps(value)}"]
        for name, unit in self.units.items():
            words += ["--unit", f"{name}={unit}"]
        return words

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        size = " x ".join(str(n) for n in self.shape)
        step = lab_step(self.grid)
        grid = f"{size} grid, step {step:g}" if step is not None else f"{size} grid ({self.grid.describe()})"
        kernel = f"kernel {self.kernel}" + (" (pointwise)" if self.pointwise else "")
        fields = f", fields {', '.join(self.fields)}" if self.fields else ""
        return f"{grid}, tiles {self.tiling_text}, {kernel}" + (f" ({params})" if params else "") + fields


#: The most fields a kernel may return (each is a variable of the dataset and a column of every tile).
MAX_FIELDS = 64
#: The longest name a field may have: names go into every tile's header, which NumPy caps.
MAX_FIELD_NAME = 64


def check_field_name(name: Any, what: str) -> None:
    """A field is named as a Python identifier in ASCII (a NetCDF variable, a column of a NumPy
    structured array, whose ``.npy`` header is Latin-1 and capped in size)."""
    if not isinstance(name, str) or not name.isascii() or not name.isidentifier() or len(name) > MAX_FIELD_NAME:
        raise JobRunnerError(
            f"{what} is named {name!r:.80}: a field's name must be a Python name in ASCII letters, digits and _, "
            f"at most {MAX_FIELD_NAME} characters"
        )


def _valid_result(result: dict) -> bool:
    """Whether a plan document's ``result`` has the shape :func:`jobrunner.labels.describe_kernel` gives it."""

    def texts(value) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())

    try:
        return (
            all(isinstance(result[key], str) for key in ("title", "references", "label", "axis_unit"))
            and isinstance(result["fields"], list)
            and len(result["fields"]) >= 1
            and all(texts(f) and set(f) == {"name", "long_name", "units"} for f in result["fields"])
            and texts(result["axis_units"])
            and isinstance(result.get("defaults", {}), dict)
            and all(
                isinstance(label, str)
                and isinstance(where, dict)
                and all(isinstance(k, str) and type(v) in (int, float) for k, v in where.items())
                for label, where in result["markers"]
            )
        )
    except (KeyError, TypeError, ValueError):
        return False


def lab_step(grid: Grid) -> float | None:
    """The step of a lab grid (x and y by arange with one step: what --step and --extent make), else None."""
    axes = grid.axes
    if [a.name for a in axes] == ["x", "y"] and all(a.spacing is Spacing.ARANGE for a in axes):
        if axes[0].step == axes[1].step:
            return axes[0].step
    return None
