#!/usr/bin/env bash
# Two icewall builds side by side on the three reads of bench/reads.sh: req/s and the
# server's CPU time per request (user + system of the whole process, from /proc, over a
# wrk run, divided by its requests), A and B alternating for `rounds`. CPU per request
# moves less than req/s on a loaded machine, where other processes take the cores. A
# diagnostic of two builds, without the reference: the figures beside their yardstick
# are reads.sh's and ab-reads.sh's.
# Usage: bench/cpu-per-request.sh A_BIN B_BIN [seconds, default 3] [rounds, default 3]
# Needs wrk, curl and bc; starts and stops its own two servers, writes only to a temporary
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; d=${3:-3}; rounds=${4:-3}
work=$(mktemp -d)
pids=
trap 'kill $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh
start() { "$1" serve --bind 127.0.0.1:0 --results-dir $work/$2/results --logs-dir $work/$2/logs > $work/$2.out 2>&1 & pids="$pids $!"; echo $! > $work/$2.pid; }
start $A a; start $B b
a=$(listening $work/a.out); b=$(listening $work/b.out)
ida=$(done_example_job $a); idb=$(done_example_job $b)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
run() { # pid url -> "req/s cpu_us_per_req"; fails with the run (called as `$(run ...)`,
  # without `set -e`)
  t0=$(ticks $1); r=$(wrk_rate $work/w.txt wrk -t1 -c64 -d${d}s "$2") || return 1; t1=$(ticks $1)
  n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' $work/w.txt)
  [ -n "$n" ] || return 1
  echo "$r/$(echo "scale=2; ($t1-$t0)*1000000/$hz/$n" | bc)"; }
for path in "${READ_PATHS[@]}"; do
  ra=; rb=
  for _ in $(seq $rounds); do
    ra="$ra $(run $(cat $work/a.pid) $a${path/ID/$ida})"; rb="$rb $(run $(cat $work/b.pid) $b${path/ID/$idb})"
  done
  echo "$path  (req/s / server CPU us per request)  A:$ra  B:$rb"
done
