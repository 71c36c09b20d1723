#!/usr/bin/env bash
# The acceptance study of `dcsm-lightning tune` on one dataset, for one trained classifier:
#   1. tune on N labelled TRAIN images (DCSM, the strategy pseudo-labels write);
#   2. compare DCSM on val with the paper's defaults and with tuned.yaml;
#   3. pseudo-labels of the train split with each; a second stage (configs/synthetic_seg.yaml)
#      trained on each; both students compared on val.
# Usage: benchmarks/tuning_study.sh shapes|glyphs CKPT OUT [NUM_IMAGES] [TRACKS]
# TRACKS: "default tuned" (both, the default), or one of them: the default track needs no tune,
# so two runs (default / tuned) can go side by side.
# Every step's log is OUT/<step>.log; a finished step (its output present) is skipped on rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=$1 CKPT=$2 OUT=$3 NUM=${4:-50} TRACKS=${5:-default tuned}
CLI=${CLI:-dcsm-lightning}
CONFIG=(--config configs/synthetic.yaml)
SEG=(--config configs/synthetic_seg.yaml)
if [ "$DATASET" = glyphs ]; then
  CONFIG+=(--config configs/data/glyphs.yaml)
  SEG+=(--config configs/data/glyphs.yaml --data.init_args.batch_size=16)
fi
mkdir -p "$OUT"
step() {  # step NAME DONE_FILE COMMAND...: run unless DONE_FILE exists; log and time it
  local name=$1 done=$2 start=$SECONDS
  shift 2
  if [ -e "$done" ]; then echo "$name: done earlier ($done)"; return; fi
  "$@" >"$OUT/$name.log" 2>&1
  echo "$name: $((SECONDS - start)) s" | tee -a "$OUT/times.txt"
}
LOGGER=(--trainer.logger=false)
[[ " $TRACKS " == *" tuned "* ]] && step tune "$OUT/tuned/tuned.yaml" \
  "$CLI" tune "${CONFIG[@]}" --ckpt_path "$CKPT" --model.segmentation.saliency=dcsm \
  --num_images "$NUM" --output_dir "$OUT/tuned" "${LOGGER[@]}"
# tuned.yaml lists DCSM alone (tuned with saliency=dcsm); the default rows name it here
extra_default=(--model.segmentation.saliency=dcsm)
extra_tuned=(--config "$OUT/tuned/tuned.yaml")
for kind in $TRACKS; do  # the val tables first, the second stage after
  extra="extra_$kind[@]"
  step "compare_$kind" "$OUT/compare_$kind/comparison.csv" \
    "$CLI" compare "${CONFIG[@]}" "${!extra}" --ckpt_path "$CKPT" "${LOGGER[@]}" \
    --output_dir "$OUT/compare_$kind"
done
for kind in $TRACKS; do
  extra="extra_$kind[@]"
  step "pseudo_$kind" "$OUT/pseudo_$kind/ImageSets" \
    "$CLI" pseudo-labels "${CONFIG[@]}" "${!extra}" --ckpt_path "$CKPT" "${LOGGER[@]}" \
    --output_dir "$OUT/pseudo_$kind"
done
for kind in $TRACKS; do
  STUDENT="$OUT/runs/student_$kind/version_0/checkpoints/last.ckpt"
  step "student_$kind" "$STUDENT" \
    "$CLI" fit "${SEG[@]}" --model.init_args.pretrained="$CKPT" \
    --data.init_args.train_mask_root="$OUT/pseudo_$kind" \
    --trainer.logger.init_args.save_dir="$OUT/runs" \
    --trainer.logger.init_args.name="student_$kind" --trainer.logger.init_args.version=0
  step "compare_student_$kind" "$OUT/compare_student_$kind/comparison.csv" \
    "$CLI" compare "${SEG[@]}" --ckpt_path "$STUDENT" "${LOGGER[@]}" \
    --output_dir "$OUT/compare_student_$kind"
done
