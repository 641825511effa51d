//! How far the database's clock is ahead of this node's wall clock, measured when the
//! node starts and at each of its lease keeper's beats: the node makes its job ids on
//! the database's clock, so that the claimers' "oldest first" and the job list (both in
//! id order) follow the order the jobs came, not the clocks of the nodes that took them
//! (one an hour behind would have its jobs claimed before everyone else's).

use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::Object;

/// Round trips one measure takes: the shortest tells the most (as NTP's clock filter
/// keeps), since a trip held up on one leg (a busy machine, a busy database) moves the
/// middle of the trip off the moment the database read its clock.
const SAMPLES: usize = 5;

/// One round trip: when it was sent and its answer received on this node's clock, and
/// the database's clock as it answered, in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
struct Sample {
    sent_us: i64,
    database_us: i64,
    received_us: i64,
}

/// Milliseconds the database's clock is ahead of this node's (negative: behind), within
/// half the shortest of `SAMPLES` round trips of one prepared statement.
pub(super) async fn ahead_ms(client: &Object) -> Result<i64, tokio_postgres::Error> {
    // Prepared before the clock runs: a preparation is a round trip of its own, before
    // the one that reads the database's clock, and would put the middle early.
    let statement = client
        .prepare_cached("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")
        .await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let sent_us = wall_us();
        let row = client.query_one(&statement, &[]).await?;
        let received_us = wall_us();
        samples.push(Sample {
            sent_us,
            database_us: row.get(0),
            received_us,
        });
    }
    Ok(best_offset_ms(&samples))
}

/// The offset of the sample of the shortest round trip, to the nearest millisecond.
fn best_offset_ms(samples: &[Sample]) -> i64 {
    samples
        .iter()
        .min_by_key(|sample| sample.received_us - sample.sent_us)
        .map_or(0, |best| (offset_us(*best) + 500).div_euclid(1000))
}

/// The database's time against the node's at the middle of the round trip.
fn offset_us(sample: Sample) -> i64 {
    let middle = sample.sent_us + (sample.received_us - sample.sent_us) / 2;
    sample.database_us - middle
}

/// The wall clock in microseconds since the Unix epoch (negative before it).
fn wall_us() -> i64 {
    let micros =
        |duration: std::time::Duration| i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => micros(since),
        Err(before) => -micros(before.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Sample, best_offset_ms, offset_us};

    fn sample(sent_ms: i64, database_ms: i64, received_ms: i64) -> Sample {
        Sample {
            sent_us: sent_ms * 1000,
            database_us: database_ms * 1000,
            received_us: received_ms * 1000,
        }
    }

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        // An hour ahead, asked over 10 ms.
        assert_eq!(offset_us(sample(1_000, 3_601_005, 1_010)), 3_600_000_000);
        // A minute behind.
        assert_eq!(offset_us(sample(100_000, 40_002, 100_004)), -60_000_000);
    }

    #[test]
    fn the_shortest_round_trip_sets_the_offset() {
        // The database an hour ahead. The first trip was held up 40 ms on its way back,
        // the last 30 ms on its way there: their middles are 20 and 15 ms off.
        let samples = [
            sample(1_000, 3_601_001, 1_042),
            sample(1_050, 3_601_051, 1_052),
            sample(1_060, 3_601_091, 1_092),
        ];
        assert_eq!(best_offset_ms(&samples), 3_600_000);
        assert_eq!(best_offset_ms(&samples[..1]), 3_599_980);
    }

    #[test]
    fn the_offset_is_rounded_to_the_nearest_millisecond() {
        let behind_by = |us: i64| Sample {
            sent_us: 1_000_000,
            database_us: 1_000_100 - us,
            received_us: 1_000_200,
        };
        assert_eq!(best_offset_ms(&[behind_by(300)]), 0);
        assert_eq!(best_offset_ms(&[behind_by(700)]), -1);
        assert_eq!(best_offset_ms(&[behind_by(1_499)]), -1);
        assert_eq!(best_offset_ms(&[behind_by(1_501)]), -2);
    }
}
