#!/usr/bin/env bash
# Instructions per request of one read, counted by callgrind over every thread of the
# server (user space only): the same count for the same build and path on any machine,
# load or not, so a change of a few percent shows where req/s on a shared machine cannot.
# Spin loops (the log thread's queue) make runs differ a little (0.3% on a quiet machine,
# 3% between a quiet and a busy one): compare builds in the same minutes, alternating.
# The kernel's share (loopback TCP, about a third of the CPU time) is not counted.
# Prints the total and, for each thread with at least 1% of it, that thread's share (the
# HTTP worker that took the connection, the log thread); then the total without the
# iterations of `rep stosb` in memset. Callgrind counts each byte a `rep stosb` stores as
# an instruction, and actix-http clears its 3 KB index of a request's headers that way
# twice a request (about 6,200 "instructions" that take a CPU some 200 cycles), the
# reference's requests as much as icewall's: ratios of counts with them are flattered
# towards 1. Last, how many of them are locked (atomic read-modify-writes, each a full
# barrier of some 20 cycles that callgrind counts as one instruction; see
# bench/locked-instructions.py, which also lists where they are).
# INSTRUCTIONS_KEEP=DIR keeps the callgrind files there (one per thread), for
# callgrind_annotate and `bench/locked-instructions.py REQUESTS --top 30 DIR/*`.
# Usage: bench/instructions.sh BIN PATH [requests, default 2000]
#   BIN: an icewall build, or `reference` for the reference server (which answers any
#   path: ID becomes an id of the same form, so that both parse the same request)
#   PATH: e.g. /profiles/overview/; ID in it is replaced by a done job's id
# Needs valgrind, curl, objdump and Python 3. Writes only to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; path=$2; n=${3:-2000}
work=$(mktemp -d)
vg=
trap 'kill $vg 2>/dev/null || true; wait $vg 2>/dev/null || true; rm -rf "$work"' EXIT
if [ "$bin" = reference ]; then
  valgrind --tool=callgrind --separate-threads=yes --compress-strings=no \
    --dump-instr=yes --dump-line=no --compress-pos=no --callgrind-out-file="$work/cg.%p" \
    "${REFERENCE_BIN:-./target/profiling/examples/reference}" 127.0.0.1:0 > "$work/out" 2> "$work/vg.txt" &
else
  valgrind --tool=callgrind --separate-threads=yes --compress-strings=no \
    --dump-instr=yes --dump-line=no --compress-pos=no --callgrind-out-file="$work/cg.%p" \
    "$bin" serve --bind 127.0.0.1:0 --results-dir "$work/results" --logs-dir "$work/logs" > "$work/out" 2> "$work/vg.txt" &
fi
vg=$!
# shellcheck source=bench/lib.sh
. bench/lib.sh
url=$(listening "$work/out")
if [[ "$path" == *ID* ]]; then
  # The reference answers any path: it gets an id of the same form.
  if [ "$bin" = reference ]; then
    id=01a22fb2-0a75-714d-8ce2-6e75ec9a9742
  else
    id=$(done_example_job "$url")
  fi
  path=${path/ID/$id}
fi
get() { # count: GETs of $path on one keep-alive connection, each checked for a 200
  python3 - "$url" "$path" "$1" <<'PY'
import http.client, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
connection = http.client.HTTPConnection(url.hostname, url.port)
for _ in range(int(sys.argv[3])):
    connection.request("GET", sys.argv[2])
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
}
get 200  # warm: the answer cache, the allocator
sleep 1
callgrind_control -z "$vg" > /dev/null 2>&1
get "$n"
sleep 1
callgrind_control -d "$vg" > /dev/null 2>&1
sleep 0.5
# One file per thread of the dump: cg.<pid>.1-<thread>.
per_thread=$(for file in "$work"/cg.*.1-*; do
  echo "${file##*-} $(grep -h '^summary:\|^totals:' "$file" | head -1 | awk '{print $2}')"
done)
total=$(echo "$per_thread" | awk '{sum += $2} END {print sum}')
shares=$(echo "$per_thread" | awk -v total="$total" -v n="$n" \
  '$2 * 100 >= total {printf "%sthread %d: %d", sep, $1, $2 / n; sep = ", "}')
# memset's own cost, every thread (it calls nothing): names stay whole in the files
# (--compress-strings=no), so its cost lines are those under its fn= line.
memset=$(cat "$work"/cg.*.1-* | awk '/^fn=/ {inside = /__memset_.*erms/; next}
  inside && /^[0-9+-]/ {sum += $2} END {print sum + 0}')
echo "$path: $((total / n)) instructions per request ($shares);" \
  "$(((total - memset) / n)) without memset's $((memset / n));" \
  "$(python3 bench/locked-instructions.py "$n" "$work"/cg.*.1-*) of them locked"
if [ -n "${INSTRUCTIONS_KEEP:-}" ]; then
  mkdir -p "$INSTRUCTIONS_KEEP"
  cp "$work"/cg.*.1-* "$INSTRUCTIONS_KEEP"/
fi
