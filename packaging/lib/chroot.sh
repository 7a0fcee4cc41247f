# Sourced: ensure_minbase_chroot ROOT creates (once) a Debian bookworm
# debootstrap --variant=minbase tree at ROOT from the machine's apt mirror.
# Needs $sudo set ("" as root, else "sudo").
ensure_minbase_chroot() {
  local root=$1 p mirror
  for p in debootstrap python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      { $sudo apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
  done
  if [ ! -x "$root/bin/sh" ]; then
    mirror=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1)
    echo "debootstrap minbase bookworm from ${mirror:-http://deb.debian.org/debian}" >&2
    $sudo rm -rf "$root.tmp"
    $sudo debootstrap --variant=minbase bookworm "$root.tmp" "${mirror:-http://deb.debian.org/debian}" >/dev/null
    $sudo mv "$root.tmp" "$root"
  fi
}
