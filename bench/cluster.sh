#!/usr/bin/env bash
# Cluster mode against the file store, in one run on 127.0.0.1: one PostgreSQL
# (bench/postgres.sh) with 1, 2 and 3 icewall nodes on it (`--database-url`, a fresh
# database for each cluster size), and one file-store node, each driven as
# bench/load.sh drives a server:
#   1. jobs/s end to end (POST /api/simulate for the given seconds, then wait until no
#      node has a job left: jobs done over that time), POST p50/p99 and non-2xx, and
#      how many accepted jobs were lost (accepted minus done and failed). Jobs are
#      counted by the nodes (icewall_jobs_total in /metrics, summed): wrk does not count
#      the requests still in flight when it stops, which the nodes did accept;
#   2. req/s of GET /api/get_results/<id>.
# wrk runs one thread per node: threads, and so connections, go round-robin over the
# nodes (bench/nodes.lua). One table at the end.
# Usage: bench/cluster.sh [seconds per run, default 10] [connections, default 64]
# BENCH_NODES="1 2 3" picks the cluster sizes ("" measures the file store alone);
# ICEWALL_BIN, ICEWALL_FLAGS and BENCH_TMPDIR as for load.sh, POSTGRES_OPTS as for
# postgres.sh. Needs wrk, bc, python3 and postgresql (apt-get install wrk bc postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
sizes=${BENCH_NODES-1 2 3}

bin=${ICEWALL_BIN:-./target/profiling/icewall}
[ -n "${ICEWALL_BIN:-}" ] || cargo build --profile profiling --quiet
# shellcheck source=bench/postgres.sh
. bench/postgres.sh
work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
pids=()
bases=()
rows=()
stop_nodes() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
  bases=()
}
trap 'stop_nodes; postgres_stop; rm -rf "$work"' EXIT

# Starts a node in $work/$1 with the flags after it; adds its pid and base URL.
start_node() {
  local dir=$work/$1 pid
  shift
  mkdir -p "$dir"
  # shellcheck disable=SC2086 # ICEWALL_FLAGS is a list of flags
  "$bin" serve --bind 127.0.0.1:0 --results-dir "$dir/results" --logs-dir "$dir/logs" \
    --max-queue 10000000 "$@" ${ICEWALL_FLAGS:-} > "$dir/stdout" 2> "$dir/stderr" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    grep -q listening "$dir/stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q listening "$dir/stdout"; then
    echo "the node in $dir did not start:" >&2
    cat "$dir/stderr" >&2
    exit 1
  fi
  bases+=("$(sed -n 's/^listening on //p' "$dir/stdout")")
}

# Until one pass over the nodes finds none with a job accepted and not finished.
wait_until_all_done() {
  local base count idle=no
  while [ $idle = no ]; do
    idle=yes
    for base in "${bases[@]}"; do
      count=$(curl -sf "$base/api/num_jobs" | sed 's/[^0-9]//g') || {
        echo "$base stopped answering" >&2
        exit 1
      }
      [ "$count" = 0 ] || { idle=no; sleep 0.01; }
    done
  done
}

# The sum over the nodes of icewall_jobs_total{outcome="$1"}.
jobs_with_outcome() {
  local base total=0 count
  for base in "${bases[@]}"; do
    count=$(curl -sf "$base/metrics" | sed -n "s/^icewall_jobs_total{outcome=\"$1\"} //p")
    if [ -z "$count" ]; then
      echo "no icewall_jobs_total{outcome=\"$1\"} in $base/metrics" >&2
      exit 1
    fi
    total=$((total + count))
  done
  echo "$total"
}

# Drives the nodes started, adds a row to the table named $1, and shuts them down.
measure() {
  local label=$1 nodes=${#bases[@]} targets="" base start end refused accepted finished
  local failed p50 p99 id reads read_errors
  for base in "${bases[@]}"; do targets+="${base#http://} "; done
  echo "== $label: ${bases[*]} (pids ${pids[*]}), wrk -t$nodes -c$connections -d${duration}s"

  start=$(date +%s.%N)
  WRK_NODES=$targets wrk -t"$nodes" -c"$connections" -d"${duration}s" -s bench/post_job.lua \
    "${bases[0]}/api/simulate" > "$work/post.txt"
  wait_until_all_done
  end=$(date +%s.%N)
  grep -E "Requests/sec|Non-2xx|post_" "$work/post.txt"
  refused=$(sed -n 's/.*Non-2xx or 3xx responses: //p' "$work/post.txt")
  accepted=$(jobs_with_outcome accepted)
  finished=$(jobs_with_outcome done)
  failed=$(jobs_with_outcome failed)
  p50=$(sed -n 's/^post_p50_ms //p' "$work/post.txt")
  p99=$(sed -n 's/^post_p99_ms //p' "$work/post.txt")
  echo "accepted $accepted, done $finished, failed $failed in $(echo "$end - $start" | bc) s"

  id=$(curl -sf -X POST -H 'Content-Type: text/plain' --data-binary @walls/example.txt \
    "${bases[0]}/api/simulate?num_teams=3" | sed 's/.*"job_id":"\([^"]*\)".*/\1/')
  wait_until_all_done
  WRK_NODES=$targets wrk -t"$nodes" -c"$connections" -d"${duration}s" -s bench/nodes.lua \
    "${bases[0]}/api/get_results/$id" > "$work/get.txt"
  grep -E "Requests/sec|Non-2xx|Latency" "$work/get.txt"
  reads=$(sed -n 's/^Requests\/sec: *//p' "$work/get.txt")
  read_errors=$(sed -n 's/.*Non-2xx or 3xx responses: //p' "$work/get.txt")

  rows+=("| $label | $(echo "$finished / ($end - $start)" | bc) | $finished | $((accepted - finished - failed)) | $failed | ${refused:-0} | $p50 | $p99 | $reads${read_errors:+ ($read_errors non-2xx)} |")

  for base in "${bases[@]}"; do curl -sf "$base/api/graceful_shutdown" > /dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" || echo "node $pid exited with $?" >&2; done
  pids=()
  bases=()
}

start_node file
measure "file store, 1 node"

if [ -n "$sizes" ]; then
  postgres_start
  echo "PostgreSQL $POSTGRES_URL (pid $POSTGRES_PID) in $POSTGRES_DIR"
  for size in $sizes; do
    url=$(postgres_create_database "bench_$size")
    for node in $(seq "$size"); do start_node "cluster$size-node$node" --database-url "$url"; done
    measure "PostgreSQL, $size node(s)"
  done
fi

echo
echo "wrk: $connections connections, ${duration}s per run; $(nproc) cores shared by everything"
echo "| store | jobs/s end to end | jobs done | lost | failed | POST non-2xx | POST p50 ms | POST p99 ms | get_results req/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
