#!/usr/bin/env bash
# Two icewall builds and the reference server side by side on the three reads of
# bench/reads.sh, alternating A, reference, B (then B, reference, A) run by run, with
# the servers pinned to CPU 1 and wrk to CPU 0 so that the load generator does not take
# the servers' core.
# Prints each figure's req/s per run, their medians and each build's ratio to the
# reference's median, the median of the ratios round by round (each run against the
# reference's run beside it, so that a slow minute slows both sides of a ratio), and that
# median over the quiet rounds alone (the reference within QUIET_SHARE, 0.90, of its
# best run). Each round measures every read, so that a quiet minute serves all three.
# The reference is sent the same request (it answers any path), so that both parse the
# same bytes.
# At the end, how quiet the machine was: the share of CPU time the hypervisor stole and
# the load average. Noise slows both sides of a ratio by the same time per request,
# which pulls the ratio towards 1: compare ratios only of quiet runs (the reference near
# its best rate, little steal).
# Usage: bench/ab-reads.sh A_BIN B_BIN [seconds per run, default 2] [rounds, default 9]
# Needs wrk, curl, bc and taskset, and two cores. REFERENCE_BIN as in bench/reads.sh.
# Writes only to a temporary directory; stops its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; seconds=${3:-2}; rounds=${4:-9}
reference=${REFERENCE_BIN:-./target/profiling/examples/reference}
[ -n "${REFERENCE_BIN:-}" ] || cargo build --profile profiling --quiet --example reference
work=$(mktemp -d)
pids=
trap 'kill $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh
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
# round_ratios "RUNS" "REFERENCE_RUNS" [LEAST]: run i / reference run i in hundredths
# (rounded), one a line, for the rounds whose reference run reached LEAST (all by
# default).
round_ratios() {
  paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) |
    awk -v least="${3:-0}" '$2 >= least {printf "%d\n", 100 * $1 / $2 + 0.5}'
}
hundredths() { median | awk '{printf "%.2f", $1 / 100}'; }
highest() { tr ' ' '\n' | grep . | sort -n | tail -1; }
# paired_ratio "RUNS" "REFERENCE_RUNS": the median of the ratios round by round.
paired_ratio() { round_ratios "$1" "$2" | hundredths; }
run() { wrk_rate "$work/wrk.txt" taskset -c 0 wrk -t1 -c64 -d"${seconds}s" "$1"; }
# The machine's CPU ticks since boot, all and stolen (/proc/stat's first line).
ticks() { awk '/^cpu / {for (i = 2; i <= NF; i++) all += $i; print all, $9}' /proc/stat; }
read -r all_before steal_before < <(ticks)
echo "A $A, B $B, reference $reference; wrk -t1 -c64 -d${seconds}s on CPU 0, servers on CPU 1, $rounds rounds"
# Round by round, each read in turn (A, reference, B for each in odd rounds; B,
# reference, A in even ones): a quiet minute then serves every read, not only the one
# that happened to be measured in it.
declare -A runs
for round in $(seq "$rounds"); do
  for i in "${!READ_PATHS[@]}"; do
    path=${READ_PATHS[$i]}
    # A first in odd rounds, B first in even ones: neither always follows the reference.
    if [ $((round % 2)) = 1 ]; then order="a r b"; else order="b r a"; fi
    for side in $order; do
      case $side in
        a) rate=$(run "$a${path/ID/$id_a}") ;;
        r) rate=$(run "$r${path/ID/$id_a}") ;;
        b) rate=$(run "$b${path/ID/$id_b}") ;;
      esac
      runs[$side$i]="${runs[$side$i]:-} $rate"
    done
  done
done
# quiet_ratio "RUNS" "REFERENCE_RUNS": that median over the quiet rounds only, those
# where the reference reached QUIET_SHARE (0.90) of its best run: noise pulls a ratio
# towards 1, so these are the rounds whose ratio it moved least. Prints the ratio and
# how many rounds were quiet.
quiet_ratio() {
  local least ratios
  least=$(echo "${QUIET_SHARE:-0.90} * $(echo "$2" | highest)" | bc)
  ratios=$(round_ratios "$1" "$2" "$least")
  echo "$(echo "$ratios" | hundredths) over $(echo "$ratios" | grep -c .) quiet rounds"
}
for i in "${!READ_PATHS[@]}"; do
  runs_a=${runs[a$i]}; runs_b=${runs[b$i]}; runs_r=${runs[r$i]}
  ma=$(echo "$runs_a" | median); mb=$(echo "$runs_b" | median); mr=$(echo "$runs_r" | median)
  best=$(echo "$runs_r" | highest)
  echo "${READ_PATHS[$i]}"
  echo "  A:$runs_a  median $ma, $(echo "scale=2; $ma / $mr" | bc) of the reference;" \
    "round by round, median $(paired_ratio "$runs_a" "$runs_r"); quiet rounds $(quiet_ratio "$runs_a" "$runs_r")"
  echo "  B:$runs_b  median $mb, $(echo "scale=2; $mb / $mr" | bc) of the reference;" \
    "round by round, median $(paired_ratio "$runs_b" "$runs_r"); quiet rounds $(quiet_ratio "$runs_b" "$runs_r")"
  echo "  reference:$runs_r  median $mr, best $best"
done
read -r all_after steal_after < <(ticks)
echo "machine: $(echo "scale=1; 100 * ($steal_after - $steal_before) / ($all_after - $all_before)" | bc)% of CPU time stolen by the hypervisor; load average $(cut -d' ' -f1-3 /proc/loadavg)"
