#!/usr/bin/env bash
# Two icewall builds and the reference server side by side on the three reads of
# bench/reads.sh, each icewall run between two of the reference's (reference, A,
# reference, B, reference; then B first), with the servers pinned to CPU 1 and wrk to
# CPU 0 so that the load generator does not take the servers' core.
# Prints each figure's req/s per run, their medians and each build's ratio to the
# reference's median, the median of the ratios round by round (each run against the mean
# of the two reference runs around it, so that a slow minute slows both sides of a
# ratio), and that median over the quiet runs alone: those whose reference runs on both
# sides reached QUIET_SHARE (0.90) of the reference's best run. A run the machine turned
# busy or quiet beside is so left out, where a single reference run beside two builds'
# runs judged both by a moment only one of them shared. Each round measures every read,
# so that a quiet minute serves all three.
# The reference is sent the same request (it answers any path), so that both parse the
# same bytes.
# At the end, how quiet the machine was: the share of CPU time the hypervisor stole and
# the load average. Noise slows both sides of a ratio by the same time per request,
# which pulls the ratio towards 1: compare ratios only of quiet runs (the reference near
# its best rate, little steal).
# Usage: bench/ab-reads.sh A_BIN B_BIN [seconds per run, default 2] [rounds, default 9]
# AB_READS="overview" (names of bench/lib.sh's READ_NAMES, default all three) measures
# only those reads: more rounds of one read in the same minutes.
# Needs wrk, curl, bc and taskset, and two cores. REFERENCE_BIN as in bench/reads.sh.
# Writes only to a temporary directory; stops its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; seconds=${3:-2}; rounds=${4:-9}
# shellcheck source=bench/lib.sh
. bench/lib.sh
# The reads AB_READS names, each checked before anything is built or started: a
# misspelt name is an error, not a read left out.
if [ -n "${AB_READS:-}" ]; then
  chosen=()
  for name in $AB_READS; do
    found=
    for i in "${!READ_NAMES[@]}"; do
      if [ "${READ_NAMES[$i]}" = "$name" ]; then found=${READ_PATHS[$i]}; fi
    done
    [ -n "$found" ] || { echo "AB_READS: no read $name (one of ${READ_NAMES[*]})" >&2; exit 2; }
    chosen+=("$found")
  done
  READ_PATHS=("${chosen[@]}")
fi
reference=${REFERENCE_BIN:-./target/profiling/examples/reference}
[ -n "${REFERENCE_BIN:-}" ] || cargo build --profile profiling --quiet --example reference
work=$(mktemp -d)
pids=
trap 'kill $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start() { # bin name
  taskset -c 1 "$1" serve --bind 127.0.0.1:0 --results-dir "$work/$2/results" \
    --logs-dir "$work/$2/logs" > "$work/$2.out" 2>&1 &
  pids="$pids $!"
}
start "$A" a
start "$B" b
taskset -c 1 "$reference" 127.0.0.1:0 > "$work/reference.out" 2>&1 &
pids="$pids $!"
a=$(listening "$work/a.out"); b=$(listening "$work/b.out"); r=$(listening "$work/reference.out")
id_a=$(done_example_job "$a"); id_b=$(done_example_job "$b")
# round_ratios "RUNS" "BEFORE" "AFTER" [LEAST]: run i / the mean of the reference runs
# before and after it, in hundredths (rounded), one a line, for the runs whose two
# reference runs both reached LEAST (all by default).
round_ratios() {
  paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) \
    <(echo "$3" | tr ' ' '\n' | grep .) |
    awk -v least="${4:-0}" '$2 >= least && $3 >= least {printf "%d\n", 200 * $1 / ($2 + $3) + 0.5}'
}
hundredths() { median | awk '{printf "%.2f", $1 / 100}'; }
highest() { tr ' ' '\n' | grep . | sort -n | tail -1; }
# paired_ratio "RUNS" "BEFORE" "AFTER": the median of the ratios round by round.
paired_ratio() { round_ratios "$1" "$2" "$3" | hundredths; }
run() { wrk_rate "$work/wrk.txt" taskset -c 0 wrk -t1 -c64 -d"${seconds}s" "$1"; }
# The machine's CPU ticks since boot, all and stolen (/proc/stat's first line).
ticks() { awk '/^cpu / {for (i = 2; i <= NF; i++) all += $i; print all, $9}' /proc/stat; }
read -r all_before steal_before < <(ticks)
echo "A $A, B $B, reference $reference; wrk -t1 -c64 -d${seconds}s on CPU 0, servers on CPU 1, $rounds rounds"
# Round by round, each read in turn (reference, A, reference, B, reference in odd
# rounds; B first in even ones): a quiet minute then serves every read, not only the one
# that happened to be measured in it. Each build's run keeps the reference runs before
# and after it.
declare -A runs
for round in $(seq "$rounds"); do
  for i in "${!READ_PATHS[@]}"; do
    path=${READ_PATHS[$i]}
    # A first in odd rounds, B first in even ones: neither always comes first.
    if [ $((round % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    before=$(run "$r${path/ID/$id_a}")
    runs[r$i]="${runs[r$i]:-} $before"
    for side in $order; do
      case $side in
        a) rate=$(run "$a${path/ID/$id_a}") ;;
        b) rate=$(run "$b${path/ID/$id_b}") ;;
      esac
      after=$(run "$r${path/ID/$id_a}")
      runs[r$i]="${runs[r$i]} $after"
      runs[$side$i]="${runs[$side$i]:-} $rate"
      runs[before_$side$i]="${runs[before_$side$i]:-} $before"
      runs[after_$side$i]="${runs[after_$side$i]:-} $after"
      before=$after
    done
  done
done
# quiet_ratio "RUNS" "BEFORE" "AFTER" BEST: that median over the quiet runs only, those
# whose reference runs on both sides reached QUIET_SHARE (0.90) of the reference's BEST
# run: noise pulls a ratio towards 1, so these are the runs whose ratio it moved least.
# Prints the ratio, how many runs were quiet ("none" when no run was) and each quiet
# run's ratio, so that the quiet runs of several invocations can be pooled.
quiet_ratio() {
  local least ratios count
  least=$(echo "${QUIET_SHARE:-0.90} * $4" | bc)
  ratios=$(round_ratios "$1" "$2" "$3" "$least")
  count=$(echo "$ratios" | grep -c . || true)
  if [ "$count" = 0 ]; then echo "none"; return; fi
  echo "$(echo "$ratios" | hundredths) over $count ($(echo "$ratios" |
    awk '{printf "%s%.2f", sep, $1 / 100; sep = " "}'))"
}
for i in "${!READ_PATHS[@]}"; do
  runs_r=${runs[r$i]}
  mr=$(echo "$runs_r" | median)
  best=$(echo "$runs_r" | highest)
  echo "${READ_PATHS[$i]}"
  for side in a b; do
    runs_side=${runs[$side$i]}; before=${runs[before_$side$i]}; after=${runs[after_$side$i]}
    m=$(echo "$runs_side" | median)
    echo "  ${side^^}:$runs_side  median $m, $(echo "scale=2; $m / $mr" | bc) of the reference;" \
      "round by round, median $(paired_ratio "$runs_side" "$before" "$after");" \
      "quiet runs $(quiet_ratio "$runs_side" "$before" "$after" "$best")"
  done
  echo "  reference:$runs_r  median $mr, best $best"
done
read -r all_after steal_after < <(ticks)
echo "machine: $(echo "scale=1; 100 * ($steal_after - $steal_before) / ($all_after - $all_before)" | bc)% of CPU time stolen by the hypervisor; load average $(cut -d' ' -f1-3 /proc/loadavg)"
