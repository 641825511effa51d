//! The read side of cluster mode, every answer from the database: a job's state and
//! record, waiting for it to finish, the listing and the counts, a done job's result
//! (through the node's cache) and its team log streamed a chunk at a time; and the
//! delete, which any node does for any job.

use std::future::Future;
use std::io::{self, Read};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Row;
use uuid::Uuid;

use super::claim::millis;
use super::finish::LOG_CHUNK;
use super::{ClusterJobs, unavailable};
use crate::jobs::files::result_file::{HEADER_LEN, ResultFile};
use crate::jobs::modes::TeamLogReader;
use crate::jobs::registry::WallShape;
use crate::jobs::service::{DeleteError, Removed};
use crate::jobs::{JobId, JobInfo, JobState, Order, Status, StoreError, StoredWork, Unavailable};
use crate::wall::Summary;

/// A result read from the database, open.
type FetchedResult = ResultFile<Arc<[u8]>>;

/// How often a waiter looks at a job that another node runs (one this node runs wakes
/// it at once).
const WAIT_POLL: Duration = Duration::from_millis(100);

/// A job's columns as `job_info` reads them. A finished job past its retention reads
/// as unknown until a sweep removes it, as on a node on its own.
const INFO_COLUMNS: &str = "id, state, failure,
    (extract(epoch FROM started_at) * 1000)::int8,
    (extract(epoch FROM finished_at) * 1000)::int8,
    profiles, sections, num_teams, replayed";
const NOT_EXPIRED: &str =
    "(finished_at IS NULL OR finished_at > now() - $2::float8 * interval '1 millisecond')";

impl ClusterJobs {
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn state(&self, id: JobId) -> Result<Option<JobState>, Unavailable> {
        Ok(self.info(id).await?.map(|info| info.state))
    }

    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn info(&self, id: JobId) -> Result<Option<JobInfo>, Unavailable> {
        let db = self.db().clone();
        let ttl = self.ttl_ms();
        self.on_db(async move {
            let client = db.get().await.map_err(unavailable)?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {INFO_COLUMNS} FROM icewall_jobs WHERE id = $1 AND {NOT_EXPIRED}"
                ))
                .await
                .map_err(unavailable)?;
            let row = client
                .query_opt(&statement, &[&id.uuid(), &ttl])
                .await
                .map_err(unavailable)?;
            Ok(row.map(|row| job_info(&row).1))
        })
        .await?
    }

    /// A job's state once it is finished, `timeout` has passed or `stop` resolves.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<Option<JobState>, Unavailable> {
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::pin!(stop);
        loop {
            let notify = Arc::clone(self.inner.waiters.entry(id).or_default().value());
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self.state(id).await?;
            let waiting = state.as_ref().is_some_and(|state| !state.is_finished());
            if !waiting || tokio::time::Instant::now() >= deadline {
                self.inner
                    .waiters
                    .remove_if(&id, |_, entry| Arc::ptr_eq(entry, &notify));
                return Ok(state);
            }
            let next_look = (tokio::time::Instant::now() + WAIT_POLL).min(deadline);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(next_look) => {}
                () = &mut stop => return self.state(id).await,
            }
        }
    }

    /// A page of the job list, in id order, strictly beyond `after` when given.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn page(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<(JobId, JobInfo)>, Unavailable> {
        let db = self.db().clone();
        let ttl = self.ttl_ms();
        let states: Vec<&'static str> =
            statuses.iter().map(|status| status_name(*status)).collect();
        let after = after.map(JobId::uuid);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (beyond, direction) = match order {
            Order::Oldest => (">", "ASC"),
            Order::Newest => ("<", "DESC"),
        };
        // One state named as a constant: the planner then walks that state's own index
        // (see the schema), not the whole table.
        let one_state = match states.as_slice() {
            [state] => format!("state = '{state}' AND"),
            _ => String::new(),
        };
        let sql = format!(
            "SELECT {INFO_COLUMNS} FROM icewall_jobs
             WHERE {one_state} state = ANY($1) AND {NOT_EXPIRED}
                 AND ($3::uuid IS NULL OR id {beyond} $3)
             ORDER BY id {direction} LIMIT $4"
        );
        self.on_db(async move {
            let client = db.get().await.map_err(unavailable)?;
            let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
            let rows = client
                .query(&statement, &[&states, &ttl, &after, &limit])
                .await
                .map_err(unavailable)?;
            Ok(rows.iter().map(job_info).collect())
        })
        .await?
    }

    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn counts(&self) -> Result<[usize; 4], Unavailable> {
        let db = self.db().clone();
        self.on_db(async move {
            let client = db.get().await.map_err(unavailable)?;
            let rows = client
                .query(
                    "SELECT state, count(*) FROM icewall_jobs GROUP BY state",
                    &[],
                )
                .await
                .map_err(unavailable)?;
            let mut counts = [0; 4];
            for row in rows {
                let slot = match row.get::<_, &str>(0) {
                    "queued" => 0,
                    "running" => 1,
                    "done" => 2,
                    _ => 3,
                };
                counts[slot] = usize::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            }
            Ok(counts)
        })
        .await?
    }

    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn in_flight(&self) -> Result<usize, Unavailable> {
        let db = self.db().clone();
        self.on_db(async move {
            let client = db.get().await.map_err(unavailable)?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM icewall_jobs WHERE state IN ('queued', 'running')",
                    &[],
                )
                .await
                .map_err(unavailable)?;
            Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
        .await?
    }

    /// A done job's summary rows `first + 1 ..= first + limit`, and its profile count.
    /// Blocks.
    ///
    /// # Errors
    /// `Missing`, `Damaged`, or `Unavailable`.
    pub fn summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        self.result(id)?.summary(first, limit)
    }

    /// A done job's work tables. Blocks.
    ///
    /// # Errors
    /// `Missing`, `Damaged`, or `Unavailable`.
    pub fn work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        self.result(id).map(StoredWork::Fetched)
    }

    /// A done job's team log, read from the database a chunk at a time as it is read.
    /// Blocks, and so does reading it.
    ///
    /// The first chunk is read with the length, in one statement, so that a delete
    /// racing the read gives either `Missing` (a 404) or a log that can be sent: never
    /// a length promised to the client with no bytes behind it. A log of one chunk
    /// (1 MiB, nearly every log) is then whole; a longer one deleted while it streams
    /// still ends early.
    ///
    /// # Errors
    /// `Missing`, or `Unavailable`.
    pub fn team_log(&self, id: JobId) -> Result<(TeamLogReader, u64), StoreError> {
        let (bytes, result) = self.result_bytes(id)?;
        if let Some(length) = result.log_file_len() {
            // The first chunk before the answer's headers: a log deleted meanwhile is a
            // 404, not a body cut short (a long one deleted while it streams still ends
            // early).
            let mut reader = ChunkedLog {
                jobs: self.clone(),
                id,
                next_chunk: 0,
                chunks: length.div_ceil(LOG_CHUNK as u64),
                chunk: Vec::new(),
                read: 0,
            };
            reader.fetch_next().map_err(|_| StoreError::Missing)?;
            return Ok((Box::new(reader), length));
        }
        let (start, length) = result.inline_log_span()?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
        if end > bytes.len() {
            return Err(StoreError::Damaged("its team log is cut short".to_owned()));
        }
        let mut log = io::Cursor::new(bytes);
        log.set_position(start as u64);
        Ok((Box::new(log.take(length)), length))
    }

    /// A done job's result, from the cache or the database, its header and trailer checked.
    fn result(&self, id: JobId) -> Result<FetchedResult, StoreError> {
        self.result_bytes(id).map(|(_, result)| result)
    }

    /// A done job's result and its bytes.
    fn result_bytes(&self, id: JobId) -> Result<(Arc<[u8]>, FetchedResult), StoreError> {
        let bytes = match self.inner.cache.get(id) {
            Some(bytes) => bytes,
            None => {
                let db = self.db().clone();
                let bytes: Arc<[u8]> = self
                    .block_on_db(async move {
                        let client = db.get().await.map_err(unavailable)?;
                        let statement = client
                            .prepare_cached("SELECT body FROM icewall_results WHERE job_id = $1")
                            .await
                            .map_err(unavailable)?;
                        let row = client
                            .query_opt(&statement, &[&id.uuid()])
                            .await
                            .map_err(unavailable)?;
                        Ok::<_, Unavailable>(row.map(|row| row.get::<_, Vec<u8>>(0)))
                    })??
                    .ok_or(StoreError::Missing)?
                    .into();
                self.inner.cache.insert(id, Arc::clone(&bytes));
                bytes
            }
        };
        let mut head = [0; HEADER_LEN as usize];
        let start = bytes
            .get(..head.len())
            .ok_or_else(|| StoreError::Damaged("its header is cut short".to_owned()))?;
        head.copy_from_slice(start);
        Ok((Arc::clone(&bytes), ResultFile::open(bytes, &head)?))
    }

    /// Checks that the database answers and takes a write now (for `/readyz`). Blocks.
    ///
    /// # Errors
    /// When it does not.
    pub fn probe_store(&self) -> io::Result<()> {
        let db = self.db().clone();
        let node = self.inner.settings.node;
        self.block_on_db(async move {
            let client = db.get().await.map_err(unavailable)?;
            client
                .execute(
                    "UPDATE icewall_nodes SET heartbeat_at = now() WHERE id = $1",
                    &[&node],
                )
                .await
                .map_err(unavailable)
        })
        .map_err(io::Error::other)?
        .map(drop)
        .map_err(io::Error::other)
    }

    fn ttl_ms(&self) -> f64 {
        millis(self.inner.retention.ttl)
    }
}

/// Deletes a finished job or cancels a queued one; a running job is left alone.
pub(super) async fn delete(db: Pool, id: JobId) -> Result<Removed, DeleteError> {
    let mut client = db.get().await.map_err(unavailable)?;
    let transaction = client.transaction().await.map_err(unavailable)?;
    let removed = transaction
        .query_opt(
            "DELETE FROM icewall_jobs WHERE id = $1 AND state <> 'running' RETURNING state",
            &[&id.uuid()],
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
        .query_opt("SELECT 1 FROM icewall_jobs WHERE id = $1", &[&id.uuid()])
        .await
        .map_err(unavailable)?;
    Err(match running {
        Some(_) => DeleteError::InFlight("running"),
        None => DeleteError::Unknown,
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

/// A team log read from its chunks in order, one chunk in memory at a time.
struct ChunkedLog {
    jobs: ClusterJobs,
    id: JobId,
    next_chunk: u64,
    chunks: u64,
    chunk: Vec<u8>,
    read: usize,
}

impl ChunkedLog {
    /// Reads the next chunk from the database into `chunk`.
    fn fetch_next(&mut self) -> io::Result<()> {
        let db = self.jobs.db().clone();
        let (id, number) = (
            self.id.uuid(),
            i32::try_from(self.next_chunk).unwrap_or(i32::MAX),
        );
        let chunk = self
            .jobs
            .block_on_db(async move {
                let client = db.get().await.map_err(unavailable)?;
                client
                    .query_opt(
                        "SELECT bytes FROM icewall_team_logs WHERE job_id = $1 AND chunk = $2",
                        &[&id, &number],
                    )
                    .await
                    .map_err(unavailable)
            })
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?
            // Deleted while it was read: the reader sees the log end early.
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.chunk = chunk.get(0);
        self.read = 0;
        self.next_chunk += 1;
        Ok(())
    }
}

impl Read for ChunkedLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read == self.chunk.len() {
            if self.next_chunk >= self.chunks {
                return Ok(0);
            }
            self.fetch_next()?;
        }
        let take = buf.len().min(self.chunk.len() - self.read);
        buf[..take].copy_from_slice(&self.chunk[self.read..self.read + take]);
        self.read += take;
        Ok(take)
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Queued => "queued",
        Status::Running => "running",
        Status::Done => "done",
        Status::Failed => "failed",
    }
}

fn job_info(row: &Row) -> (JobId, JobInfo) {
    let id = JobId::from_uuid(row.get::<_, Uuid>(0));
    let state = match row.get::<_, &str>(1) {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "done" => JobState::Done,
        _ => JobState::Failed(
            row.get::<_, Option<String>>(2)
                .unwrap_or_else(|| "the job failed".to_owned())
                .into(),
        ),
    };
    let millis = |index| {
        row.get::<_, Option<i64>>(index)
            .and_then(|ms| u64::try_from(ms).ok())
    };
    let count32 = |index| {
        row.get::<_, Option<i32>>(index)
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
    };
    let shape = count32(5).map(|profiles| WallShape {
        profiles,
        sections: count32(6),
        num_teams: row
            .get::<_, Option<i64>>(7)
            .and_then(|teams| u64::try_from(teams).ok())
            .and_then(NonZeroU64::new),
    });
    let info = JobInfo {
        state,
        started_ms: millis(3),
        finished_ms: millis(4),
        shape,
        replayed: row.get(8),
    };
    (id, info)
}
