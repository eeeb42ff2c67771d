#!/usr/bin/env bash
# Set up the machine (idempotent), then run the main job on the shipped default model:
#   bash scripts/report.sh "Marie Curie won two Nobel prizes. 人工智能是计算机科学的一个分支。"
# Any `lens-positions report` option works: --file PATH, --model NAME_OR_DIR, --out PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lens-positions report "$@"
