#!/usr/bin/env bash
# Builds the release twice from the current commit, forcing the agent crate
# to be compiled again in between, and compares every file in dist/ but the
# manifest's signature (a development build signs with a throwaway key each
# time; the signed manifest itself must be identical).
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
sums() { (cd "$1" && find . -maxdepth 1 -type f ! -name '*.minisig' -printf '%f\n' | sort | xargs sha256sum --); }
if diff <(sums "$first") <(sums dist); then
  echo "reproducible: two builds of $(git rev-parse --short=12 HEAD) gave identical files" >&2
else
  echo "NOT reproducible: the files above differ" >&2
  exit 1
fi
