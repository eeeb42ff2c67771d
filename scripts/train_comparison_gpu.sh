#!/usr/bin/env bash
# Train the comparison set (none, shared, per_layer, per_layer per-head) at paper size, all at
# once on one GPU: a 6.4M-parameter model leaves most of a modern GPU idle, so running the
# variants side by side costs little more wall time than one of them.
#
#   STEPS=50000 DATA=data/tokens RUNS=runs/paper bash scripts/train_comparison_gpu.sh
#
# Each run writes RUNS/<variant>/ (checkpoint.pt, metrics.jsonl, final/) and RUNS/<variant>.log;
# rerunning the script resumes the runs from their checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-50000}
DATA=${DATA:-data/tokens}
RUNS=${RUNS:-runs/paper}
PY=${PY:-python3}
mkdir -p "$RUNS"
pids=()
for variant in none shared per_layer per_layer_per_head; do
  flags=(--increments "${variant%_per_head}")
  [[ $variant == *_per_head ]] && flags+=(--per-head)
  resume=()
  [ -f "$RUNS/$variant/checkpoint.pt" ] && resume=(--resume)
  "$PY" -m training.train --config paper "${flags[@]}" --data "$DATA" --out "$RUNS/$variant" \
    --steps "$STEPS" --no-progress "${resume[@]}" "${@}" >>"$RUNS/$variant.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
