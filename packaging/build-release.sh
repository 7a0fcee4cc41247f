#!/usr/bin/env bash
# Builds the release: fully static rakkr-recorder-agent binaries for
# x86_64-unknown-linux-musl and aarch64-unknown-linux-musl, linked against a
# static alsa-lib and a minimal static FFmpeg built from Debian's source
# packages, packed as the controller's Ansible role expects:
#
#   dist/rakkr-recorder-agent-<version>-<target>.tar.gz
#        (rakkr-recorder-agent-<version>-<target>/rakkr-recorder-agent)
#   dist/rakkr-recorder-agent-<version>-<target>.tar.gz.sha256  (sha256sum format)
#   dist/rakkr-recorder-agent-<version>-<target>  (the bare binary, for
#        Rakkr's own role in local mode, which installs what it is given
#        as the binary) and its .sha256
#   dist/release-manifest.json  (version, git revision, per-target size and hash)
#   dist/release-manifest.json.minisig  (its minisign signature)
#
# Signing (README, "Release keys"): RAKKR_RELEASE_SIGNING_KEY holds the
# text of the minisign secret key (RAKKR_RELEASE_SIGNING_PASSWORD its
# password, if it has one). A tagged release must be signed with a key
# listed in agent/src/update/release-keys.txt; a development build without
# a key is signed with a throwaway key, which no agent trusts.
#
# Installs what it needs on a fresh Debian machine (root or sudo) and is safe
# to run again: the C libraries are cached under $RAKKR_RELEASE_CACHE
# (default ~/.cache/rakkr-release) per target and configuration; cargo's
# output under target/release-musl. Two runs on one commit give identical
# archives (SOURCE_DATE_EPOCH = the commit time, sorted tar, gzip -n).
#
# Version: RAKKR_VERSION if set, else the tag agent-vYYYY.MM.DD-N on HEAD,
# else a development build (<cargo version>+<git rev>, said in --version).
#
# Usage: packaging/build-release.sh [--target x86_64|aarch64]... [--no-check]
# Building one target keeps the other target's archive of the same version
# and revision in dist/ and in the manifest (build x86_64, then aarch64,
# and the manifest lists both).
# Why each tool: see docs/static-build.md (std from Debian's
# rustc-web sources with -Zbuild-std, zig as C compiler and linker).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${RAKKR_RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rakkr-release}
dist=$root/dist
targets=()
check=1
while [ $# -gt 0 ]; do
  case "$1" in
    --target) targets+=("$2"); shift 2 ;;
    --no-check) check=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(x86_64 aarch64)
for t in "${targets[@]}"; do
  case "$t" in x86_64|aarch64) ;; *) echo "unknown target $t (x86_64 or aarch64)" >&2; exit 2 ;; esac
done

log() { printf '\n== %s\n' "$*" >&2; }

# --- 1. Tools -----------------------------------------------------------
log "tools"
"$root/packaging/lib/install-tools.sh" "$cache"
# zig (PyPI ziglang) and cargo-zigbuild live in a venv.
export PATH="$cache/venv/bin:$PATH"

# --- 2. C sources (Debian source packages) --------------------------------
log "sources"
"$root/packaging/lib/fetch-sources.sh" "$cache/src"

# --- 3. Static C libraries per target (cached) ------------------------------
for t in "${targets[@]}"; do
  log "static alsa-lib and FFmpeg for $t"
  "$root/packaging/lib/build-clibs.sh" "$cache" "$t"
done

# --- 4. The agent ---------------------------------------------------------
cd "$root"
full_rev=$(git rev-parse HEAD)
rev=${full_rev:0:12}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
if [ -z "${RAKKR_VERSION:-}" ]; then
  tag=$(git tag --points-at HEAD --list 'agent-v*' | sort | tail -1)
  [ -z "$tag" ] || RAKKR_VERSION=${tag#agent-v}
fi
if [ -n "${RAKKR_VERSION:-}" ]; then
  [[ "$RAKKR_VERSION" =~ ^[0-9]{4}\.[0-9]{2}\.[0-9]{2}-[0-9]+$ ]] || {
    echo "RAKKR_VERSION=$RAKKR_VERSION is not YYYY.MM.DD-N" >&2; exit 2; }
  export RAKKR_VERSION
  version=$RAKKR_VERSION
else
  version="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="rakkr-recorder-agent"))')+$rev"
  echo "no agent-v* tag on HEAD and no RAKKR_VERSION: development build $version" >&2
fi

# dist/ holds one version. Building some targets keeps the other targets'
# archives of the same version (and their manifest entries, see below);
# archives of another version are removed, and the script says so.
mkdir -p "$dist"
for old in "$dist"/rakkr-recorder-agent-*.tar.gz; do
  [ -e "$old" ] || continue
  name=$(basename "$old")
  keep=0
  case "$name" in rakkr-recorder-agent-"$version"-*.tar.gz) keep=1 ;; esac
  for t in "${targets[@]}"; do
    [ "$name" != "rakkr-recorder-agent-$version-$t-unknown-linux-musl.tar.gz" ] || keep=0
  done
  if [ "$keep" = 0 ]; then
    case "$name" in rakkr-recorder-agent-"$version"-*) ;; *) echo "removing $name (another version)" >&2 ;; esac
    rm -f "$old" "$old.sha256" "${old%.tar.gz}" "${old%.tar.gz}.sha256"
  fi
done
rm -f "$dist/release-manifest.json.minisig"
if [ -n "${RAKKR_VERSION:-}" ] && [ -z "${RAKKR_RELEASE_SIGNING_KEY:-}" ]; then
  echo "release $RAKKR_VERSION must be signed: set RAKKR_RELEASE_SIGNING_KEY (README, \"Release keys\")" >&2
  exit 2
fi
manifest_targets=()
for t in "${targets[@]}"; do
  triple=$t-unknown-linux-musl
  prefix=$cache/$t/prefix
  log "cargo build $triple"
  # NOTE: the -sys crates copy the static C libraries into their rlibs when
  # they compile, and cargo never sees those libraries change. When
  # build-clibs.sh rebuilt them (new sources, flags or FFmpeg patches: its
  # .stamp differs from the one this target directory was built with),
  # those crates are compiled again, or the binary keeps the old C code.
  seen=$root/target/release-musl/$triple.clibs-stamp
  if ! cmp -s "$prefix/.stamp" "$seen"; then
    CARGO_TARGET_DIR="$root/target/release-musl" RUSTC=/usr/bin/rustc /usr/bin/cargo clean -q \
      --release --target "$triple" -p ffmpeg-sys-next -p alsa-sys
  fi
  # A GNU build-id (a hash of the linked content, so builds stay
  # reproducible) lets crash tools and rpm match the binary to its build.
  # NOTE: Debian's rustc-web/cargo-web pair (std sources of the same
  # version) builds std for musl; cargo-zigbuild links with zig's musl.
  env PATH="$cache/bin:$cache/venv/bin:/usr/bin:$PATH" \
    RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C link-self-contained=no -C target-feature=+crt-static -C link-arg=-Wl,--build-id=sha1 --remap-path-prefix=$root=. --remap-path-prefix=$HOME/.cargo=~/.cargo" \
    PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_ALL_STATIC=1 \
    "PKG_CONFIG_LIBDIR_$triple=$prefix/lib/pkgconfig" \
    "PKG_CONFIG_PATH_$triple=$prefix/lib/pkgconfig" \
    FFMPEG_DIR="$prefix" \
    CARGO_TARGET_DIR="$root/target/release-musl" \
    CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    cargo-zigbuild build --release --locked -p rakkr-recorder-agent --features static \
      --target "$triple" -Zbuild-std=std,panic_abort
  bin=$root/target/release-musl/$triple/release/rakkr-recorder-agent
  file "$bin" | grep -q "statically linked" || { file "$bin"; echo "$bin is not static" >&2; exit 1; }
  cp "$prefix/.stamp" "$seen"

  name=rakkr-recorder-agent-$version-$triple
  stage=$(mktemp -d)
  mkdir "$stage/$name"
  install -m 0755 "$bin" "$stage/$name/rakkr-recorder-agent"
  touch -d "@$SOURCE_DATE_EPOCH" "$stage/$name" "$stage/$name/rakkr-recorder-agent"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf - "$name" | gzip -n -9 > "$dist/$name.tar.gz"
  rm -rf "$stage"
  (cd "$dist" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
  install -m 0755 "$bin" "$dist/$name"
  touch -d "@$SOURCE_DATE_EPOCH" "$dist/$name"
  (cd "$dist" && sha256sum "$name" > "$name.sha256")
  size=$(stat -c %s "$bin")
  manifest_targets+=("$triple $size $(cut -d' ' -f1 "$dist/$name.tar.gz.sha256") $(sha256sum "$bin" | cut -d' ' -f1) $name.tar.gz")
  echo "$triple: binary $(numfmt --to=iec-i --suffix=B "$size"), $dist/$name.tar.gz" >&2
done

printf '%s\n' "${manifest_targets[@]}" | python3 -c '
import hashlib, json, os, sys
version, rev, epoch, dist = sys.argv[1:5]
targets = {}
# Targets built earlier for this version and revision whose archives are
# still here, unchanged, stay listed.
try:
    old = json.load(open(os.path.join(dist, "release-manifest.json")))
except (OSError, ValueError):
    old = {}
if old.get("version") == version and old.get("gitRevision") == rev:
    for triple, e in old.get("targets", {}).items():
        path = os.path.join(dist, e.get("archive", ""))
        if os.path.isfile(path) and hashlib.sha256(open(path, "rb").read()).hexdigest() == e.get("archiveSha256"):
            targets[triple] = e
            print(f"keeping {triple} from the earlier build", file=sys.stderr)
for line in sys.stdin.read().split("\n"):
    if not line: continue
    triple, size, archive_sha, bin_sha, archive = line.split()
    targets[triple] = {"archive": archive, "archiveSha256": archive_sha,
                       "archiveSize": os.path.getsize(os.path.join(dist, archive)),
                       "binarySize": int(size), "binarySha256": bin_sha}
listed = {e["archive"] for e in targets.values()}
for name in os.listdir(dist):
    if name.startswith("rakkr-recorder-agent-") and name.endswith(".tar.gz") and name not in listed:
        print(f"removing {name} (not part of this release)", file=sys.stderr)
        bare = name[: -len(".tar.gz")]
        for p in (name, name + ".sha256", bare, bare + ".sha256"):
            if os.path.exists(os.path.join(dist, p)):
                os.remove(os.path.join(dist, p))
json.dump({"version": version, "gitRevision": rev, "sourceDateEpoch": int(epoch),
           "targets": targets}, sys.stdout, indent=2, sort_keys=True)
print()' "$version" "$full_rev" "$SOURCE_DATE_EPOCH" "$dist" > "$dist/release-manifest.json.new"
mv "$dist/release-manifest.json.new" "$dist/release-manifest.json"

# --- 4b. Sign the manifest (the agent installs only signed releases) -------
log "sign the release manifest"
signer=$("$root/packaging/lib/sign-manifest.sh" "$dist/release-manifest.json" "$version" "$full_rev" \
  "$root/agent/src/update/release-keys.txt" "${RAKKR_VERSION:+release}")

# --- 5. Smoke checks ------------------------------------------------------
if [ "$check" = 1 ]; then
  for t in "${targets[@]}"; do
    "$root/packaging/lib/smoke.sh" "$root/target/release-musl/$t-unknown-linux-musl/release/rakkr-recorder-agent" "$t"
    # The bare binary is the archive's, byte for byte, and its checksum holds.
    bare=rakkr-recorder-agent-$version-$t-unknown-linux-musl
    (cd "$dist" && sha256sum -c --quiet "$bare.sha256") || { echo "$bare.sha256 does not match" >&2; exit 1; }
    tar -xzOf "$dist/$bare.tar.gz" "$bare/rakkr-recorder-agent" | cmp -s - "$dist/$bare" \
      || { echo "$dist/$bare differs from the binary in $bare.tar.gz" >&2; exit 1; }
  done
  # A release build trusts only its built-in release keys: a development
  # build's throwaway signature is refused (exit 17), even with that key in
  # update.trusted_keys, before anything is unpacked.
  native=$(uname -m)
  if [ -z "${RAKKR_VERSION:-}" ] && [[ " ${targets[*]} " == *" $native "* ]]; then
    state=$(mktemp -d)
    rc=0
    out=$(RAKKR_STATE_DIR=$state RAKKR_CONFIG=/dev/null RAKKR_UPDATE_TRUSTED_KEYS=$signer \
      "$root/target/release-musl/$native-unknown-linux-musl/release/rakkr-recorder-agent" update apply \
      --artifact "$dist/rakkr-recorder-agent-$version-$native-unknown-linux-musl.tar.gz" 2>&1) || rc=$?
    rm -rf "$state"
    if [ "$rc" != 17 ] || [[ "$out" != *"does not trust"* ]]; then
      echo "the release build did not refuse a throwaway-signed release (exit $rc): $out" >&2
      exit 1
    fi
    echo "ok: the release build refuses a release signed by a key it does not build in (exit 17)" >&2
  fi
fi
log "done: $dist"
ls -l "$dist" >&2
