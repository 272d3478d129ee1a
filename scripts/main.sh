#!/usr/bin/env bash
# The main job on defaults, from a fresh clone: set up .venv, then plan the lab's grid
# (step 0.001 over [-2, 2]^2, 4x4 tiles, the lab's loop kernel), drain it with a pool of one
# worker per CPU, and stitch outputs/stitched.npy, outputs/stitched.nc (with the netcdf extra) and
# outputs/stitched.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh netcdf
.venv/bin/jobrunner plan
.venv/bin/jobrunner supervise
.venv/bin/jobrunner reduce
