#!/usr/bin/env bash
# Proves the static binary runs where nothing of ALSA is installed: a minimal
# Debian chroot (debootstrap --variant=minbase, no libasound2, no
# /usr/share/alsa) where `--print-inventory` works and a take from the ALSA
# `file`-plugin test device (defined in the chroot's /etc/asound.conf, read
# through the agent's embedded configuration) is recorded and checked.
#
# Usage: packaging/verify-chroot.sh BINARY [x86_64|aarch64]
#   aarch64 runs under qemu-aarch64-static (copied into the chroot).
# The chroot is cached under $RAKKR_RELEASE_CACHE (default ~/.cache/rakkr-release).
set -euo pipefail
bin=$(realpath "$1")
arch=${2:-$(uname -m)}
. "$(dirname "$0")/lib/chroot.sh"
base=$minbase_root
ensure_minbase_chroot "$base"
# A throwaway copy: the cached tree stays pristine for other checks.
scratch=$(mktemp -d)
root=$scratch/root
$sudo cp -a "$base" "$root"
if $sudo chroot "$root" dpkg-query -W libasound2 >/dev/null 2>&1 || [ -e "$root/usr/share/alsa" ]; then
  echo "the chroot has ALSA installed; it proves nothing" >&2
  exit 1
fi

run=()
if [ "$arch" != "$(uname -m)" ]; then
  $sudo install -m 0755 "/usr/bin/qemu-$arch-static" "$root/usr/bin/qemu-$arch-static"
  run=("/usr/bin/qemu-$arch-static")
fi
work=/srv/rakkr-verify
$sudo rm -rf "$root$work"
$sudo mkdir -p "$root$work" "$root/opt/rakkr/bin"
$sudo install -m 0755 "$bin" "$root/opt/rakkr/bin/rakkr-recorder-agent"

# The test device: 1.2 s of a known signal, 32 channels of S32_LE; channel c,
# frame n carries ((c << 18) + n) << 8, so order and every sample are checked.
python3 - "$root$work/x32.raw" <<'PY'
import struct, sys
frames, chans = 57_600, 32
with open(sys.argv[1], "wb") as f:
    for n in range(frames):
        f.write(struct.pack("<32i", *[((c << 18) + n) << 8 for c in range(chans)]))
PY
bindings=$(for c in $(seq 0 31); do printf '    %d { slave a channel %d }\n' "$c" "$c"; done)
$sudo tee "$root/etc/asound.conf" >/dev/null <<EOF
pcm.x32null { type null hint { show off } }
pcm.x32multi {
  type multi
  hint { show off }
  slaves.a { pcm "x32null" channels 32 }
  bindings {
$bindings
  }
}
pcm.x32file {
  type file
  slave.pcm "x32multi"
  file "/dev/null"
  infile "$work/x32.raw"
  format "raw"
  hint { show on description "X32 simulated" }
}
EOF

mounted=0
if ! mountpoint -q "$root/proc"; then
  $sudo mount -t proc proc "$root/proc" && mounted=1
fi
cleanup() {
  [ "$mounted" = 0 ] || $sudo umount "$root/proc"
  # Never delete through a mount that is still there.
  grep -q " $scratch/" /proc/mounts || $sudo rm -rf "$scratch"
}
trap cleanup EXIT
in_chroot() {
  $sudo chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root RAKKR_STATE_DIR=$work/state "${run[@]}" "$@"
}

in_chroot /opt/rakkr/bin/rakkr-recorder-agent --version
in_chroot /opt/rakkr/bin/rakkr-recorder-agent --print-inventory > "$root$work/inventory.json"
python3 - "$root$work/inventory.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
names = [a.get("pcmId") or a.get("id") or a.get("name") for a in d["audioDevices"]]
assert any("x32file" in str(n) for n in names), f"x32file not in the inventory: {d['audioDevices']}"
print("inventory in the chroot: ok,", len(names), "device(s)")
PY
in_chroot /opt/rakkr/bin/rakkr-recorder-agent record --duration 1s --format flac \
  --device x32file --take-id chroot --output "$work/takes"
python3 - "$root$work/takes/chroot" <<'PY'
import hashlib, json, os, sys
take = sys.argv[1]
m = json.load(open(os.path.join(take, "manifest.json")))
assert m["status"] == "complete", m["status"]
assert m["frames"] == 48_000, m["frames"]
assert m["channels"] == 32, m["channels"]
for f in m["files"]:
    data = open(os.path.join(take, f["file"]), "rb").read()
    assert hashlib.sha256(data).hexdigest() == f["sha256"], f["file"]
    assert data[:4] == b"fLaC", f["file"]
print(f"take in the chroot: ok, {m['frames']} frames x {m['channels']} channels, {len(m['files'])} files")
PY
# What the static binary's own FFmpeg (built with packaging/ffmpeg-patches)
# wrote, checked by the reference decoder outside the chroot: `flac -t`
# verifies every frame's CRCs and the STREAMINFO MD5 of the audio, and the
# decoded samples of each channel must be the known signal, bit for bit.
command -v flac >/dev/null || { echo "flac (the reference decoder) is not installed" >&2; exit 1; }
flac -t -s "$root$work"/takes/chroot/*.flac || { echo "flac -t rejected a file the agent wrote" >&2; exit 1; }
python3 - "$root$work/takes/chroot" <<'PY'
import hashlib, json, os, subprocess, sys
take = sys.argv[1]
m = json.load(open(os.path.join(take, "manifest.json")))
for f in m["files"]:
    c = f["channels"][0] - 1
    raw = subprocess.run(["flac", "-d", "-s", "-c", "--force-raw-format", "--endian=little",
                          "--sign=signed", os.path.join(take, f["file"])],
                         check=True, capture_output=True).stdout
    got = [int.from_bytes(raw[i:i + 3], "little", signed=True) for i in range(0, len(raw), 3)]
    want = [(c << 18) + n for n in range(m["frames"])]
    assert got == want, f"{f['file']}: decoded samples differ from channel {c + 1} of the input"
    # The STREAMINFO MD5 (file bytes 26..42), which the agent computes and
    # writes itself, is set (flac -t only warns when it is all zero) and is
    # the MD5 of the decoded samples.
    head = open(os.path.join(take, f["file"]), "rb").read(42)
    assert head[26:42] == hashlib.md5(raw).digest(), f"{f['file']}: STREAMINFO MD5 {head[26:42].hex()} is not the MD5 of its samples"
print(f"flac -t, STREAMINFO MD5 and bit-exact decode: ok, {len(m['files'])} files")
PY
echo "chroot check passed ($arch)" >&2
