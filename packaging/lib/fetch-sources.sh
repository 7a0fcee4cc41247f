#!/usr/bin/env bash
# Fetches alsa-lib and FFmpeg from Debian's source packages into $1 and
# unpacks their upstream tarballs (once; safe to rerun).
set -euo pipefail
src=$1
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
. "$(dirname "$0")/apt.sh"
mkdir -p "$src"
if ls "$src"/alsa-lib-*/configure "$src"/ffmpeg-*/configure >/dev/null 2>&1; then
  exit 0
fi
# deb-src beside the existing Debian entries (same mirror and suites).
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && $sudo sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
  done
  if [ -f /etc/apt/sources.list ]; then
    $sudo sed -i -n 'p; s/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list
  fi
  apt_locked apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
cd "$src"
apt-get source --download-only -qq alsa-lib ffmpeg
for t in alsa-lib_*.orig.tar.* ffmpeg_*.orig.tar.*; do
  case "$t" in *.asc) continue ;; esac
  tar -xf "$t"
done
ls -d alsa-lib-*/ ffmpeg-*/ >&2
