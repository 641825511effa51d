#!/usr/bin/env bash
# A throwaway PostgreSQL for the benchmarks, started as the tests start theirs
# (unittests/common/postgres.rs): Debian's package (apt-get install postgresql), initdb
# in a temporary directory, listening on 127.0.0.1 (a free port) and on a Unix socket in
# that directory, as the postgres user when run as root. fsync stays on: durable
# accepts are part of what is measured.
#
# Standalone: `bench/postgres.sh` prints the URL, runs until Ctrl-C, then stops
# PostgreSQL and removes its directory.
# Sourced: `. bench/postgres.sh` defines postgres_start, which sets POSTGRES_URL
# (postgres://postgres@127.0.0.1:PORT/postgres), POSTGRES_DIR and POSTGRES_PID;
# postgres_create_database NAME, which prints the new database's URL; and
# postgres_stop, for the caller's EXIT trap.
# BENCH_TMPDIR=DIR puts the data directory in DIR (the postgres user must be able to
# reach it); POSTGRES_OPTS adds server options (e.g. "-c shared_buffers=1GB").

# The highest version's bin directory of Debian's layout, else where initdb is on PATH.
postgres_bin_dir() {
  local dir
  for dir in $(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -rV); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 || return 1
  dirname "$(readlink -f "$(command -v initdb)")"
}

# Runs a program of the package as the postgres user when root (initdb and pg_ctl
# refuse root), else as the caller.
postgres_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_start() {
  local port attempt
  POSTGRES_BIN=$(postgres_bin_dir) || {
    echo "no PostgreSQL (initdb in /usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql" >&2
    return 1
  }
  POSTGRES_DIR=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"} -t icewall-postgres-XXXXXX)
  [ "$(id -u)" != 0 ] || chown postgres: "$POSTGRES_DIR"
  if ! postgres_as_owner "$POSTGRES_BIN/initdb" -D "$POSTGRES_DIR/data" --auth=trust \
    --username=postgres --encoding=UTF8 --locale=C --no-sync > "$POSTGRES_DIR/initdb.log" 2>&1; then
    cat "$POSTGRES_DIR/initdb.log" >&2
    return 1
  fi
  # The free port is found by binding it and letting it go: another process may take
  # it in between, and then a new one is tried.
  for attempt in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # shellcheck disable=SC2086 # POSTGRES_OPTS is a list of options
    if postgres_as_owner "$POSTGRES_BIN/pg_ctl" -D "$POSTGRES_DIR/data" -l "$POSTGRES_DIR/postgres.log" \
      -w -t 60 -o "-p $port -c listen_addresses=127.0.0.1 -k $POSTGRES_DIR -c max_connections=200 ${POSTGRES_OPTS:-}" \
      start > /dev/null; then
      POSTGRES_PORT=$port
      POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres
      POSTGRES_PID=$(head -n 1 "$POSTGRES_DIR/data/postmaster.pid")
      return 0
    fi
    grep -q "Address already in use" "$POSTGRES_DIR/postgres.log" || break
    echo "port $port was taken (attempt $attempt), trying another" >&2
  done
  cat "$POSTGRES_DIR/postgres.log" >&2
  return 1
}

# Creates database NAME and prints its URL.
postgres_create_database() {
  "$POSTGRES_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$POSTGRES_DIR" -p "$POSTGRES_PORT" \
    -U postgres -d postgres -c "CREATE DATABASE $1" >&2 || return 1
  echo "postgres://postgres@127.0.0.1:$POSTGRES_PORT/$1"
}

# Fast shutdown, then the directory goes; does nothing if nothing was started.
postgres_stop() {
  [ -n "${POSTGRES_DIR:-}" ] || return 0
  if [ -f "$POSTGRES_DIR/data/postmaster.pid" ]; then
    postgres_as_owner "$POSTGRES_BIN/pg_ctl" -D "$POSTGRES_DIR/data" -m fast -w stop > /dev/null ||
      echo "PostgreSQL in $POSTGRES_DIR did not stop" >&2
  fi
  rm -rf "$POSTGRES_DIR"
  POSTGRES_DIR=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  sleeper=
  trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; postgres_stop' EXIT
  postgres_start
  echo "$POSTGRES_URL"
  echo "PostgreSQL (pid $POSTGRES_PID) in $POSTGRES_DIR; Ctrl-C stops it and removes it" >&2
  sleep infinity &
  sleeper=$!
  wait "$sleeper"
fi
