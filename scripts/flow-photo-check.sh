#!/usr/bin/env bash
# What a flow model trained on synthetic pairs (configs/flow_synthetic.yaml) does on photographs:
# crops of real photos moved by known sub-pixel translations (the `shifted_images` flow source),
# scored as `perceiver evaluate` scores any flow data (EPE, with Farneback's and zero flow's EPE on
# the same pairs). The photos are scikit-image's sample photographs from Debian's python3-skimage
# package, unpacked (not installed) into build/data/photos on the first run.
# Usage: scripts/flow-photo-check.sh CHECKPOINT [KEY=VALUE ...]   (e.g. data.eval.short_side=128)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PERCEIVER_BUILD_DIR:-$root/build}"
[ $# -ge 1 ] || { echo "usage: $0 CHECKPOINT [KEY=VALUE ...]" >&2; exit 2; }
checkpoint="$1"; shift
photos="$build/data/photos"
if [ ! -f "$photos/astronaut.png" ]; then
  tmp="$(mktemp -d)"; chmod 777 "$tmp"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download python3-skimage >/dev/null) \
    || { echo "flow-photo-check: 'apt-get download python3-skimage' failed (run 'sudo apt-get update' first?)" >&2; exit 1; }
  dpkg-deb -x "$tmp"/python3-skimage_*.deb "$tmp/x"
  mkdir -p "$photos"
  for f in astronaut.png chelsea.png coffee.png motorcycle_left.png rocket.jpg; do
    cp "$tmp/x/usr/lib/python3/dist-packages/skimage/data/$f" "$photos/"
  done
fi
"$build/perceiver" evaluate --config "$root/configs/flow_synthetic.yaml" --checkpoint "$checkpoint" \
  logging.run_dir="${TMPDIR:-/tmp}/perceiver-flow-photo-check" \
  data.eval.type=shifted_images data.eval.path="$photos" data.eval.short_side=96 data.eval.count=500 \
  data.eval.seed=2 data.eval.max_displacement=2 "$@"
