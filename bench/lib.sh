# Sourced by the benchmarks (reads.sh, ab-reads.sh, cpu-per-request.sh, instructions.sh,
# load.sh, post-rate.sh): a server started for a load and its address, a done job to
# read, one wrk run's req/s that refuses error answers, and the median they all report.
# Run from the repository root.

# The reads the read benchmarks measure, and their names in tables; ID stands for a
# done job's id.
READ_PATHS=(/api/get_results/ID /profiles/overview/ /api/jobs/ID/profiles/3/days/16)
READ_NAMES=(get_results overview day_query)

# start_loaded_server WORK: starts ICEWALL_BIN (by default the profiling build, built
# first) on 127.0.0.1, its results and logs in WORK, its queue unbounded for a load
# (ICEWALL_FLAGS adds flags); sets `server` (its pid) and `base` (its URL).
start_loaded_server() {
  local bin=${ICEWALL_BIN:-./target/profiling/icewall}
  [ -n "${ICEWALL_BIN:-}" ] || cargo build --profile profiling --quiet
  # shellcheck disable=SC2086 # ICEWALL_FLAGS is a list of flags
  "$bin" serve --bind 127.0.0.1:0 --results-dir "$1/results" \
    --logs-dir "$1/logs" --max-queue 10000000 ${ICEWALL_FLAGS:-} > "$1/stdout" &
  server=$!
  base=$(listening "$1/stdout")
}

# listening FILE: waits for the address a server prints on FILE, and prints it.
listening() {
  for _ in $(seq 600); do grep -q 'http://' "$1" 2>/dev/null && break; sleep 0.05; done
  grep -o 'http://[0-9.:]*' "$1" | head -1
}

# done_example_job URL: submits the example wall with 3 teams, waits until it is done,
# and prints its id; fails if it is not done. (Each step returns on failure itself:
# called as `$(done_example_job ...)`, it runs without `set -e`.)
done_example_job() {
  local id
  id=$(curl -sf -X POST -H 'Content-Type: text/plain' --data-binary @walls/example.txt \
    "$1/api/simulate?num_teams=3" | sed 's/.*"job_id":"\([^"]*\)".*/\1/') || return 1
  [ -n "$id" ] || { echo "no job id from $1" >&2; return 1; }
  curl -sf "$1/api/get_results/$id?wait=60" | grep -q '"status":"done"' ||
    { echo "job $id is not done" >&2; return 1; }
  echo "$id"
}

# wrk_rate REPORT COMMAND...: runs the wrk COMMAND with its report in REPORT, and
# prints its req/s; fails (showing the report) if wrk failed, gave no rate, met a socket
# error or any answer that was not a 2xx, so that a broken run is never a missing one.
wrk_rate() {
  local report=$1 rate
  shift
  "$@" > "$report" || { cat "$report" >&2; return 1; }
  rate=$(sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p' "$report")
  if [ -z "$rate" ] || grep -q "Non-2xx\|Socket errors" "$report"; then
    cat "$report" >&2
    return 1
  fi
  echo "$rate"
}

# median: of the numbers on stdin, the middle one (the mean of the two middle ones for
# an even count).
median() {
  tr ' ' '\n' | grep . | sort -n |
    awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'
}
