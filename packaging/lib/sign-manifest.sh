#!/usr/bin/env bash
# Signs a release manifest with minisign and proves the signature.
# Usage: sign-manifest.sh MANIFEST VERSION REVISION RELEASE_KEYS [release]
#
# The secret key comes from RAKKR_RELEASE_SIGNING_KEY (the key file's text;
# RAKKR_RELEASE_SIGNING_PASSWORD its password, if any). It is written only
# to a private temporary directory, removed on exit. With "release" (a
# tagged build), the signature must verify with a key listed in
# RELEASE_KEYS (agent/src/update/release-keys.txt), or nothing is published.
# Without a key (development builds only) a throwaway key signs, and says so.
# Prints the public key the signature verifies with.
set -euo pipefail
manifest=$1 version=$2 rev=$3 keys=$4 mode=${5:-}
sig=$manifest.minisig
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
command -v minisign >/dev/null || { echo "minisign is not installed (apt-get install minisign)" >&2; exit 1; }
comment="rakkr-recorder-agent $version $rev"
if [ -n "${RAKKR_RELEASE_SIGNING_KEY:-}" ]; then
  (umask 077; printf '%s\n' "$RAKKR_RELEASE_SIGNING_KEY" > "$work/release.key")
  # NOTE: minisign reads a key's password from stdin; none: an empty line.
  printf '%s\n' "${RAKKR_RELEASE_SIGNING_PASSWORD:-}" |
    minisign -S -s "$work/release.key" -m "$manifest" -x "$sig" -t "$comment" >/dev/null ||
    { echo "signing $manifest failed: is RAKKR_RELEASE_SIGNING_KEY a minisign secret key (and its password right)?" >&2; exit 1; }
  pubs=$(grep -v '^[[:space:]]*\(#\|$\)' "$keys" | awk '{print $1}' || true)
elif [ "$mode" = release ]; then
  echo "release $version must be signed: set RAKKR_RELEASE_SIGNING_KEY" >&2
  exit 2
else
  minisign -G -W -p "$work/throwaway.pub" -s "$work/throwaway.key" >/dev/null
  minisign -S -s "$work/throwaway.key" -m "$manifest" -x "$sig" -t "$comment" </dev/null >/dev/null
  pubs=$(sed -n 2p "$work/throwaway.pub")
  echo "development build: $sig is signed with a throwaway key, which no agent trusts" >&2
fi
for pub in $pubs; do
  if minisign -V -q -P "$pub" -m "$manifest" -x "$sig" >/dev/null 2>&1; then
    echo "signed $manifest: verifies with release key $pub" >&2
    echo "$pub"
    exit 0
  fi
done
if [ "$mode" = release ]; then
  echo "the signing key is not in $keys: no agent in the field would accept release $version" >&2
else
  echo "the signature of $manifest does not verify with the signing key" >&2
fi
rm -f "$sig"
exit 1
