//! The time a log line is stamped with: the wall clock read for it, or, for a line
//! logged within [`stamped_at`], the moment of a monotonic clock read just made (a
//! request's end, already read to time it), so that every request reads the clock once
//! fewer.

use std::cell::Cell;
use std::time::Duration;

use crate::moment::Moment;

/// How long a thread uses one pairing of the monotonic clock with the wall clock before
/// pairing them again: a wall clock set meanwhile shows in its lines this much later at
/// most, and the clocks' rates (which NTP may pull apart by 500 ppm) part by half a
/// millisecond at most over it.
const PAIRING_LIFETIME: Duration = Duration::from_secs(1);

thread_local! {
    /// The stamp of the line being logged on this thread, within `stamped_at`.
    static STAMP: Cell<Option<Moment>> = const { Cell::new(None) };
    static PAIRING: Cell<Option<Pairing>> = const { Cell::new(None) };
}

/// A monotonic read and the wall clock's time since the epoch at that moment (in
/// nanoseconds), used for the stamps until `until`.
#[derive(Clone, Copy)]
struct Pairing {
    moment: Moment,
    wall_nanos: u64,
    until: Moment,
}

/// Runs `log`, which logs a line on this thread (through a drain that formats it there,
/// as the request lines' loggers do), with that line stamped `at`: a monotonic read made
/// just before. A line formatted on another thread reads the wall clock there.
pub fn stamped_at<R>(at: Moment, log: impl FnOnce() -> R) -> R {
    // Cleared however `log` ends, so that no later line takes a stamp not its own.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            STAMP.set(None);
        }
    }
    STAMP.set(Some(at));
    let _clear = Clear;
    log()
}

/// The time since the Unix epoch to stamp a line with: its stamp (see [`stamped_at`])
/// on the wall clock, or the wall clock now.
pub fn now() -> Duration {
    match STAMP.get() {
        Some(at) => Duration::from_nanos(wall_nanos_at(at)),
        None => since_epoch(),
    }
}

/// The wall clock's time at `at`, a monotonic read, in nanoseconds since the epoch,
/// from this thread's pairing of the two clocks: a comparison and an addition, where a
/// read of the wall clock costs as much as the rest of a line's time.
fn wall_nanos_at(at: Moment) -> u64 {
    let pairing = match PAIRING.get() {
        Some(pairing) if pairing.moment <= at && at < pairing.until => pairing,
        // Paired anew: each thread's first line, then a line a `PAIRING_LIFETIME` after
        // the pairing, or one stamped before it (as the line that pairs them is).
        _ => {
            let moment = Moment::now();
            let pairing = Pairing {
                moment,
                wall_nanos: u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX),
                until: moment.after(PAIRING_LIFETIME),
            };
            PAIRING.set(Some(pairing));
            pairing
        }
    };
    pairing.wall_nanos_at(at)
}

impl Pairing {
    /// The wall clock's nanoseconds at `at`, before or after this pairing's moment.
    fn wall_nanos_at(&self, at: Moment) -> u64 {
        match at.nanos_since(self.moment) {
            Some(after) => self.wall_nanos.saturating_add(after),
            None => (self.wall_nanos).saturating_sub(self.moment.nanos_since(at).unwrap_or(0)),
        }
    }
}

/// The wall clock's time since the Unix epoch, as the kernel gives it: `SystemTime`'s
/// own read, then `duration_since`'s checks and the split into seconds and micros, cost
/// a log line as much again. A clock before 1970 reads as the epoch.
fn since_epoch() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    match (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
        (Ok(seconds), Ok(nanos)) => Duration::new(seconds, nanos),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    fn wall_clock() -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
    }

    #[test]
    fn an_unstamped_line_reads_the_wall_clock() {
        let before = wall_clock();
        let read = now();
        let after = wall_clock();
        assert!(
            before <= read && read <= after,
            "{before:?} {read:?} {after:?}"
        );
    }

    #[test]
    fn a_stamped_line_has_its_stamp_on_the_wall_clock_and_only_it() {
        for seconds_ago in [0, 3, 30] {
            let at = Moment::now().before(Duration::from_secs(seconds_ago));
            let before = wall_clock();
            let read = stamped_at(at, now);
            let after = wall_clock();
            let ago = Duration::from_secs(seconds_ago);
            // Within the reads' own time, and the clocks' drift over a second.
            let slack = Duration::from_millis(5);
            assert!(
                before - ago - slack <= read && read <= after - ago + slack,
                "{seconds_ago} s ago: {before:?} {read:?} {after:?}"
            );
            let later = now();
            assert!(later >= after, "the stamp outlived its line: {later:?}");
        }
    }

    #[test]
    fn a_stamp_is_cleared_when_the_line_panics() {
        let at = Moment::now().before(Duration::from_secs(60));
        let unwound = std::panic::catch_unwind(|| stamped_at(at, || panic!("while logging")));
        assert!(unwound.is_err());
        let before = wall_clock();
        assert!(now() >= before);
    }

    #[test]
    fn lines_stamped_in_order_are_in_order_across_pairings() {
        let start = Moment::now();
        let mut last = Duration::ZERO;
        for tenths in 0..30 {
            let at = start.after(Duration::from_millis(tenths * 100));
            let read = stamped_at(at, now);
            assert!(read >= last, "{read:?} after {last:?}");
            last = read;
        }
    }
}
