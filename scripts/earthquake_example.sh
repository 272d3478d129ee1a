#!/usr/bin/env bash
# A second kernel from the field, point by point and 3-D: locating an earthquake by grid search.
# Eight stations picked the P arrival; the medium's velocity grows linearly with depth
# (v = 5.5 km/s + 0.03 /s * depth). Every trial source (x, y, depth) on a 0.5 km grid, 30 km
# around the network and 20 km deep, gets the RMS misfit of the picks and its best origin time
# (kernel `quake`, jobrunner.kernels.hypocentre_misfit: formula and references in its docstring).
# Then the best trial source is read from stitched.nc by its coordinates, and the misfit map is
# drawn at its depth.
#
#   bash scripts/earthquake_example.sh     # after scripts/main.sh; writes outputs/earthquake/stitched.{npy,nc,png}
set -euo pipefail
cd "$(dirname "$0")/.."
jobrunner=${JOBRUNNER:-.venv/bin/jobrunner} python=${PYTHON:-.venv/bin/python}
export JOBRUNNER_SPOOL=${JOBRUNNER_SPOOL:-jobs/earthquake} JOBRUNNER_OUTPUTS=${JOBRUNNER_OUTPUTS:-outputs/earthquake}
$jobrunner plan --kernel quake --pointwise --tiles 4x4x1 \
  --axis x=-30:30/121 --axis y=-30:30/121 --axis depth=0:20/41 --unit x=km --unit y=km --unit depth=km
$jobrunner supervise
$jobrunner reduce
best_depth=$($python - "$JOBRUNNER_OUTPUTS/stitched.nc" <<'PY'
import sys

import h5netcdf  # the writer reads it back too; xarray.open_dataset does the same in one line
import numpy as np

with h5netcdf.File(sys.argv[1], "r") as ds:
    misfit = ds["misfit"][...]
    best = np.unravel_index(np.nanargmin(misfit), misfit.shape)
    where = {name: float(ds[name][i]) for name, i in zip(ds["misfit"].dimensions, best)}
    origin = float(ds["origin_time"][best])
print(
    f"best trial source: x = {where['x']:g} km, y = {where['y']:g} km, depth = {where['depth']:g} km, "
    f"origin time {origin:.3f} s, RMS residual {misfit[best] * 1000:.1f} ms",
    file=sys.stderr,
)
print(where["depth"])
PY
)
$jobrunner reduce --slice "depth=$best_depth"
