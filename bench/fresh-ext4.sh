#!/usr/bin/env bash
# Runs bench/load.sh with the results directory on a freshly made ext4 file system
# (a loop-mounted image), so that runs compare fairly: on a reused file system, ext4
# slows inode allocation near recently deleted inodes, which an earlier run leaves.
# Needs root and a loop device. Usage: sudo bench/fresh-ext4.sh [load.sh arguments]
# FRESH_EXT4_RUN="command" runs that instead of bench/load.sh (bench/disk-floor.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
image=$(mktemp /var/tmp/icewall-bench-XXXXXX.img)
mountpoint=$(mktemp -d /tmp/icewall-bench-mnt-XXXXXX)
loop=
cleanup() {
  umount "$mountpoint" 2>/dev/null || true
  [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
  rm -rf "$mountpoint" "$image"
}
trap cleanup EXIT
truncate -s 8G "$image"
# BENCH_MKFS_OPTS="-O ^has_journal" makes it like this machine's root fs (no journal).
# shellcheck disable=SC2086
mkfs.ext4 -q -F ${BENCH_MKFS_OPTS:-} "$image"
# BENCH_LOOP_DIRECT_IO=1 opens the image with O_DIRECT: the loop device then writes
# through to the disk instead of into a second page cache of the image file, so that a
# flush of the file system inside (each fdatasync) is the disk's flush, as on a real
# block device, rather than an fsync of the whole image file and every dirty page in it.
if [ "${BENCH_LOOP_DIRECT_IO:-0}" = 1 ]; then
  loop=$(losetup --find --show --direct-io=on "$image")
  mount "$loop" "$mountpoint"
else
  mount -o loop "$image" "$mountpoint"
fi
if [ -n "${FRESH_EXT4_RUN:-}" ]; then
  BENCH_TMPDIR="$mountpoint" "$FRESH_EXT4_RUN" "$@"
else
  BENCH_TMPDIR="$mountpoint" bash bench/load.sh "$@"
fi
