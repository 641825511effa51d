#!/usr/bin/env bash
# Load test of icewall against the real server on 127.0.0.1, for the example wall:
#   1. jobs/s end to end (POST until every job is done) with durable accept,
#      and p50/p99 POST latency;
#   2. req/s of GET /profiles/overview/;
#   3. req/s of GET /api/get_results/<id>.
# Usage: bench/load.sh [seconds per run, default 10] [connections, default 64]
# Needs wrk (apt-get install wrk). Starts and stops its own server; writes only to a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
threads=${WRK_THREADS:-1}

# The profiling build is the release build with line tables, so that `perf` can name
# the hot lines (the shipped release binary is stripped). ICEWALL_BIN picks another
# build (to compare two side by side in one session).
work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
server=
trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh
start_loaded_server "$work"
echo "server $base (pid $server), wrk -t$threads -c$connections -d${duration}s"

num_jobs() { curl -sf "$base/api/num_jobs" | sed 's/[^0-9]//g'; }
# Clock ticks every CPU spent working since boot (user, nice, system, irq, softirq; not
# idle, I/O wait, or steal, the time the hypervisor gave other machines): over a run, the
# whole machine's CPU time (server, wrk, the kernel's threads), set beside the jobs.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
echo "server RSS idle: $(ps -o rss= -p "$server") KiB"

echo "== jobs end to end: POST /api/simulate, then wait until all are done"
start=$(date +%s.%N)
busy_before=$(busy_ticks)
wrk -t"$threads" -c"$connections" -d"${duration}s" -s bench/post_job.lua "$base/api/simulate" \
  > "$work/post.txt"
# Every 50 ms: each look is a curl, whose CPU time counts in the machine's per job (at
# 10 ms, more so on a slower disk's longer drain); the end is late by 25 ms on average.
while [ "$(num_jobs)" != "0" ]; do sleep 0.05; done
end=$(date +%s.%N)
busy_after=$(busy_ticks)
grep -E "Requests/sec|Non-2xx|post_" "$work/post.txt"
posts=$(sed -n 's/^posts //p' "$work/post.txt")
refused=$(sed -n 's/.*Non-2xx or 3xx responses: //p' "$work/post.txt")
done_jobs=$((posts - ${refused:-0}))
echo "jobs_done $done_jobs in $(echo "$end - $start" | bc) s"
echo "jobs_per_second_end_to_end $(echo "$done_jobs / ($end - $start)" | bc)"
echo "machine_cpu_us_per_job $(echo "scale=1; ($busy_after - $busy_before) * 1000000 / $(getconf CLK_TCK) / $done_jobs" | bc)"
# The part of a POST's latency spent waiting for its request to be durable (the
# server's icewall_accept_seconds; nothing for a build without it): the mean, and the
# share of POSTs that waited at most 1, 2.5, 5 and 10 ms.
curl -sf "$base/metrics" | awk '
  /^icewall_accept_seconds_bucket/ {
    match($0, /le="[^"]*"/); bucket[substr($0, RSTART + 4, RLENGTH - 5)] = $2 }
  /^icewall_accept_seconds_sum/ { sum = $2 }
  /^icewall_accept_seconds_count/ { count = $2 }
  END { if (count > 0) printf "accept_wait_mean_ms %.3f\naccept_wait_within_1_2.5_5_10_ms %.3f %.3f %.3f %.3f\n",
    1000 * sum / count, bucket["0.001"] / count, bucket["0.0025"] / count,
    bucket["0.005"] / count, bucket["0.01"] / count }'

echo "== GET /profiles/overview/"
wrk -t"$threads" -c"$connections" -d"${duration}s" "$base/profiles/overview/" | grep -E "Requests/sec|Non-2xx|Latency"

id=$(curl -sf -X POST -H 'Content-Type: text/plain' --data-binary @walls/example.txt \
  "$base/api/simulate?num_teams=3" | sed 's/.*"job_id":"\([^"]*\)".*/\1/')
while [ "$(num_jobs)" != "0" ]; do sleep 0.01; done
echo "== GET /api/get_results/$id"
wrk -t"$threads" -c"$connections" -d"${duration}s" "$base/api/get_results/$id" | grep -E "Requests/sec|Non-2xx|Latency"

echo "== server RSS after the run ($done_jobs jobs and the GET runs): $(ps -o rss= -p "$server") KiB"
curl -sf "$base/api/graceful_shutdown" > /dev/null
wait "$server" && echo "server exited 0"
