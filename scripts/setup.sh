#!/usr/bin/env bash
# Installs every Debian package perceiver-cpp needs, then configures and builds (Release, Ninja).
# Idempotent: re-running only rebuilds what changed.
# Usage: scripts/setup.sh [build-dir] | scripts/setup.sh --packages-only
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
packages_only=0
if [ "${1:-}" = "--packages-only" ]; then packages_only=1; shift; fi
build="${1:-$root/build}"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-openmp
  libopencv-dev libspdlog-dev libboost-program-options-dev libyaml-cpp-dev nlohmann-json3-dev
  libsndfile1-dev zlib1g-dev libgtest-dev libbenchmark-dev python3-torch
  libgoogle-perftools-dev  # tcmalloc for the CLI (see CMakeLists.txt)
  libdnnl-dev  # oneDNN for float32 CPU matrix products (perceiver/ops/matmul.h)
  python3-protobuf protobuf-compiler  # tests: independent readers of TensorBoard events and Triton configs
  # Embedded data sets.
  bible-kjv-text dataset-fashion-mnist
  fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-cs fortunes-pl fortunes-br
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi
((packages_only)) && exit 0

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
# Each translation unit that parses torch takes ~1.1 GB: never run more jobs than cores.
cmake --build "$build" -j "$(nproc)"
echo "setup: built into $build"
