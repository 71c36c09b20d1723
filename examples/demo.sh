#!/usr/bin/env bash
# The demo on the built-in synthetic data: train the classifier, compare Simonyan and DCSM with
# and without dense CRF on the validation split, and predict its masks.
# Each run gets its own folder runs/synthetic/version_N; nothing earlier is overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/synthetic.yaml

dcsm-lightning fit --config "$CONFIG" "$@"
RUN=$(ls -td runs/synthetic/version_* | head -n 1)
CKPT="$RUN/checkpoints/last.ckpt"

dcsm-lightning compare --config "$CONFIG" --ckpt_path "$CKPT" --output_dir "$RUN/compare"
dcsm-lightning predict --config "$CONFIG" --ckpt_path "$CKPT" --output_dir "$RUN/predictions"

echo
echo "Checkpoint:        $CKPT"
echo "Comparison table:  $RUN/compare/comparison.md (CSV: comparison.csv, chart: comparison.png)"
echo "Predicted masks:   $RUN/predictions/masks (heatmaps/, overlays/, scores/ beside it)"
echo "TensorBoard logs:  tensorboard --logdir runs"
