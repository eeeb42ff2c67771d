#!/usr/bin/env bash
# Train the comparison set (none, shared, per_layer, per_layer per-head) at paper size, all at
# once on one GPU: a 6.4M-parameter model leaves most of a modern GPU idle, so running the
# variants side by side costs little more wall time than one of them.
#
#   STEPS=50000 DATA=data/tokens RUNS=runs/paper bash scripts/train_comparison_gpu.sh
#
# On the device machine, where only 64 MiB travel, carry the token folder as an xz pack
# (`python -m training.tokens.device_pack pack --data data/tokens-v2 --out .pack`, see its docstring)
# and let the script rebuild it first; EXPORT collects what comes back:
#
#   PACK=.pack DATA=/tmp/tokens RUNS=/tmp/runs EXPORT=$OUT STEPS=6000 \
#     bash scripts/train_comparison_gpu.sh
#
# Each run writes RUNS/<variant>/ (checkpoint.pt, metrics.jsonl, final/) and RUNS/<variant>.log;
# rerunning the script resumes the runs from their checkpoints. With EXPORT, each finished
# variant's final model (weights as trained, bf16 under autocast) with its card and metrics goes
# into EXPORT/<variant>.tar (one file per variant: the device returns at most 8 files).
# CONFIG (default paper) and VARIANTS (default all four) exist for the CPU test at tiny size.
#
# Payload (measured for data/tokens-v2, docs/offline.md): the xz pack is ~29 MiB (3.0x on these
# bytes) and the checkout ~63 MiB (tests/test_repository.py keeps it under 64), of which 51 MB are
# the four shipped weight files, which
# training does not read. Move lens_positions/pretrained/ out of the checkout for the call (and
# back after), run `device_pack pack` (it prints the total against 64 MiB), carry the pack and
# .whl; or pass --max-train-mb to pack less text. Speed: ~224k tokens/s per variant with all four
# at once on the H200 (shipped cards), so one 10-minute call holds ~3,000 steps of 64 x 512.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-50000}
DATA=${DATA:-data/tokens}
RUNS=${RUNS:-runs/paper}
PY=${PY:-python3}
CONFIG=${CONFIG:-paper}
VARIANTS=${VARIANTS:-none shared per_layer per_layer_per_head}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The device has torch but not transformer_lens: install carried wheels (.whl/, as for
# scripts/bench_gpu.sh) into a folder of their own.
if ! "$PY" -c "import transformer_lens" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/lens-site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/lens-site"
fi
if [ -n "${PACK:-}" ] && [ ! -f "$DATA/meta.json" ]; then
  "$PY" -m training.tokens.device_pack unpack --pack "$PACK" --out "$DATA"
fi
mkdir -p "$RUNS"
pids=()
for variant in $VARIANTS; do
  flags=(--increments "${variant%_per_head}")
  [[ $variant == *_per_head ]] && flags+=(--per-head)
  resume=()
  [ -f "$RUNS/$variant/checkpoint.pt" ] && resume=(--resume)
  "$PY" -m training.train --config "$CONFIG" "${flags[@]}" --data "$DATA" --out "$RUNS/$variant" \
    --steps "$STEPS" --no-progress "${resume[@]}" "${@}" >>"$RUNS/$variant.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ -n "${EXPORT:-}" ]; then
  mkdir -p "$EXPORT"
  for variant in $VARIANTS; do
    [ -d "$RUNS/$variant/final" ] || continue
    tar -cf "$EXPORT/$variant.tar" -C "$RUNS/$variant" final metrics.jsonl -C .. "$variant.log"
  done
fi
exit $status
