//! Finishing a job in cluster mode: its result encoded on the worker (the file store's
//! binary layout, a large team log apart in chunks), then committed by group commit in
//! one statement per batch, and only
//! for the attempt that still holds the job's lease: a node that lost its lease (it was
//! cut off, and the job runs elsewhere) has its result dropped, so that no job has two.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use slog::{Logger, error, info, warn};
use tokio::sync::mpsc;
use uuid::Uuid;

use std::sync::atomic::Ordering;

use super::database::{abandon, timed_out};
use super::{ClusterJobs, unavailable};
use crate::jobs::files::result_file::{self, LogPlace};
use crate::jobs::{JobId, Unavailable};
use crate::wall::Outcome;

/// One batch of results (see `commit`).
const FINISH: &str = "WITH batch AS (
        SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int8[], $5::bytea[])
            AS t(id, attempt, failure, bytes, body)
    ), kept AS (
        UPDATE icewall_jobs AS job
        SET state = CASE WHEN batch.body IS NULL THEN 'failed' ELSE 'done' END,
            failure = batch.failure, finished_at = now(), lease_owner = NULL,
            lease_expires_at = NULL, result_bytes = batch.bytes
        FROM batch
        WHERE job.id = batch.id AND job.attempt = batch.attempt
            AND job.lease_owner = $6 AND job.state = 'running'
        RETURNING job.id, job.attempt
    ), results AS (
        INSERT INTO icewall_results (job_id, body)
        SELECT id, body FROM batch JOIN kept USING (id, attempt) WHERE body IS NOT NULL
    ), logs AS (
        INSERT INTO icewall_team_logs (job_id, chunk, bytes)
        SELECT id, chunk, bytes
        FROM unnest($7::uuid[], $10::int4[], $8::int4[], $9::bytea[])
            AS t(id, attempt, chunk, bytes)
        JOIN kept USING (id, attempt)
    )
    SELECT id, attempt FROM kept";

/// A team log larger than this is stored apart, in chunks of this many bytes read back
/// one at a time; a smaller one is inside the result (one row per job, not two).
pub(super) const LOG_CHUNK: usize = 1024 * 1024;

/// Most jobs, and about most bytes, one transaction takes.
pub(super) const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// A job's outcome, ready for the database.
pub(super) enum Encoded {
    Done {
        /// The result in the binary layout of `result_file`.
        body: Vec<u8>,
        /// The team log in chunks, when it is not inside `body`.
        log: Vec<Vec<u8>>,
    },
    Failed(String),
}

impl Encoded {
    pub(super) fn of(simulated: Result<Outcome, String>) -> Encoded {
        match simulated {
            Ok(outcome) => {
                let mut log = ChunkWriter::default();
                let written = outcome.log.write_to(&mut log).and_then(|()| {
                    let mut body = Vec::new();
                    let log = if log.len <= LOG_CHUNK as u64 {
                        // Its request stays in icewall_requests: the result keeps none.
                        result_file::write_done(
                            &mut body,
                            &outcome,
                            LogPlace::Inline(&outcome.log),
                            None,
                        )?;
                        Vec::new()
                    } else {
                        let len = log.len;
                        result_file::write_done(&mut body, &outcome, LogPlace::File { len }, None)?;
                        log.chunks
                    };
                    Ok((body, log))
                });
                match written {
                    Ok((body, log)) => Encoded::Done { body, log },
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

/// A simulated job on its way to the database.
pub(super) struct Finished {
    pub id: JobId,
    pub attempt: i32,
    pub record: Encoded,
    pub started: Instant,
    pub logger: Logger,
}

/// Commits finished jobs as they come, batched. A batch the database cannot take for a
/// while (it is restarting, out of disk, out of connections) is tried again until it
/// takes it: its jobs stay this node's, their leases extended by the heartbeat, and
/// the node claims no more meanwhile. Were it given up, its jobs would run again
/// elsewhere after their lease, each time charged an attempt, until `--max-attempts`
/// failed them for a node that "stopped answering". A batch the database refuses, or
/// is too slow to take, is stored job by job, so that only the job at fault fails (see
/// `store`). A node that is leaving gives up what it still holds a lease after it began
/// to leave: its drain must end, and those jobs run again after their lease.
pub(super) async fn run(jobs: ClusterJobs, mut queue: mpsc::UnboundedReceiver<Finished>) {
    let inner = &jobs.inner;
    let mut leaving = Leaving::default();
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
        if inner.debug.finisher_panics
            && batch
                .iter()
                .any(|finished| matches!(finished.record, Encoded::Failed(_)))
        {
            panic!("debug hook: the finisher panics on a failed job");
        }
        match store(&jobs, &mut batch, &mut leaving).await {
            Stored::Split => {
                for finished in batch {
                    let mut alone = vec![finished];
                    let Stored::Kept(kept) = store(&jobs, &mut alone, &mut leaving).await else {
                        unreachable!("a job alone is never split")
                    };
                    jobs.report(alone.pop().expect("one job"), kept.as_ref());
                }
            }
            Stored::Kept(kept) => {
                for finished in batch {
                    jobs.report(finished, kept.as_ref());
                }
            }
        }
        *inner.results_refused.lock() = None;
        // Claiming may have stopped for the commits to catch up.
        inner.wake_claimer.notify_one();
    }
}

/// What became of a batch of results.
enum Stored {
    /// The attempts that still held their job's lease were stored; `None`: the batch
    /// was given up, its jobs run again after their lease.
    Kept(Option<HashSet<(Uuid, i32)>>),
    /// The statement was refused, or too slow: its jobs are to be stored one by one.
    Split,
}

/// Since when the finisher has known that its node is leaving.
#[derive(Default)]
struct Leaving(Option<Instant>);

impl Leaving {
    /// Notes the node's leaving, if it has begun; returns since when.
    fn since(&mut self, jobs: &ClusterJobs) -> Option<Instant> {
        let inner = &jobs.inner;
        if self.0.is_none()
            && (inner.draining.load(Ordering::SeqCst) || inner.shutdown.is_triggered())
        {
            self.0 = Some(Instant::now());
        }
        self.0
    }

    /// When a node that is leaving gives its results up: a lease after it began to.
    fn gives_up_at(&mut self, jobs: &ClusterJobs) -> Option<Instant> {
        let lease = jobs.inner.settings.lease;
        self.since(jobs).map(|since| since + lease)
    }
}

/// Tries of a job alone that the database is too slow to take, before its job is failed.
const SLOW_TRIES: u32 = 3;

/// Commits `batch` (see `run`). A database that is down is waited for; a batch of
/// several it refuses or is too slow for is split; a job alone that it refuses, or is
/// too slow for `SLOW_TRIES` times, is failed with the reason, and given up (to run
/// again after its lease) if even that is not taken. A node that is leaving splits no
/// batch for slowness, and gives up what is not stored a lease after it began to
/// leave, a try under way included.
async fn store(jobs: &ClusterJobs, batch: &mut [Finished], leaving: &mut Leaving) -> Stored {
    let inner = &jobs.inner;
    let mut pause = Duration::from_millis(50);
    let mut slow_tries = 0;
    let mut failed_for_it = false;
    loop {
        if leaving
            .gives_up_at(jobs)
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            error!(inner.logger, "results given up while leaving: their jobs run again after their lease";
                "jobs" => batch.len());
            return Stored::Kept(None);
        }
        let refusal = match try_commit(jobs, batch, leaving).await {
            Ok(kept) => return Stored::Kept(Some(kept)),
            Err(refusal) => refusal,
        };
        // A refusal is answered at once, job by job too; slowness, job by job, could
        // hold a leaving node a try's time for each.
        let split = match refusal.kind {
            RefusalKind::Refused => true,
            RefusalKind::Slow => leaving.since(jobs).is_none(),
            RefusalKind::Down => false,
        };
        if split && batch.len() > 1 {
            return Stored::Split;
        }
        if refusal.kind == RefusalKind::Slow {
            slow_tries += 1;
        }
        let at_fault = refusal.kind == RefusalKind::Refused || slow_tries >= SLOW_TRIES;
        if at_fault
            && !failed_for_it
            && let [finished] = batch
        {
            // The database will not take this job's result: failed with its reason, the
            // job takes a few bytes of the database's own text.
            error!(finished.logger, "result not taken: the job is failed"; "error" => %refusal.error);
            let why = match refusal.kind {
                RefusalKind::Refused => "the database refused its result".to_owned(),
                _ => format!("the database did not take its result in {SLOW_TRIES} tries"),
            };
            // The database's own words, without `Unavailable`'s "the database is
            // unavailable": it answered, and refused.
            finished.record = Encoded::Failed(format!("{why}: {}", refusal.error.0));
            failed_for_it = true;
            continue;
        }
        if at_fault && failed_for_it {
            error!(inner.logger, "results given up: their jobs run again after their lease";
                "jobs" => batch.len(), "error" => %refusal.error);
            return Stored::Kept(None);
        }
        *inner.results_refused.lock() = Some(refusal.error.to_string());
        inner.metrics.store_retried();
        warn!(inner.logger, "cannot store results yet; retrying";
            "jobs" => batch.len(), "error" => %refusal.error);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One try at committing `batch`, within four leases (a large result may take a
/// while), or until a lease after the node began to leave, should it begin meanwhile.
/// No answer in that time is slowness of this batch only if the database answers
/// another statement at once; otherwise it is the database that is down.
async fn try_commit(
    jobs: &ClusterJobs,
    batch: &[Finished],
    leaving: &mut Leaving,
) -> Result<HashSet<(Uuid, i32)>, Refusal> {
    let inner = &jobs.inner;
    let bound = inner.settings.lease * 4;
    let deadline = |leaving: &mut Leaving| {
        let bounded = Instant::now() + bound;
        leaving
            .gives_up_at(jobs)
            .map_or(bounded, |given_up| given_up.min(bounded))
    };
    let mut until = tokio::time::Instant::from_std(deadline(leaving));
    let client = jobs.client().await.map_err(Refusal::down)?;
    let started = Instant::now();
    let mut work = Box::pin(commit(jobs, &client, batch));
    let mut watching_for_leave = leaving.since(jobs).is_none();
    let outcome = loop {
        tokio::select! {
            outcome = tokio::time::timeout_at(until, &mut work) => break outcome,
            () = inner.shutdown.triggered(), if watching_for_leave => {
                watching_for_leave = false;
                until = until.min(tokio::time::Instant::from_std(deadline(leaving)));
            }
        }
    };
    drop(work);
    let Ok(committed) = outcome else {
        abandon(client);
        let answering = tokio::time::timeout(inner.settings.timeout, async {
            let probe = jobs.client().await?;
            probe.simple_query("SELECT 1").await.map_err(unavailable)
        })
        .await;
        let kind = match answering {
            Ok(Ok(_)) => RefusalKind::Slow,
            _ => RefusalKind::Down,
        };
        return Err(Refusal {
            error: timed_out(Duration::from_millis(
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            )),
            kind,
        });
    };
    committed
}

/// Why the database did not take a batch of results.
struct Refusal {
    error: Unavailable,
    kind: RefusalKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RefusalKind {
    /// The database cannot take anything now (a connection lost, a restart, a full
    /// disk, no free connection): waited for, however long.
    Down,
    /// The statement ran out of time, was cancelled, or met another transaction (a
    /// lock, a deadlock): tried again a few times, since it may be this batch's.
    Slow,
    /// The statement itself was refused (a data error, a constraint, a limit), which
    /// trying again will not mend.
    Refused,
}

impl Refusal {
    fn down(error: Unavailable) -> Refusal {
        Refusal {
            error,
            kind: RefusalKind::Down,
        }
    }

    fn of(error: &tokio_postgres::Error) -> Refusal {
        let kind = match error.code() {
            Some(code) => refusal_kind(code.code()),
            // A connection lost; any other error without a code is the client's own
            // refusal of this statement (a value too large to send), which no retry mends.
            None if error.is_closed() || is_io(error) => RefusalKind::Down,
            None => RefusalKind::Refused,
        };
        Refusal {
            error: unavailable(error),
            kind,
        }
    }
}

/// Whether `error` comes of the connection's input or output.
fn is_io(error: &tokio_postgres::Error) -> bool {
    std::iter::successors(std::error::Error::source(error), |cause| cause.source())
        .any(|cause| cause.is::<io::Error>())
}

/// What an SQLSTATE says of a refusal: the database down is a connection lost (class
/// 08), resources short (53: a full disk, too many connections, out of memory, which
/// PostgreSQL also says of a lock table that other sessions filled), its shutdown or
/// restart (57000, 57P01-57P05), a system error (58: I/O), a standby not yet promoted
/// (25006), or its data found corrupted (XX001, XX002); a cancel (57014, a
/// `statement_timeout`, 25P04 a `transaction_timeout`), a conflict with another
/// transaction (40) or a lock not to be had (55P03) is slowness, and so is another
/// internal error (XX000), which may not come again: both are tried a few times. So is
/// a configured limit the statement ran past (53400, a `temp_file_limit`): a large
/// batch may have, split it goes through, and a job whose result alone does is failed
/// rather than waited on for ever.
fn refusal_kind(sqlstate: &str) -> RefusalKind {
    if sqlstate == "53400" {
        RefusalKind::Slow
    } else if ["08", "53", "57000", "57P", "58"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
        || matches!(sqlstate, "25006" | "XX001" | "XX002")
    {
        RefusalKind::Down
    } else if ["40", "XX"].iter().any(|class| sqlstate.starts_with(class))
        || matches!(sqlstate, "57014" | "55P03" | "25P04")
    {
        RefusalKind::Slow
    } else {
        RefusalKind::Refused
    }
}

impl ClusterJobs {
    /// The job's end on this node: its log line, its metrics, its waiters woken.
    fn report(&self, finished: Finished, kept: Option<&HashSet<(Uuid, i32)>>) {
        let inner = &self.inner;
        let Finished {
            id,
            attempt,
            record,
            started,
            logger,
        } = finished;
        inner.forget_attempt(id, attempt);
        let elapsed_ms = crate::telemetry::millis(started.elapsed());
        match kept {
            None => inner.metrics.store_error(),
            Some(kept) if !kept.contains(&(id.uuid(), attempt)) => {
                warn!(logger, "result dropped: the job's lease passed to another node";
                    "elapsed_ms" => elapsed_ms);
                // Or this attempt's own commit, given up without its answer, landed after
                // all: whoever waits looks again.
                self.wake_waiters(id);
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

/// Stores a batch of results in one statement; returns the attempts that still held
/// their job's lease (only theirs are stored). Two attempts of one job may be in a
/// batch, when this node claimed the job again while its first run went on.
async fn commit(
    jobs: &ClusterJobs,
    client: &Object,
    batch: &[Finished],
) -> Result<HashSet<(Uuid, i32)>, Refusal> {
    let inner = &jobs.inner;
    let ids: Vec<Uuid> = batch.iter().map(|finished| finished.id.uuid()).collect();
    let attempts: Vec<i32> = batch.iter().map(|finished| finished.attempt).collect();
    let failures: Vec<Option<&str>> = batch
        .iter()
        .map(|finished| match &finished.record {
            Encoded::Done { .. } => None,
            Encoded::Failed(reason) => Some(reason.as_str()),
        })
        .collect();
    let bodies: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|finished| match &finished.record {
            Encoded::Done { body, .. } => Some(body.as_slice()),
            Encoded::Failed(_) => None,
        })
        .collect();
    let sizes: Vec<i64> = batch
        .iter()
        .map(|finished| i64::try_from(finished.record.bytes()).unwrap_or(i64::MAX))
        .collect();
    let mut chunk_ids = Vec::new();
    let mut chunk_attempts = Vec::new();
    let mut chunk_numbers = Vec::new();
    let mut chunks: Vec<&[u8]> = Vec::new();
    for finished in batch {
        if let Encoded::Done { log, .. } = &finished.record {
            for (number, chunk) in log.iter().enumerate() {
                chunk_ids.push(finished.id.uuid());
                chunk_attempts.push(finished.attempt);
                chunk_numbers.push(i32::try_from(number).unwrap_or(i32::MAX));
                chunks.push(chunk);
            }
        }
    }
    let statement = client
        .prepare_cached(FINISH)
        .await
        .map_err(|error| Refusal::of(&error))?;
    let kept = client
        .query(
            &statement,
            &[
                &ids,
                &attempts,
                &failures,
                &sizes,
                &bodies,
                &inner.settings.node,
                &chunk_ids,
                &chunk_numbers,
                &chunks,
                &chunk_attempts,
            ],
        )
        .await
        .map_err(|error| Refusal::of(&error))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::{RefusalKind, refusal_kind};

    #[test]
    fn a_database_down_is_waited_for_and_a_cancel_is_slowness_not_downtime() {
        for down in [
            "08006", "53100", "53200", "53300", "57P01", "57P03", "58030", "25006",
        ] {
            assert_eq!(refusal_kind(down), RefusalKind::Down, "{down}");
        }
        for slow in [
            "57014", "40001", "40P01", "55P03", "XX000", "25P04", "53400",
        ] {
            assert_eq!(refusal_kind(slow), RefusalKind::Slow, "{slow}");
        }
        for refused in ["23514", "22001", "54000", "42501"] {
            assert_eq!(refusal_kind(refused), RefusalKind::Refused, "{refused}");
        }
    }
}
