#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with everything the
# package, its tests, analyses and benchmarks need. Safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_install() {
  # The machine's pip configuration names local mirrors that may be absent: drop those warnings.
  .venv/bin/python -m pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
# torch first and pinned: the CPU build of 2.13.0 lies on local disk; a looser pin would pull
# a multi-GB CUDA build.
pip_install "torch==2.13.0"
pip_install -e ".[dev]"
