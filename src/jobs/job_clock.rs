//! The clock of a node's job records and of `--result-ttl`: the wall clock as it read
//! when the server started, moved on by the monotonic clock since. A step of the wall
//! clock while the server runs (NTP setting it right after a boot in 1970, `date -s`)
//! neither ages a result at once nor keeps it longer: its age is the time that passed.
//! A time is shown as the wall clock read it then (as the log and the job's id have
//! it): the steps are kept, each with the time of the job clock it was seen at.

use std::num::NonZeroU64;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rustix::time::{ClockId, clock_gettime};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// The least step of the wall clock that is followed: NTP slews an offset under 128 ms
/// rather than stepping, and a smaller threshold would let the time between two reads
/// of the clocks count as a step now and then.
const LEAST_STEP_NS: i64 = 100_000_000;

/// The steps kept; beyond them the oldest goes (its times are then shown with the
/// offset of the step after it).
const MOST_STEPS: usize = 1024;

static CLOCK: LazyLock<JobClock> = LazyLock::new(|| {
    // The monotonic clock first: the job clock then runs a hair ahead of the wall
    // clock rather than behind it, so that a job never starts before its id's time.
    let monotonic_ns = monotonic_ns();
    JobClock::start(wall_ns(), monotonic_ns)
});

/// How far the wall clock is from the job clock, from which time of the job clock on.
static STEPS: Mutex<Steps> = Mutex::new(Steps(Vec::new()));

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

/// Milliseconds since the Unix epoch on the job clock, a step of the wall clock since
/// the last look noted first (so that this time is shown with it).
pub fn now_ms() -> u64 {
    now_ns() / NANOS_PER_MILLI
}

/// `now_ms` as a `NonZeroU64`, as the registry keeps its times.
pub fn now_stamp() -> Option<NonZeroU64> {
    NonZeroU64::new(now_ms())
}

/// `now_ms` as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(now_ns())
}

fn now_ns() -> u64 {
    let now = CLOCK.at(monotonic_ns());
    let measured = i128::from(wall_ns()) - i128::from(now);
    STEPS
        .lock()
        .follow(now, i64::try_from(measured).unwrap_or(i64::MAX));
    now
}

/// `now_ms` up to a kernel tick behind, for a check made on every read (it notes no
/// step: it shows no time).
pub fn coarse_now_ms() -> u64 {
    let coarse_ns = crate::coarse_clock::monotonic_millis().saturating_mul(NANOS_PER_MILLI);
    CLOCK.at(coarse_ns) / NANOS_PER_MILLI
}

/// How far the wall clock is from the job clock now (nanoseconds), as last seen.
pub fn current_offset() -> i64 {
    STEPS.lock().current()
}

/// The steps of the wall clock seen so far, read once to show a page of times.
pub fn steps() -> Steps {
    STEPS.lock().clone()
}

/// How far the wall clock was from the job clock (nanoseconds), from which time of the
/// job clock (nanoseconds) on; none yet: no step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steps(Vec<(u64, i64)>);

impl Steps {
    /// Notes `measured` at `now` if it is a step from the last offset.
    fn follow(&mut self, now: u64, measured: i64) {
        if self.offset_at(now).abs_diff(measured) < LEAST_STEP_NS.unsigned_abs() {
            return;
        }
        if self.0.len() == MOST_STEPS {
            self.0.remove(0);
        }
        // From the start of its millisecond: the times noted after it, to the
        // millisecond, are the clock's after the step.
        let from = now - now % NANOS_PER_MILLI;
        self.0.push((from, measured));
    }

    /// The offset in force at `time` of the job clock (nanoseconds).
    fn offset_at(&self, time: u64) -> i64 {
        let after = self.0.partition_point(|&(from, _)| from <= time);
        after.checked_sub(1).map_or(0, |at| self.0[at].1)
    }

    /// The offset in force now.
    pub fn current(&self) -> i64 {
        self.0.last().map_or(0, |&(_, offset)| offset)
    }

    /// A time of the job clock (milliseconds) as the wall clock read it then; one
    /// before 1970 is `None`, as a time unknown.
    pub fn shown(&self, job_clock_ms: u64) -> Option<u64> {
        let offset = self.offset_at(job_clock_ms.saturating_mul(NANOS_PER_MILLI));
        let offset_ms = i128::from(offset).div_euclid(i128::from(NANOS_PER_MILLI));
        let wall = i128::from(job_clock_ms) + offset_ms;
        u64::try_from(wall).ok().filter(|&ms| ms > 0)
    }

    /// A time of the job clock on the wall clock with `offset` (nanoseconds), for a
    /// file's modification time.
    pub fn on_wall_time(time: SystemTime, offset: i64) -> SystemTime {
        let ns = time.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i128::try_from(since.as_nanos()).unwrap_or(i128::MAX)
        });
        let wall = u64::try_from(ns.saturating_add(i128::from(offset))).unwrap_or(0);
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

    fn ns(ms: u64) -> i64 {
        i64::try_from(ms * MS).unwrap()
    }

    #[test]
    fn the_job_clock_moves_with_the_monotonic_clock_whatever_the_wall_clock_does() {
        let started = JobClock::start(1_800_000_000_000 * MS, 5_000 * MS);
        assert_eq!(started.at(5_000 * MS), 1_800_000_000_000 * MS);
        assert_eq!(started.at(65_000 * MS), 1_800_000_060_000 * MS);
    }

    #[test]
    fn a_time_is_shown_as_the_wall_clock_read_it_then() {
        let mut steps = Steps::default();
        let minute_in = 1_800_000_060_000;
        assert_eq!(steps.shown(minute_in), Some(minute_in));
        // Stepped a day ahead two minutes in: what came before is shown as it was, what
        // came after a day on.
        steps.follow((minute_in + 60_000) * MS, ns(DAY_MS));
        assert_eq!(steps.shown(minute_in), Some(minute_in));
        assert_eq!(
            steps.shown(minute_in + 60_000),
            Some(minute_in + 60_000 + DAY_MS)
        );
        assert_eq!(steps.current(), ns(DAY_MS));
        // Set back by an hour later on.
        steps.follow((minute_in + 120_000) * MS, ns(DAY_MS - 3_600_000));
        assert_eq!(
            steps.shown(minute_in + 180_000),
            Some(minute_in + 180_000 + DAY_MS - 3_600_000)
        );
        assert_eq!(
            steps.shown(minute_in + 90_000),
            Some(minute_in + 90_000 + DAY_MS)
        );
    }

    #[test]
    fn the_offsets_follow_steps_not_the_jitter_of_reading_two_clocks() {
        let mut steps = Steps::default();
        steps.follow(1_000 * MS, 700_000);
        steps.follow(2_000 * MS, -900_000);
        assert_eq!(steps, Steps::default());
        steps.follow(3_000 * MS + 5, 734_000_000);
        steps.follow(4_000 * MS, 734_600_000);
        assert_eq!(steps.0, vec![(3_000 * MS, 734_000_000)]);
        assert_eq!(steps.shown(3_000), Some(3_734));
        assert_eq!(steps.shown(5_000), Some(5_734));
    }

    #[test]
    fn a_time_shown_before_1970_is_unknown() {
        let mut steps = Steps::default();
        steps.follow(0, -ns(10 * DAY_MS));
        assert_eq!(steps.shown(DAY_MS), None);
        let a_day_in = UNIX_EPOCH + Duration::from_millis(DAY_MS);
        assert_eq!(Steps::on_wall_time(a_day_in, steps.current()), UNIX_EPOCH);
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
