#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv with the test tools and the mpi and dask
# extras (the engines the cluster tests drive), then run pytest (slow tests included) in two test
# processes (pytest-xdist): most tests wait on real workers, so two keep two cores busy. Tests that
# share one outside resource (the one Slurm node, the system's users) are grouped into one process
# (--dist loadgroup).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`, or `-n 0` to run in this
# process alone. The Slurm tests skip unless a Slurm answers: `bash scripts/engines.sh` (as root)
# starts a one-node one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,mpi,dask
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
