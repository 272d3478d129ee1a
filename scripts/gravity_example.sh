#!/usr/bin/env bash
# A geoscience kernel end to end: the vertical gravity anomaly of a buried sphere (a 150 m
# ore body, 800 kg/m^3 denser than its host, centred 300 m deep under (200, -150)) over a
# 4 km x 4 km survey grid at 5 m spacing, in its own spool and outputs folders.
#
#   bash scripts/gravity_example.sh        # after scripts/setup.sh; writes outputs/gravity/stitched.png
set -euo pipefail
cd "$(dirname "$0")/.."
jobrunner=${JOBRUNNER:-.venv/bin/jobrunner}
export JOBRUNNER_SPOOL=${JOBRUNNER_SPOOL:-jobs/gravity} JOBRUNNER_OUTPUTS=${JOBRUNNER_OUTPUTS:-outputs/gravity}
$jobrunner plan --kernel sphere --extent -2000 2000 -2000 2000 --step 5 --tiles 4x4 \
  --param depth=300 --param radius=150 --param density_contrast=800 --param x0=200 --param y0=-150
$jobrunner supervise
$jobrunner reduce
