//! Removing jobs in cluster mode: a delete or a cancel from any node (a finished job, or
//! a queued one cancelled; a running one is left alone), and what removed jobs had
//! stored.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::reads::NOT_EXPIRED;
use super::unavailable;
use crate::jobs::service::{DeleteError, Removable, Removed};
use crate::jobs::{JobId, Unavailable};

/// Deletes a finished job or cancels a queued one, as far as `what` allows; a running
/// job is left alone. A job past its TTL (`ttl_ms`) is unknown, as reads answer, and left
/// to the sweeper.
pub(super) async fn remove(
    db: Pool,
    id: JobId,
    what: Removable,
    ttl_ms: f64,
) -> Result<Removed, DeleteError> {
    let states: &[&str] = match what {
        Removable::FinishedOrQueued => &["queued", "done", "failed"],
        Removable::QueuedOnly => &["queued"],
    };
    let mut client = db.get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
    let removed = transaction
        .query_opt(
            &format!(
                "DELETE FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED} AND state = ANY($3)
                 RETURNING state"
            ),
            &[&id.uuid(), &ttl_ms, &states],
        )
        .await
        .map_err(unavailable)?;
    if let Some(row) = removed {
        let removed = match row.get::<_, &str>(0) {
            "queued" => Removed::Cancelled,
            _ => Removed::Deleted,
        };
        remove_stored(&transaction, &[id.uuid()]).await?;
        transaction.commit().await.map_err(unavailable)?;
        return Ok(removed);
    }
    let left = transaction
        .query_opt(
            &format!("SELECT state FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED}"),
            &[&id.uuid(), &ttl_ms],
        )
        .await
        .map_err(unavailable)?;
    let Some(left) = left else {
        return Err(DeleteError::Unknown);
    };
    let state = match left.get::<_, &str>(0) {
        "running" => "running",
        "failed" => "failed",
        _ => "done",
    };
    Err(match what {
        Removable::FinishedOrQueued => DeleteError::InFlight(state),
        Removable::QueuedOnly => DeleteError::NotQueued(state),
    })
}

/// Removes what removed jobs had stored. A statement of its own, after the one that
/// removed their rows: it sees what a result committed while that one waited for a
/// row's lock left behind.
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
