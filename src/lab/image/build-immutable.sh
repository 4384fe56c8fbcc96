#!/usr/bin/env bash
# build-immutable.sh — build Plinth's immutable Debian image from Debian packages only:
#
#   OUT/vmlinuz               Debian's generic kernel (linux-image-amd64: boots metal and QEMU alike)
#   OUT/initrd.img            initramfs-tools + live-boot: DHCP in the initrd, then `fetch=` downloads the squashfs
#                             into RAM (busybox wget, one plain GET; live-boot 1:20230131 uses no Range) and stacks
#                             an overlay (tmpfs) over it: the root is read-only, writes vanish at reboot
#   OUT/filesystem.squashfs   the read-only root (zstd): minbase Debian 12 + systemd + cloud-init (NoCloud) +
#                             openssh-server, without the kernel and initrd (Plinth serves those)
#   OUT/packages.lock         every package and version installed (the mirror is not a snapshot: this list is the pin)
#   OUT/manifest.json         input hashes, sha256 and size of each artifact, build seconds
#   OUT/SHA256SUMS
#
# Boot it with: boot=live fetch=http://PLINTH/files/.../filesystem.squashfs ds=nocloud-net;s=http://PLINTH/machines/UUID/
# (Plinth renders user-data, meta-data and network-config per machine at /machines/UUID/...).
#
# Two stages, each cached by the hash of its inputs:
#   root   mmdebstrap (the slow part: about 15 minutes) with root-hooks.sh, kept in CACHE_ROOT/root-<hash>/
#   image  mksquashfs of that root plus the flavor file, in CACHE_ROOT/<hash>/ (the default OUT)
# A flavor (--flavor, PLINTH_IMAGE_FLAVOR) is a file /etc/plinth-flavor added to the squashfs (a pseudo file: the
# shared root is never written), so a second image from changed inputs costs one mksquashfs, not a second root.
# A run that finds a complete manifest whose digests still match prints the directory and exits (seconds).
#
# Reproducible: SOURCE_DATE_EPOCH fixes every timestamp (mmdebstrap and the maintainer scripts it runs, so
# mkinitramfs too; mksquashfs -mkfs-time/-all-time), files that record the build host or time (ssh host keys,
# machine-id, logs, caches) are removed, Python byte code is compiled with a fixed hash seed, and mksquashfs
# -reproducible writes in a fixed order. The same inputs (these scripts, the package set, the same package
# versions) give the same sha256.
# Usage: build-immutable.sh [--flavor F] [--out DIR] [--cache-root DIR]   (root; mmdebstrap squashfs-tools)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${PLINTH_IMAGE_CACHE:-/var/cache/plinth/images}
FLAVOR=${PLINTH_IMAGE_FLAVOR:-a}
out=
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2;;
    --cache-root) cache_root=$2; shift 2;;
    --flavor) FLAVOR=$2; shift 2;;
    *) echo "usage: build-immutable.sh [--flavor F] [--out DIR] [--cache-root DIR]" >&2; exit 2;;
  esac
done
[[ $FLAVOR =~ ^[a-z0-9][a-z0-9-]{0,31}$ ]] || { echo "build-immutable: flavor must be [a-z0-9-], 1-32 chars" >&2; exit 2; }
for t in mmdebstrap mksquashfs sha256sum flock; do
  command -v $t >/dev/null || { echo "build-immutable: $t is missing: apt-get install mmdebstrap squashfs-tools" >&2; exit 1; }
done

MIRROR=${PLINTH_IMAGE_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}   # 2025-01-01T00:00:00Z
PACKAGES=(linux-image-amd64 live-boot systemd-sysv cloud-init curl busybox openssh-server ca-certificates)
# Kernel modules nothing here boots with: graphics, sound, video capture, wireless, radio, InfiniBand.
EXCLUDE_MODULES=(drivers/gpu sound drivers/media net/wireless drivers/net/wireless drivers/bluetooth net/bluetooth
  drivers/infiniband drivers/staging drivers/iio drivers/isdn drivers/input/touchscreen drivers/video/fbdev)
# zstd: the kernel (CONFIG_SQUASHFS_ZSTD=y) reads it several times faster than xz, which shows in a boot under
# software emulation; level 15 (mksquashfs's default) compresses in minutes on two cores.
SQUASHFS_OPTS=(-noappend -reproducible -comp zstd -Xcompression-level 15 -no-progress -quiet)

dpkgopts=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/bug/*')
for m in "${EXCLUDE_MODULES[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=/lib/modules/*/kernel/$m/*"); done
mmargs=(--mode=root --variant=minbase --format=directory --aptopt='APT::Install-Recommends "false"'
  --include="$(IFS=,; echo "${PACKAGES[*]}")" "${dpkgopts[@]}"
  --essential-hook="sh $here/root-hooks.sh essential \"\$1\"" --customize-hook="sh $here/root-hooks.sh customize \"\$1\""
  "$SUITE")

# The root's inputs: the mmdebstrap command line, the hooks, the mirror and the epoch. The image's: the root's,
# this script and the flavor.
root_inputs=$( { cat "$here/root-hooks.sh"; printf '%s\n' "$MIRROR" "$SOURCE_DATE_EPOCH" "${mmargs[@]//"$here"/.}"; } | sha256sum | cut -c1-64)
inputs=$( { cat "$0"; printf '%s\n' "$root_inputs" "$FLAVOR"; } | sha256sum | cut -c1-64)
[ -n "$out" ] || out="$cache_root/$inputs"
out=$(realpath -m "$out")
base="$cache_root/root-$root_inputs"
mkdir -p "$cache_root" "$(dirname "$out")"

cached() {
  [ -f "$out/manifest.json" ] && (cd "$out" && sha256sum --quiet -c SHA256SUMS 2>/dev/null) \
    && grep -q "\"inputs\": \"$inputs\"" "$out/manifest.json"
}
if cached; then echo "build-immutable: cached $out" >&2; echo "$out"; exit 0; fi
# Two runs for the same image (or root) wait for each other instead of writing the same files.
exec 8>"$out.lock"; flock 8
if cached; then echo "build-immutable: cached $out" >&2; echo "$out"; exit 0; fi

start=$(date +%s)
exec 9>"$base.lock"; flock 9
if [ ! -f "$base/done" ]; then
  rm -rf "$base"; mkdir -p "$base"
  echo "build-immutable: mmdebstrap $SUITE (${PACKAGES[*]}) into $base/tree" >&2
  PYTHONHASHSEED=0 mmdebstrap "${mmargs[@]}" "$base/tree" "deb $MIRROR $SUITE main" >&2
  chroot "$base/tree" dpkg-query -W -f='${Package}=${Version}\n' | LC_ALL=C sort > "$base/packages.lock"
  # Plinth serves the kernel and initrd: they leave the root (and so the squashfs), with the links to them.
  mv "$(ls "$base"/tree/boot/vmlinuz-* | head -1)" "$base/vmlinuz"
  mv "$(ls "$base"/tree/boot/initrd.img-* | head -1)" "$base/initrd.img"
  rm -f "$base"/tree/boot/System.map-* "$base"/tree/vmlinuz* "$base"/tree/initrd.img*
  touch "$base/done"
fi
root_secs=$(( $(date +%s) - start ))
flock -u 9

mkdir -p "$out"
cp "$base/packages.lock" "$base/vmlinuz" "$base/initrd.img" "$out/"
rm -f "$out/filesystem.squashfs"
# -all-time/-mkfs-time: every inode and the superblock carry SOURCE_DATE_EPOCH.
env -u SOURCE_DATE_EPOCH mksquashfs "$base/tree" "$out/filesystem.squashfs" "${SQUASHFS_OPTS[@]}" \
  -p "etc/plinth-flavor f 644 0 0 echo $FLAVOR" -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >&2
touch -d "@$SOURCE_DATE_EPOCH" "$out/vmlinuz" "$out/initrd.img" "$out/filesystem.squashfs"

(cd "$out" && sha256sum vmlinuz initrd.img filesystem.squashfs packages.lock > SHA256SUMS)
secs=$(( $(date +%s) - start ))
{
  printf '{\n  "name": "plinth-debian-live",\n  "inputs": "%s",\n  "rootInputs": "%s",\n' "$inputs" "$root_inputs"
  printf '  "suite": "%s",\n  "mirror": "%s",\n  "compression": "zstd",\n' "$SUITE" "$MIRROR"
  printf '  "sourceDateEpoch": %s,\n  "flavor": "%s",\n' "$SOURCE_DATE_EPOCH" "$FLAVOR"
  printf '  "buildSeconds": %s,\n  "rootSeconds": %s,\n  "artifacts": [\n' "$secs" "$root_secs"
  sep=
  while read -r sum name; do
    printf '%s    {"name": "%s", "sha256": "%s", "size": %s}' "$sep" "$name" "$sum" "$(stat -c %s "$out/$name")"; sep=$',\n'
  done < "$out/SHA256SUMS"
  printf '\n  ]\n}\n'
} > "$out/manifest.json"
echo "build-immutable: built $out in ${secs}s (root ${root_secs}s, kept in $base for other flavors)" >&2
cat "$out/SHA256SUMS" >&2
echo "$out"
