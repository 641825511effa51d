//! Durable accept in cluster mode, by group commit: the submissions that arrive while
//! one transaction is being committed go together in the next, so that accepting does
//! not stop at one commit per job. A job's row and its request are inserted in one
//! statement each for the whole batch; an Idempotency-Key already in the table (from
//! this node or another) makes no row, and its submission replays the earlier job or is
//! refused. The transaction ends with an empty `NOTIFY`, which the database delivers
//! once, at commit, to every listening node.

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{ClusterJobs, unavailable};
use crate::jobs::registry::WallShape;
use crate::jobs::service::{SubmitError, Submitted};
use crate::jobs::{JobId, Unavailable};

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
}

/// Takes the submissions as they come, one transaction at a time.
pub(super) async fn run(jobs: ClusterJobs, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let timeout = jobs.inner.settings.timeout;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let answers = tokio::time::timeout(timeout, store(&jobs, &batch))
            .await
            .unwrap_or_else(|_| Err(Unavailable(format!("no answer within {timeout:?}"))));
        match answers {
            Ok(answers) => {
                for (pending, answer) in batch.into_iter().zip(answers) {
                    let _ = pending.answer.send(answer);
                }
            }
            // Nothing of the batch was committed (or its commit was not confirmed, in
            // which case a retry with the same Idempotency-Key finds the job).
            Err(error) => {
                for pending in batch {
                    let _ = pending
                        .answer
                        .send(Err(SubmitError::Storage(error.to_string())));
                }
            }
        }
    }
}

/// Commits a batch; returns each submission's answer, in order.
async fn store(
    jobs: &ClusterJobs,
    batch: &[Pending],
) -> Result<Vec<Result<Submitted, SubmitError>>, Unavailable> {
    let mut client = jobs.db().get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
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
    let inserted: HashSet<Uuid> = transaction
        .query(
            "INSERT INTO icewall_jobs
                 (id, state, idempotency_key, request_fingerprint, profiles, sections, num_teams)
             SELECT id, 'queued', key, fingerprint, profiles::int4, sections::int4, num_teams
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[])
                 AS t(id, key, fingerprint, profiles, sections, num_teams)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING id",
            &[&ids, &keys, &fingerprints, &profiles, &sections, &teams],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let (stored_ids, bodies): (Vec<Uuid>, Vec<&[u8]>) = batch
        .iter()
        .filter(|pending| inserted.contains(&pending.id.uuid()))
        .map(|pending| (pending.id.uuid(), pending.request.as_slice()))
        .unzip();
    if !stored_ids.is_empty() {
        transaction
            .execute(
                "INSERT INTO icewall_requests (job_id, body)
                 SELECT * FROM unnest($1::uuid[], $2::bytea[])",
                &[&stored_ids, &bodies],
            )
            .await
            .map_err(unavailable)?;
    }
    // Keys that made no row: some job has them already.
    let taken: Vec<&str> = batch
        .iter()
        .filter(|pending| !inserted.contains(&pending.id.uuid()))
        .filter_map(|pending| pending.key.as_ref().map(|(key, _)| key.as_str()))
        .collect();
    let holders: HashMap<String, (Uuid, Option<String>)> = if taken.is_empty() {
        HashMap::new()
    } else {
        transaction
            .query(
                "SELECT idempotency_key, id, request_fingerprint FROM icewall_jobs
                 WHERE idempotency_key = ANY($1)",
                &[&taken],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect()
    };
    let answers: Vec<Result<Submitted, SubmitError>> = batch
        .iter()
        .map(|pending| {
            if inserted.contains(&pending.id.uuid()) {
                return Ok(Submitted {
                    id: pending.id,
                    replayed: false,
                });
            }
            let Some((key, print)) = &pending.key else {
                return Err(SubmitError::Storage(
                    "the database refused the job".to_owned(),
                ));
            };
            match holders.get(key) {
                Some((holder, Some(held))) if held == print => Ok(Submitted {
                    id: JobId::from_uuid(*holder),
                    replayed: true,
                }),
                Some(_) => Err(SubmitError::KeyReused),
                // Its job was deleted between the insert and the look: try again.
                None => Err(SubmitError::KeyInProgress),
            }
        })
        .collect();
    let replayed: Vec<Uuid> = answers
        .iter()
        .filter_map(|answer| match answer {
            Ok(Submitted { id, replayed: true }) => Some(id.uuid()),
            _ => None,
        })
        .collect();
    if !replayed.is_empty() {
        transaction
            .execute(
                "UPDATE icewall_jobs SET replayed = true WHERE id = ANY($1)",
                &[&replayed],
            )
            .await
            .map_err(unavailable)?;
    }
    if !stored_ids.is_empty() {
        transaction
            .batch_execute("NOTIFY icewall_jobs")
            .await
            .map_err(unavailable)?;
    }
    transaction.commit().await.map_err(unavailable)?;
    Ok(answers)
}
