//! Clocks read to the kernel's tick (a few milliseconds) for a fraction of a precise
//! read's cost: for what is measured in tenths of a second or more, on paths every
//! request takes.

use rustix::time::{ClockId, clock_gettime};

/// Milliseconds since the Unix epoch, up to a tick behind the precise time.
pub fn unix_millis() -> u64 {
    millis(ClockId::RealtimeCoarse)
}

/// Milliseconds on a clock that never goes back (since an unspecified start), up to a
/// tick behind.
pub fn monotonic_millis() -> u64 {
    millis(ClockId::MonotonicCoarse)
}

fn millis(clock: ClockId) -> u64 {
    let now = clock_gettime(clock);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec / 1_000_000).unwrap_or(0);
    seconds.saturating_mul(1000).saturating_add(millis)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn the_coarse_clocks_are_within_a_tick_of_the_precise_ones() {
        let precise = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_millis();
        let before = precise(SystemTime::now());
        let coarse = u128::from(unix_millis());
        let after = precise(SystemTime::now());
        // A tick is 1-10 ms (CONFIG_HZ 1000 to 100); a slow machine adds its own delay.
        assert!(
            before.saturating_sub(50) <= coarse && coarse <= after,
            "{before} {coarse} {after}"
        );
        let start = monotonic_millis();
        std::thread::sleep(Duration::from_millis(30));
        let waited = monotonic_millis() - start;
        assert!((15..=1000).contains(&waited), "{waited} ms");
    }
}
