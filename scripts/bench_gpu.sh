#!/usr/bin/env bash
# Issue 7/15 GPU mode in one go: every benchmark (the peers too: HF Llama, TransformerBridge,
# the patching sweep, the SmolLM2 graft) in eager bf16, then the training steps (ours and HF) and the
# scaling sweep again under torch.compile, each appended as a dated section to
# benchmarks/RESULTS.md (or RESULTS=path). Needs a CUDA machine with torch and this repository's
# dependencies; on a machine that cannot reach PyPI, put the wheels in .whl/ first (see README,
# "GPU machines without internet").
#
#   bash scripts/bench_gpu.sh                 # eager, then --compile
#   RESULTS=/tmp/gpu.md bash scripts/bench_gpu.sh
#
# Every number comes from `python -m benchmarks.run_all --device cuda [...]`; this script only
# chains the two runs, going on to the compiled one even if the eager one fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
RESULTS=${RESULTS:-benchmarks/RESULTS.md}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import transformer_lens" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/lens-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/lens-site"
  else
    echo "transformer_lens is not installed and .whl/ holds no wheels to install it from" >&2
    exit 1
  fi
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 1
nvidia-smi -L 2>/dev/null || true

status=0
"$PY" -m benchmarks.run_all --device cuda --results "$RESULTS" || status=1
"$PY" -m benchmarks.run_all --device cuda --compile --only train_step vs_hf scaling --results "$RESULTS" || status=1
exit $status
