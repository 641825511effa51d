#!/usr/bin/env bash
# What a watched cluster costs its database: a throwaway PostgreSQL, a node of each
# build in turn on a fresh database holding `jobs` finished jobs, `requests` GETs of
# /api/stats in a row (as open pages send them); per run the time they took and the
# sequential scans of icewall_jobs meanwhile (pg_stat_user_tables, read after the
# statistics' 10 s flush; the node's own heartbeat and retention included).
# Usage: bench/cluster-stats.sh BIN... (each run once per round, in turn)
# Env: BENCH_ROUNDS (2), BENCH_JOBS (200000), BENCH_REQUESTS (100). Needs postgresql, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BIN..." >&2; exit 2; }
rounds=${BENCH_ROUNDS:-2}; jobs=${BENCH_JOBS:-200000}; requests=${BENCH_REQUESTS:-100}
# shellcheck source=bench/postgres.sh
. bench/postgres.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
postgres_start > /dev/null
pid=; work=
# Whatever fails on the way out, the database is stopped.
trap 'set +e; [ -z "$pid" ] || { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$work"; postgres_stop' EXIT
run=0
for round in $(seq "$rounds"); do
  for bin in "$@"; do
    run=$((run + 1))
    url=$(postgres_create_database "stats_$run")
    work=$(mktemp -d)
    "$bin" serve --bind 127.0.0.1:0 --database-url "$url" --results-dir "$work/results" \
      --logs-dir "$work/logs" > "$work/out" 2>&1 &
    pid=$!
    address=$(listening "$work/out")
    sql() { "$POSTGRES_BIN/psql" -X -q -tA -v ON_ERROR_STOP=1 "$url" -c "$1"; }
    sql "INSERT INTO icewall_jobs (id, state, attempt, finished_at)
         SELECT gen_random_uuid(), 'done', 1, now() FROM generate_series(1, $jobs)" > /dev/null
    sql "VACUUM ANALYZE icewall_jobs" > /dev/null
    scans="SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'icewall_jobs'"
    before=$(sql "$scans")
    started=$(date +%s.%N)
    for _ in $(seq "$requests"); do curl -sf "$address/api/stats" -o /dev/null; done
    took=$(echo "$(date +%s.%N) - $started" | bc)
    sleep 11
    after=$(sql "$scans")
    echo "round $round $bin: $requests /api/stats in ${took} s, $((after - before)) sequential scans of icewall_jobs"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    rm -rf "$work"; work=
  done
done
