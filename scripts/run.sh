#!/usr/bin/env bash
# The main job: sets everything up, then trains a byte-level masked LM on the King James Bible
# (configs/mlm_kjv_quick.yaml, about 10 minutes on 2 cores) and fills in masked words with the
# resulting checkpoint (one word in each of 16 held-out verses, and how many of its bytes are right).
# Extra arguments are passed to `perceiver train` (e.g. trainer.max_steps=2000,
# or --config configs/mlm_kjv.yaml for the full run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PERCEIVER_BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh" "$build"
cd "$root"
config=configs/mlm_kjv_quick.yaml
args=()
while (($#)); do
  if [ "$1" = "--config" ]; then config="$2"; shift 2; else args+=("$1"); shift; fi
done
"$build/perceiver" env
# Each run in a folder of its own (runs/<config>-<time>): a run never mixes with an earlier one's checkpoints.
run_dir="runs/$(basename "$config" .yaml)-$(date +%Y%m%d-%H%M%S)"
"$build/perceiver" train --config "$config" logging.run_dir="$run_dir" "${args[@]}" | tee /tmp/perceiver-train-summary.json
checkpoint=$(python3 -c 'import json,sys; print(json.load(open("/tmp/perceiver-train-summary.json"))["checkpoint"])' 2>/dev/null \
  || sed -n 's/.*"checkpoint": "\(.*\)".*/\1/p' /tmp/perceiver-train-summary.json)
echo "checkpoint: $checkpoint"
# Masked words of 16 held-out verses, filled in by the checkpoint, with the bytes it got right.
"$build/perceiver" evaluate --config "$config" --checkpoint "$checkpoint" logging.run_dir="$run_dir" "${args[@]}" \
  task.fill_in_words=16 task.fill_in_samples=0

