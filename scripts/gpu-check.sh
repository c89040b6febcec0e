#!/usr/bin/env bash
# The GPU check: builds perceiver-cpp against the CUDA LibTorch that the machine's Python torch
# ships and proves the CUDA paths on it, in a few minutes:
#   1. configure + build (PERCEIVER_WITH_OPENCV=OFF: the Debian deps come from .gpu/debs),
#   2. `perceiver env` (GPU, CUDA, cuDNN, NCCL),
#   3. the HF parity suite on the GPU (PERCEIVER_TEST_DEVICE=cuda, tolerance 1e-4, TF32 off),
#   4. a 200-step KJV MLM run on the GPU (dropout on, deterministic kernels) and its resume from
#      step 100, whose final weights must be bit-identical,
#   5. bf16 autocast training steps, and an export of the trained MLM on the GPU loaded on the CPU,
#   6. `perceiver bench` on the GPU in fp32 and bf16 beside HF's Python Perceiver (bench/hf_reference.py).
# Usage: scripts/gpu-check.sh OUT_DIR   (run from the repository root; scripts/gpu-bundle.sh makes .gpu/ here)
# Every step runs even when an earlier one failed; OUT_DIR gets summary.txt (one line per step and
# the tail of each failure), full.log, env.txt and bench.jsonl.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$(mkdir -p "${1:-out/gpu}" && cd "${1:-out/gpu}" && pwd)"
summary="$out/summary.txt" full="$out/full.log"
: >"$summary"; : >"$full"
build="${PERCEIVER_GPU_BUILD:-$root/build-gpu}"
deps=/tmp/perceiver-deps
export PYTHONUNBUFFERED=1
start=$(date +%s)

note() { echo "$*" | tee -a "$summary" "$full"; }
# step NAME COMMAND...: runs it, logs everything to full.log, one line (+ tail on failure) to summary.
step() {
  local name=$1; shift
  local t0=$(date +%s) log="$out/.step.log"
  echo "==== $name: $*" >>"$full"
  if "$@" >"$log" 2>&1; then
    cat "$log" >>"$full"; note "ok     $name ($(( $(date +%s) - t0 )) s)"
  else
    cat "$log" >>"$full"; note "FAILED $name ($(( $(date +%s) - t0 )) s)"; tail -n 25 "$log" | sed 's/^/    /' >>"$summary"
  fi
  rm -f "$log"
}

# ---- 0. the machine ----
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch,sys;print("python",sys.version.split()[0],"torch",torch.__version__,"cuda",torch.version.cuda,"cudnn",torch.backends.cudnn.version())'
  python3 -c 'import transformers;print("transformers",transformers.__version__)' 2>&1 | tail -1
  (. /etc/os-release; echo "os $PRETTY_NAME"); g++ --version | head -1; cmake --version | head -1; nproc
} >"$out/env.txt" 2>&1
cat "$out/env.txt" >>"$summary"

# ---- 1. dependencies and build ----
torch_prefix="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
torch_lib="$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
unpack() { rm -rf "$deps" && mkdir -p "$deps" && for f in .gpu/debs/*.deb; do dpkg -x "$f" "$deps" || return 1; done; }
step unpack-deps unpack
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$torch_lib:${LD_LIBRARY_PATH:-}"
step configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPERCEIVER_WITH_OPENCV=OFF \
  -DPERCEIVER_BUILD_BENCH=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DTORCH_CUDA_ARCH_LIST=9.0
step build cmake --build "$build" -j "$(nproc)" -- -k 0
cli="$build/perceiver"

# ---- 2. environment ----
step perceiver-env "$cli" env

# ---- 3. parity on the GPU ----
step parity-cuda env PERCEIVER_TEST_DEVICE=cuda PERCEIVER_FIXTURES="$root/.gpu/fixtures/hf" \
  "$build/tests/perceiver_tests" --gtest_filter="${PARITY_FILTER:-*HfParity*:Vision*}" --gtest_brief=1

# ---- 4. 200 KJV MLM steps on the GPU, and the resume from step 100 ----
runs=/tmp/perceiver-gpu-runs; rm -rf "$runs"
mlm_args=(--config configs/mlm_kjv.yaml --device cuda trainer.max_steps=200 trainer.checkpoint_every=100
          trainer.keep_last=3 trainer.eval_every=0 trainer.eval_max_batches=5 trainer.time_limit_minutes=0
          trainer.deterministic=true model.config.attention_probs_dropout_prob=0.1 logging.log_every=50
          data.train.path=.gpu/bible.data data.eval.path=.gpu/bible.data)
step mlm-200-steps "$cli" train "${mlm_args[@]}" logging.run_dir="$runs/full"
step mlm-resume-from-100 "$cli" train "${mlm_args[@]}" logging.run_dir="$runs/resumed" \
  --resume "$runs/full/checkpoints/step-00000100"
step resume-is-bitwise-equal cmp "$runs/full/checkpoints/step-00000200/model.safetensors" \
  "$runs/resumed/checkpoints/step-00000200/model.safetensors"
step mlm-bf16-steps "$cli" train "${mlm_args[@]}" --precision bf16 trainer.max_steps=50 trainer.checkpoint_every=0 \
  trainer.deterministic=false logging.run_dir="$runs/bf16"

# ---- 5. export on the GPU, load on the CPU ----
step export-mlm-on-gpu "$cli" export --model "$runs/full/checkpoints/step-00000200" --out /tmp/mlm.pt --device cuda
step load-export-on-cpu python3 -c '
import torch
m = torch.jit.load("/tmp/mlm.pt", map_location="cpu")
ids = torch.randint(6, 262, (2, 128)); mask = torch.ones(2, 128, dtype=torch.long)
out = m(ids, mask)
print({k: tuple(v.shape) for k, v in out.items()}, "device", out["logits"].device)'

# ---- 6. bench: ours (fp32, bf16) beside HF's Python Perceiver on the same GPU ----
bench_args=(--device cuda --json --iters 10 --warmup 3 --only mlm-train mlm-infer-full img-train flow-infer scaling)
step bench-fp32 bash -c "\"$cli\" bench ${bench_args[*]} | tee -a \"$out/bench.jsonl\""
step bench-bf16 bash -c "\"$cli\" bench ${bench_args[*]} --precision bf16 | tee -a \"$out/bench.jsonl\""
step hf-reference-fp32 bash -c "python3 bench/hf_reference.py --device cuda --iters 10 | tee -a \"$out/bench.jsonl\""
step hf-reference-bf16 bash -c "python3 bench/hf_reference.py --device cuda --iters 10 --precision bf16 | tee -a \"$out/bench.jsonl\""

note "total $(( $(date +%s) - start )) s"
grep -q '^FAILED' "$summary" && exit 1
exit 0
