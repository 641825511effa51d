//! Finishing a job in cluster mode: its result encoded on the worker (the file store's
//! binary layout, its team log in chunks), then committed by group commit, and only
//! for the attempt that still holds the job's lease: a node that lost its lease (it was
//! cut off, and the job runs elsewhere) has its result dropped, so that no job has two.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use slog::{Logger, error, info, warn};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ClusterJobs, unavailable};
use crate::jobs::files::result_file::{self, LogPlace};
use crate::jobs::{JobId, Unavailable};
use crate::wall::Outcome;

/// The team log is stored in chunks of this many bytes, and read back one at a time.
pub(super) const LOG_CHUNK: usize = 1024 * 1024;

/// Most jobs, and about most bytes, one transaction takes.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// A job's outcome, ready for the database.
pub(super) enum Encoded {
    Done {
        /// The result in the binary layout of `result_file`, the log kept apart.
        body: Vec<u8>,
        log: Vec<Vec<u8>>,
        log_bytes: u64,
    },
    Failed(String),
}

impl Encoded {
    pub(super) fn of(simulated: Result<Outcome, String>) -> Encoded {
        match simulated {
            Ok(outcome) => {
                let mut log = ChunkWriter::default();
                let written = outcome.log.write_to(&mut log).and_then(|()| {
                    let log_bytes = log.len;
                    let mut body = Vec::new();
                    result_file::write_done(
                        &mut body,
                        &outcome,
                        LogPlace::File { len: log_bytes },
                        // Its request stays in icewall_requests: the result keeps none.
                        None,
                    )?;
                    Ok((body, log_bytes))
                });
                match written {
                    Ok((body, log_bytes)) => Encoded::Done {
                        body,
                        log: log.finish(),
                        log_bytes,
                    },
                    Err(error) => Encoded::Failed(format!("the result cannot be encoded: {error}")),
                }
            }
            Err(reason) => Encoded::Failed(reason),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Encoded::Done { body, log, .. } => body.len() + log.iter().map(Vec::len).sum::<usize>(),
            Encoded::Failed(reason) => reason.len(),
        }
    }
}

/// Cuts what is written into `LOG_CHUNK`-sized pieces.
#[derive(Default)]
struct ChunkWriter {
    chunks: Vec<Vec<u8>>,
    len: u64,
}

impl Write for ChunkWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            if self
                .chunks
                .last()
                .is_none_or(|chunk| chunk.len() == LOG_CHUNK)
            {
                self.chunks
                    .push(Vec::with_capacity(LOG_CHUNK.min(64 * 1024)));
            }
            let chunk = self.chunks.last_mut().expect("pushed above");
            let take = (LOG_CHUNK - chunk.len()).min(buf.len());
            chunk.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
        }
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChunkWriter {
    fn finish(self) -> Vec<Vec<u8>> {
        self.chunks
    }
}

/// A simulated job on its way to the database.
pub(super) struct Finished {
    pub id: JobId,
    pub attempt: i32,
    pub record: Encoded,
    pub started: Instant,
    pub logger: Logger,
}

/// Commits finished jobs as they come, batched. A batch the database refuses is tried
/// again (the database may be restarting) for as long as a lease lasts; after that its
/// jobs' leases have run out and other nodes run them again, so it is given up.
pub(super) async fn run(jobs: ClusterJobs, mut queue: mpsc::UnboundedReceiver<Finished>) {
    let inner = &jobs.inner;
    while let Some(first) = queue.recv().await {
        let mut bytes = first.record.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(finished) => {
                    bytes += finished.record.bytes();
                    batch.push(finished);
                }
                Err(_) => break,
            }
        }
        let first_try = Instant::now();
        let mut pause = Duration::from_millis(50);
        let kept = loop {
            match commit(&jobs, &batch).await {
                Ok(kept) => break Some(kept),
                Err(error) if first_try.elapsed() < inner.settings.lease => {
                    warn!(inner.logger, "cannot store results yet; retrying";
                        "jobs" => batch.len(), "error" => %error);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(error) => {
                    error!(inner.logger, "results given up: their jobs run again after their lease";
                        "jobs" => batch.len(), "error" => %error);
                    break None;
                }
            }
        };
        for finished in batch {
            jobs.report(finished, kept.as_ref());
        }
    }
}

impl ClusterJobs {
    /// The job's end on this node: its log line, its metrics, its waiters woken.
    fn report(&self, finished: Finished, kept: Option<&HashSet<Uuid>>) {
        let inner = &self.inner;
        let Finished {
            id,
            record,
            started,
            logger,
            ..
        } = finished;
        inner.running.remove(&id);
        let elapsed_ms = crate::telemetry::millis(started.elapsed());
        match kept {
            None => inner.metrics.store_error(),
            Some(kept) if !kept.contains(&id.uuid()) => {
                warn!(logger, "result dropped: the job's lease passed to another node";
                    "elapsed_ms" => elapsed_ms);
            }
            Some(_) => {
                let done = matches!(record, Encoded::Done { .. });
                inner.metrics.job_finished(done, started.elapsed());
                match record {
                    Encoded::Done { .. } => {
                        info!(logger, "job finished"; "elapsed_ms" => elapsed_ms);
                    }
                    Encoded::Failed(reason) => {
                        warn!(logger, "job failed"; "reason" => %reason, "elapsed_ms" => elapsed_ms);
                    }
                }
                self.wake_waiters(id);
            }
        }
    }
}

/// Stores a batch of results; returns the jobs whose attempt still held its lease
/// (only theirs are stored).
async fn commit(jobs: &ClusterJobs, batch: &[Finished]) -> Result<HashSet<Uuid>, Unavailable> {
    let inner = &jobs.inner;
    let mut client = jobs.db().get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
    let ids: Vec<Uuid> = batch.iter().map(|finished| finished.id.uuid()).collect();
    let attempts: Vec<i32> = batch.iter().map(|finished| finished.attempt).collect();
    let states: Vec<&str> = batch
        .iter()
        .map(|finished| match finished.record {
            Encoded::Done { .. } => "done",
            Encoded::Failed(_) => "failed",
        })
        .collect();
    let failures: Vec<Option<&str>> = batch
        .iter()
        .map(|finished| match &finished.record {
            Encoded::Done { .. } => None,
            Encoded::Failed(reason) => Some(reason.as_str()),
        })
        .collect();
    let sizes: Vec<i64> = batch
        .iter()
        .map(|finished| i64::try_from(finished.record.bytes()).unwrap_or(i64::MAX))
        .collect();
    let kept: HashSet<Uuid> = transaction
        .query(
            "UPDATE icewall_jobs AS job
             SET state = f.state, failure = f.failure, finished_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL, result_bytes = f.bytes
             FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::int8[])
                 AS f(id, attempt, state, failure, bytes)
             WHERE job.id = f.id AND job.attempt = f.attempt AND job.lease_owner = $6
                 AND job.state = 'running'
             RETURNING job.id",
            &[
                &ids,
                &attempts,
                &states,
                &failures,
                &sizes,
                &inner.settings.node,
            ],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut result_ids = Vec::new();
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut log_sizes = Vec::new();
    let mut log_counts = Vec::new();
    let mut chunk_ids = Vec::new();
    let mut chunk_numbers = Vec::new();
    let mut chunks: Vec<&[u8]> = Vec::new();
    for finished in batch {
        let Encoded::Done {
            body,
            log,
            log_bytes,
        } = &finished.record
        else {
            continue;
        };
        let id = finished.id.uuid();
        if !kept.contains(&id) {
            continue;
        }
        result_ids.push(id);
        bodies.push(body);
        log_sizes.push(i64::try_from(*log_bytes).unwrap_or(i64::MAX));
        log_counts.push(i32::try_from(log.len()).unwrap_or(i32::MAX));
        for (number, chunk) in log.iter().enumerate() {
            chunk_ids.push(id);
            chunk_numbers.push(i32::try_from(number).unwrap_or(i32::MAX));
            chunks.push(chunk);
        }
    }
    if !result_ids.is_empty() {
        transaction
            .execute(
                "INSERT INTO icewall_results (job_id, body, log_bytes, log_chunks)
                 SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::int8[], $4::int4[])",
                &[&result_ids, &bodies, &log_sizes, &log_counts],
            )
            .await
            .map_err(unavailable)?;
    }
    if !chunk_ids.is_empty() {
        transaction
            .execute(
                "INSERT INTO icewall_team_logs (job_id, chunk, bytes)
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::bytea[])",
                &[&chunk_ids, &chunk_numbers, &chunks],
            )
            .await
            .map_err(unavailable)?;
    }
    transaction.commit().await.map_err(unavailable)?;
    Ok(kept)
}
