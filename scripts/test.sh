#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set up .venv with the test tools, then run pytest
# (slow tests included).  Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
