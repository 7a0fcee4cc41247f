#!/usr/bin/env bash
# Installs the packages into a throwaway copy of a minimal Debian chroot
# (debootstrap minbase, no systemd running) and checks what an operator
# relies on:
#   .deb: the user rakkr (in audio), owners and modes, `--version` run as
#         rakkr, the unit enabled (not started), the service skipped while
#         unconfigured (ExecCondition), a changed config surviving a
#         reinstall, and a purge that removes the agent's state but keeps
#         every recording byte for byte;
#   .rpm: installed with rpm --root into another copy (its scriptlets run
#         there): user, owners, the config marked noreplace.
#
# Usage: packaging/verify-packages.sh DEB [RPM]
# The base chroot is cached under $RAKKR_RELEASE_CACHE (default ~/.cache/rakkr-release).
set -euo pipefail
deb=$(realpath "$1")
rpm=${2:+$(realpath "$2")}
. "$(dirname "$0")/lib/chroot.sh"
base=$minbase_root
ensure_minbase_chroot "$base"

work=$(mktemp -d)
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do $sudo umount "$m" || true; done
  # Never delete through a mount that is still there.
  if grep -q " $work/" /proc/mounts; then
    echo "still mounted under $work; not removing it" >&2
  else
    $sudo rm -rf "$work"
  fi
}
trap cleanup EXIT
# NOTE: called directly (not in $(...)): `mounted` must be this shell's,
# or the cleanup would rm -rf through a mounted /proc.
fresh_root() {
  local r=$work/$1
  $sudo cp -a "$base" "$r"
  # Left there by verify-chroot.sh: this copy must start without the agent.
  $sudo rm -rf "$r/opt/rakkr" "$r/srv/rakkr-verify" "$r/etc/asound.conf"
  $sudo mount -t proc proc "$r/proc"
  mounted+=("$r/proc")
  fresh=$r
}
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }

# --- .deb -------------------------------------------------------------------
fresh_root deb
root=$fresh
in_root() { $sudo chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
$sudo cp "$deb" "$root/tmp/agent.deb"
in_root dpkg -i /tmp/agent.deb >/dev/null || fail "dpkg -i"
ok "dpkg -i $(basename "$deb")"

in_root getent passwd rakkr >/dev/null || fail "no user rakkr"
in_root id -nG rakkr | tr ' ' '\n' | grep -qx audio || fail "rakkr is not in audio"
[ "$(in_root stat -c %U:%a /opt/rakkr/bin/rakkr-recorder-agent)" = rakkr:755 ] ||
  fail "binary owner/mode: $(in_root stat -c %U:%a /opt/rakkr/bin/rakkr-recorder-agent)"
[ "$(in_root stat -c %U /opt/rakkr/bin)" = rakkr ] || fail "/opt/rakkr/bin is not rakkr's"
[ "$(in_root stat -c %U:%a /var/lib/rakkr/agent)" = rakkr:700 ] ||
  fail "state dir owner/mode: $(in_root stat -c %U:%a /var/lib/rakkr/agent)"
ok "user rakkr (in audio) owns /opt/rakkr/bin and /var/lib/rakkr/agent (0700)"

version=$(in_root runuser -u rakkr -- /opt/rakkr/bin/rakkr-recorder-agent --version) ||
  fail "--version as rakkr"
want=$(dpkg-deb -f "$deb" Version)
grep -q "$want" <<<"$version" || fail "--version says '$version', package is $want"
ok "--version as rakkr: $(head -1 <<<"$version")"

[ -L "$root/etc/systemd/system/multi-user.target.wants/rakkr-recorder-agent.service" ] ||
  fail "the unit is not enabled"
ok "unit enabled (no systemd here, so not started)"
set +e
in_root env RAKKR_CONFIG=/etc/rakkr/recorder-agent.toml RAKKR_STATE_DIR=/var/lib/rakkr/agent \
  runuser -u rakkr -- /opt/rakkr/bin/rakkr-recorder-agent check --configured >/dev/null
rc=$?
set -e
[ "$rc" = 1 ] || fail "check --configured with the packaged config exited $rc, want 1 (skip)"
ok "unconfigured: ExecCondition skips the service (exit 1)"

conf=$root/etc/rakkr/recorder-agent.toml
printf '\n[controller]\nurl = "rakkr://controller.example.org:7443"\n' | $sudo tee -a "$conf" >/dev/null
edited=$(sha256sum < "$conf")
in_root dpkg -i /tmp/agent.deb >/dev/null || fail "reinstall"
[ "$(sha256sum < "$conf")" = "$edited" ] || fail "the reinstall changed the config"
in_root env RAKKR_CONFIG=/etc/rakkr/recorder-agent.toml /opt/rakkr/bin/rakkr-recorder-agent check --configured >/dev/null ||
  fail "the edited config is not seen as configured"
ok "config edits survive a reinstall"

take=$root/var/lib/rakkr/agent/recordings/take-1
$sudo mkdir -p "$take" "$root/var/lib/rakkr/agent/trust"
head -c 1000000 /dev/urandom | $sudo tee "$take/01-Kick-s001.flac" >/dev/null
echo '{"takeId":"take-1"}' | $sudo tee "$take/manifest.json" >/dev/null
echo secret | $sudo tee "$root/var/lib/rakkr/agent/trust/node.key" >/dev/null
before=$(cd "$take" && sha256sum ./*)
in_root dpkg --purge rakkr-recorder-agent >/dev/null || fail "purge"
[ "$(cd "$take" && sha256sum ./*)" = "$before" ] || fail "the purge touched recordings"
[ ! -e "$root/var/lib/rakkr/agent/trust" ] || fail "the purge left the trust"
[ ! -e "$conf" ] || fail "the purge left the config"
[ ! -e "$root/opt/rakkr/bin/rakkr-recorder-agent" ] || fail "the purge left the binary"
ok "purge removes binary, config and trust; recordings intact"

# --- .rpm -------------------------------------------------------------------
if [ -n "$rpm" ]; then
  command -v rpm >/dev/null || apt_install rpm
  fresh_root rpm
  rroot=$fresh
  rpm -qp --configfiles "$rpm" 2>/dev/null | grep -qx /etc/rakkr/recorder-agent.toml || fail "rpm: config not a config file"
  rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null |
    grep -q '^cn /etc/rakkr/recorder-agent.toml' || fail "rpm: config is not %config(noreplace)"
  $sudo rpm --root "$rroot" --nodeps -i "$rpm" 2>&1 | grep -v "^warning" >&2 || true
  rpm --root "$rroot" -q rakkr-recorder-agent >/dev/null 2>&1 || fail "rpm -i into the root"
  $sudo chroot "$rroot" getent passwd rakkr >/dev/null || fail "rpm: no user rakkr"
  [ "$($sudo chroot "$rroot" stat -c %U /opt/rakkr/bin/rakkr-recorder-agent)" = rakkr ] ||
    fail "rpm: binary not rakkr's"
  $sudo chroot "$rroot" /opt/rakkr/bin/rakkr-recorder-agent --version >/dev/null || fail "rpm: --version"
  ok "rpm installs (user, owner, %config(noreplace), --version)"
fi
echo "package checks passed" >&2
