#!/bin/sh
# npm run bench:fsync [-- RUNS [N [DIR]]]: bench/fsync-paced.c, RUNS times each way (default 3), N appends a run
# (default 3,000), in DIR (default var/, the daemon's default data directory, where its journal lives). Needs a C
# compiler (cc).
set -eu
runs=${1:-3}
n=${2:-3000}
dir=${3:-var}
mkdir -p "$dir"
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
cc -O2 -o "$bin" "$(dirname "$0")/fsync-paced.c"
i=0
while [ "$i" -lt "$runs" ]; do
  "$bin" fallocate "$n" "$dir/plinth-fsync-bench.tmp"
  "$bin" zeros "$n" "$dir/plinth-fsync-bench.tmp"
  i=$((i + 1))
done
