#!/usr/bin/env bash
# The main job: sets everything up, then trains a byte-level masked LM on the King James Bible
# (configs/mlm_kjv_quick.yaml, about 10 minutes on 2 cores) and fills in a masked sentence with the
# resulting checkpoint. Extra arguments are passed to `perceiver train` (e.g. trainer.max_steps=2000,
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
"$build/perceiver" train --config "$config" "${args[@]}" | tee /tmp/perceiver-train-summary.json
checkpoint=$(python3 -c 'import json,sys; print(json.load(open("/tmp/perceiver-train-summary.json"))["checkpoint"])' 2>/dev/null \
  || sed -n 's/.*"checkpoint": "\(.*\)".*/\1/p' /tmp/perceiver-train-summary.json)
echo "checkpoint: $checkpoint"
"$build/perceiver" predict --model "$checkpoint" "In the beginning God created the [MASK][MASK][MASK][MASK][MASK] and the earth."
