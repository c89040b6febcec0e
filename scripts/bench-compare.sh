#!/usr/bin/env bash
# perceiver bench, this build against another commit's (or HF's Python Perceiver), interleaved in one
# run: absolute times on shared machines move by 30 % between runs, so the ratio of the two measured
# side by side is the figure that speed targets are about.
#   scripts/bench-compare.sh GIT_REF [--rounds N] [BENCH ARGS...]
#   scripts/bench-compare.sh hf [--transformers-src DIR] [--rounds N] [BENCH ARGS...]
# e.g. scripts/bench-compare.sh f96ed50 --rounds 3 --only mlm-train img-train --iters 3 --warmup 1
# GIT_REF is checked out in build-ref/<sha>/src (a git worktree) and built in build-ref/<sha>/build;
# it must have `perceiver bench` (f96ed50 or later). `hf` runs the same workloads through HF's Python
# Perceiver (bench/hf_reference.py, /usr/bin/python3 with Debian's python3-torch and python3-numpy;
# --transformers-src: see that file); of BENCH ARGS it takes --iters, --warmup, --threads (default: all
# cores, as ours), --precision and --device. This build is build/ (scripts/setup.sh).
# Each round runs every workload on the old build, then the new (the order alternates per round);
# the table shows the median seconds per iteration of each, new/old, and each build's median peak RSS
# (each workload runs in its own process).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,15p' "$0"; exit 2; }
ref="$1"; shift
rounds=3
args=()
only=()
hf_args=(--threads "$(nproc)")
transformers_src=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --only) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done ;;
    --transformers-src) transformers_src=(--transformers-src "$2"); shift 2 ;;
    --iters | --warmup | --threads | --precision | --device) hf_args+=("$1" "$2"); args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
new="$root/build/perceiver"
[ -x "$new" ] || { echo "bench-compare: build this tree first (scripts/setup.sh)" >&2; exit 2; }
if [ "$ref" = hf ]; then
  grep -q -- '--device' <<<"${hf_args[*]}" || hf_args+=(--device cpu)
  /usr/bin/python3 -c 'import numpy, torch' 2>/dev/null \
    || { echo "bench-compare: HF's Perceiver needs /usr/bin/python3 with torch and numpy (apt-get install python3-torch python3-numpy)" >&2; exit 2; }
  ((${#transformers_src[@]})) || /usr/bin/python3 -c 'import transformers' 2>/dev/null \
    || { echo "bench-compare: /usr/bin/python3 has no transformers; pass --transformers-src DIR (a transformers source tree)" >&2; exit 2; }
  old_bench=(/usr/bin/python3 -W ignore "$root/bench/hf_reference.py" "${transformers_src[@]}" "${hf_args[@]}")
  label="HF's Python Perceiver"
else
  sha="$(git -C "$root" rev-parse --verify "$ref^{commit}")"
  dir="$root/build-ref/${sha:0:12}"
  if [ ! -d "$dir/src" ]; then
    mkdir -p "$dir"
    git -C "$root" worktree add --detach "$dir/src" "$sha" >/dev/null
  fi
  [ -f "$dir/src/apps/cmd_bench.cpp" ] || { echo "bench-compare: $ref ($sha) has no 'perceiver bench' (added in f96ed50)" >&2; exit 2; }
  echo "bench-compare: building $ref in $dir/build" >&2
  cmake -S "$dir/src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPERCEIVER_BUILD_TESTS=OFF \
    -DPERCEIVER_BUILD_BENCH=OFF >/dev/null
  cmake --build "$dir/build" --target perceiver -j "$(nproc)" >/dev/null
  old_bench=("$dir/build/perceiver" bench --json "${args[@]}")
  label="$ref"
fi
# One process per workload: the CLI keeps freed memory in the process (see the allocator note), so a
# workload's peak RSS is only its own when it runs first.
if ((${#only[@]} == 0)); then
  mapfile -t only < <("$new" bench --help | sed -n 's/^workloads: *//p' | tr ' ' '\n' | grep -v '^$')
fi

results="$(mktemp)"; trap 'rm -f "$results"' EXIT
for ((round = 1; round <= rounds; round++)); do
  order=(old new); ((round % 2)) || order=(new old)
  for which in "${order[@]}"; do
    bench=("${old_bench[@]}"); [ "$which" = new ] && bench=("$new" bench --json "${args[@]}")
    echo "bench-compare: round $round/$rounds, $which build" >&2
    for workload in "${only[@]}"; do
      "${bench[@]}" --only "$workload" | sed "s/^{/{\"build\":\"$which\",/" >>"$results"
    done
  done
done

python3 - "$results" "$label" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"build"')]
times, rss = {}, {}
for r in rows:
    if "workload" not in r or "seconds_per_iter" not in r:  # the peak line, or a workload one side lacks
        continue
    key = (r["workload"], r.get("precision", "fp32"), r.get("length", ""))
    times.setdefault(key, {}).setdefault(r["build"], []).append(r["seconds_per_iter"])
    rss.setdefault(key, {}).setdefault(r["build"], []).append(r.get("peak_rss_mb", 0))
print(f"{'workload':<28} {'prec':<5} {'old s/iter':>11} {'new s/iter':>11} {'new/old':>8} {'old RSS MB':>11} "
      f"{'new RSS MB':>11}   (old = {sys.argv[2]})")
for (workload, prec, length), t in sorted(times.items()):
    if "old" not in t or "new" not in t:
        continue
    o, n = statistics.median(t["old"]), statistics.median(t["new"])
    ro, rn = statistics.median(rss[(workload, prec, length)]["old"]), statistics.median(rss[(workload, prec, length)]["new"])
    name = f"{workload} {length}".strip()
    print(f"{name:<28} {prec:<5} {o:>11.4f} {n:>11.4f} {n / o:>8.3f} {ro:>11.0f} {rn:>11.0f}")
EOF
