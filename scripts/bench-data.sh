#!/usr/bin/env bash
# Data at scale, end to end: peak RSS and time to the first training step of `perceiver train` on
# generated text (1x and 10x a size) and generated 256x256 JPEGs (1x and 10x a count), each run twice
# (the first builds the text index, the second reuses it), plus `perceiver bench`'s data-path figures.
#   scripts/bench-data.sh [--text-mb 100] [--images 2000] [--data-dir DIR] [--build DIR]
# The data is generated once into DIR (default /tmp/perceiver-bench-data) and reused by later runs.
# Time to the first step: from the process start to the log line of step 1. Peak RSS: the process's
# maximum resident set (the kernel's ru_maxrss).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
text_mb=100 images=2000 data=/tmp/perceiver-bench-data build="$root/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --text-mb) text_mb="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --data-dir) data="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
perceiver="$build/perceiver"
[ -x "$perceiver" ] || { echo "bench-data: build first (scripts/setup.sh)" >&2; exit 2; }
mkdir -p "$data"
export PERCEIVER_CACHE_DIR="$data/cache"

echo "== perceiver bench: the data path alone (generates the data on first use)"
"$perceiver" bench --only data-text data-images --data-text-mb "$text_mb" --data-images "$images" --data-dir "$data" --iters 5

# Runs perceiver train with the given arguments; prints seconds to step 1 and peak RSS in MB.
measure() {
  /usr/bin/python3 - "$perceiver" "$@" <<'PY'
import datetime, re, resource, subprocess, sys, time
start = time.time()
p = subprocess.run([sys.argv[1], "train"] + sys.argv[2:], capture_output=True, text=True)
if p.returncode != 0:
    sys.exit("train failed:\n" + p.stderr[-3000:])
first = None
for line in p.stderr.splitlines():
    m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\].*\bstep 1/", line)
    if m:
        first = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() - start
        break
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"first step after {first:6.2f} s   peak RSS {rss:7.0f} MB")
PY
}

mlm_run() {  # $1: corpus folder
  cat > "$data/mlm.yaml" <<YAML
model:
  architecture: PerceiverForMaskedLM
  config: {d_model: 128, d_latents: 128, num_latents: 64, num_self_attends_per_block: 4, num_self_attention_heads: 4,
           num_cross_attention_heads: 4, max_position_embeddings: 128, attention_probs_dropout_prob: 0.0}
task: {name: mlm, fill_in_words: 0, fill_in_samples: 0}
data: {seq_len: 128, train: {type: text, path: '$1', unit: line}, eval: {type: text, path: '$1', unit: line}}
trainer: {max_steps: 2, batch_size: 32, eval_max_batches: 1, precision: fp32}
logging: {run_dir: '$data/run', log_every: 1}
YAML
}
image_run() {  # $1: image folder
  cat > "$data/img.yaml" <<YAML
model:
  architecture: PerceiverForImageClassificationFourier
  config: {d_latents: 64, num_latents: 32, num_self_attends_per_block: 2, num_self_attention_heads: 2,
           num_cross_attention_heads: 1, qk_channels: 32, v_channels: 64, image_size: 64}
task: image_classification
data: {train: {type: image_folder, path: '$1', height: 64, width: 64}, eval: {type: image_folder, path: '$1', height: 64, width: 64}}
trainer: {max_steps: 2, batch_size: 32, eval_max_batches: 1, precision: fp32}
logging: {run_dir: '$data/run', log_every: 1}
YAML
}

echo "== perceiver train, two steps: text (unit: line, windows of 128 bytes)"
for scale in 1x 10x; do
  mlm_run "$data/text/$scale"
  rm -rf "$PERCEIVER_CACHE_DIR"
  printf "text %-4s %-18s " "$scale" "(index built)"; measure --config "$data/mlm.yaml"
  printf "text %-4s %-18s " "$scale" "(index reused)"; measure --config "$data/mlm.yaml"
done
echo "== perceiver train, two steps: JPEG folders (decoded and resized to 64x64 per batch)"
for scale in 1x 10x; do
  image_run "$data/images/$scale"
  printf "images %-4s " "$scale"; measure --config "$data/img.yaml"
done
