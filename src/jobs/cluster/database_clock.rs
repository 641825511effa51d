//! How far the database's clock is ahead of this node's wall clock, measured when the
//! node starts and at each of its lease keeper's beats: the node makes its job ids on
//! the database's clock, so that the claimers' "oldest first" and the job list (both in
//! id order) follow the order the jobs came, not the clocks of the nodes that took them
//! (one an hour behind would have its jobs claimed before everyone else's).

use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::Object;

/// Milliseconds the database's clock is ahead of this node's (negative: behind), within
/// half the round trip of one statement.
pub(super) async fn ahead_ms(client: &Object) -> Result<i64, tokio_postgres::Error> {
    let sent = wall_ms();
    let row = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
            &[],
        )
        .await?;
    let received = wall_ms();
    let database: i64 = row.get(0);
    Ok(offset(sent, database, received))
}

/// The database's time against the node's at the middle of the round trip.
fn offset(sent_ms: i64, database_ms: i64, received_ms: i64) -> i64 {
    let middle = sent_ms + (received_ms - sent_ms) / 2;
    database_ms - middle
}

/// The wall clock in milliseconds since the Unix epoch (negative before it).
fn wall_ms() -> i64 {
    let millis =
        |duration: std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => millis(since),
        Err(before) => -millis(before.duration()),
    }
}

#[cfg(test)]
mod tests {
    use super::offset;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        // An hour ahead, asked over 10 ms.
        assert_eq!(offset(1_000, 3_601_005, 1_010), 3_600_000);
        // A minute behind.
        assert_eq!(offset(100_000, 40_002, 100_004), -60_000);
    }
}
