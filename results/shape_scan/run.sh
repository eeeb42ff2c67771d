#!/usr/bin/env bash
# The shape scan of issue 20: four widths/contexts at the post's depth (6 layers), per-layer δ,
# the same wall budget (~10 minutes of one thread) each, two at a time on the two cores.
#   bash results/shape_scan/run.sh DATA RUNS      (DATA: token folder; RUNS: outside the work tree)
# Steps were sized from a 20-step throughput probe of each shape (results/shape_scan/README.md).
set -euo pipefail
DATA=${1:?token folder}; RUNS=${2:?runs folder}
PY=${PY:-.venv/bin/python}
common=(--config cpu --increments per_layer --n-layers 6 --threads 1
        --eval-windows 128 --final-eval-windows 512 --checkpoint-every 100 --no-progress
        --data "$DATA")
scan() {  # name d_model heads ctx batch steps
  "$PY" -m training.train "${common[@]}" --d-model "$2" --n-heads "$3" --d-mlp $(( 4 * $2 )) \
    --n-ctx "$4" --batch-size "$5" --steps "$6" --eval-every $(( $6 / 4 )) --warmup $(( $6 / 10 )) \
    --out "$RUNS/$1" >"$RUNS/$1.log" 2>&1
}
mkdir -p "$RUNS"
scan d96-c256 96 3 256 32 "${S96:?}" & scan d192-c256 192 6 256 32 "${S192:?}" & wait
scan d128-c256 128 4 256 32 "${S128:?}" & scan d128-c512 128 4 512 16 "${S128_512:?}" & wait
