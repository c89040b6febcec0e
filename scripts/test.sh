#!/usr/bin/env bash
# Sets everything up (packages + build) and runs the whole test suite; ends with ctest's summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
"$root/scripts/setup.sh" "$build"
cd "$build"
ctest --output-on-failure --timeout 600 -j "$(nproc)"
