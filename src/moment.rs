//! Precise reads of the monotonic clock as nanoseconds: a request's start and end, whose
//! difference times it and whose end stamps its log line, in integer arithmetic where
//! `std::time::Instant`'s subtraction normalises a timespec (some 90 instructions).

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// A moment on the monotonic clock (the one `Instant` reads), in nanoseconds since an
/// unspecified start: never earlier than a moment read before it on any thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    pub fn now() -> Moment {
        let now = clock_gettime(ClockId::Monotonic);
        // The clock counts from boot: its seconds fit a u64 of nanoseconds for 584 years.
        let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
        Moment(seconds.wrapping_mul(1_000_000_000).wrapping_add(nanos))
    }

    /// The time from `earlier` to this moment; zero if `earlier` is later.
    pub fn since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier).unwrap_or(0))
    }

    /// Nanoseconds from `earlier` to this moment, if `earlier` is not later.
    pub fn nanos_since(self, earlier: Moment) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// This moment `duration` later (saturating).
    pub fn after(self, duration: Duration) -> Moment {
        Moment(self.0.saturating_add(nanos(duration)))
    }

    /// This moment `duration` earlier (saturating at the clock's start): for tests of
    /// what was stamped in the past.
    #[cfg(test)]
    pub fn before(self, duration: Duration) -> Moment {
        Moment(self.0.saturating_sub(nanos(duration)))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn moments_time_what_instants_time() {
        let (instant, moment) = (Instant::now(), Moment::now());
        std::thread::sleep(Duration::from_millis(20));
        let (by_moment, by_instant) = (Moment::now().since(moment), instant.elapsed());
        assert!(by_moment >= Duration::from_millis(20), "{by_moment:?}");
        let apart = by_instant.abs_diff(by_moment);
        assert!(
            apart < Duration::from_millis(5),
            "{by_instant:?} {by_moment:?}"
        );
    }

    #[test]
    fn a_later_moment_is_since_an_earlier_one_and_not_the_other_way() {
        let earlier = Moment::now();
        let later = earlier.after(Duration::from_micros(1500));
        assert_eq!(later.since(earlier), Duration::from_micros(1500));
        assert_eq!(later.nanos_since(earlier), Some(1_500_000));
        assert_eq!(earlier.since(later), Duration::ZERO);
        assert_eq!(earlier.nanos_since(later), None);
        assert_eq!(later.before(Duration::from_micros(1500)), earlier);
        assert!(Moment::now() >= earlier);
    }
}
