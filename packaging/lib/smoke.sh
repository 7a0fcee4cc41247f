#!/usr/bin/env bash
# Smoke check of a release binary: static, --version names the build,
# --print-inventory gives JSON (what the controller's Ansible role runs).
# aarch64 runs under qemu-aarch64-static.
# Usage: smoke.sh BINARY x86_64|aarch64
set -euo pipefail
bin=$1
arch=$2
run=()
if [ "$arch" != "$(uname -m)" ]; then
  run=("qemu-$arch-static")
fi
file "$bin" | grep -q "statically linked" || { echo "not static: $(file "$bin")" >&2; exit 1; }
version=$("${run[@]}" "$bin" --version)
echo "$version" | grep -q "target: $arch-unknown-linux-musl" || { echo "unexpected --version: $version" >&2; exit 1; }
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
RAKKR_STATE_DIR=$state "${run[@]}" "$bin" --print-inventory > "$state/inventory.json"
python3 - "$state/inventory.json" "$arch" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("id", "hostname", "agentVersion", "audioDevices", "build", "storage"):
    assert k in d, f"inventory lacks {k}: {sorted(d)}"
assert d["build"]["target"].startswith(sys.argv[2] + "-"), d["build"]
print("inventory ok:", d["id"], "with", len(d["audioDevices"]), "audio device(s)")
PY
echo "$arch smoke check passed: $(echo "$version" | head -1)" >&2
