#!/usr/bin/env bash
# Prepares .gpu/ for scripts/gpu-check.sh on a CUDA machine that is not Debian and reaches no
# package registry: the Debian .debs of the C++ dependencies (unpacked there with dpkg -x, never
# installed), the HF fixtures and the KJV data. Run it here, on Debian 12; .gpu/ is git-ignored
# (add "/.gpu/" to .git/info/exclude) and travels as a carried folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${PERCEIVER_SHARED:-$root/../shared}"
out="$root/.gpu"
mkdir -p "$out/debs"
# Header-only and small compiled libraries; OpenCV's closure (GDAL, FFmpeg, ...) is far too large
# to carry, so the GPU build is configured with PERCEIVER_WITH_OPENCV=OFF.
debs=(libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev
      libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0 libgtest-dev
      zlib1g-dev zlib1g libsndfile1-dev libsndfile1 libflac12 libmp3lame0 libmpg123-0 libogg0 libopus0
      libvorbis0a libvorbisenc2)
(cd "$out/debs" && apt-get download "${debs[@]}")
rm -rf "$out/fixtures" && mkdir -p "$out/fixtures" && cp -r "$shared/fixtures/hf" "$out/fixtures/"
cp /usr/lib/bible.data "$out/bible.data"
du -sh "$out"
