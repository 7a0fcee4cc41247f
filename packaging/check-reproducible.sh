#!/usr/bin/env bash
# Builds the release twice from the current commit, forcing the agent crate
# to be compiled again in between, and compares every file in dist/.
# Usage: packaging/check-reproducible.sh [build-release.sh arguments]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
first=$(mktemp -d)
trap 'rm -rf "$first"' EXIT
packaging/build-release.sh --no-check "$@"
cp -a dist/. "$first/"
for dir in target/release-musl/*-unknown-linux-musl/release; do
  [ -d "$dir" ] || continue
  rm -rf "$dir"/.fingerprint/rakkr-recorder-agent-* "$dir"/deps/rakkr_recorder_agent-* "$dir/rakkr-recorder-agent"
done
packaging/build-release.sh --no-check "$@"
if diff <(cd "$first" && sha256sum -- *) <(cd dist && sha256sum -- *); then
  echo "reproducible: two builds of $(git rev-parse --short=12 HEAD) gave identical files" >&2
else
  echo "NOT reproducible: the files above differ" >&2
  exit 1
fi
