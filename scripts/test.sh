#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv with the test tools and the mpi and dask
# extras (the engines the cluster tests drive), then run pytest (slow tests included). Extra
# arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`. The Slurm tests skip unless a
# Slurm answers: `bash scripts/engines.sh` (as root) starts a one-node one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,mpi,dask
exec .venv/bin/python -m pytest "$@"
