#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store's contract tests and multi-daemon runs (issue 17): its own data
# directory, its own port, its unix socket inside that directory, trust authentication on loopback only. Nothing of
# Debian's own cluster (/etc/postgresql, port 5432, systemd) is used or touched.
#
#   scripts/pg-throwaway.sh start DIR [PORT]   initdb DIR if empty, start, print the URL (postgres://...)
#   scripts/pg-throwaway.sh stop DIR           stop the cluster DIR's postmaster.pid names (fast shutdown)
#   scripts/pg-throwaway.sh url DIR [PORT]     print the URL again
#
# As root the server runs as the `postgres` user (initdb refuses root); as anyone else, as that user. Debian's
# `postgresql` package (15) provides the binaries; PG_BIN overrides where they are.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-55432}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ ! -x "$PG_BIN/initdb" ]; then
  echo "pg-throwaway: no initdb in ${PG_BIN:-/usr/lib/postgresql/*/bin}: apt-get install postgresql" >&2
  exit 1
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
url() { echo "postgres://postgres@127.0.0.1:$port/postgres"; }

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir" && chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      # C collation: text sorts by bytes, as in SQLite, so both backends list in the same order.
      as_owner "$PG_BIN/initdb" -D "$dir" -A trust -U postgres -E UTF8 --locale=C >"$dir.initdb.log" 2>&1 || {
        cat "$dir.initdb.log" >&2
        exit 1
      }
    fi
    # Loopback only; the socket in DIR, never /var/run/postgresql (Debian's cluster's).
    as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2
    url
    ;;
  stop)
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/postmaster.pid" ]; then
      echo "pg-throwaway: $dir is not running" >&2
      exit 0
    fi
    pid=$(head -1 "$dir/postmaster.pid")
    if ! as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >&2; then
      # pg_ctl could not stop it: end this cluster's postmaster by its own pid, nothing else.
      kill -TERM "$pid" 2>/dev/null || true
    fi
    ;;
  url)
    url
    ;;
  *)
    echo "pg-throwaway: unknown command $cmd (start, stop, url)" >&2
    exit 2
    ;;
esac
