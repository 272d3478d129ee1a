"""jobrunner: embarrassingly parallel grid work on a laptop or on a cluster that shares a disk.

Everything the command line does is a function here::

    from jobrunner import Plan, Spool, supervise, reduce

    plan = Plan.create(step=0.01, tiles=(4, 4), kernel="numpy")
    spool, _ = Spool.create(plan, "jobs", "outputs")
    supervise(spool, workers=2)
    result = reduce(spool)
"""

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
