#!/usr/bin/env bash
# Benchmark (not a test): data-parallel world size 1 vs 2 at the same global batch on this machine,
# 1 rank x 2 threads against 2 ranks x 1 thread (`perceiver train --nproc 2`), on a shipped run file.
# Prints the mean step time of each and, for 2 ranks, the time of a synchronised backward and the part
# of it the gradient all-reduce added after the last gradient was computed (communication not hidden
# behind backward).
#   scripts/bench-ddp.sh [CONFIG] [STEPS] [KEY=VALUE ...]   (default: configs/mlm_kjv_quick.yaml, 60 steps)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${PERCEIVER:-build/perceiver}
CONFIG=${1:-configs/mlm_kjv_quick.yaml}
STEPS=${2:-60}
shift $(( $# > 2 ? 2 : $# ))
CORES=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# No evaluation or checkpoint inside the timed loop but the final ones (one eval batch).
common=(--config "$CONFIG" "trainer.max_steps=$STEPS" trainer.eval_every=0 trainer.eval_max_batches=1
        trainer.checkpoint_every=0 logging.log_every=1000000 "$@")

seconds_of() { sed -n 's/^ *"seconds": \([0-9.e+-]*\).*/\1/p' "$1"; }

"$BIN" train "${common[@]}" "trainer.threads=$CORES" "logging.run_dir=$work/one" >"$work/one.json" 2>"$work/one.err" ||
  { cat "$work/one.err" >&2; exit 1; }
"$BIN" train --nproc 2 "${common[@]}" "logging.run_dir=$work/two" >"$work/two.json" 2>"$work/two.err" ||
  { cat "$work/two.err" >&2; exit 1; }

one=$(seconds_of "$work/one.json")
two=$(seconds_of "$work/two.json")
sync_line=$(grep -o 'synchronised backwards of [0-9.]* ms, [0-9.]* ms' "$work/two.err" | head -1)
backward_ms=$(echo "$sync_line" | sed 's/synchronised backwards of \([0-9.]*\) ms.*/\1/')
exposed_ms=$(echo "$sync_line" | sed 's/.*ms, \([0-9.]*\) ms/\1/')
awk -v one="$one" -v two="$two" -v steps="$STEPS" -v cores="$CORES" -v bw="$backward_ms" -v ex="$exposed_ms" \
    -v config="$CONFIG" 'BEGIN {
  printf "%s, %d steps, global batch as in the run file, %d cores\n", config, steps, cores;
  printf "%-28s %12s %10s\n", "", "ms/step", "speed-up";
  printf "%-28s %12.1f %10s\n", "1 rank  x " cores " threads", 1000 * one / steps, "1.00";
  printf "%-28s %12.1f %10.2f\n", "2 ranks x " cores / 2 " thread(s)", 1000 * two / steps, one / two;
  printf "2 ranks: synchronised backward %.1f ms, of which %.1f ms all-reduce not hidden behind backward\n", bw, ex;
}'
