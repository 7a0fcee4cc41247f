# Sourced. Sets $sudo ("" as root, else "sudo") and $minbase_root, where
# the cached chroot lives ($RAKKR_RELEASE_CACHE, default
# ~/.cache/rakkr-release); ensure_minbase_chroot ROOT creates (once) a
# Debian bookworm debootstrap --variant=minbase tree at ROOT from the
# machine's apt mirror.
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
minbase_root=${RAKKR_RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rakkr-release}/chroot-bookworm-minbase
ensure_minbase_chroot() {
  local root=$1 p mirror lock
  mkdir -p "$(dirname "$root")"
  # One creator at a time (the CI's release checks and the Ansible e2e
  # test may both get here first on a fresh machine).
  exec {lock}>"$root.lock"
  flock "$lock"
  apt_install debootstrap python3
  if [ ! -x "$root/bin/sh" ]; then
    mirror=$(apt_mirror)
    echo "debootstrap minbase bookworm from ${mirror:-http://deb.debian.org/debian}" >&2
    $sudo rm -rf "$root.tmp"
    if ! $sudo debootstrap --variant=minbase bookworm "$root.tmp" "${mirror:-http://deb.debian.org/debian}" >/dev/null; then
      echo "debootstrap failed; see $root.tmp/debootstrap/debootstrap.log" >&2
      flock -u "$lock"
      return 1
    fi
    $sudo rm -rf "$root"
    $sudo mv "$root.tmp" "$root"
  fi
  flock -u "$lock"
  exec {lock}>&-
}
