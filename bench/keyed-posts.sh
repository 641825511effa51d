#!/usr/bin/env bash
# Keyed submissions for long, two builds side by side: every POST carries an
# Idempotency-Key of its own, retention keeps the newest `kept` jobs (and their keys),
# so the key file's records of removed jobs pile up, and a build that rewrites the file
# while running pays for it in the accepts that wait behind a rewrite. Per build and
# round: POSTs/s, POST p50 / p99, and the key file's size at the end; alternating A and
# B, medians. BENCH_TMPDIR puts the results directories elsewhere (say /dev/shm).
# Usage: bench/keyed-posts.sh A_BIN B_BIN [seconds, 10] [rounds, 3] [kept, 10000]
# Needs wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 duration=${3:-10} rounds=${4:-3} kept=${5:-10000}
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=
server=
trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }; [ -z "$work" ] || rm -rf "$work"' EXIT

# run BIN: one run of one build; prints "posts/s p50 p99 key-file-bytes".
run() {
  work=$(mktemp -d ${BENCH_TMPDIR:+-p "$BENCH_TMPDIR"})
  ICEWALL_BIN=$1 ICEWALL_FLAGS="--max-results $kept" start_loaded_server "$work"
  wrk -t1 -c64 -d"${duration}s" -s bench/post_keyed_job.lua "$base/api/simulate" > "$work/post.txt"
  local rate p50 p99 keys
  rate=$(sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p' "$work/post.txt")
  p50=$(sed -n 's/^post_p50_ms //p' "$work/post.txt")
  p99=$(sed -n 's/^post_p99_ms //p' "$work/post.txt")
  keys=$(stat -c %s "$work/results/idempotency-keys.jsonl")
  if grep -q "Non-2xx\|Socket errors" "$work/post.txt"; then
    cat "$work/post.txt" >&2
    exit 1
  fi
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  rm -rf "$work"
  work=
  echo "$rate $p50 $p99 $keys"
}

declare -a rows_a rows_b
for round in $(seq "$rounds"); do
  rows_a+=("$(run "$a")")
  rows_b+=("$(run "$b")")
  echo "round $round: A ${rows_a[-1]} | B ${rows_b[-1]}"
done
column() { local field=$1; shift; printf '%s\n' "$@" | awk -v f="$field" '{print $f}'; }
median_of() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "| build | POSTs/s | p50 ms | p99 ms | key file bytes |"
echo "| --- | --- | --- | --- | --- |"
for side in a b; do
  if [ $side = a ]; then rows=("${rows_a[@]}"); name=$a; else rows=("${rows_b[@]}"); name=$b; fi
  echo "| $name | $(column 1 "${rows[@]}" | median_of) | $(column 2 "${rows[@]}" | median_of) | $(column 3 "${rows[@]}" | median_of) | $(column 4 "${rows[@]}" | median_of) |"
done
