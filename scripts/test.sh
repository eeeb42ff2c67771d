#!/usr/bin/env bash
# Set up the machine (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers: the suite is CPU-bound and the CI machine has two cores (each test uses one thread).
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
