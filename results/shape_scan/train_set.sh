#!/usr/bin/env bash
# The shipped set of issue 20 at the scan's chosen shape (d_model 96, 3 heads, 6 layers, SwiGLU
# 384, context 256), same steps (STEPS, 2400 by default), data order and seed for every variant, one thread each, two at
# a time. A run that was cut off continues with the same command plus --resume.
#   bash results/shape_scan/train_set.sh DATA RUNS VARIANT... [-- EXTRA FLAGS]
# VARIANT: none | shared | per_layer | per_layer_per_head | per_layer_signed
set -euo pipefail
DATA=${1:?token folder}; RUNS=${2:?runs folder}; shift 2
PY=${PY:-.venv/bin/python}
variants=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
shape=(--config cpu --n-layers 6 --d-model 96 --n-heads 3 --d-mlp 384 --n-ctx 256 --batch-size 32
       --steps "${STEPS:-2400}" --warmup 100 --eval-every 200 --eval-windows 128 --final-eval-windows 2048
       --checkpoint-every 100 --log-every 10 --seed 0 --threads 1 --no-progress --data "$DATA")
flags_of() {
  case $1 in
    none) echo "--increments none" ;; shared) echo "--increments shared" ;;
    per_layer) echo "--increments per_layer" ;;
    per_layer_per_head) echo "--increments per_layer --per-head" ;;
    per_layer_signed) echo "--increments per_layer --signed" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}
mkdir -p "$RUNS"
for v in "${variants[@]}"; do
  # shellcheck disable=SC2046
  "$PY" -m training.train "${shape[@]}" $(flags_of "$v") --out "$RUNS/$v" "$@" >>"$RUNS/$v.log" 2>&1 &
done
wait
