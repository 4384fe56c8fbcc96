# root-hooks.sh — mmdebstrap hooks for Plinth's immutable Debian image, run on the host with the chroot as $2:
#   essential  after the Essential packages, before the kernel: what the initrd must carry too (mkinitramfs copies
#              /etc/modprobe.d when the kernel's postinst builds the initrd)
#   customize  after every package: configuration, and removal of what records this build's host or time
# Part of the root's input hash (build-immutable.sh): editing this file rebuilds the root.
set -eu
r=$2
case $1 in
essential)
  # QEMU's i440fx has a floppy controller with no drive; loading the driver makes udev and cloud-init probe
  # /dev/fd0 (seconds of I/O errors on the console). Metal has no floppy either.
  mkdir -p "$r/etc/modprobe.d"
  echo 'blacklist floppy' > "$r/etc/modprobe.d/plinth-blacklist.conf"
  ;;
customize)
  mkdir -p "$r/etc/cloud/cloud.cfg.d" "$r/etc/systemd/network"
  # Only NoCloud (the seed URL on the kernel command line): no probing of cloud metadata services at boot.
  # Network: live-boot's initrd has already configured the NIC; systemd-networkd keeps the DHCP lease.
  cat > "$r/etc/cloud/cloud.cfg.d/90-plinth.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
network: {config: disabled}
CFG
  # ClientIdentifier=mac: the initrd's DHCP client (klibc ipconfig) identifies by MAC; networkd's default DUID
  # would be a new client to the server, with a new address, and the seed and callback would come from another IP.
  cat > "$r/etc/systemd/network/50-dhcp.network" <<'NET'
[Match]
Name=en* eth*
[Network]
DHCP=yes
KeepConfiguration=dhcp
[DHCPv4]
ClientIdentifier=mac
NET
  ln -sf /lib/systemd/system/systemd-networkd.service "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
  echo localhost > "$r/etc/hostname"
  # Files that would record this build's host or time, or secrets every machine would share.
  rm -f "$r"/etc/ssh/ssh_host_* "$r/var/cache/ldconfig/aux-cache" "$r/var/lib/systemd/catalog/database" \
        "$r"/var/lib/dpkg/*-old "$r"/var/cache/debconf/*-old "$r/etc/resolv.conf"
  : > "$r/etc/machine-id"
  find "$r/var/log" -type f -delete
  rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/tmp/* "$r"/var/tmp/*
  # Byte code compiled at install time depends on the hash seed (set and frozenset order in marshalled
  # constants): compile it again with a fixed seed. Unchecked-hash .pyc files embed the source's hash, not its
  # mtime, and are never rechecked: the root is read-only.
  find "$r/usr" -name __pycache__ -type d -prune -exec rm -rf {} +
  chroot "$r" env PYTHONHASHSEED=0 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" python3 -m compileall -q -j 1 \
    --invalidation-mode unchecked-hash /usr/lib/python3/dist-packages /usr/lib/python3.11 >/dev/null ||
    echo "root-hooks: some Python files did not compile (test data in Python 2 syntax): they stay source only" >&2
  # The kernel and initrd are served by Plinth, not read from the root: build-immutable.sh takes them out.
  ;;
*) echo "root-hooks.sh: essential|customize ROOT" >&2; exit 2;;
esac
