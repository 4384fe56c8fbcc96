#!/usr/bin/env bash
# download-bench.sh — the Debian live squashfs downloaded from Plinth's /files and from nginx (sendfile,
# bench/nginx.ts's config), both on loopback, alternating, one connection (as live-boot's busybox wget), ROUNDS
# rounds; prints MiB/s and the ratio of each round.
# Usage: download-bench.sh REPO [IMAGE_DIR [ROUNDS]]   (root not needed; nginx-light, curl, taskset)
# `npm run bench:image` runs it on the newest image built in /var/cache/plinth/images (npm run image:build).
# Plinth and nginx on CPU 0 (one at a time is loaded), curl on CPU 1. Issue 16 target: Plinth >= 0.8x nginx.
set -euo pipefail
repo=$1; img=${2:-}; rounds=${3:-5}
if [ -z "$img" ]; then
  img=$(ls -td /var/cache/plinth/images/*/ 2>/dev/null | while read -r d; do [ -f "$d/filesystem.squashfs" ] && { echo "${d%/}"; break; }; done)
  [ -n "$img" ] || { echo "no image in /var/cache/plinth/images: npm run image:build first" >&2; exit 1; }
fi
w=$(mktemp -d /tmp/sqbench.XXXXXX); trap 'kill $pp $np 2>/dev/null; rm -rf "$w"' EXIT
mkdir -p "$w/www" "$w/data" "$w/assets"
ln "$img/filesystem.squashfs" "$w/www/filesystem.squashfs" 2>/dev/null || cp "$img/filesystem.squashfs" "$w/www/"
tok=bench-token-0123456789abcdefghijklmnop
cd "$repo"
PLINTH_TLS=off PLINTH_ADMIN_TOKEN=$tok PLINTH_LOG_LEVEL=warn taskset -c 0 node --import tsx src/main.ts \
  --data-dir "$w/data" --assets-dir "$w/assets" --no-dhcp --no-tftp --http-address 127.0.0.1 --http-port 18091 \
  > "$w/plinth.log" 2>&1 & pp=$!
conf=$(node --import tsx -e "import('$repo/bench/nginx.ts').then(m => console.log(m.nginxCommand('$w/nginx', '127.0.0.1:18080', '$w/www').join(' ')))")
taskset -c 0 $conf & np=$!
for i in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18091/api/v1/info -H "authorization: Bearer $tok" && break; sleep 0.3; done
curl -fsS -X PUT -H "authorization: Bearer $tok" --data-binary @"$w/www/filesystem.squashfs" \
  http://127.0.0.1:18091/api/v1/files/debian-live/filesystem.squashfs -o /dev/null
size=$(stat -c %s "$w/www/filesystem.squashfs")
get() { taskset -c 1 curl -fsS -o /dev/null -w '%{speed_download}' "$1"; }
echo "file: $size bytes; rounds: $rounds (order flips each round)"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then n=$(get http://127.0.0.1:18080/filesystem.squashfs); p=$(get http://127.0.0.1:18091/files/debian-live/filesystem.squashfs)
  else p=$(get http://127.0.0.1:18091/files/debian-live/filesystem.squashfs); n=$(get http://127.0.0.1:18080/filesystem.squashfs); fi
  awk -v n="$n" -v p="$p" -v r="$r" 'BEGIN { printf "round %d: nginx %.0f MiB/s, plinth %.0f MiB/s, ratio %.2fx\n", r, n/1048576, p/1048576, p/n }'
done
