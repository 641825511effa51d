#!/usr/bin/env bash
# icewall and the reference server loaded at the same time, on the same core: the
# reads of reads.sh, each server under its own wrk (both wrk on CPU 0, both servers on
# CPU 1), and each server's CPU time per request over the same seconds (the sum of its
# threads' time on the CPU, /proc/PID/task/*/schedstat). Alternating runs (ab-reads.sh)
# compare minutes in which this machine may be a third faster or slower from one run
# to the next; here whatever slows the core in a given second slows both servers in
# it, so the ratio of their CPU times per request is what noise moves least. What
# each server costs the other (their caches, emptied at each switch between them) is
# in both figures.
# Usage: bench/together-reads.sh [seconds per run, default 3] [rounds, default 10]
#   ICEWALL_BIN (default the profiling build), REFERENCE_BIN (default its example)
# Prints per read, round by round, each server's req/s and CPU ns per request and
# icewall's ratio (the reference's CPU time per request over icewall's: icewall's req/s
# as a share of the reference's on equal CPU), then the median of the ratios.
# Needs wrk, curl and taskset, and two cores. Writes only to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
seconds=${1:-3}
rounds=${2:-10}
bin=${ICEWALL_BIN:-./target/profiling/icewall}
reference=${REFERENCE_BIN:-./target/profiling/examples/reference}
work=$(mktemp -d)
servers=()
trap 'kill "${servers[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 1 "$bin" serve --bind 127.0.0.1:0 --results-dir "$work/results" \
  --logs-dir "$work/logs" > "$work/icewall.out" 2>&1 &
icewall=$!
servers+=("$icewall")
taskset -c 1 "$reference" 127.0.0.1:0 > "$work/reference.out" 2>&1 &
servers+=("$!")
icewall_url=$(listening "$work/icewall.out")
reference_url=$(listening "$work/reference.out")
id=$(done_example_job "$icewall_url")

# cpu_ns PID: nanoseconds its threads have spent on a CPU so far.
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{sum += $1} END {printf "%.0f\n", sum}'
}

# requests REPORT: how many requests a wrk report counts.
requests() { awk '/requests in/ {print $1}' "$1"; }

echo "icewall $bin and reference $reference on CPU 1 at once, each under wrk -t1 -c64" \
  "-d${seconds}s on CPU 0; $rounds rounds"
for index in "${!READ_PATHS[@]}"; do
  path=${READ_PATHS[$index]/ID/$id}
  # The reference answers any path: it is sent the same request.
  ratios=()
  for round in $(seq "$rounds"); do
    before_icewall=$(cpu_ns "$icewall")
    before_reference=$(cpu_ns "${servers[1]}")
    wrk_rate "$work/icewall.wrk" taskset -c 0 wrk -t1 -c64 -d"${seconds}s" \
      "$icewall_url$path" > /dev/null &
    loading_icewall=$!
    wrk_rate "$work/reference.wrk" taskset -c 0 wrk -t1 -c64 -d"${seconds}s" \
      "$reference_url$path" > /dev/null &
    loading_reference=$!
    wait "$loading_icewall" "$loading_reference"
    icewall_ns=$(( ($(cpu_ns "$icewall") - before_icewall) / $(requests "$work/icewall.wrk") ))
    reference_ns=$(( ($(cpu_ns "${servers[1]}") - before_reference) /
      $(requests "$work/reference.wrk") ))
    ratio=$(echo "scale=3; $reference_ns / $icewall_ns" | bc)
    ratios+=("$ratio")
    printf '  %s round %d: icewall %d req/s, %d ns a request; reference %d req/s, %d ns; ratio %s\n' \
      "${READ_NAMES[$index]}" "$round" \
      "$(( $(requests "$work/icewall.wrk") / seconds ))" "$icewall_ns" \
      "$(( $(requests "$work/reference.wrk") / seconds ))" "$reference_ns" "$ratio"
  done
  printf '%s: median ratio %s over %d rounds\n' "${READ_NAMES[$index]}" \
    "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')" \
    "$rounds"
done
