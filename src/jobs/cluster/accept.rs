//! Durable accept in cluster mode, by group commit: the submissions that arrive while
//! one transaction is being committed go together in the next, so that accepting does
//! not stop at one commit per job. The batch's rows and requests are inserted by one
//! statement; an Idempotency-Key already in the table (from this node or another)
//! makes no row, and its submission replays the earlier job or is refused. The
//! statement also sends an empty notification, which the database delivers once, at
//! commit, to every listening node.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use deadpool_postgres::Client;
use slog::warn;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::database::{abandon, answered_in_time, in_time_to_send, settle, timed_out};
use super::{AcceptInProgress, ClusterJobs, unavailable};
use crate::jobs::registry::WallShape;
use crate::jobs::service::{SubmitError, Submitted};
use crate::jobs::{JobId, Unavailable};

/// One batch of accepts (see `store`). Rows without an Idempotency-Key are inserted
/// plainly: `ON CONFLICT` costs a speculative insertion per row, which only keyed
/// rows need.
const ACCEPT: &str = "WITH batch AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[],
            $5::int8[], $6::int8[], $7::bytea[])
            AS t(id, key, fingerprint, profiles, sections, num_teams, body)
    ), made_plain AS (
        INSERT INTO icewall_jobs (id, state, profiles, sections, num_teams)
        SELECT id, 'queued', profiles::int4, sections::int4, num_teams
        FROM batch WHERE key IS NULL
        RETURNING id
    ), made_keyed AS (
        INSERT INTO icewall_jobs
            (id, state, idempotency_key, request_fingerprint, profiles, sections,
             num_teams)
        SELECT id, 'queued', key, fingerprint, profiles::int4, sections::int4,
            num_teams
        FROM batch WHERE key IS NOT NULL
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
    ), made AS (
        SELECT id FROM made_plain UNION ALL SELECT id FROM made_keyed
    ), stored AS (
        INSERT INTO icewall_requests (job_id, body)
        SELECT id, body FROM batch JOIN made USING (id)
    )
    SELECT id, pg_notify('icewall_jobs', '')::text FROM made";

/// Most submissions one transaction takes.
const MAX_BATCH: usize = 512;

/// A submission waiting for its transaction.
pub(super) struct Pending {
    pub id: JobId,
    pub shape: Option<WallShape>,
    pub request: Vec<u8>,
    /// The Idempotency-Key and the fingerprint of the request it came with.
    pub key: Option<(String, String)>,
    pub answer: oneshot::Sender<Result<Submitted, SubmitError>>,
    pub arrived: Instant,
    pub _in_progress: AcceptInProgress,
}

/// Takes the submissions as they come, one transaction at a time.
pub(super) async fn run(jobs: ClusterJobs, mut queue: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        // Too late to be sent: its statement would be cancelled (or given up) before it
        // could finish, and a cancel that comes too late finds it committed.
        let timeout = jobs.inner.settings.timeout;
        let now = Instant::now();
        let (late, batch): (Vec<Pending>, Vec<Pending>) = batch
            .into_iter()
            .partition(|pending| !in_time_to_send(pending.arrived, now, timeout));
        for pending in late {
            let answer = Err(SubmitError::Database(timed_out(timeout).to_string()));
            jobs.answered(pending.arrived, &answer);
            let _ = pending.answer.send(answer);
        }
        if batch.is_empty() {
            continue;
        }
        let answers = match store(&jobs, &batch).await {
            Ok(answers) => answers,
            // Nothing of the batch was committed (or its commit was not confirmed, in
            // which case a retry with the same Idempotency-Key finds the job).
            Err(error) => batch
                .iter()
                .map(|_| Err(SubmitError::Database(error.to_string())))
                .collect(),
        };
        for (pending, answer) in batch.into_iter().zip(answers) {
            jobs.answered(pending.arrived, &answer);
            let _ = pending.answer.send(answer);
        }
    }
}

/// Commits a batch; returns each submission's answer, in order. An error means no
/// job of the batch is known to be committed; after the commit, what fails is
/// answered submission by submission. The whole of it is bounded by
/// `--database-timeout` from its oldest submission's arrival, the wait for the batch
/// before it included: each step bounded alone, a submission could wait for a
/// connection, the insert and the look for keys, one timeout each, behind a batch
/// that took as long.
async fn store(
    jobs: &ClusterJobs,
    batch: &[Pending],
) -> Result<Vec<Result<Submitted, SubmitError>>, Unavailable> {
    let timeout = jobs.inner.settings.timeout;
    let deadline = tokio::time::Instant::from_std(batch[0].arrived) + timeout;
    let client = tokio::time::timeout_at(deadline, jobs.client())
        .await
        .map_err(|_| timed_out(timeout))??;
    // A batch answered 503 must not be committed after its answer, when a client may
    // have made its job again: the insert is cancelled while there is time for the
    // database to say whether it committed, and is not sent without that time.
    let (inserted, client) = answered_in_time(client, batch[0].arrived, timeout, async |client| {
        insert(client, batch).await
    })
    .await?;
    let inserted = match inserted {
        Ok(inserted) => inserted,
        // The cancel's own error, most likely: the database says the batch is not made.
        Err(error) if client.is_none() => {
            warn!(jobs.inner.logger, "accept batch cancelled at its deadline";
                "jobs" => batch.len(), "error" => %error);
            return Err(timed_out(timeout));
        }
        Err(error) => return Err(error),
    };
    // Keys that made no row: a job has them already (committed: the insert waited for
    // any transaction that held the key).
    let taken: Vec<&str> = batch
        .iter()
        .filter(|pending| !inserted.contains(&pending.id.uuid()))
        .filter_map(|pending| pending.key.as_ref().map(|(key, _)| key.as_str()))
        .collect();
    // The insert's connection, unless it was closed for its cancel.
    let mut client = match client {
        Some(client) => Some(client),
        None => tokio::time::timeout_at(deadline, jobs.client())
            .await
            .ok()
            .and_then(Result::ok),
    };
    let holders = match &client {
        _ if taken.is_empty() => Ok(HashMap::new()),
        None => Err(timed_out(timeout)),
        Some(held) => {
            let outcome =
                tokio::time::timeout_at(deadline, key_holders(held, &taken, jobs.ttl_ms())).await;
            outcome.unwrap_or_else(|_| {
                // No key's job is known, so none is replayed, and nothing is to be marked.
                abandon(client.take().expect("the connection is still held"));
                Err(timed_out(timeout))
            })
        }
    };
    let answers: Vec<Result<Submitted, SubmitError>> = batch
        .iter()
        .map(|pending| answer(pending, &inserted, holders.as_ref()))
        .collect();
    let replayed: Vec<Uuid> = answers
        .iter()
        .filter_map(|answer| match answer {
            Ok(Submitted { id, replayed: true }) => Some(id.uuid()),
            _ => None,
        })
        .collect();
    if let Some(client) = client
        && !replayed.is_empty()
    {
        let mark = async {
            client
                .execute(
                    "UPDATE icewall_jobs SET replayed = true WHERE id = ANY($1)",
                    &[&replayed],
                )
                .await
                .map_err(unavailable)
        };
        let outcome = tokio::time::timeout_at(deadline, mark).await;
        let marked = settle(client, outcome, timeout);
        // The answers stand: the mark only shows on the job's record.
        if let Err(error) = marked {
            warn!(jobs.inner.logger, "cannot mark replayed jobs"; "jobs" => replayed.len(),
                "error" => %error);
        }
    }
    Ok(answers)
}

/// Inserts the batch's jobs and requests in one statement, so one round trip and one
/// commit for the whole batch, with the notification sent at commit; returns the jobs
/// made (a key already held makes none).
async fn insert(client: &Client, batch: &[Pending]) -> Result<HashSet<Uuid>, Unavailable> {
    let ids: Vec<Uuid> = batch.iter().map(|pending| pending.id.uuid()).collect();
    let keys: Vec<Option<&str>> = batch
        .iter()
        .map(|pending| pending.key.as_ref().map(|(key, _)| key.as_str()))
        .collect();
    let fingerprints: Vec<Option<&str>> = batch
        .iter()
        .map(|pending| pending.key.as_ref().map(|(_, print)| print.as_str()))
        .collect();
    let shape = |of: fn(&WallShape) -> Option<i64>| -> Vec<Option<i64>> {
        batch
            .iter()
            .map(|pending| pending.shape.as_ref().and_then(of))
            .collect()
    };
    let profiles = shape(|shape| Some(i64::from(shape.profiles.get())));
    let sections = shape(|shape| shape.sections.map(|sections| i64::from(sections.get())));
    let teams = shape(|shape| {
        shape
            .num_teams
            .and_then(|teams| i64::try_from(teams.get()).ok())
    });
    let bodies: Vec<&[u8]> = batch
        .iter()
        .map(|pending| pending.request.as_slice())
        .collect();
    let statement = client.prepare_cached(ACCEPT).await.map_err(unavailable)?;
    let rows = client
        .query(
            &statement,
            &[
                &ids,
                &keys,
                &fingerprints,
                &profiles,
                &sections,
                &teams,
                &bodies,
            ],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The job holding each key, with its request's fingerprint, unless it is past its
/// TTL: reads answer 404 for it already (the sweeper removes it later), so its key is
/// let go, as with a job deleted meanwhile.
async fn key_holders(
    client: &Client,
    keys: &[&str],
    ttl_ms: f64,
) -> Result<HashMap<String, (Uuid, Option<String>)>, Unavailable> {
    let rows = client
        .query(
            "WITH holder AS (
                SELECT idempotency_key, id, request_fingerprint,
                    finished_at <= now() - $2::float8 * interval '1 millisecond'
                        AS expired
                FROM icewall_jobs WHERE idempotency_key = ANY($1)
             ), released AS (
                UPDATE icewall_jobs SET idempotency_key = NULL
                WHERE id IN (SELECT id FROM holder WHERE expired)
             )
             SELECT idempotency_key, id, request_fingerprint FROM holder
             WHERE expired IS NOT TRUE",
            &[&keys, &ttl_ms],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect())
}

/// One submission's answer, once its batch is committed.
fn answer(
    pending: &Pending,
    inserted: &HashSet<Uuid>,
    holders: Result<&HashMap<String, (Uuid, Option<String>)>, &Unavailable>,
) -> Result<Submitted, SubmitError> {
    if inserted.contains(&pending.id.uuid()) {
        return Ok(Submitted {
            id: pending.id,
            replayed: false,
        });
    }
    let Some((key, print)) = &pending.key else {
        return Err(SubmitError::Database(
            "the database refused the job".to_owned(),
        ));
    };
    // The key's holder is not known: the retry that the error asks for finds it.
    let holders = holders.map_err(|error| SubmitError::Database(error.to_string()))?;
    match holders.get(key) {
        Some((holder, Some(held))) if held == print => Ok(Submitted {
            id: JobId::from_uuid(*holder),
            replayed: true,
        }),
        Some(_) => Err(SubmitError::KeyReused),
        // Its job was deleted between the insert and the look, or is past its TTL (its
        // key now let go): try again.
        None => Err(SubmitError::KeyInProgress),
    }
}
