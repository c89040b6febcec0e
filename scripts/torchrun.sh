#!/usr/bin/env bash
# torchrun with a workaround for Debian 12's python3-torch (1.13 on Python 3.11): torchrun crashes on its
# own default --redirects/--tee values ("0": Std.from_str returns None, because iterating an IntFlag
# skips its zero member since Python 3.11). Per-rank maps with non-zero values work, so this passes
#   -r 0:1,1:1,... -t 0:1,1:1,...   (each rank's stdout goes to torchrun's log directory and to the console)
# unless the command line sets -r/--redirects or -t/--tee itself. Everything else goes to torchrun as is:
#   scripts/torchrun.sh --no_python --nproc_per_node 2 build/perceiver train --config configs/X.yaml
#   scripts/torchrun.sh --no_python --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \
#       --nproc_per_node 2 build/perceiver train --config configs/X.yaml
set -euo pipefail

TORCHRUN=${TORCHRUN:-torchrun}
command -v "$TORCHRUN" >/dev/null || { echo "torchrun.sh: $TORCHRUN not found (apt install python3-torch)" >&2; exit 2; }

nproc=1
own_redirects=0
# Only torchrun's options come before the program: stop scanning at the first non-option argument.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[i]}
  case "$a" in
    --nproc_per_node|--nproc-per-node) nproc=${args[i + 1]:-1}; i=$((i + 1)) ;;
    --nproc_per_node=*|--nproc-per-node=*) nproc=${a#*=} ;;
    -r|--redirects|-t|--tee) own_redirects=1; i=$((i + 1)) ;;
    --redirects=*|--tee=*|-r*|-t*) own_redirects=1 ;;
    --no_python|--no-python|--standalone|--run_path|--run-path|-m|--module) ;;  # flags without a value
    --) break ;;
    --*=*) ;;
    -*) i=$((i + 1)) ;;  # an option and its value
    *) break ;;          # the program: its own arguments follow
  esac
done
if [[ ! $nproc =~ ^[0-9]+$ ]]; then
  echo "torchrun.sh: --nproc_per_node $nproc: give a number (the per-rank maps need it)" >&2
  exit 2
fi

extra=()
if ((own_redirects == 0)); then
  map=""
  for ((r = 0; r < nproc; r++)); do map+="${map:+,}$r:1"; done
  extra=(-r "$map" -t "$map")
fi
exec "$TORCHRUN" "${extra[@]}" "$@"
