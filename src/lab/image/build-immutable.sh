#!/usr/bin/env bash
# build-immutable.sh — build Plinth's immutable Debian image from Debian packages only:
#
#   OUT/vmlinuz               Debian's generic kernel (linux-image-amd64: boots metal and QEMU alike)
#   OUT/initrd.img            initramfs-tools + live-boot: DHCP in the initrd, then `fetch=` downloads the squashfs
#                             into RAM (busybox wget, one plain GET; live-boot 1:20230131 uses no Range) and stacks
#                             an overlay (tmpfs) over it: the root is read-only, writes vanish at reboot
#   OUT/filesystem.squashfs   the read-only root: minbase Debian 12 + systemd + cloud-init (NoCloud) + openssh-server
#   OUT/packages.lock         every package and version installed (the mirror is not a snapshot: this list is the pin)
#   OUT/manifest.json         input hash, sha256 and size of each artifact, build seconds
#   OUT/SHA256SUMS
#
# Boot it with: boot=live fetch=http://PLINTH/files/.../filesystem.squashfs ds=nocloud-net;s=http://PLINTH/machines/UUID/
# (Plinth renders user-data, meta-data and network-config per machine at /machines/UUID/...).
#
# Reproducible: SOURCE_DATE_EPOCH fixes every timestamp (mmdebstrap and the maintainer scripts it runs, so
# mkinitramfs too; mksquashfs -mkfs-time/-all-time),
# files that record the build host or time (ssh host keys, machine-id, logs, caches) are removed, and mksquashfs
# sorts entries. The same inputs (this script, the package set, the same package versions) give the same sha256.
#
# Cached: OUT defaults to CACHE_ROOT/<sha256 of the inputs>; a run that finds a complete manifest there whose
# digests still match prints the directory and exits (seconds), so reruns and CI do not rebuild.
# Usage: build-immutable.sh [--out DIR] [--cache-root DIR]   (root; mmdebstrap squashfs-tools)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${PLINTH_IMAGE_CACHE:-/var/cache/plinth/images}
out=
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2;;
    --cache-root) cache_root=$2; shift 2;;
    *) echo "usage: build-immutable.sh [--out DIR] [--cache-root DIR]" >&2; exit 2;;
  esac
done
for t in mmdebstrap mksquashfs sha256sum; do
  command -v $t >/dev/null || { echo "build-immutable: $t is missing: apt-get install mmdebstrap squashfs-tools" >&2; exit 1; }
done

MIRROR=${PLINTH_IMAGE_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}   # 2025-01-01T00:00:00Z
# PLINTH_IMAGE_FLAVOR changes the image's bytes (a file /etc/plinth-flavor) so a test can build a second image
# from changed inputs (rollout and rollback); it is part of the input hash.
FLAVOR=${PLINTH_IMAGE_FLAVOR:-a}
PACKAGES=(linux-image-amd64 live-boot systemd-sysv cloud-init curl busybox openssh-server ca-certificates)
# Kernel modules nothing here boots with: graphics, sound, video capture, wireless, radio, InfiniBand.
EXCLUDE_MODULES=(drivers/gpu sound drivers/media net/wireless drivers/net/wireless drivers/bluetooth net/bluetooth
  drivers/infiniband drivers/staging drivers/iio drivers/isdn drivers/input/touchscreen drivers/video/fbdev)

inputs=$( { cat "$0"; printf '%s\n' "$MIRROR" "$SUITE" "$SOURCE_DATE_EPOCH" "$FLAVOR" "${PACKAGES[@]}" "${EXCLUDE_MODULES[@]}"; } | sha256sum | cut -c1-64)
[ -n "$out" ] || out="$cache_root/$inputs"
out=$(realpath -m "$out")

if [ -f "$out/manifest.json" ] && (cd "$out" && sha256sum --quiet -c SHA256SUMS 2>/dev/null) \
   && grep -q "\"inputs\": \"$inputs\"" "$out/manifest.json"; then
  echo "build-immutable: cached $out" >&2; echo "$out"; exit 0
fi

start=$(date +%s)
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/plinth-image.XXXXXX"); trap 'rm -rf "$work"' EXIT
# The root tree survives a failure after mmdebstrap (the slow part) so a rerun with the same inputs resumes there.
root="$out.root"

dpkgopts=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/bug/*')
for m in "${EXCLUDE_MODULES[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=/lib/modules/*/kernel/$m/*"); done

# The customize hook runs on the host with the chroot as $1.
cat > "$work/customize.sh" <<'HOOK'
set -eu
r=$1
mkdir -p "$r/etc/cloud/cloud.cfg.d" "$r/etc/systemd/network"
# Only NoCloud (the seed URL on the kernel command line): no probing of cloud metadata services at boot.
# Network: live-boot's initrd has already configured the NIC; systemd-networkd keeps the DHCP lease.
cat > "$r/etc/cloud/cloud.cfg.d/90-plinth.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
network: {config: disabled}
CFG
cat > "$r/etc/systemd/network/50-dhcp.network" <<'NET'
[Match]
Name=en* eth*
[Network]
DHCP=yes
KeepConfiguration=dhcp
NET
ln -sf /lib/systemd/system/systemd-networkd.service "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
printf '%s\n' "$PLINTH_FLAVOR" > "$r/etc/plinth-flavor"
echo localhost > "$r/etc/hostname"
# Files that would record this build's host or time, or secrets every machine would share.
rm -f "$r"/etc/ssh/ssh_host_* "$r/var/cache/ldconfig/aux-cache" "$r/var/lib/systemd/catalog/database" \
      "$r"/var/lib/dpkg/*-old "$r"/var/cache/debconf/*-old "$r/etc/resolv.conf"
: > "$r/etc/machine-id"
find "$r/var/log" -type f -delete
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/tmp/* "$r"/var/tmp/*
HOOK

if [ ! -f "$root.done" ]; then
rm -rf "$root" "$root.done"
echo "build-immutable: mmdebstrap $SUITE (${PACKAGES[*]})" >&2
PLINTH_FLAVOR=$FLAVOR mmdebstrap --mode=root --variant=minbase --format=directory \
  --aptopt='APT::Install-Recommends "false"' --include="$(IFS=,; echo "${PACKAGES[*]}")" "${dpkgopts[@]}" \
  --customize-hook="PLINTH_FLAVOR=$FLAVOR sh $work/customize.sh \"\$1\"" \
  "$SUITE" "$root" "deb $MIRROR $SUITE main" >&2
touch "$root.done"
fi

chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' | LC_ALL=C sort > "$out/packages.lock"
cp "$(ls "$root"/boot/vmlinuz-* | head -1)" "$out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | head -1)" "$out/initrd.img"
rm -f "$root"/boot/initrd.img-*
# -all-time/-mkfs-time: every inode and the superblock carry SOURCE_DATE_EPOCH; -reproducible: fixed order.
rm -f "$out/filesystem.squashfs"
env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$out/filesystem.squashfs" -noappend -reproducible -comp xz -Xbcj x86 \
  -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" -no-progress -quiet >&2
touch -d "@$SOURCE_DATE_EPOCH" "$out/vmlinuz" "$out/initrd.img" "$out/filesystem.squashfs"

(cd "$out" && sha256sum vmlinuz initrd.img filesystem.squashfs packages.lock > SHA256SUMS)
secs=$(( $(date +%s) - start ))
{
  printf '{\n  "name": "plinth-debian-live",\n  "inputs": "%s",\n  "suite": "%s",\n  "mirror": "%s",\n' "$inputs" "$SUITE" "$MIRROR"
  printf '  "sourceDateEpoch": %s,\n  "flavor": "%s",\n  "buildSeconds": %s,\n  "artifacts": [\n' "$SOURCE_DATE_EPOCH" "$FLAVOR" "$secs"
  sep=
  while read -r sum name; do
    printf '%s    {"name": "%s", "sha256": "%s", "size": %s}' "$sep" "$name" "$sum" "$(stat -c %s "$out/$name")"; sep=$',\n'
  done < "$out/SHA256SUMS"
  printf '\n  ]\n}\n'
} > "$out/manifest.json"
rm -rf "$root" "$root.done"
echo "build-immutable: built $out in ${secs}s" >&2
cat "$out/SHA256SUMS" >&2
echo "$out"
