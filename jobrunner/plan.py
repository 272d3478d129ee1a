"""A plan: the grid, how it is cut into tiles, and the kernel that fills them.  Pure values, no I/O.

Two plans are equal when they ask for the same work (grid, tiling, kernel, parameters); a plan
also carries its identity once published (``id``, and ``code``, the fingerprint of the kernel's
source it is to be computed with; see :mod:`jobrunner.identity`), which equality ignores:
:meth:`Plan.same_computation` compares the code too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid, Tile, tile_grid
from jobrunner.kernels import default_params, kernel_reference

PLAN_FORMAT = "jobrunner-plan/2"
#: The most jobs a plan may have: each makes a spec, a lock, a record and a tile file.
MAX_JOBS = 100_000
#: The format before plans had an identity: a spool of that format is refused, not adopted.
OLD_PLAN_FORMATS = ("jobrunner-plan/1",)


@dataclass(frozen=True)
class Plan:
    grid: Grid
    tiling: tuple[int, int]
    kernel: str = "loop"
    params: dict[str, Any] = field(default_factory=dict)
    id: str = field(default="", compare=False)  # made when published (jobrunner.publish)
    code: str = field(default="", compare=False)  # the kernel's code fingerprint at planning time

    def __post_init__(self) -> None:
        kernel_reference(self.kernel)  # an unknown kernel name fails here, before anything is written
        rows, cols = self.tiling
        if rows < 1 or cols < 1:
            raise JobRunnerError(f"a tiling needs at least one row and one column of tiles, got {rows}x{cols}")
        if rows * cols > MAX_JOBS:  # checked before any tile is made: 10^12 of them would fill memory
            raise JobRunnerError(
                f"{rows}x{cols} tiles is {rows * cols:,} jobs, more than the {MAX_JOBS:,} a plan may have "
                "(each job makes a few files, and clusters cap the files a user may have): use fewer, larger tiles"
            )
        merged = {**default_params(self.kernel), **self.params}
        for name, value in merged.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise JobRunnerError(f"parameter {name} must be finite, got {value!r}")
        object.__setattr__(self, "params", merged)
        self.tiles()  # more tiles than rows or columns fails here

    @classmethod
    def create(
        cls,
        step: float,
        tiles: tuple[int, int],
        kernel: str = "loop",
        extent: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0),
        **params: Any,
    ) -> Plan:
        return cls(Grid(*extent, step=step), tiles, kernel, params)

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    def tiles(self) -> list[Tile]:
        return tile_grid(self.shape, self.tiling)

    def tile_by_id(self) -> dict[str, Tile]:
        return {tile.id: tile for tile in self.tiles()}

    def same_computation(self, other: Plan) -> bool:
        """The same work with the same kernel code: planning it again would change nothing."""
        return self == other and self.code == other.code

    def to_document(self) -> dict[str, Any]:
        g = self.grid
        return {
            "format": PLAN_FORMAT,
            "id": self.id,
            "code": self.code,
            "grid": {"xmin": g.xmin, "xmax": g.xmax, "ymin": g.ymin, "ymax": g.ymax, "step": g.step},
            "shape": list(self.shape),
            "tiles": list(self.tiling),
            "jobs": self.tiling[0] * self.tiling[1],
            "kernel": self.kernel,
            "params": self.params,
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
            rows, cols = document["tiles"]
            params = document["params"]
            if not isinstance(params, dict):
                raise ValueError("params is not an object")
            identity = {key: document[key] for key in ("id", "code")}
            if not all(isinstance(value, str) for value in identity.values()):
                raise ValueError("id and code must be strings")
            grid = Grid(**document["grid"])
            return cls(grid, (int(rows), int(cols)), str(document["kernel"]), params, **identity)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, JobRunnerError) as error:
            raise JobRunnerError(f"{source} is not a valid jobrunner plan ({error})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> Plan:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise JobRunnerError(f"{source} is not a valid jobrunner plan ({error})") from None
        return cls.from_document(document, source)

    def describe(self) -> str:
        nx, ny = self.shape
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"{nx} x {ny} grid, step {self.grid.step:g}, tiles {self.tiling[0]}x{self.tiling[1]}, "
            f"kernel {self.kernel}" + (f" ({params})" if params else "")
        )
