#!/usr/bin/env bash
# POST latency at a set offered rate, open loop: oha sends POST /api/simulate (the
# example wall, 3 teams) at each rate for `seconds`, on up to `connections` connections,
# and measures each request from when it was due to be sent (--latency-correction), so
# that a slow answer delays no measurement. A closed loop (wrk's 64 connections, each
# waiting for its answer) makes the mean latency 64 / the rate whatever the server
# does; this asks what a client sees at a load the server keeps up with.
# Prints, per rate: requests answered 202 and not, the rate reached, p50 / p99 / p99.9
# in ms, and the server's mean wait for a durable accept (icewall_accept_seconds).
# Usage: bench/post-rate.sh [seconds, default 5] [connections, default 64] RATE...
#   (rates default to 2000 4000 8000). On a fresh ext4: sudo FRESH_EXT4_RUN=bench/post-rate.sh
#   bench/fresh-ext4.sh 5 64 2000 4000 8000. ICEWALL_BIN picks the build, BENCH_TMPDIR
#   the results directory's file system.
# Needs oha (cargo install oha) and Python 3. Writes only to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
connections=${2:-64}
shift 2 2>/dev/null || shift $#
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(2000 4000 8000)
command -v oha > /dev/null || { echo "needs oha: cargo install oha" >&2; exit 1; }
work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
server=
trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh
start_loaded_server "$work"
echo "server $base (pid $server), $duration s per rate, up to $connections connections"

# The accept histogram's sum and count, to take the mean wait of one rate's POSTs.
accept_totals() {
  curl -sf "$base/metrics" | awk '/^icewall_accept_seconds_sum/ {s = $2} /^icewall_accept_seconds_count/ {c = $2} END {print s + 0, c + 0}'
}
body='{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}'
for rate in "${rates[@]}"; do
  read -r sum_before count_before < <(accept_totals)
  oha --no-tui --output-format json -z "${duration}s" -q "$rate" --latency-correction \
    -c "$connections" -m POST -T application/json -d "$body" "$base/api/simulate" > "$work/oha.json"
  read -r sum_after count_after < <(accept_totals)
  python3 - "$rate" "$work/oha.json" "$sum_before" "$count_before" "$sum_after" "$count_after" <<'PY'
import json, sys
rate, path = sys.argv[1], sys.argv[2]
sum_before, count_before, sum_after, count_after = map(float, sys.argv[3:7])
report = json.load(open(path))
statuses = report.get("statusCodeDistribution", {})
accepted = statuses.get("202", 0)
others = sum(count for status, count in statuses.items() if status != "202")
# A request still in flight when the time is up is cut, and counted as an error by oha.
errors = sum(count for error, count in report.get("errorDistribution", {}).items()
             if "deadline" not in error)
percentiles = report["latencyPercentiles"]
ms = lambda key: (percentiles.get(key) or 0) * 1000
accepts = count_after - count_before
accept_wait = (sum_after - sum_before) / accepts * 1000 if accepts else 0
print(f"rate {rate}/s: {accepted} answered 202, {others} other statuses, {errors} errors, "
      f"{report['summary']['requestsPerSec']:.0f} req/s; "
      f"p50 {ms('p50'):.2f} ms, p99 {ms('p99'):.2f} ms, p99.9 {ms('p99.9'):.2f} ms; "
      f"accept wait {accept_wait:.2f} ms on average")
PY
  # The jobs of one rate finish before the next begins.
  while [ "$(curl -sf "$base/api/num_jobs" | sed 's/[^0-9]//g')" != "0" ]; do sleep 0.05; done
done
