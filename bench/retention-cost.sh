#!/usr/bin/env bash
# What cluster mode's retention costs the database with many finished jobs kept, none
# of them due to go: a throwaway PostgreSQL (bench/postgres.sh) logs the duration of
# every statement; a database is filled with `jobs` finished jobs (2,000 bytes of
# result each, well within --max-results 1,000,000 and --max-results-bytes 10GiB),
# one node of each build runs on it in turn for `seconds`, idle, and the statements of
# its retention sweeps (those on finished jobs: `state IN ('done', 'failed')`) are
# summed: the database time per sweep (one every 5 s), median of the rounds.
# Usage: bench/retention-cost.sh A_BIN B_BIN [jobs, default 1000000] [seconds, default 31] [rounds, default 2]
# Needs postgresql (Debian's package) and Python 3. Writes only to temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1; b=$2; jobs=${3:-1000000}; seconds=${4:-31}; rounds=${5:-2}
# shellcheck source=bench/postgres.sh
. bench/postgres.sh
work=$(mktemp -d)
node=
trap '[ -z "$node" ] || kill "$node" 2>/dev/null; postgres_stop; rm -rf "$work"' EXIT
POSTGRES_OPTS="-c log_min_duration_statement=0 ${POSTGRES_OPTS:-}" postgres_start
url=$(postgres_create_database retention)
psql_run() {
  "$POSTGRES_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$POSTGRES_DIR" -p "$POSTGRES_PORT" \
    -U postgres -d retention -c "$1"
}

# run_node BIN LOG: one node on the database for $seconds; prints the sweeps' database
# milliseconds per sweep.
run_node() {
  local start_line
  start_line=$(wc -l < "$POSTGRES_DIR/postgres.log")
  "$1" serve --bind 127.0.0.1:0 --results-dir "$work/results" --logs-dir "$work/logs" \
    --database-url "$url" > "$work/stdout" 2>&1 &
  node=$!
  sleep "$seconds"
  kill "$node"; wait "$node" || true; node=
  tail -n +"$((start_line + 1))" "$POSTGRES_DIR/postgres.log" | python3 -c '
import re, sys
# A statement over several lines goes on in lines that begin with a tab.
records = []
for line in sys.stdin:
    if line.startswith("\t") and records:
        records[-1] += " " + line.strip()
    else:
        records.append(line.strip())
total, sweeps = 0.0, 0
for record in records:
    m = re.search(r"duration: ([0-9.]+) ms\s+(?:execute [^:]*|statement): (.*)", record)
    if not m:
        continue
    if "done'"'"', '"'"'failed" in m.group(2):
        total += float(m.group(1))
        # The TTL rule, on every sweep, comes first.
        if "finished_at <= now()" in m.group(2):
            sweeps += 1
print(f"{total / max(sweeps, 1):.1f} {sweeps}")
'
}

# The schema, from a node of the first build; then the finished jobs.
"$a" serve --bind 127.0.0.1:0 --results-dir "$work/results" --logs-dir "$work/logs" \
  --database-url "$url" > "$work/stdout" 2>&1 &
node=$!
for _ in $(seq 600); do grep -q listening "$work/stdout" 2>/dev/null && break; sleep 0.05; done
kill "$node"; wait "$node" || true; node=
psql_run "INSERT INTO icewall_jobs (id, state, finished_at, result_bytes)
  SELECT gen_random_uuid(), 'done', now() - n * interval '1 ms', 2000
  FROM generate_series(1, $jobs) AS n"
psql_run "VACUUM ANALYZE icewall_jobs"

declare -a a_ms b_ms
for round in $(seq "$rounds"); do
  read -r ms sweeps < <(run_node "$a")
  echo "round $round A: $ms ms of database time per sweep ($sweeps sweeps)"
  a_ms+=("$ms")
  read -r ms sweeps < <(run_node "$b")
  echo "round $round B: $ms ms of database time per sweep ($sweeps sweeps)"
  b_ms+=("$ms")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "median database ms per sweep with $jobs finished jobs: A $(median "${a_ms[@]}"), B $(median "${b_ms[@]}")"
