#!/usr/bin/env bash
# perceiver bench under glibc malloc (with the CLI's own tuning: freed memory kept in the process),
# jemalloc and tcmalloc (Debian's libjemalloc2 and libtcmalloc-minimal4, preloaded), interleaved in
# one run, each workload in its own process; prints each allocator's median s/iter and peak RSS
# relative to glibc's. Allocators that are not installed are skipped.
#   scripts/bench-allocators.sh [--rounds N] [--only NAME...] [BENCH ARGS...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PERCEIVER_BUILD_DIR:-$root/build}/perceiver"
[ -x "$bin" ] || { echo "bench-allocators: build first (scripts/setup.sh)" >&2; exit 2; }
rounds=3
args=()
only=(mlm-train img-train flow-infer)
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --only) shift; only=(); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done ;;
    *) args+=("$1"); shift ;;
  esac
done
lib=/usr/lib/x86_64-linux-gnu
declare -A preload=([glibc]="")
[ -e "$lib/libjemalloc.so.2" ] && preload[jemalloc]="$lib/libjemalloc.so.2"
[ -e "$lib/libtcmalloc_minimal.so.4" ] && preload[tcmalloc]="$lib/libtcmalloc_minimal.so.4"
results="$(mktemp)"; trap 'rm -f "$results"' EXIT
for ((round = 1; round <= rounds; round++)); do
  for alloc in "${!preload[@]}"; do
    echo "bench-allocators: round $round/$rounds, $alloc" >&2
    for workload in "${only[@]}"; do
      LD_PRELOAD="${preload[$alloc]}" "$bin" bench --json --only "$workload" "${args[@]}" |
        sed "s/^{/{\"allocator\":\"$alloc\",/" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"allocator"') and '"workload"' in l]
t, m = {}, {}
for r in rows:
    key = (r["workload"], r["allocator"])
    t.setdefault(key, []).append(r["seconds_per_iter"])
    m.setdefault(key, []).append(r["peak_rss_mb"])
print(f"{'workload':<16} {'allocator':<10} {'s/iter':>9} {'vs glibc':>9} {'peak RSS MB':>12} {'vs glibc':>9}")
for (workload, alloc) in sorted(t):
    s, rss = statistics.median(t[(workload, alloc)]), statistics.median(m[(workload, alloc)])
    s0, r0 = statistics.median(t[(workload, "glibc")]), statistics.median(m[(workload, "glibc")])
    print(f"{workload:<16} {alloc:<10} {s:>9.4f} {s / s0:>9.3f} {rss:>12.0f} {rss / r0:>9.3f}")
PY
