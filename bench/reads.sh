#!/usr/bin/env bash
# icewall's reads beside their yardstick, in one run: the reference server
# (examples/reference.rs, the smallest actix-web app answering a constant JSON body the
# size of a get_results answer, same lock file and profile) and icewall (file store,
# one done job of the example wall with 3 teams), loaded in turn with wrk, alternating
# icewall/reference, for:
#   1. GET /api/get_results/<id> of a done job;
#   2. GET /profiles/overview/ (the server's own wall, a precomputed body);
#   3. GET /api/jobs/<id>/profiles/3/days/16.
# Prints one table: figure, icewall median req/s, reference median, ratio.
# Usage: bench/reads.sh [seconds per run, default 5] [connections, default 64] [rounds, default 3]
# Needs wrk (apt-get install wrk). Starts and stops its own servers; writes only to a
# temporary directory. ICEWALL_BIN picks the icewall build, REFERENCE_BIN the reference's.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5}
connections=${2:-64}
rounds=${3:-3}
threads=${WRK_THREADS:-1}

# As bench/load.sh: the profiling build is the release build with line tables.
bin=${ICEWALL_BIN:-./target/profiling/icewall}
reference=${REFERENCE_BIN:-./target/profiling/examples/reference}
[ -n "${ICEWALL_BIN:-}" ] || cargo build --profile profiling --quiet
[ -n "${REFERENCE_BIN:-}" ] || cargo build --profile profiling --quiet --example reference
work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
server=; yardstick=
trap 'kill $server $yardstick 2>/dev/null || true; wait $server $yardstick 2>/dev/null || true; rm -rf "$work"' EXIT

started() { # file: waits for its "listening on" line, prints the address
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^listening on //p' "$1"
}

"$bin" serve --bind 127.0.0.1:0 --results-dir "$work/results" \
  --logs-dir "$work/logs" ${ICEWALL_FLAGS:-} > "$work/stdout" &
server=$!
"$reference" 127.0.0.1:0 > "$work/reference" &
yardstick=$!
base=$(started "$work/stdout")
ref=$(started "$work/reference")
echo "icewall $base (pid $server), reference $ref (pid $yardstick), wrk -t$threads -c$connections -d${duration}s, $rounds rounds"

id=$(curl -sf -X POST -H 'Content-Type: text/plain' --data-binary @walls/example.txt \
  "$base/api/simulate?num_teams=3" | sed 's/.*"job_id":"\([^"]*\)".*/\1/')
curl -sf "$base/api/get_results/$id?wait=10" | grep -q '"status":"done"'

rate() { # url: req/s of one wrk run (fails on a non-2xx answer)
  wrk -t"$threads" -c"$connections" -d"${duration}s" "$1" > "$work/wrk.txt"
  if grep -q "Non-2xx" "$work/wrk.txt"; then cat "$work/wrk.txt" >&2; return 1; fi
  sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p' "$work/wrk.txt"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

figures=("get_results /api/get_results/$id" "overview /profiles/overview/" "day_query /api/jobs/$id/profiles/3/days/16")
table="figure icewall_median reference_median ratio icewall_runs reference_runs"
for figure in "${figures[@]}"; do
  name=${figure%% *}; path=${figure#* }
  ours=; theirs=
  for _ in $(seq "$rounds"); do
    ours="$ours $(rate "$base$path")"
    theirs="$theirs $(rate "$ref$path")"
  done
  a=$(echo "$ours" | median); b=$(echo "$theirs" | median)
  echo "$name ($path): icewall$ours; reference$theirs"
  table="$table
$name $a $b $(echo "scale=2; $a / $b" | bc) $(echo $ours | tr ' ' /) $(echo $theirs | tr ' ' /)"
done
echo
echo "$table" | column -t
curl -sf "$base/api/graceful_shutdown" > /dev/null
wait "$server" && echo "icewall exited 0"
server=
