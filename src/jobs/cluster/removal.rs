//! Removing jobs in cluster mode: a delete or a cancel from any node (a finished job, or
//! a queued one cancelled; a running one is left alone), and what removed jobs had
//! stored.

use deadpool_postgres::Object;
use uuid::Uuid;

use super::reads::NOT_EXPIRED;
use super::unavailable;
use crate::jobs::service::{DeleteError, Removable, Removed};
use crate::jobs::{JobId, Unavailable};

/// Deletes a finished job or cancels a queued one, as far as `what` allows; a running
/// job is left alone. A job past its TTL (`ttl_ms`) is unknown, as reads answer, and left
/// to the sweeper.
pub(super) async fn remove(
    client: &mut Object,
    id: JobId,
    what: Removable,
    ttl_ms: f64,
) -> Result<Removed, DeleteError> {
    let states: &[&str] = match what {
        Removable::FinishedOrQueued => &["queued", "done", "failed"],
        Removable::QueuedOnly => &["queued"],
    };
    let transaction = client.transaction().await.map_err(unavailable)?;
    // The row locked first, then judged from what the lock found: a finish or a requeue
    // committed meanwhile is seen, and nothing changes the row before it is removed.
    // (A DELETE and a look after it would each see their own snapshot, and could
    // refuse a job as done.)
    let found = transaction
        .query_opt(
            &format!("SELECT state FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED} FOR UPDATE"),
            &[&id.uuid(), &ttl_ms],
        )
        .await
        .map_err(unavailable)?;
    let Some(found) = found else {
        return Err(DeleteError::Unknown);
    };
    let state = match found.get::<_, &str>(0) {
        "queued" => "queued",
        "running" => "running",
        "done" => "done",
        _ => "failed",
    };
    if !states.contains(&state) {
        return Err(match what {
            Removable::FinishedOrQueued => DeleteError::InFlight(state),
            Removable::QueuedOnly => DeleteError::NotQueued(state),
        });
    }
    transaction
        .execute("DELETE FROM icewall_jobs WHERE id = $1", &[&id.uuid()])
        .await
        .map_err(unavailable)?;
    remove_stored(&transaction, &[id.uuid()]).await?;
    transaction.commit().await.map_err(unavailable)?;
    Ok(if state == "queued" {
        Removed::Cancelled
    } else {
        Removed::Deleted
    })
}

/// Removes what removed jobs had stored. A statement of its own, after the one that
/// removed their rows (or locked them): it sees what a result committed while that one
/// waited for a row's lock left behind.
pub(super) async fn remove_stored(
    transaction: &deadpool_postgres::Transaction<'_>,
    ids: &[Uuid],
) -> Result<(), Unavailable> {
    transaction
        .execute(
            "WITH requests AS (DELETE FROM icewall_requests WHERE job_id = ANY($1)),
                  results AS (DELETE FROM icewall_results WHERE job_id = ANY($1))
             DELETE FROM icewall_team_logs WHERE job_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}
