//! The clock of a node's job records and of `--result-ttl`: the wall clock as it read
//! when the server started, moved on by the monotonic clock since. A step of the wall
//! clock while the server runs (NTP setting it right after a boot in 1970, `date -s`)
//! neither ages a result at once nor keeps it longer: its age is the time that passed.
//! Times are shown on the wall clock as it reads when they are shown (`WallOffset`).

use std::num::NonZeroU64;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::time::{ClockId, clock_gettime};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// The least step of the wall clock that the times shown follow: NTP slews an offset
/// under 128 ms rather than stepping, and a smaller threshold would let the time
/// between two reads of the clocks move the times shown by a millisecond now and then.
const LEAST_STEP_NS: i64 = 100_000_000;

static CLOCK: LazyLock<JobClock> = LazyLock::new(|| {
    // The monotonic clock first: the job clock then runs a hair ahead of the wall
    // clock rather than behind it, so that a job never starts before its id's time.
    let monotonic_ns = monotonic_ns();
    JobClock::start(wall_ns(), monotonic_ns)
});

/// How far the wall clock was from the job clock when it last stepped, in nanoseconds.
static WALL_OFFSET_NS: AtomicI64 = AtomicI64::new(0);

/// Where the clock started: the wall clock and the monotonic clock read together.
#[derive(Clone, Copy, Debug)]
struct JobClock {
    wall_ns: u64,
    monotonic_ns: u64,
}

impl JobClock {
    fn start(wall_ns: u64, monotonic_ns: u64) -> JobClock {
        JobClock {
            wall_ns,
            monotonic_ns,
        }
    }

    /// Nanoseconds since the Unix epoch on this clock, the monotonic clock reading
    /// `monotonic_ns`.
    fn at(&self, monotonic_ns: u64) -> u64 {
        (self.wall_ns).saturating_add(monotonic_ns.saturating_sub(self.monotonic_ns))
    }
}

/// Reads the clock now, so that it starts with the server rather than at its first job.
pub fn start() {
    LazyLock::force(&CLOCK);
}

/// Milliseconds since the Unix epoch on the job clock.
pub fn now_ms() -> u64 {
    CLOCK.at(monotonic_ns()) / NANOS_PER_MILLI
}

/// `now_ms` as a `NonZeroU64`, as the registry keeps its times.
pub fn now_stamp() -> Option<NonZeroU64> {
    NonZeroU64::new(now_ms())
}

/// The job clock now, as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(CLOCK.at(monotonic_ns()))
}

/// `now_ms` up to a kernel tick behind, for a check made on every read.
pub fn coarse_now_ms() -> u64 {
    let coarse_ns = crate::coarse_clock::monotonic_millis().saturating_mul(NANOS_PER_MILLI);
    CLOCK.at(coarse_ns) / NANOS_PER_MILLI
}

/// How far the wall clock is from the job clock, read once to show a page of times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallOffset(i64);

impl WallOffset {
    pub fn now() -> WallOffset {
        let measured = i128::from(wall_ns()) - i128::from(CLOCK.at(monotonic_ns()));
        let measured = i64::try_from(measured).unwrap_or(i64::MAX);
        WallOffset::following(&WALL_OFFSET_NS, measured)
    }

    /// The offset last kept in `kept`, or `measured` once it differs by a step.
    fn following(kept: &AtomicI64, measured: i64) -> WallOffset {
        let last = kept.load(Ordering::Relaxed);
        if last.abs_diff(measured) < LEAST_STEP_NS.unsigned_abs() {
            return WallOffset(last);
        }
        kept.store(measured, Ordering::Relaxed);
        WallOffset(measured)
    }

    /// A time of the job clock on the wall clock; one before 1970 is `None`, as a time
    /// unknown.
    pub fn on_wall(self, job_clock_ms: u64) -> Option<u64> {
        let offset_ms = i128::from(self.0).div_euclid(i128::from(NANOS_PER_MILLI));
        let wall = i128::from(job_clock_ms) + offset_ms;
        u64::try_from(wall).ok().filter(|&ms| ms > 0)
    }

    /// A time of the job clock on the wall clock, for a file's modification time.
    pub fn on_wall_time(self, time: SystemTime) -> SystemTime {
        let ns = time.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i128::try_from(since.as_nanos()).unwrap_or(i128::MAX)
        });
        let wall = u64::try_from(ns.saturating_add(i128::from(self.0))).unwrap_or(0);
        UNIX_EPOCH + Duration::from_nanos(wall)
    }
}

/// The wall clock in nanoseconds since the Unix epoch; one before it reads as 0.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The monotonic clock, in nanoseconds since an unspecified start.
fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;
    const MS: u64 = NANOS_PER_MILLI;

    #[test]
    fn the_job_clock_moves_with_the_monotonic_clock_whatever_the_wall_clock_does() {
        let started = JobClock::start(1_800_000_000_000 * MS, 5_000 * MS);
        assert_eq!(started.at(5_000 * MS), 1_800_000_000_000 * MS);
        assert_eq!(started.at(65_000 * MS), 1_800_000_060_000 * MS);
        // The wall clock stepped a day ahead a minute in: the job clock has seen a
        // minute pass, and its times are shown a day on.
        let kept = AtomicI64::new(0);
        let ahead = i64::try_from(DAY_MS * MS).unwrap();
        let offset = WallOffset::following(&kept, ahead);
        let minute_in = started.at(65_000 * MS) / MS;
        assert_eq!(offset.on_wall(minute_in), Some(minute_in + DAY_MS));
        // Set right from a boot at 1970: the times of the job clock's 1970 are shown as
        // they were on the right clock.
        let booted = JobClock::start(5_000 * MS, 5_000 * MS);
        let set_right = i64::try_from(1_800_000_060_000 * MS - booted.at(65_000 * MS)).unwrap();
        let offset = WallOffset::following(&kept, set_right);
        assert_eq!(
            offset.on_wall(booted.at(35_000 * MS) / MS),
            Some(1_800_000_030_000)
        );
    }

    #[test]
    fn the_times_shown_follow_steps_not_the_jitter_of_reading_two_clocks() {
        let kept = AtomicI64::new(0);
        assert_eq!(WallOffset::following(&kept, 700_000), WallOffset(0));
        assert_eq!(WallOffset::following(&kept, -900_000), WallOffset(0));
        let step = WallOffset::following(&kept, 734_000_000);
        assert_eq!(step, WallOffset(734_000_000));
        assert_eq!(WallOffset::following(&kept, 734_600_000), step);
        assert_eq!(step.on_wall(1_000), Some(1_734));
    }

    #[test]
    fn a_time_shown_before_1970_is_unknown() {
        let set_back = WallOffset(-i64::try_from(10 * DAY_MS * MS).unwrap());
        assert_eq!(set_back.on_wall(DAY_MS), None);
        let a_day_in = UNIX_EPOCH + Duration::from_millis(DAY_MS);
        assert_eq!(set_back.on_wall_time(a_day_in), UNIX_EPOCH);
    }

    #[test]
    fn the_job_clock_reads_the_wall_clock_at_first() {
        start();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let job_clock = u128::from(now_ms());
        // Apart by the steps of this machine's clock since the first test read it.
        assert!(job_clock.abs_diff(now) < 60_000, "{job_clock} {now}");
        let coarse = u128::from(coarse_now_ms());
        assert!(coarse.abs_diff(job_clock) < 1_000, "{coarse} {job_clock}");
    }
}
