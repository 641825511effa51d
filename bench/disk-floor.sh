#!/usr/bin/env bash
# The disk yardstick: examples/disk_floor.rs, the file store's durable work per job with
# no server around it (journal lines and one fdatasync per batch, a result per job written
# under its name, one syncfs per batch; with DISK_FLOOR_UNNAMED=1 as earlier versions of
# the store did: each result an unnamed file, linked after the syncfs), on a freshly made journaled ext4
# (bench/fresh-ext4.sh) and on tmpfs, alternating round by round. Prints each run, then
# the medians: jobs/s and the whole machine's CPU time per job on each, their ratio, and
# what ext4 adds per job; and the medians of each run's journal fdatasync p50 and p99
# (a durable accept waits for one at least: no server's POST p99 on that disk goes below
# it). That addition bounds the ratio any server storing results this
# way can reach: a server spending C per job on tmpfs reaches at most C / (C + added).
# Usage: sudo bench/disk-floor.sh [rounds (3)] [jobs (100000)] [batch (64)] [results per
# sync (the batch)] [pipelined (0)]: a batch is the journal lines of one fdatasync; with
# pipelined 1 the results are synced on a thread of their own, as the file store does,
# so that the journal's syncs wait beside the results' (the latency floor of a POST).
# Needs root and a loop device (for the ext4), like fresh-ext4.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; jobs=${2:-100000}; batch=${3:-64}; per_sync=${4:-$batch}; pipelined=${5:-0}
floor=${DISK_FLOOR_BIN:-./target/profiling/examples/disk_floor}
[ -n "${DISK_FLOOR_BIN:-}" ] || cargo build --profile profiling --quiet --example disk_floor
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=$(mktemp -d)
shm=
trap 'rm -rf "$work" ${shm:+"$shm"}' EXIT
cat > "$work/run.sh" <<RUN
#!/usr/bin/env bash
exec "$floor" "\$BENCH_TMPDIR/floor" "$jobs" "$batch" 1145 "$per_sync" "$pipelined" ${DISK_FLOOR_UNNAMED:+unnamed}
RUN
chmod +x "$work/run.sh"
field() { sed -n "s/^$1 //p" "$2"; }
ext4_rates=; ext4_cpu=; tmpfs_rates=; tmpfs_cpu=; ext4_p50=; ext4_p99=
echo "disk_floor $jobs jobs, batches of $batch, $per_sync results per sync, pipelined $pipelined, $rounds rounds: fresh ext4, then tmpfs"
for round in $(seq "$rounds"); do
  FRESH_EXT4_RUN="$work/run.sh" bash bench/fresh-ext4.sh > "$work/ext4.txt"
  shm=$(mktemp -d -p /dev/shm)
  BENCH_TMPDIR=$shm "$work/run.sh" > "$work/tmpfs.txt"
  rm -rf "$shm"
  shm=
  ext4_rates="$ext4_rates $(field jobs_per_second "$work/ext4.txt")"
  ext4_cpu="$ext4_cpu $(field machine_cpu_us_per_job "$work/ext4.txt")"
  tmpfs_rates="$tmpfs_rates $(field jobs_per_second "$work/tmpfs.txt")"
  tmpfs_cpu="$tmpfs_cpu $(field machine_cpu_us_per_job "$work/tmpfs.txt")"
  ext4_p50="$ext4_p50 $(field journal_sync_ms_p50 "$work/ext4.txt")"
  ext4_p99="$ext4_p99 $(field journal_sync_ms_p99 "$work/ext4.txt")"
  echo "round $round: ext4 $(field jobs_per_second "$work/ext4.txt") jobs/s," \
    "$(field machine_cpu_us_per_job "$work/ext4.txt") us CPU/job," \
    "journal fdatasync p50 $(field journal_sync_ms_p50 "$work/ext4.txt")" \
    "p99 $(field journal_sync_ms_p99 "$work/ext4.txt") max $(field journal_sync_ms_max "$work/ext4.txt") ms," \
    "results syncfs p50 $(field results_sync_ms_p50 "$work/ext4.txt")" \
    "p99 $(field results_sync_ms_p99 "$work/ext4.txt") ms;" \
    "tmpfs $(field jobs_per_second "$work/tmpfs.txt") jobs/s," \
    "$(field machine_cpu_us_per_job "$work/tmpfs.txt") us CPU/job"
done
# CPU times have a decimal: the medians of tenths.
tenths() { tr ' ' '\n' | grep . | awk '{printf "%d ", $1 * 10}'; }
ext4_rate=$(echo "$ext4_rates" | median); tmpfs_rate=$(echo "$tmpfs_rates" | median)
ext4_us=$(echo "$ext4_cpu" | tenths | median); tmpfs_us=$(echo "$tmpfs_cpu" | tenths | median)
echo "median jobs/s: ext4 $ext4_rate, tmpfs $tmpfs_rate, ratio $(echo "scale=2; $ext4_rate / $tmpfs_rate" | bc)"
echo "median machine CPU per job: ext4 $(echo "scale=1; $ext4_us / 10" | bc) us," \
  "tmpfs $(echo "scale=1; $tmpfs_us / 10" | bc) us; ext4 adds $(echo "scale=1; ($ext4_us - $tmpfs_us) / 10" | bc) us"
hundredths() { tr ' ' '\n' | grep . | awk '{printf "%d ", $1 * 100}'; }
echo "median of the ext4 runs' journal fdatasync: p50 $(echo "scale=2; $(echo "$ext4_p50" | hundredths | median) / 100" | bc) ms," \
  "p99 $(echo "scale=2; $(echo "$ext4_p99" | hundredths | median) / 100" | bc) ms"
