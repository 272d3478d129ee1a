"""jobrunner: embarrassingly parallel grid work on a laptop or on a cluster that shares a disk.

Everything the command line does is a function here::

    from jobrunner import Plan, Spool, supervise, reduce

    plan = Plan.create(step=0.01, tiles=(4, 4), kernel="numpy")
    spool, _ = Spool.create(plan, "jobs", "outputs")
    supervise(spool, workers=2)
    result = reduce(spool)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Where each public name lives.  Imported when first used, not with the package: every command
#: starts by importing ``jobrunner``, and most need only a few of these modules (a process pool,
#: the stitcher and the dataset writer cost a command that does not use them a tenth of a second).
_HOMES = {
    "Progress": "drain", "WorkSummary": "drain", "supervise": "drain", "work": "drain",
    "JobRunnerError": "errors",
    "Axis": "grid", "Grid": "grid", "Tile": "grid", "grid_from_options": "grid", "parse_tiling": "grid",
    "tile_grid": "grid",
    "Plan": "plan",
    "Outcome": "protocol", "attempt_job": "protocol",
    "PlanReplaced": "publish",
    "SerialResult": "serial", "compute_serial": "serial", "compute_whole": "serial", "run_serial": "serial",
    "Spool": "spool",
    "SpoolStatus": "status", "spool_status": "status",
    "ReduceResult": "stitch", "reduce": "stitch",
    "RunTimeline": "timeline", "timeline": "timeline",
}  # fmt: skip

if TYPE_CHECKING:  # what a type checker and an editor see: the same names, imported at once
    from jobrunner.drain import Progress, WorkSummary, supervise, work
    from jobrunner.errors import JobRunnerError
    from jobrunner.grid import Axis, Grid, Tile, grid_from_options, parse_tiling, tile_grid
    from jobrunner.plan import Plan
    from jobrunner.protocol import Outcome, attempt_job
    from jobrunner.publish import PlanReplaced
    from jobrunner.serial import SerialResult, compute_serial, compute_whole, run_serial
    from jobrunner.spool import Spool
    from jobrunner.status import SpoolStatus, spool_status
    from jobrunner.stitch import ReduceResult, reduce
    from jobrunner.timeline import RunTimeline, timeline


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'jobrunner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jobrunner.{_HOMES[name]}"), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = [
    "Axis",
    "Grid",
    "JobRunnerError",
    "Outcome",
    "Plan",
    "PlanReplaced",
    "Progress",
    "ReduceResult",
    "RunTimeline",
    "SerialResult",
    "Spool",
    "SpoolStatus",
    "Tile",
    "WorkSummary",
    "attempt_job",
    "compute_serial",
    "compute_whole",
    "grid_from_options",
    "parse_tiling",
    "reduce",
    "run_serial",
    "spool_status",
    "supervise",
    "tile_grid",
    "timeline",
    "work",
]
