//! Removing jobs in cluster mode: a delete from any node (a finished job, or a queued
//! one cancelled; a running one is left alone), and what removed jobs had stored.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::reads::NOT_EXPIRED;
use super::unavailable;
use crate::jobs::service::{DeleteError, Removed};
use crate::jobs::{JobId, Unavailable};

/// Deletes a finished job or cancels a queued one; a running job is left alone. A job
/// past its TTL (`ttl_ms`) is unknown, as reads answer, and left to the sweeper.
pub(super) async fn delete(db: Pool, id: JobId, ttl_ms: f64) -> Result<Removed, DeleteError> {
    let mut client = db.get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
    let removed = transaction
        .query_opt(
            &format!(
                "DELETE FROM icewall_jobs WHERE id = $1 AND state <> 'running' AND {NOT_EXPIRED}
                 RETURNING state"
            ),
            &[&id.uuid(), &ttl_ms],
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
    let running = transaction
        .query_opt(
            &format!("SELECT 1 FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED}"),
            &[&id.uuid(), &ttl_ms],
        )
        .await
        .map_err(unavailable)?;
    Err(match running {
        Some(_) => DeleteError::InFlight("running"),
        None => DeleteError::Unknown,
    })
}

/// Cancels a queued job; a running or finished one is left as it is, and one past its
/// TTL (`ttl_ms`) is unknown.
pub(super) async fn cancel_queued(db: Pool, id: JobId, ttl_ms: f64) -> Result<(), DeleteError> {
    let mut client = db.get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
    let cancelled = transaction
        .query_opt(
            "DELETE FROM icewall_jobs WHERE id = $1 AND state = 'queued' RETURNING 1",
            &[&id.uuid()],
        )
        .await
        .map_err(unavailable)?;
    if cancelled.is_some() {
        remove_stored(&transaction, &[id.uuid()]).await?;
        transaction.commit().await.map_err(unavailable)?;
        return Ok(());
    }
    let state = transaction
        .query_opt(
            &format!("SELECT state FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED}"),
            &[&id.uuid(), &ttl_ms],
        )
        .await
        .map_err(unavailable)?;
    Err(match state.as_ref().map(|row| row.get::<_, &str>(0)) {
        None => DeleteError::Unknown,
        Some("running") => DeleteError::NotQueued("running"),
        Some("failed") => DeleteError::NotQueued("failed"),
        Some(_) => DeleteError::NotQueued("done"),
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
