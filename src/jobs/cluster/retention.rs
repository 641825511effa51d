//! Retention in cluster mode: finished jobs past `--result-ttl`, beyond `--max-results`
//! or beyond `--max-results-bytes` are removed in bounded batches, each its own
//! transaction, by one node at a time (whichever takes the advisory lock; the others
//! skip that round). Nodes that stopped without leaving are forgotten after an hour.

use std::time::Duration;

use slog::{info, warn};

use uuid::Uuid;

use super::claim::millis;
use deadpool_postgres::Object;

use super::database::on_connection;
use super::removal::remove_stored;
use super::{ClusterJobs, unavailable};
use crate::jobs::Unavailable;

/// The advisory lock key of the sweep ("icewall" in ASCII, plus two).
const SWEEP_LOCK: i64 = 0x6963_6577_616c_6c02;

/// How often a node tries to sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Most jobs one batch removes.
const BATCH: i64 = 1000;

/// A rule's batch: it removes up to `$1` jobs and returns their ids. `$2` is the
/// rule's bound. The TTL's, then those of the count and the bytes, which rank every
/// finished job, newest first.
const TTL_RULE: &str = "DELETE FROM icewall_jobs WHERE id IN (
         SELECT id FROM icewall_jobs
         WHERE state IN ('done', 'failed')
             AND finished_at <= now() - $2::float8 * interval '1 millisecond'
         ORDER BY finished_at LIMIT $1) RETURNING id";
const RANKING_RULES: [&str; 2] = [
    "DELETE FROM icewall_jobs WHERE id IN (
         SELECT id FROM icewall_jobs WHERE state IN ('done', 'failed')
         ORDER BY finished_at DESC, id DESC OFFSET $2::float8::int8 LIMIT $1) RETURNING id",
    "DELETE FROM icewall_jobs WHERE id IN (
         SELECT id FROM (
             SELECT id, sum(result_bytes) OVER (ORDER BY finished_at DESC, id DESC) AS kept
             FROM icewall_jobs WHERE state IN ('done', 'failed')) AS newest_first
         WHERE kept > $2::float8 LIMIT $1) RETURNING id",
];

pub(super) async fn run(jobs: ClusterJobs) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        if jobs.inner.unless_leaving(every.tick()).await.is_none() {
            return;
        }
        // A lease's time at most: a backlog of batches may take a while.
        let sweeping = jobs.clone();
        let swept = on_connection(jobs.db(), jobs.inner.settings.lease, move |client| {
            Box::pin(async move { sweep(&sweeping, client).await })
        });
        match swept.await {
            Ok(0) => {}
            Ok(removed) => info!(jobs.inner.logger, "retention removed finished jobs";
                "jobs" => removed),
            Err(error) => warn!(jobs.inner.logger, "retention sweep failed"; "error" => %error),
        }
    }
}

/// Whether the finished jobs are more than `max_results`, or take more than `max_bytes`.
async fn over_count_or_bytes(
    client: &Object,
    max_results: f64,
    max_bytes: f64,
) -> Result<bool, Unavailable> {
    let row = client
        .query_one(
            "SELECT count(*)::float8 > $1 OR coalesce(sum(result_bytes), 0)::float8 > $2
             FROM icewall_jobs WHERE state IN ('done', 'failed')",
            &[&max_results, &max_bytes],
        )
        .await
        .map_err(unavailable)?;
    Ok(row.get(0))
}

/// `rule`'s batches, each its own transaction under the sweep's lock, until one comes
/// short; how many jobs they removed, or `None` if another node holds the lock.
async fn remove_batches(
    client: &mut Object,
    rule: &str,
    bound: f64,
) -> Result<Option<u64>, Unavailable> {
    let mut removed = 0;
    loop {
        let transaction = client.transaction().await.map_err(unavailable)?;
        let locked: bool = transaction
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await
            .map_err(unavailable)?
            .get(0);
        if !locked {
            return Ok(None);
        }
        let gone: Vec<Uuid> = transaction
            .query(rule, &[&BATCH, &bound])
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        remove_stored(&transaction, &gone).await?;
        transaction.commit().await.map_err(unavailable)?;
        let batch = gone.len() as u64;
        removed += batch;
        if batch < BATCH as u64 {
            return Ok(Some(removed));
        }
    }
}

/// One round: each rule's batches until a batch comes short, or another node holds
/// the lock.
async fn sweep(jobs: &ClusterJobs, client: &mut Object) -> Result<u64, Unavailable> {
    let retention = jobs.inner.retention;
    let Some(mut removed) = remove_batches(client, TTL_RULE, millis(retention.ttl)).await? else {
        return Ok(0);
    };
    // A ranking is a sort of every finished job; one sum, after the TTL's removals,
    // tells whether either bound is passed at all (most rounds, neither is).
    let (max_results, max_bytes) = (retention.max_results as f64, retention.max_bytes as f64);
    if over_count_or_bytes(client, max_results, max_bytes).await? {
        for (rule, bound) in RANKING_RULES.iter().zip([max_results, max_bytes]) {
            match remove_batches(client, rule, bound).await? {
                Some(batches) => removed += batches,
                None => return Ok(removed),
            }
        }
    }
    // A node beats every third of its own lease: one of a lease over three hours is
    // silent for more than an hour between two beats, and alive.
    client
        .execute(
            "DELETE FROM icewall_nodes WHERE heartbeat_at < now() - greatest(interval '1 hour',
                 2 * coalesce(lease_ms, $1) * interval '1 millisecond')",
            &[&millis(jobs.inner.settings.lease)],
        )
        .await
        .map_err(unavailable)?;
    Ok(removed)
}
