#!/usr/bin/env bash
# The demo on the built-in synthetic data: train the classifier, compare Simonyan and DCSM with
# and without dense CRF on the validation split, and predict its masks.
# Each run gets its own folder runs/synthetic/version_N; nothing earlier is overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/synthetic.yaml
# The command from the README's venv, else whichever dcsm-lightning is on PATH.
if [ -x .venv/bin/dcsm-lightning ]; then CLI=.venv/bin/dcsm-lightning; else CLI=dcsm-lightning; fi

"$CLI" fit --config "$CONFIG" "$@"
RUN=$(ls -td runs/synthetic/version_* | head -n 1)
CKPT="$RUN/checkpoints/last.ckpt"

"$CLI" compare --config "$CONFIG" --ckpt_path "$CKPT" --output_dir "$RUN/compare"
"$CLI" predict --config "$CONFIG" --ckpt_path "$CKPT" --output_dir "$RUN/predictions"

echo
echo "Checkpoint:        $CKPT"
echo "Comparison table:  $RUN/compare/comparison.md (CSV: comparison.csv, chart: comparison.png)"
echo "Predicted masks:   $RUN/predictions/masks (heatmaps/, overlays/, scores/ beside it)"
echo "TensorBoard logs:  tensorboard --logdir runs"
