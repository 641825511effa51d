#!/usr/bin/env bash
# icewall's reads beside their yardstick, in one run: the reference server
# (examples/reference.rs, the smallest actix-web app answering a constant JSON body the
# size of a get_results answer, same lock file and profile) and icewall (file store,
# one done job of the example wall with 3 teams), loaded in turn with wrk, alternating
# icewall/reference, for:
#   1. GET /api/get_results/<id> of a done job;
#   2. GET /profiles/overview/ (the server's own wall, a precomputed body);
#   3. GET /api/jobs/<id>/profiles/3/days/16.
# Prints one table: figure, icewall median req/s, reference median, ratio. Which of the
# two goes first alternates from round to round.
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

# shellcheck source=bench/lib.sh
. bench/lib.sh

"$bin" serve --bind 127.0.0.1:0 --results-dir "$work/results" \
  --logs-dir "$work/logs" ${ICEWALL_FLAGS:-} > "$work/stdout" &
server=$!
"$reference" 127.0.0.1:0 > "$work/reference" &
yardstick=$!
base=$(listening "$work/stdout")
ref=$(listening "$work/reference")
echo "icewall $base (pid $server), reference $ref (pid $yardstick), wrk -t$threads -c$connections -d${duration}s, $rounds rounds"

id=$(done_example_job "$base")

rate() { wrk_rate "$work/wrk.txt" wrk -t"$threads" -c"$connections" -d"${duration}s" "$1"; }

table="figure icewall_median reference_median ratio icewall_runs reference_runs"
for at in "${!READ_PATHS[@]}"; do
  name=${READ_NAMES[at]}; path=${READ_PATHS[at]/ID/$id}
  ours=; theirs=
  for round in $(seq "$rounds"); do
    # icewall first in odd rounds, the reference first in even ones.
    if [ $((round % 2)) = 1 ]; then
      ours="$ours $(rate "$base$path")"
      theirs="$theirs $(rate "$ref$path")"
    else
      theirs="$theirs $(rate "$ref$path")"
      ours="$ours $(rate "$base$path")"
    fi
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
