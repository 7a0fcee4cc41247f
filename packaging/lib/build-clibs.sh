#!/usr/bin/env bash
# Builds static alsa-lib and a minimal static FFmpeg for one target with zig
# as the C compiler, into $1/<arch>/prefix. Cached: skipped when the prefix
# was built from the same sources and flags (its .stamp says which).
# Usage: build-clibs.sh CACHE x86_64|aarch64
set -euo pipefail
cache=$1
arch=$2
src=$cache/src
work=$cache/$arch
prefix=$work/prefix
jobs=$(nproc)

alsa_src=$(ls -d "$src"/alsa-lib-*/ | head -1)
ffmpeg_src=$(ls -d "$src"/ffmpeg-*/ | head -1)

alsa_flags=(--host="$arch-linux-musl" --prefix="$prefix" --enable-static --disable-shared
  --disable-python --disable-topology --disable-ucm --disable-alisp --without-debug
  --without-versioned --with-configdir=/usr/share/alsa)
# Only what the agent writes and reads: FLAC, PCM in WAV/W64, files.
ffmpeg_flags=(--prefix="$prefix" --enable-cross-compile --target-os=linux --arch="$arch"
  --enable-static --disable-shared --disable-everything --disable-programs --disable-doc
  --disable-network --disable-autodetect --disable-avdevice --disable-avfilter
  --disable-swscale --disable-postproc --disable-debug --enable-pic
  --enable-avcodec --enable-avformat --enable-avutil --enable-swresample
  --enable-encoder=flac,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le
  --enable-decoder=flac,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le
  --enable-muxer=flac,wav,w64 --enable-demuxer=flac,wav,w64
  --enable-parser=flac --enable-protocol=file)
# Our patches to FFmpeg (packaging/ffmpeg-patches, each says why): applied to
# a copy of the source, so the fetched tree stays as Debian ships it.
patches=$(cd "$(dirname "$0")/../ffmpeg-patches" && pwd)
patch_sums=$(cd "$patches" && sha256sum ./*.patch | sha256sum | cut -c1-16)
zig_version=$(python3 -m ziglang version)
stamp="zig $zig_version; $(basename "$alsa_src") ${alsa_flags[*]}; $(basename "$ffmpeg_src") ${ffmpeg_flags[*]}; patches $patch_sums"
if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$stamp" ]; then
  echo "cached: $prefix" >&2
  exit 0
fi
rm -rf "$work"
mkdir -p "$work/bin" "$prefix"

# zig wrappers: configure scripts want plain commands.
for tool in cc ar ranlib; do
  case $tool in
    cc) cmd="cc -target $arch-linux-musl" ;;
    *) cmd="$tool" ;;
  esac
  printf '#!/bin/sh\nexec python3 -m ziglang %s "$@"\n' "$cmd" > "$work/bin/$tool"
  chmod +x "$work/bin/$tool"
done
export CC="$work/bin/cc" AR="$work/bin/ar" RANLIB="$work/bin/ranlib"

t0=$(date +%s)
mkdir -p "$work/alsa-build"
# Compiler output goes to a log (third-party warnings); shown on failure.
quiet() {
  local log=$1; shift
  "$@" >>"$log" 2>&1 || { tail -40 "$log" >&2; echo "failed: $* (log: $log)" >&2; exit 1; }
}
cd "$work/alsa-build"
quiet "$work/alsa.log" "$alsa_src/configure" "${alsa_flags[@]}"
quiet "$work/alsa.log" make -j"$jobs"
quiet "$work/alsa.log" make install
t1=$(date +%s)
cp -a "$ffmpeg_src" "$work/ffmpeg-src"
for p in "$patches"/*.patch; do
  quiet "$work/ffmpeg.log" patch -d "$work/ffmpeg-src" -p1 --forward --batch -i "$p"
done
mkdir -p "$work/ffmpeg-build"
cd "$work/ffmpeg-build"
quiet "$work/ffmpeg.log" "$work/ffmpeg-src/configure" "${ffmpeg_flags[@]}" \
  --cc="$CC" --ar="$AR" --ranlib="$RANLIB"
quiet "$work/ffmpeg.log" make -j"$jobs"
quiet "$work/ffmpeg.log" make install
t2=$(date +%s)
printf '%s' "$stamp" > "$prefix/.stamp"
echo "$arch: alsa-lib $((t1 - t0)) s, FFmpeg $((t2 - t1)) s -> $prefix" >&2
