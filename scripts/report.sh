#!/usr/bin/env bash
# Set up the machine (idempotent), then run the main job on the shipped default model:
#   bash scripts/report.sh "To install a package, run apt install followed by the package name. 软件包管理器会自动安装所有依赖的软件包。"
# Any `lens-positions report` option works: --file PATH, --model NAME_OR_DIR, --out PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lens-positions report "$@"
