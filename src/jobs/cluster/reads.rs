//! The read side of cluster mode, every answer from the database: a job's state and
//! record, waiting for it to finish, the listing and the counts, and the readiness
//! probe. A done job's result is read in `results`.

use std::future::Future;
use std::io;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::{Duration, Instant};

use tokio_postgres::Row;
use uuid::Uuid;

use super::claim::millis;
use super::{ClusterJobs, unavailable};
use crate::jobs::registry::WallShape;
use crate::jobs::{JobId, JobInfo, JobState, Order, Status, Unavailable};

/// How often a waiter looks at a job that another node runs (one this node runs wakes
/// it at once).
const WAIT_POLL: Duration = Duration::from_millis(100);

/// How old the counts of jobs by state that a node answers with may be.
const COUNTS_FRESH_FOR: Duration = Duration::from_secs(1);

/// A job's columns as `job_info` reads them. A finished job past its retention reads
/// as unknown until a sweep removes it, as on a node on its own.
const INFO_COLUMNS: &str = "id, state, failure,
    (extract(epoch FROM started_at) * 1000)::int8,
    (extract(epoch FROM finished_at) * 1000)::int8,
    profiles, sections, num_teams, replayed,
    (extract(epoch FROM accepted_at) * 1000)::int8";
pub(super) const NOT_EXPIRED: &str =
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
        let ttl = self.ttl_ms();
        self.on_db(move |client| {
            Box::pin(async move {
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
        })
        .await
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
            // Listened to anew each time round: a wake ends the listening it reaches.
            let listener = self.inner.waiters.listen(id);
            let notified = listener.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self.state(id).await?;
            let waiting = state.as_ref().is_some_and(|state| !state.is_finished());
            if !waiting || tokio::time::Instant::now() >= deadline {
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
        self.on_db(move |client| {
            Box::pin(async move {
                let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
                let rows = client
                    .query(&statement, &[&states, &ttl, &after, &limit])
                    .await
                    .map_err(unavailable)?;
                Ok(rows.iter().map(job_info).collect())
            })
        })
        .await
    }

    /// The cluster's jobs by state, counted at most once per `COUNTS_FRESH_FOR`: every
    /// open page asks every 2 s, and each count reads the whole jobs table.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn counts(&self) -> Result<[usize; 4], Unavailable> {
        if let Some((counted_at, counts)) = *self.inner.counts.lock()
            && counted_at.elapsed() < COUNTS_FRESH_FOR
        {
            return Ok(counts);
        }
        let counted_at = Instant::now();
        let counts = self.count_by_state().await?;
        *self.inner.counts.lock() = Some((counted_at, counts));
        Ok(counts)
    }

    async fn count_by_state(&self) -> Result<[usize; 4], Unavailable> {
        self.on_db(move |client| {
            Box::pin(async move {
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
        })
        .await
    }

    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn in_flight(&self) -> Result<usize, Unavailable> {
        self.on_db(move |client| {
            Box::pin(async move {
                let row = client
                    .query_one(super::claim::IN_FLIGHT, &[])
                    .await
                    .map_err(unavailable)?;
                let count = |index| usize::try_from(row.get::<_, i64>(index)).unwrap_or(0);
                Ok(count(0) + count(1))
            })
        })
        .await
    }

    /// Checks that the database answers and takes a write now (for `/readyz`). Blocks.
    ///
    /// # Errors
    /// When it does not.
    pub fn probe_store(&self) -> io::Result<()> {
        if let Some(reason) = self.inner.unfit_for_work() {
            return Err(io::Error::other(reason));
        }
        let node = self.inner.settings.node;
        self.block_on_db(move |client| {
            Box::pin(async move {
                client
                    .execute(
                        "UPDATE icewall_nodes SET probed_at = now() WHERE id = $1",
                        &[&node],
                    )
                    .await
                    .map_err(unavailable)
            })
        })
        .map(drop)
        .map_err(io::Error::other)
    }

    pub(super) fn ttl_ms(&self) -> f64 {
        millis(self.inner.retention.ttl)
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
        created_ms: millis(9),
        started_ms: millis(3),
        finished_ms: millis(4),
        shape,
        replayed: row.get(8),
    };
    (id, info)
}
