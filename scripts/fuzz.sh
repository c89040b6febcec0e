#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in their own build directory and fuzzes each.
# Usage: scripts/fuzz.sh [TARGET ...] [--runs N] [--seconds S] [--jobs J] [--build-only]
#   TARGET   names from `build-fuzz/fuzz/perceiver_fuzz --list` (default: all)
#   --runs   executions per target (default 1000000); --seconds: time limit per target (default 600)
#   --jobs   targets fuzzed at once (default: cores)
# Per target: the working corpus grows in build-fuzz/corpus/<target>, crashes land in
# build-fuzz/artifacts/<target>/ (copy each into tests/corpus/<target>/ once it is fixed), and
# build-fuzz/summary.md gets a row: executions, edges covered, features, crashes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
runs=1000000 seconds=600 jobs="$(nproc)" build_only=0 targets=()
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

"$root/scripts/setup.sh" --packages-only
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz.sh: installing clang and its sanitizer/fuzzer runtime"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q clang libclang-rt-14-dev
fi

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPERCEIVER_FUZZ=ON -DBUILD_SHARED_LIBS=OFF -DPERCEIVER_BUILD_TESTS=OFF -DPERCEIVER_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target perceiver_fuzz -j "$(nproc)"
fuzzer="$build/fuzz/perceiver_fuzz"
((build_only)) && exit 0

((${#targets[@]})) || mapfile -t targets < <("$fuzzer" --list)
rm -rf "$build/seeds"
/usr/bin/python3 "$root/fuzz/make_seeds.py" "$root" "$root/../shared/fixtures/hf" "$build/seeds"

# One target: libFuzzer until --runs or --seconds, then one summary row (also on a crash).
fuzz_one() {
  local t="$1" log="$build/logs/$1.log" rc=0
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "$build/seeds/$t" "$build/logs"
  PERCEIVER_FUZZ_TARGET="$t" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$fuzzer" -runs="$runs" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=262144 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" \
    "$build/corpus/$t" "$build/seeds/$t" >"$log" 2>&1 || rc=$?
  local execs edges features crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  features=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  crashes=$(find "$build/artifacts/$t" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "${execs:-?}" "${edges:-?}" "${features:-?}" "$crashes" \
    "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc, see build-fuzz/logs/$t.log)")" >"$build/logs/$t.row"
  cat "$build/logs/$t.row"
  return "$rc"
}

echo "fuzz.sh: ${#targets[@]} target(s), $runs runs or $seconds s each, $jobs at a time; logs in $build/logs"
failed=0 running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then wait -n || failed=1; running=$((running - 1)); fi
done
while ((running > 0)); do wait -n || failed=1; running=$((running - 1)); done

{
  echo "| target | executions | edges | features | crashes | result |"
  echo "|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do cat "$build/logs/$t.row"; done
} >"$build/summary.md"
cat "$build/summary.md"
exit "$failed"
