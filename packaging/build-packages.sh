#!/usr/bin/env bash
# Builds .deb and .rpm packages from the static release binaries in dist/
# (run packaging/build-release.sh first):
#
#   dist/rakkr-recorder-agent_<version>_<amd64|arm64>.deb
#   dist/rakkr-recorder-agent-<rpm version>-<N>.<x86_64|aarch64>.rpm
#
# Both install the binary to /opt/rakkr/bin/ (owned by the service user:
# the agent updates itself there), the systemd unit, sysusers.d and
# tmpfiles.d entries, and a commented default /etc/rakkr/recorder-agent.toml
# that upgrades never overwrite (deb conffile, rpm %config(noreplace)). The
# service is enabled, not started: it is skipped until a controller is
# configured (ExecCondition). Purge never deletes recordings.
# Then lints the .deb with lintian (errors fail the build).
#
# Usage: packaging/build-packages.sh [--target x86_64|aarch64]... [--no-lint]
# Installs dpkg-dev, rpm and lintian if missing; safe to run again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dist=$root/dist
targets=()
lint=1
while [ $# -gt 0 ]; do
  case "$1" in
    --target) targets+=("$2"); shift 2 ;;
    --no-lint) lint=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
manifest=$dist/release-manifest.json
[ -f "$manifest" ] || { echo "no $manifest: run packaging/build-release.sh first" >&2; exit 2; }
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$manifest")
epoch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sourceDateEpoch"])' "$manifest")
[ ${#targets[@]} -gt 0 ] ||
  mapfile -t targets < <(python3 -c 'import json,sys; [print(t.split("-")[0]) for t in json.load(open(sys.argv[1]))["targets"]]' "$manifest")

. "$(dirname "$0")/lib/apt.sh"
apt_install dpkg-dev rpm lintian fakeroot

# Versions: the release YYYY.MM.DD-N is the Debian version as is; rpm has
# no '-' in Version, so N becomes the Release. A development build
# (<cargo version>+<rev>) is Release 0.
case "$version" in
  *-*) rpm_version=${version%-*}; rpm_release=${version##*-} ;;
  *) rpm_version=${version//+/.}; rpm_release=0 ;;
esac
rm -f "$dist"/rakkr-recorder-agent_*.deb "$dist"/rakkr-recorder-agent-*.rpm
date_rfc=$(date -u -R -d "@$epoch")

for t in "${targets[@]}"; do
  triple=$t-unknown-linux-musl
  case "$t" in x86_64) deb_arch=amd64 ;; aarch64) deb_arch=arm64 ;; *) echo "unknown target $t" >&2; exit 2 ;; esac
  archive=$dist/rakkr-recorder-agent-$version-$triple.tar.gz
  [ -f "$archive" ] || { echo "no $archive: build it with packaging/build-release.sh --target $t" >&2; exit 2; }
  (cd "$dist" && sha256sum --quiet -c "$(basename "$archive").sha256")
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$archive" -C "$work"
  bin=$work/rakkr-recorder-agent-$version-$triple/rakkr-recorder-agent

  # --- the file tree both packages install ---------------------------------
  tree=$work/tree
  install -D -m 0755 "$bin" "$tree/opt/rakkr/bin/rakkr-recorder-agent"
  install -D -m 0644 "$root/systemd/rakkr-recorder-agent.service" "$tree/lib/systemd/system/rakkr-recorder-agent.service"
  install -D -m 0644 "$root/systemd/rakkr-recorder-agent.sysusers" "$tree/usr/lib/sysusers.d/rakkr-recorder-agent.conf"
  install -D -m 0644 "$root/systemd/rakkr-recorder-agent.tmpfiles" "$tree/usr/lib/tmpfiles.d/rakkr-recorder-agent.conf"
  install -D -m 0644 "$root/packaging/recorder-agent.toml" "$tree/etc/rakkr/recorder-agent.toml"
  doc=$tree/usr/share/doc/rakkr-recorder-agent
  install -D -m 0644 "$root/packaging/deb/copyright" "$doc/copyright"
  gzip -9n < "$root/README.md" > "$doc/README.md.gz"
  # NOTE: a native package (no Debian revision) names its changelog
  # changelog.gz (Debian policy 12.7; lintian wrong-name-for-changelog-of-native-package).
  printf 'rakkr-recorder-agent (%s) unstable; urgency=medium\n\n  * Release %s (git %s).\n\n -- Rakkr maintainers <rakkr-maintainers@users.noreply.github.com>  %s\n' \
    "$version" "$version" "$(git -C "$root" rev-parse --short=12 HEAD)" "$date_rfc" | gzip -9n > "$doc/changelog.gz"
  install -D -m 0644 "$root/packaging/deb/lintian-overrides" "$tree/usr/share/lintian/overrides/rakkr-recorder-agent"

  # --- .deb -----------------------------------------------------------------
  deb=$work/deb
  cp -a "$tree" "$deb"
  mkdir -p "$deb/DEBIAN"
  for s in postinst prerm postrm; do install -m 0755 "$root/packaging/deb/$s" "$deb/DEBIAN/$s"; done
  echo /etc/rakkr/recorder-agent.toml > "$deb/DEBIAN/conffiles"
  size=$(du -k -s --exclude=DEBIAN "$deb" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$deb_arch/" -e "s/@SIZE@/$size/" \
    "$root/packaging/deb/control.in" > "$deb/DEBIAN/control"
  (cd "$deb" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
  chmod 0644 "$deb/DEBIAN/control" "$deb/DEBIAN/conffiles" "$deb/DEBIAN/md5sums"
  find "$deb" -exec touch -h -d "@$epoch" {} +
  debfile=$dist/rakkr-recorder-agent_${version}_$deb_arch.deb
  SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$deb" "$debfile" >/dev/null
  echo "built $debfile" >&2

  # --- .rpm -----------------------------------------------------------------
  top=$work/rpmbuild
  mkdir -p "$top"/{BUILD,RPMS,SPECS,SOURCES,BUILDROOT}
  # rpm installs units under /usr/lib/systemd/system.
  rtree=$work/rtree
  cp -a "$tree" "$rtree"
  mkdir -p "$rtree/usr/lib/systemd"
  mv "$rtree/lib/systemd/system" "$rtree/usr/lib/systemd/system"
  rm -rf "$rtree/lib" "$rtree/usr/share/lintian" "$rtree/usr/share/doc/rakkr-recorder-agent/changelog.gz"
  sed -e "s/@VERSION@/$rpm_version/" -e "s/@RELEASE@/$rpm_release/" \
    "$root/packaging/rpm/rakkr-recorder-agent.spec.in" > "$top/SPECS/rakkr-recorder-agent.spec"
  SOURCE_DATE_EPOCH=$epoch rpmbuild --quiet -bb --target "$t-linux" \
    --define "_topdir $top" --define "tree $rtree" \
    --define "_buildhost rakkr-release" --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" --define "_binary_payload w9.xzdio" \
    --define "__strip /bin/true" --define "__brp_strip /bin/true" \
    --define "debug_package %{nil}" \
    "$top/SPECS/rakkr-recorder-agent.spec" >/dev/null
  rpmfile=$(find "$top/RPMS" -name '*.rpm' | head -1)
  mv "$rpmfile" "$dist/"
  echo "built $dist/$(basename "$rpmfile")" >&2
  rm -rf "$work"
  trap - EXIT

  if [ "$lint" = 1 ]; then
    # Errors fail; warnings and notes are printed for the record.
    out=$(lintian --no-tag-display-limit "$debfile" 2>&1 || true)
    [ -z "$out" ] || printf '%s\n' "$out" >&2
    if printf '%s\n' "$out" | grep -q '^E: '; then
      echo "lintian reports errors on $debfile" >&2
      exit 1
    fi
    echo "lintian: no errors on $(basename "$debfile")" >&2
  fi
done
(cd "$dist" && sha256sum ./*.deb ./*.rpm | sed 's# \./# #' > packages.sha256)
ls -l "$dist"/*.deb "$dist"/*.rpm >&2
