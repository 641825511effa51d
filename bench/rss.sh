#!/usr/bin/env bash
# Memory per retained finished job, without the allocator's high water of the POSTs
# that made them: a server fills a results directory (wrk POSTs the example wall for
# `seconds`, then every job finishes) and stops; then a server started on that
# directory (it registers every job again at start-up) and one on an empty directory,
# both idle; (RSS of the first - RSS of the second) / jobs. Start-up's own leftovers
# (the directory listing) count too: an upper bound still, but not the POSTs'.
# Usage: bench/rss.sh [seconds of POSTs, default 10] [connections, default 64]
# Needs wrk and Python 3. BENCH_TMPDIR puts the results directory elsewhere (default: mktemp's).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
bin=${ICEWALL_BIN:-./target/profiling/icewall}
[ -n "${ICEWALL_BIN:-}" ] || cargo build --profile profiling --quiet
work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
server=
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # results dir, name: starts a server, sets $server and $base
  "$bin" serve --bind 127.0.0.1:0 --results-dir "$1" --logs-dir "$work/logs-$2" \
    --max-queue 10000000 --result-ttl 1d --max-results 100000000 --max-results-bytes 1000GiB \
    > "$work/$2.out" &
  server=$!
  for _ in $(seq 600); do grep -q listening "$work/$2.out" 2>/dev/null && break; sleep 0.05; done
  base=$(sed -n 's/^listening on //p' "$work/$2.out")
}
stop() { curl -sf "$base/api/graceful_shutdown" > /dev/null; wait "$server"; server=; }
num_jobs() { curl -sf "$base/api/num_jobs" | sed 's/[^0-9]//g'; }
rss() { sleep 1; ps -o rss= -p "$server" | tr -d ' '; }

start "$work/results" fill
wrk -t1 -c"$connections" -d"${duration}s" -s bench/post_job.lua "$base/api/simulate" > "$work/post.txt"
while [ "$(num_jobs)" != "0" ]; do sleep 0.05; done
filled_rss=$(rss)
stop
jobs=$(find "$work/results" -maxdepth 1 -name '*.result' | wc -l)

start "$work/results" recovered
recovered_rss=$(rss)
listed=$(curl -sf "$base/api/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"]["done"])')
stop
start "$work/empty" empty
empty_rss=$(rss)
stop

echo "jobs $jobs (the recovered server counts ${listed:-?} done)"
if [ "$jobs" = 0 ] || [ "${listed:-}" != "$jobs" ]; then
  echo "the recovered server does not hold every job written: no figure" >&2
  exit 1
fi
echo "RSS KiB: empty $empty_rss, recovered $recovered_rss, the server that made them $filled_rss"
echo "bytes_per_retained_job $(( (recovered_rss - empty_rss) * 1024 / jobs ))"
echo "bytes_per_job_after_the_posts $(( (filled_rss - empty_rss) * 1024 / jobs ))"
