#!/usr/bin/env bash
# Installs the release build's tools (only what is missing; safe to rerun):
# Debian packages, and zig + cargo-zigbuild from PyPI in a venv under $1.
set -euo pipefail
cache=$1
pkgs=(
  rustc-web rust-web-src cargo-web       # a rustc whose std sources build std for musl
  clang libclang-dev pkg-config          # bindgen for ffmpeg-sys-next
  nasm make file xz-utils bzip2 dpkg-dev # FFmpeg's x86 assembly, builds, apt-get source
  patch flac                             # our FFmpeg patches; flac -t checks what the build writes
  python3-venv                           # zig and cargo-zigbuild from PyPI
  qemu-user-static                       # runs the aarch64 binary for its smoke check
  minisign                               # signs the release manifest
)
. "$(dirname "$0")/apt.sh"
apt_install "${pkgs[@]}"
# NOTE: versions pinned so two machines build with the same linker.
if ! "$cache/venv/bin/python3" -m ziglang version >/dev/null 2>&1 ||
   ! [ -x "$cache/venv/bin/cargo-zigbuild" ]; then
  mkdir -p "$cache"
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q ziglang==0.17.0 cargo-zigbuild==0.24.0
fi
# A plain `zig` command for cargo-zigbuild (release builds put /usr/bin,
# with Debian's python3, first on PATH).
mkdir -p "$cache/bin"
printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$cache/venv/bin/python3" > "$cache/bin/zig"
chmod +x "$cache/bin/zig"
echo "zig $("$cache/venv/bin/python3" -m ziglang version), $("$cache/venv/bin/cargo-zigbuild" --version 2>/dev/null | head -1), $(/usr/bin/rustc --version)" >&2
