#!/usr/bin/env bash
# Installs the Debian package built by scripts/package.sh into a fresh Debian 12 root made with
# debootstrap, and runs `perceiver env` there: proof that the package's Depends are complete.
# Usage (root): scripts/deb-chroot-check.sh [build-dir] [root-dir]   (downloads ~400 MB of packages)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
target="${2:-/tmp/perceiver-deb12-root}"
deb=$(ls -t "$build"/perceiver-cpp_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "deb-chroot-check: no package in $build; run scripts/package.sh first" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
[ -x "$target/usr/bin/apt-get" ] || debootstrap --variant=minbase bookworm "$target"
cp "$deb" "$target/tmp/"
mountpoint -q "$target/proc" || mount -t proc proc "$target/proc"
trap 'umount "$target/proc" 2>/dev/null || true' EXIT
chroot "$target" /bin/sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/$(basename "$deb")"
chroot "$target" /usr/bin/perceiver env
echo "deb-chroot-check: perceiver env ran in a fresh Debian 12 root ($target)"
