# Sourced. Sets $sudo ("" as root, else "sudo") and $minbase_root, where
# the cached chroot lives ($RAKKR_RELEASE_CACHE, default
# ~/.cache/rakkr-release); ensure_minbase_chroot ROOT creates (once) a
# Debian bookworm debootstrap --variant=minbase tree at ROOT from the
# machine's apt mirror.
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
minbase_root=${RAKKR_RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rakkr-release}/chroot-bookworm-minbase
ensure_minbase_chroot() {
  local root=$1 p mirror lock
  mkdir -p "$(dirname "$root")"
  # One creator at a time (the CI's release checks and the Ansible e2e
  # test may both get here first on a fresh machine).
  exec {lock}>"$root.lock"
  flock "$lock"
  for p in debootstrap python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      { $sudo apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
  done
  if [ ! -x "$root/bin/sh" ]; then
    # The machine's own mirror: active entries only (a commented-out
    # snapshot URL is not one), deb822 `URIs:` or one-line `deb`.
    mirror=$(grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
      grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ')
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
