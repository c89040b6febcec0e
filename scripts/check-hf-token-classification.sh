#!/usr/bin/env bash
# PerceiverForTokenClassification, which transformers lacks, against its Python twin
# (python/perceiver_token_classification.py, built from transformers' own Perceiver modules): a small
# model with random weights is made and saved by Python (config.json + pytorch_model.bin), turned into
# model.safetensors by `perceiver convert`, loaded back by Python (the same parameter names or an error)
# and run by both on the same inputs through `perceiver infer`; every output must agree within
# 1e-5 + 1e-5·|python|. Prints the largest absolute difference; exits non-zero on a mismatch.
# Not part of the test suite (CI has no transformers).
# Usage: scripts/check-hf-token-classification.sh [--transformers-src DIR] [--work DIR]
#   --transformers-src DIR: a transformers source tree (its src/ folder, or a folder holding
#   transformers/models/perceiver/), imported without installing it as scripts/bench-compare.sh hf does
#   (bench/hf_reference.py); without it, /usr/bin/python3's installed transformers.
#   --work DIR: keep the model folders and tensors there (default: a temporary folder, removed).
# Brings build/perceiver up to date first (scripts/setup.sh when there is no build; PERCEIVER_BUILD_DIR
# overrides build/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PERCEIVER_BUILD_DIR:-$root/build}"
args=()
work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --transformers-src) [ $# -ge 2 ] || { echo "$0: --transformers-src needs a folder" >&2; exit 2; }
      [ -d "$2" ] || { echo "$0: --transformers-src '$2' is not a folder" >&2; exit 2; }
      args+=(--transformers-src "$(cd "$2" && pwd)"); shift 2 ;;
    --work) [ $# -ge 2 ] || { echo "$0: --work needs a folder" >&2; exit 2; }
      work="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "$0: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
/usr/bin/python3 -c 'import numpy, torch' 2>/dev/null \
  || { echo "$0: needs /usr/bin/python3 with torch and numpy (apt-get install python3-torch python3-numpy)" >&2; exit 2; }
((${#args[@]})) || /usr/bin/python3 -c 'import transformers' 2>/dev/null \
  || { echo "$0: /usr/bin/python3 has no transformers; pass --transformers-src DIR (a transformers source tree)" >&2; exit 2; }
if [ -f "$build/build.ninja" ]; then
  cmake --build "$build" --target perceiver >/dev/null  # up to date: a no-op
elif [ ! -x "$build/perceiver" ]; then
  "$root/scripts/setup.sh" "$build"  # the Debian packages, then configure and build
fi
[ -z "$work" ] || args+=(--work "$work")
exec /usr/bin/python3 -W ignore "$root/python/check_token_classification.py" check --perceiver "$build/perceiver" "${args[@]}"
