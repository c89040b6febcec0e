#!/usr/bin/env bash
# Builds the Debian package (cpack -G DEB) from the build directory and shows its control fields.
# Usage: scripts/package.sh [build-dir]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
"$root/scripts/setup.sh" "$build"
command -v dpkg-shlibdeps >/dev/null || { echo "package.sh: dpkg-shlibdeps missing (apt install dpkg-dev)" >&2; exit 1; }
(cd "$build" && cpack -G DEB)
deb=$(ls -t "$build"/perceiver-cpp_*.deb | head -n 1)
dpkg-deb --info "$deb"
echo "package.sh: $deb"
