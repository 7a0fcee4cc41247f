# Sourced. apt_install PKG... installs the Debian packages among PKG that are
# not installed yet (nothing when all are); apt_locked CMD... runs one apt
# command; apt_mirror [DIR] prints the machine's Debian mirror (DIR: the apt
# configuration, /etc/apt by default), or nothing. Safe to run twice.
#
# NOTE: one apt at a time. On a fresh machine the CI's release build (its
# tools, the chroot's debootstrap) and the tests (the Ansible role's
# chroot) install packages at the same moment, and the second apt-get
# fails at once: "Could not get lock /var/lib/apt/lists/lock". Our own
# callers queue on one flock; DPkg::Lock::Timeout makes apt wait for dpkg's
# lock held by anything else (unattended-upgrades, an operator).
apt_sudo=""
[ "$(id -u)" -eq 0 ] || apt_sudo=sudo
apt_lock_file=${RAKKR_APT_LOCK:-/tmp/rakkr-apt.lock}

apt_locked() {
  local fd rc=0
  exec {fd}>>"$apt_lock_file"
  flock "$fd"
  $apt_sudo env DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  exec {fd}>&-
  return "$rc"
}

apt_missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

apt_install() {
  local missing
  mapfile -t missing < <(apt_missing "$@")
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing: ${missing[*]}" >&2
  # Under the lock: a package another caller installed meanwhile is done.
  apt_locked bash -c '
    set -e
    need=()
    for p in "$@"; do
      dpkg-query -W -f="\${Status}" "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    [ ${#need[@]} -gt 0 ] || exit 0
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  ' apt_install "${missing[@]}"
}

# The first active Debian mirror apt uses: `URIs:` (deb822) or one-line
# `deb` entries, in the files apt reads (*.list, *.sources), so a commented
# snapshot URL or a `.disabled` file is not one.
# NOTE: a fresh Debian 12 image has no sources.list at all (only
# sources.list.d/debian.sources); grep's "no such file" (exit 2) under
# pipefail once ended the chroot scripts here.
apt_mirror() {
  local dir=${1:-/etc/apt} f
  for f in "$dir/sources.list" "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -hE '^[[:space:]]*(URIs:|deb )' "$f" || true
  done | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true
}
