//! Where a node's work comes from and how it keeps it: claiming the oldest queued jobs
//! for its free workers in one statement, hearing of new jobs by `LISTEN` (with a poll
//! behind it), extending the leases of the jobs it runs, and the heartbeat that
//! requeues the jobs of nodes that stopped answering and counts the cluster's queue.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use futures_util::StreamExt;
use slog::{error, info, warn};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::database::on_connection;
use super::{ClusterJobs, ClusterSettings, unavailable};
use crate::jobs::JobId;
use crate::jobs::Unavailable;

/// A job this node claimed: its attempt and its request.
pub(super) struct ClaimedJob {
    pub id: JobId,
    pub attempt: i32,
    pub request: Vec<u8>,
    /// How long it waited in the queue.
    pub waited: Duration,
}

/// Finished jobs that may wait for their commit before this node stops claiming: two
/// of the finisher's batches.
const FINISH_BACKLOG: usize = 2 * super::finish::MAX_BATCH;

/// How far ahead a node claims: what its workers finish in this time.
const CLAIM_AHEAD_TIME: Duration = Duration::from_millis(50);

/// Most expired leases one heartbeat requeues.
const REAP_BATCH: i64 = 1000;

/// Puts this node in the nodes table, for the operators (`/api/stats`).
pub(super) async fn register_node(
    client: &Object,
    cluster: &ClusterSettings,
    workers: usize,
) -> Result<(), tokio_postgres::Error> {
    let workers = i32::try_from(workers).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO icewall_nodes (id, address, workers, lease_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
            &[
                &cluster.node,
                &cluster.address,
                &workers,
                &millis(cluster.lease),
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn unregister_node(client: &Object, node: Uuid) -> Result<(), Unavailable> {
    client
        .execute("DELETE FROM icewall_nodes WHERE id = $1", &[&node])
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Queues again the jobs running under this node's lease once it runs none (a drain's
/// end, its heartbeat stopped): a claim committed after it was given up, or a result
/// the finisher gave up. Their attempt stays counted, as the reaper would count it.
pub(super) async fn release_unrun(jobs: &ClusterJobs, client: &Object) -> Result<u64, Unavailable> {
    requeue_lapsed(
        jobs,
        client,
        "SELECT id FROM icewall_jobs WHERE lease_owner = $2 AND state = 'running' FOR UPDATE",
        &[&jobs.inner.settings.node],
    )
    .await
}

/// Claims work whenever there are free workers and something may be queued: woken by
/// a notification, a local accept or a worker set free, and every `--claim-poll`.
pub(super) async fn run_claimer(jobs: ClusterJobs) {
    let inner = &jobs.inner;
    loop {
        // From the shutdown's trigger, not from the drain that follows it a moment later:
        // a node shutting down takes no more work.
        if inner.draining.load(Ordering::SeqCst) || inner.shutdown.is_triggered() {
            return;
        }
        let capacity = inner.workers + jobs.claim_ahead();
        // Results waiting for their commit hold their leases: when the database falls
        // behind, claiming stops rather than pile up jobs no one will finish soon (each
        // extra lease costs every heartbeat, and the heartbeat's locks slow the commits).
        let most_in_flight = capacity + FINISH_BACKLOG;
        // Nor while the node is unfit for work (see `unfit_for_work`).
        let refusing = inner.unfit_for_work().is_some();
        let claimed = inner.claimed.load(Ordering::SeqCst);
        let free = if refusing || inner.running.len() >= most_in_flight {
            0
        } else {
            capacity.saturating_sub(claimed)
        };
        // While every worker has a job and more wait on the node, a claim waits until
        // half the room is free: fewer, larger claims, for the same jobs held.
        let worth_a_claim = if claimed < inner.workers {
            free > 0
        } else {
            free > 0 && free >= capacity / 2
        };
        let mut full = false;
        if worth_a_claim {
            let started = Instant::now();
            match claim(&jobs, free).await {
                Ok(claimed) => {
                    inner.metrics.claimed(started.elapsed());
                    full = claimed.len() == free;
                    jobs.unqueued(claimed.len());
                    for job in claimed {
                        jobs.start_claimed(job);
                    }
                }
                Err(error) => {
                    warn!(inner.logger, "cannot claim jobs"; "error" => %error);
                }
            }
        }
        if full {
            // There may be more: look again at once (a notification may not come).
            continue;
        }
        tokio::select! {
            () = inner.wake_claimer.notified() => {}
            () = tokio::time::sleep(inner.settings.poll) => {}
            () = inner.shutdown.triggered() => {}
        }
    }
}

impl ClusterJobs {
    /// Jobs to claim beyond the free workers: up to `--claim-ahead`, but no more than
    /// the workers finish in `CLAIM_AHEAD_TIME` at the recent run time, so that a node
    /// holds no long jobs that an idle node could run.
    fn claim_ahead(&self) -> usize {
        let run_micros = self.inner.run_micros.load(Ordering::Relaxed).max(1);
        let finished_meanwhile =
            self.inner.workers as u128 * CLAIM_AHEAD_TIME.as_micros() / u128::from(run_micros);
        self.inner
            .settings
            .claim_ahead
            .min(usize::try_from(finished_meanwhile).unwrap_or(usize::MAX))
    }

    /// Hands a claimed job to the worker pool.
    fn start_claimed(&self, job: ClaimedJob) {
        let inner = &self.inner;
        inner.claimed.fetch_add(1, Ordering::SeqCst);
        inner.running.insert(job.id, job.attempt);
        let jobs = self.clone();
        let (id, attempt) = (job.id, job.attempt);
        if inner.pool.submit(Box::new(move || jobs.run(job))).is_err() {
            // The pool stopped (a drain): the lease runs out and another node runs it.
            inner.claimed.fetch_sub(1, Ordering::SeqCst);
            inner.forget_attempt(id, attempt);
        }
    }
}

/// Claims up to `limit` of the oldest queued jobs. The ids are picked in a
/// materialized CTE with `SKIP LOCKED`: nodes claiming at once take different jobs,
/// and the limit holds (an `IN (subquery)` may be run again, and claim more).
async fn claim(jobs: &ClusterJobs, limit: usize) -> Result<Vec<ClaimedJob>, Unavailable> {
    let inner = &jobs.inner;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (node, lease_ms) = (inner.settings.node, millis(inner.settings.lease));
    // A lease at most: a claim brings its jobs' requests, up to --max-body each. A claim
    // given up is cancelled: committed later, it would leave its jobs running under
    // this node's lease with no worker on them (see `drain` for a cancel too late).
    let rows = on_connection(jobs.db(), inner.settings.lease, move |client| {
        Box::pin(async move {
            let statement = client.prepare_cached(CLAIM).await.map_err(unavailable)?;
            client
                .query(&statement, &[&limit, &node, &lease_ms])
                .await
                .map_err(unavailable)
        })
    })
    .await?;
    if !rows.is_empty() && !inner.debug.claim_delay.is_zero() {
        tokio::time::sleep(inner.debug.claim_delay).await;
    }
    let mut claimed: Vec<ClaimedJob> = rows
        .iter()
        .map(|row| ClaimedJob {
            id: JobId::from_uuid(row.get(0)),
            attempt: row.get(1),
            waited: Duration::from_millis(row.get::<_, i64>(2).try_into().unwrap_or(0)),
            // A request is written with its job and removed only with it.
            request: row.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
        })
        .collect();
    claimed.sort_by_key(|job| job.id);
    Ok(claimed)
}

/// One claim (see `claim`), one statement and its own transaction. It commits without
/// waiting for the disk (`synchronous_commit` off for it alone): a claim the database
/// loses in a crash only puts its jobs back in the queue, and a result then finds its
/// attempt gone and is dropped.
const CLAIM: &str = "WITH no_wait AS MATERIALIZED (
        SELECT set_config('synchronous_commit', 'off', true)
    ), picked AS MATERIALIZED (
        SELECT id FROM icewall_jobs, no_wait WHERE state = 'queued'
        ORDER BY id LIMIT $1 FOR UPDATE OF icewall_jobs SKIP LOCKED
    )
    UPDATE icewall_jobs AS job
    SET state = 'running', attempt = job.attempt + 1, lease_owner = $2,
        lease_expires_at = now() + $3::float8 * interval '1 millisecond',
        started_at = now()
    FROM picked WHERE job.id = picked.id
    RETURNING job.id, job.attempt,
        (extract(epoch FROM now() - job.accepted_at) * 1000)::int8,
        (SELECT body FROM icewall_requests WHERE job_id = job.id)";

/// Listens for `icewall_jobs` notifications on a connection of its own, and reconnects
/// (once a second) whenever it is lost; the claimer's poll covers the gaps.
pub(super) async fn listen(jobs: ClusterJobs) {
    let inner = &jobs.inner;
    loop {
        if inner.draining.load(Ordering::SeqCst) {
            return;
        }
        let config = super::database::config(&inner.settings, "notifications");
        let connected = match config {
            Ok(config) => config.connect(NoTls).await.ok(),
            Err(_) => None,
        };
        if let Some((client, mut connection)) = connected {
            let heard = jobs.clone();
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            let mut driver = tokio::spawn(async move {
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(_) = message {
                        heard.inner.wake_claimer.notify_one();
                    }
                }
            });
            if client.batch_execute("LISTEN icewall_jobs").await.is_ok() {
                // A job may have come while no one listened.
                inner.wake_claimer.notify_one();
                let listened = inner.unless_leaving(&mut driver).await;
                if listened.is_none() {
                    driver.abort();
                    return;
                }
            } else {
                driver.abort();
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The lease period: how often a node extends its leases.
fn lease_period(settings: &ClusterSettings) -> Duration {
    (settings.lease / 3).max(Duration::from_millis(50))
}

/// Every third of a lease, on a connection of its own (whatever the requests take of
/// the pool) and on a task of its own (however long the reaper takes): extends the
/// leases of this node's jobs, and marks the node alive.
pub(super) async fn keep_leases(jobs: ClusterJobs) {
    let inner = &jobs.inner;
    let mut beat = tokio::time::interval(lease_period(&inner.settings));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if inner.unless_leaving(beat.tick()).await.is_none() {
            return;
        }
        if inner.finishes.is_closed() {
            // Its jobs' results would never be stored, while their leases, extended,
            // would keep them from everyone: the node stops beating, and the other
            // nodes take them back after a lease. No known fault leads here.
            error!(
                inner.logger,
                "the finisher stopped: this node no longer beats, and \
                the other nodes take its jobs back"
            );
            return;
        }
        let started = Instant::now();
        let beat = jobs.clone();
        let extended = on_connection(&inner.leases, inner.settings.timeout, move |client| {
            Box::pin(async move { extend_leases(&beat, client).await })
        });
        match extended.await {
            Ok(()) => {
                let mut beaten_at = inner.beaten_at.lock();
                let mut in_touch_since = inner.in_touch_since.lock();
                // Beats come every third of a lease: a longer gap is a beat missed.
                if in_touch_since.is_none()
                    || started.duration_since(*beaten_at) > inner.settings.lease / 2
                {
                    *in_touch_since = Some(started);
                }
                *beaten_at = started;
                inner.metrics.heartbeat(started.elapsed());
            }
            Err(error) => {
                *inner.in_touch_since.lock() = None;
                warn!(inner.logger, "heartbeat failed"; "error" => %error);
            }
        }
    }
}

/// Every third of a lease (or `--claim-poll`, if sooner): requeues (or fails, after
/// `--max-attempts`) the jobs whose lease ran out, and counts the cluster's queued and
/// running jobs. Every node does it: whichever comes first does the work.
pub(super) async fn run_heartbeat(jobs: ClusterJobs) {
    let inner = &jobs.inner;
    let timeout = inner.settings.timeout;
    let mut beat = tokio::time::interval(lease_period(&inner.settings).min(inner.settings.poll));
    loop {
        if inner.unless_leaving(beat.tick()).await.is_none() {
            return;
        }
        let beat = jobs.clone();
        let reaped = on_connection(jobs.db(), timeout, move |client| {
            Box::pin(async move { reap(&beat, client).await })
        });
        match reaped.await {
            Ok(0) => {}
            Ok(requeued) => {
                info!(inner.logger, "jobs of a node that stopped answering requeued";
                    "jobs" => requeued);
                inner.wake_claimer.notify_one();
            }
            Err(error) => warn!(inner.logger, "cannot requeue expired leases"; "error" => %error),
        }
        let beat = jobs.clone();
        let counted = on_connection(jobs.db(), timeout, move |client| {
            Box::pin(async move { count_in_flight(&beat, client).await })
        });
        if let Err(error) = counted.await {
            warn!(inner.logger, "cannot count the cluster's jobs"; "error" => %error);
        }
    }
}

async fn extend_leases(jobs: &ClusterJobs, client: &Object) -> Result<(), Unavailable> {
    let inner = &jobs.inner;
    let ids = running_ids(jobs);
    let lease_ms = millis(inner.settings.lease);
    if !ids.is_empty() {
        // A row locked by another transaction (this node's result being stored, a
        // removal) is skipped rather than waited for, which would keep every other
        // lease from being extended meanwhile; the reapers skip it too while it is
        // locked, and leave it to this node's next beat once let go (see `reap`).
        client
            .execute(
                "WITH mine AS (
                     SELECT id FROM icewall_jobs
                     WHERE lease_owner = $1 AND state = 'running' AND id = ANY($2)
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE icewall_jobs AS job
                 SET lease_expires_at = now() + $3::float8 * interval '1 millisecond'
                 FROM mine WHERE job.id = mine.id",
                &[&inner.settings.node, &ids, &lease_ms],
            )
            .await
            .map_err(unavailable)?;
    }
    // Looked at again: a job claimed since the extension began holds a lease, but one
    // whose claim took most of a lease to come back may have lapsed already.
    let running_now = running_ids(jobs);
    let released = release_lapsed(jobs, client, &running_now).await?;
    if released > 0 {
        info!(inner.logger, "jobs this node holds but does not run requeued"; "jobs" => released);
    }
    let running = i32::try_from(ids.len()).unwrap_or(i32::MAX);
    let updated = client
        .execute(
            "UPDATE icewall_nodes SET heartbeat_at = now(), running = $2 WHERE id = $1",
            &[&inner.settings.node, &running],
        )
        .await
        .map_err(unavailable)?;
    if updated == 0 {
        // Swept as stale during a long outage: this node is back. On this connection,
        // as a second one may not come (a pool of one).
        register_node(client, &inner.settings, inner.workers)
            .await
            .map_err(unavailable)?;
    }
    // Measured again at every beat: a clock stepped while the node runs (either one)
    // must not leave its ids on the old distance. A measure that fails keeps the last.
    if let Ok(ahead) = super::database_clock::ahead_ms(client).await {
        inner.database_ahead_ms.store(ahead, Ordering::Relaxed);
    }
    Ok(())
}

/// The ids of the jobs this node runs now.
fn running_ids(jobs: &ClusterJobs) -> Vec<Uuid> {
    jobs.inner
        .running
        .iter()
        .map(|entry| entry.key().uuid())
        .collect()
}

/// Requeues the jobs whose lease ran out on a node that stopped beating (for a whole
/// lease of its own). A node that beats looks after its own (see `release_lapsed`): a
/// lease can lapse on a live node while another transaction holds its row, and
/// requeued the moment the row is let go, before the node's next beat, the job would
/// run twice and be charged an attempt. A node is judged only by a reaper whose own
/// beats have reached the database for that node's whole lease (`in_touch_since`):
/// after an outage of the database longer than a lease, every node's last beat is a
/// lease old, and the jobs of nodes alive all along would run twice and be charged an
/// attempt for it.
async fn reap(jobs: &ClusterJobs, client: &Object) -> Result<u64, Unavailable> {
    let lease_ms = millis(jobs.inner.settings.lease);
    let in_touch_ms = millis(jobs.inner.in_touch_for());
    requeue_lapsed(
        jobs,
        client,
        "SELECT job.id FROM icewall_jobs AS job
         LEFT JOIN icewall_nodes AS node ON node.id = job.lease_owner
         WHERE job.state = 'running' AND job.lease_expires_at < now()
             AND (node.id IS NULL OR (node.heartbeat_at < now()
                     - coalesce(node.lease_ms, $3) * interval '1 millisecond'
                 AND coalesce(node.lease_ms, $3) <= $4))
         ORDER BY job.lease_expires_at LIMIT $2 FOR UPDATE OF job SKIP LOCKED",
        &[&REAP_BATCH, &lease_ms, &in_touch_ms],
    )
    .await
}

/// Requeues this node's jobs whose lease ran out while it does not run them: a claim
/// that committed after the node gave it up, a result it gave up. `running` are the
/// ids it runs; a job claimed since holds a lease that has not run out.
async fn release_lapsed(
    jobs: &ClusterJobs,
    client: &Object,
    running: &[Uuid],
) -> Result<u64, Unavailable> {
    requeue_lapsed(
        jobs,
        client,
        "SELECT id FROM icewall_jobs
         WHERE state = 'running' AND lease_owner = $2
             AND lease_expires_at < now() AND NOT id = ANY($3)
         FOR UPDATE SKIP LOCKED",
        &[&jobs.inner.settings.node, &running],
    )
    .await
}

/// Puts back in the queue the running jobs that `lapsed` picks (a query of their ids,
/// locking them, whose parameters from `$2` are `params`), or fails those that have
/// run `--max-attempts` times; returns how many were requeued, which the nodes hear of.
async fn requeue_lapsed(
    jobs: &ClusterJobs,
    client: &Object,
    lapsed: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Unavailable> {
    let max_attempts = i32::try_from(jobs.inner.settings.max_attempts).unwrap_or(i32::MAX);
    let statement = format!(
        "WITH lapsed AS MATERIALIZED ({lapsed})
         UPDATE icewall_jobs AS job SET
             state = CASE WHEN job.attempt >= $1 THEN 'failed' ELSE 'queued' END,
             failure = CASE WHEN job.attempt >= $1 THEN format(
                 'its run was cut short %s times (--max-attempts): its node stopped answering, or let it go',
                 job.attempt) END,
             finished_at = CASE WHEN job.attempt >= $1 THEN now() END,
             lease_owner = NULL, lease_expires_at = NULL
         FROM lapsed WHERE job.id = lapsed.id
         RETURNING job.state"
    );
    let mut all: Vec<&(dyn ToSql + Sync)> = vec![&max_attempts];
    all.extend_from_slice(params);
    let rows = client.query(&statement, &all).await.map_err(unavailable)?;
    let requeued = rows
        .iter()
        .filter(|row| row.get::<_, &str>(0) == "queued")
        .count() as u64;
    if requeued > 0 {
        client
            .batch_execute("NOTIFY icewall_jobs")
            .await
            .map_err(unavailable)?;
    }
    Ok(requeued)
}

/// Counts the cluster's queued and running jobs in one pass over the table. Counted in
/// their partial indexes instead (0.1 ms against 25 ms at 200,000 idle retained jobs),
/// it was slower under load: the indexes fill with the entries of jobs that moved on,
/// which a scan cannot mark dead on pages being written, so each count fetched them
/// all from the table again (bench/history.md, fourteenth pass: 0.86 of the reads).
pub(super) const IN_FLIGHT: &str = "SELECT count(*) FILTER (WHERE state = 'queued'),
        count(*) FILTER (WHERE state = 'running')
    FROM icewall_jobs WHERE state IN ('queued', 'running')";

async fn count_in_flight(jobs: &ClusterJobs, client: &Object) -> Result<(), Unavailable> {
    let inner = &jobs.inner;
    let row = client
        .query_one(IN_FLIGHT, &[])
        .await
        .map_err(unavailable)?;
    let count = |index| usize::try_from(row.get::<_, i64>(index)).unwrap_or(0);
    inner.cluster_queued.store(count(0), Ordering::Relaxed);
    inner.cluster_running.store(count(1), Ordering::Relaxed);
    Ok(())
}

/// A duration in milliseconds, for `$n * interval '1 millisecond'`.
pub(super) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
