//! Cluster mode: this node as one of many sharing a PostgreSQL database, and a job's
//! life there top to bottom: `start` (migrate, register the node, start its tasks),
//! `submit` (group-committed accept, in `accept`), `claim` (in `claim`), `run` on this
//! node's own worker pool, `finish` (the result committed only while the job's lease is
//! still this node's, in `finish`), `delete`, and `drain`. Reads are in `reads`.
//!
//! What lives where: the database holds every job, request, result and team log, and
//! is the only truth; this node holds only the jobs it has claimed (`running`, the
//! per-job map that lives while a job is in flight here), the requests waiting for an
//! answer to their `?wait=`, and a bounded cache of results it has read.
//!
//! Database work runs on the node's own small Tokio runtime (`icewall-db` threads),
//! where the connection pool lives; the HTTP handlers await it from actix's threads,
//! the workers and the blocking reads block on it.

mod accept;
mod cache;
mod claim;
mod database;
mod database_clock;
mod finish;
mod joining;
mod nodes;
mod reads;
mod removal;
mod requests;
mod results;
mod retention;
mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use deadpool_postgres::{Object, Pool};
use parking_lot::Mutex;
use slog::{Logger, info, warn};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use self::cache::ResultCache;
use self::claim::ClaimedJob;
use self::database::{
    ConnectionWork, DbRuntime, block_on_aside, connect, describe, on_connection, unavailable,
};
pub use self::nodes::ClusterNode;
use super::idempotency::fingerprint;
use super::registry::WallShape;
use super::service::{
    DebugHooks, DeleteError, JobsSettings, Removable, Removed, Retention, StartError, Submission,
    SubmitError, Submitted, caught,
};
use super::waiters::Waiters;
use super::{JobId, Unavailable};
use crate::metrics::{Metrics, Snapshot};
use crate::pool::JobPool;
use crate::shutdown::Shutdown;
use crate::wall::{self, Limits};

/// How a node joins the cluster (`--database-url` and the flags beside it).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub database_url: String,
    /// This node's id, on each of its log lines and in the nodes table.
    pub node: Uuid,
    /// Where this node listens, shown to the other nodes' operators.
    pub address: String,
    /// Connections this node keeps to the database at most.
    pub pool_size: usize,
    /// How long a request waits for the database before it answers 503.
    pub timeout: Duration,
    /// How long a node that cannot reach its database at start-up keeps trying; zero
    /// tries once.
    pub start_timeout: Duration,
    /// How long a claimed job stays this node's without a heartbeat.
    pub lease: Duration,
    /// Runs of a job whose node stopped answering, before it is failed.
    pub max_attempts: u32,
    /// Jobs claimed beyond the free workers, so that a worker finds its next job here.
    pub claim_ahead: usize,
    /// How often an idle node looks for work when no notification reached it.
    pub poll: Duration,
    /// Bytes of decoded results this node keeps to answer repeated questions.
    pub cache_bytes: usize,
}

#[derive(Clone)]
pub struct ClusterJobs {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClusterSettings,
    db: Pool,
    /// A connection of its own for extending this node's leases: requests that hold
    /// every connection of `db` must not let the leases run out, and the jobs run
    /// again elsewhere, on a node that is alive.
    leases: Pool,
    /// The runtime the database work runs on; shut down by `drain`.
    runtime: Mutex<DbRuntime>,
    handle: tokio::runtime::Handle,
    pool: JobPool,
    workers: usize,
    max_queue: usize,
    retention: Retention,
    accepts: mpsc::UnboundedSender<accept::Pending>,
    finishes: mpsc::UnboundedSender<finish::Finished>,
    /// Wakes the claimer: a notification from the database, a local accept, a free worker.
    wake_claimer: Notify,
    /// Claimed jobs not yet simulated: what holds a worker, or waits for one.
    claimed: AtomicUsize,
    /// Microseconds a job has run lately (a moving average), for `claim_ahead`; none
    /// known yet reads as long, so a new node claims no more than its workers.
    run_micros: AtomicU64,
    /// Every job in flight on this node, from its claim to its committed result, with
    /// its attempt: the heartbeat extends these leases and no other.
    running: DashMap<JobId, i32>,
    /// Set by `drain`: no more claims.
    draining: AtomicBool,
    /// While the database refuses a batch of results that the finisher keeps trying:
    /// the last refusal. Meanwhile the node claims nothing and is not ready.
    results_refused: Mutex<Option<String>>,
    /// Set by `close`: the database's threads are stopped.
    closed: AtomicBool,
    /// The claimer task, which `drain` waits for: a claim under way when the drain
    /// began has committed its jobs to this node, which must run them.
    claimer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The tasks that work for the node as a whole (listening, the heartbeat, the
    /// sweeps), which `drain` stops once its jobs are done: a heartbeat after the
    /// node has left would register it again.
    rounds: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Triggered by `drain` when the rounds are to end (a flag of its own: the server's
    /// shutdown comes before the drain, while the rounds must go on through it).
    leaving: Shutdown,
    /// Submissions from their shutdown check until their batch has answered them,
    /// whether or not their clients are still there (see `AcceptInProgress`).
    accepts_in_progress: AtomicUsize,
    /// The cluster's queued and running jobs, recounted by the heartbeat (for `/metrics`
    /// and the `--max-queue` bound, which is the cluster's); in between, the queue count
    /// follows this node's own accepts, claims and cancels, so that a burst on one node
    /// meets the bound.
    cluster_queued: AtomicUsize,
    cluster_running: AtomicUsize,
    /// The last count of the cluster's jobs by state, and when it was asked for.
    counts: Mutex<Option<(Instant, [usize; 4])>>,
    /// When the lease keeper last reached the database (at the start, the node's
    /// registration). Once it is a lease ago, the other nodes may take this node's
    /// jobs: it claims no more and is not ready until a beat gets through again.
    beaten_at: Mutex<Instant>,
    /// Since when the lease keeper's beats have all reached the database, each within
    /// half a lease of the one before (`None` after one that did not). A reaper judges
    /// another node dead only once this is a lease of that node's old: until then, the
    /// node's silence may be the database's absence, which every node met alike.
    in_touch_since: Mutex<Option<Instant>>,
    /// How far the database's clock is ahead of this node's, in milliseconds, for the
    /// ids it makes (see `database_clock`).
    database_ahead_ms: AtomicI64,
    waiters: Waiters,
    cache: ResultCache,
    shutdown: Shutdown,
    logger: Logger,
    metrics: Arc<Metrics>,
    debug: DebugHooks,
}

/// How far apart this node's clock and the database's are (either way) when the node
/// says so at start-up: its ids then sort by the database's clock, not its own.
const CLOCKS_APART_MS: i64 = 1_000;

/// A database call asked of a node whose database threads have stopped.
fn stopping() -> Unavailable {
    Unavailable("the node is stopping".to_owned())
}

/// Counts a submission from its arrival until its batch has answered it: owned, so
/// that it goes into the batch with the submission, and the drain waits for the batch
/// (whose jobs it must see committed or refused) even when the client has gone.
pub(super) struct AcceptInProgress(Arc<Inner>);

impl AcceptInProgress {
    fn enter(inner: &Arc<Inner>) -> AcceptInProgress {
        inner.accepts_in_progress.fetch_add(1, Ordering::SeqCst);
        AcceptInProgress(Arc::clone(inner))
    }
}

impl Drop for AcceptInProgress {
    fn drop(&mut self) {
        self.0.accepts_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    /// `work`, or `None` once the node is leaving (see `drain`): how the node's rounds
    /// wait, between their statements.
    async fn unless_leaving<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            // First: a node that is leaving starts no more work.
            biased;
            () = self.leaving.triggered() => None,
            done = work => Some(done),
        }
    }

    /// Why this node should take no job now, if it should not: the claimer claims
    /// nothing and `/readyz` answers 503 with it. Its finisher stopped (no result would
    /// be stored); its heartbeat has not got through for a lease (the other nodes'
    /// reapers count it as gone, and take its jobs back); or the database refuses its
    /// results (a job claimed now would only wait for that on this node, where it
    /// cannot be cancelled, rather than in the queue).
    fn unfit_for_work(&self) -> Option<String> {
        if self.finishes.is_closed() {
            return Some(
                "this node's finisher stopped: it stores no result, and the other nodes \
                 take back the jobs it held"
                    .to_owned(),
            );
        }
        let since = self.beaten_at.lock().elapsed();
        if since > self.settings.lease {
            return Some(format!(
                "this node's heartbeat has not reached the database for {:.1}s (its --lease \
                 is {}): the other nodes may take back the jobs it holds",
                since.as_secs_f64(),
                humantime::format_duration(self.settings.lease),
            ));
        }
        (self.results_refused.lock().as_ref())
            .map(|refused| format!("the database refuses this node's results: {refused}"))
    }

    /// How long this node's beats have all reached the database, up to now: none while
    /// its last one is older than a beat missed (the node stopped or starved meanwhile,
    /// its keeper not yet back to say so).
    fn in_touch_for(&self) -> Duration {
        let beaten_at = self.beaten_at.lock();
        match *self.in_touch_since.lock() {
            Some(since) if beaten_at.elapsed() <= self.settings.lease / 2 => since.elapsed(),
            _ => Duration::ZERO,
        }
    }

    /// Lets go of `attempt` of job `id`. The node may have claimed the job again
    /// meanwhile (its lease ran out while this attempt ran): the newer attempt is kept,
    /// or its lease would go unrenewed.
    fn forget_attempt(&self, id: JobId, attempt: i32) {
        self.running
            .remove_if(&id, |_, running| *running == attempt);
    }
}

impl ClusterJobs {
    /// Connects to the database, brings its schema up to date, registers this node and
    /// starts its workers and its tasks (accept, claim, listen, heartbeat, finish, sweep).
    /// A database that cannot be reached yet is waited for, up to `start_timeout` (see
    /// `joining`).
    ///
    /// # Errors
    /// When the database cannot be reached in that time, refuses the node, or cannot be
    /// migrated, or threads cannot be started.
    pub fn start(
        settings: &JobsSettings,
        cluster: ClusterSettings,
        shutdown: Shutdown,
        logger: Logger,
        metrics: Arc<Metrics>,
    ) -> Result<ClusterJobs, StartError> {
        let runtime = DbRuntime::start()?;
        let handle = runtime.handle();
        let db = connect(&cluster, cluster.pool_size, "requests")?;
        let leases = connect(&cluster, 1, "leases")?;
        let database_ahead_ms = block_on_aside(
            &handle,
            joining::join(&db, &cluster, settings.workers, &logger),
        )?;
        if database_ahead_ms.abs() >= CLOCKS_APART_MS {
            warn!(logger, "this node's clock is off the database's: its job ids are made on \
                the database's"; "database_ahead_ms" => database_ahead_ms);
        }
        let (accepts, accept_queue) = mpsc::unbounded_channel();
        let (finishes, finish_queue) = mpsc::unbounded_channel();
        let jobs = ClusterJobs {
            inner: Arc::new(Inner {
                cache: ResultCache::new(cluster.cache_bytes),
                settings: cluster,
                db,
                leases,
                runtime: Mutex::new(runtime),
                handle,
                pool: JobPool::start("icewall-worker", settings.workers)?,
                workers: settings.workers,
                max_queue: settings.max_queue,
                retention: settings.retention,
                accepts,
                finishes,
                wake_claimer: Notify::new(),
                claimed: AtomicUsize::new(0),
                run_micros: AtomicU64::new(u64::MAX),
                running: DashMap::new(),
                draining: AtomicBool::new(false),
                results_refused: Mutex::new(None),
                closed: AtomicBool::new(false),
                claimer: Mutex::new(None),
                rounds: Mutex::new(Vec::new()),
                leaving: Shutdown::new(),
                accepts_in_progress: AtomicUsize::new(0),
                cluster_queued: AtomicUsize::new(0),
                cluster_running: AtomicUsize::new(0),
                counts: Mutex::new(None),
                beaten_at: Mutex::new(Instant::now()),
                in_touch_since: Mutex::new(Some(Instant::now())),
                database_ahead_ms: AtomicI64::new(database_ahead_ms),
                waiters: Waiters::default(),
                shutdown,
                logger,
                metrics,
                debug: settings.debug.clone(),
            }),
        };
        let handle = &jobs.inner.handle;
        handle.spawn(accept::run(jobs.clone(), accept_queue));
        handle.spawn(finish::run(jobs.clone(), finish_queue));
        *jobs.inner.claimer.lock() = Some(handle.spawn(claim::run_claimer(jobs.clone())));
        *jobs.inner.rounds.lock() = vec![
            handle.spawn(claim::listen(jobs.clone())),
            handle.spawn(claim::keep_leases(jobs.clone())),
            handle.spawn(claim::run_heartbeat(jobs.clone())),
            handle.spawn(retention::run(jobs.clone())),
        ];
        Ok(jobs)
    }

    /// Accepts a job: its row and its request are committed before this returns its id.
    /// Accepts arriving together share one transaction (see `accept`).
    ///
    /// # Errors
    /// `ShuttingDown`, `QueueFull` (the cluster's queue is at `--max-queue`), `KeyReused`,
    /// or `Storage` when the database did not commit it.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        // Counted before the shutdown check, which `drain` makes after its trigger.
        let in_progress = AcceptInProgress::enter(inner);
        // Refusals before the batch are counted here, the batch's with its answers
        // (see `answered`).
        let refused = |error: SubmitError| {
            inner.metrics.rejected(error.rejection());
            Err(error)
        };
        if !self.is_accepting() {
            return refused(SubmitError::ShuttingDown);
        }
        // The cluster's queue as last counted (within a poll interval) and as this node
        // changed it since: the other nodes' accepts since the count, and accepts in
        // one batch, may pass the bound together.
        if inner.cluster_queued.load(Ordering::Relaxed) >= inner.max_queue {
            return refused(SubmitError::QueueFull {
                limit: inner.max_queue,
            });
        }
        let Submission { config, key, .. } = submission;
        let request = serde_json::to_vec(&config).expect("a wall config always serializes");
        let key = key.map(|key| (key.as_str().to_owned(), fingerprint(&request)));
        let (answer, answered) = oneshot::channel();
        let pending = accept::Pending {
            id: JobId::generate_ahead_by(inner.database_ahead_ms.load(Ordering::Relaxed)),
            shape: WallShape::of(&config),
            request,
            key,
            answer,
            arrived: Instant::now(),
            _in_progress: in_progress,
        };
        if inner.accepts.send(pending).is_err() {
            return refused(SubmitError::ShuttingDown);
        }
        // The batch commits whether or not this client is still there to hear it.
        let accepted = answered.await.unwrap_or_else(|_| {
            Err(SubmitError::Database(
                "the node stopped before the database answered".to_owned(),
            ))
        });
        if matches!(
            accepted,
            Ok(Submitted {
                replayed: false,
                ..
            })
        ) {
            inner.wake_claimer.notify_one();
        }
        accepted
    }

    /// Runs a claimed job on a worker; its result goes to the finisher.
    fn run(&self, job: ClaimedJob) {
        let inner = &self.inner;
        let ClaimedJob {
            id,
            attempt,
            request,
            waited,
        } = job;
        let logger = inner
            .logger
            .new(slog::o!("job_id" => id.to_string(), "attempt" => attempt));
        inner.metrics.job_started(waited);
        info!(logger, "job started");
        let started = Instant::now();
        let simulated = caught(|| {
            let config = wall::parse_json(&request, &Limits::engine_bounds())
                .map_err(|error| format!("the stored request is damaged: {error}"))?;
            inner.debug.apply(&config);
            Ok(wall::simulate(&config))
        });
        self.note_run_time(started.elapsed());
        let record = finish::Encoded::of(simulated);
        // The worker is free: another job may be claimed while this one is committed.
        inner.claimed.fetch_sub(1, Ordering::SeqCst);
        inner.wake_claimer.notify_one();
        let finished = finish::Finished {
            id,
            attempt,
            record,
            started,
            logger,
        };
        if let Err(unsent) = inner.finishes.send(finished) {
            // Only after the runtime stopped: the lease runs out and another node reruns it.
            inner.forget_attempt(unsent.0.id, unsent.0.attempt);
        }
    }

    /// Removes a finished job or cancels a queued one, from any node, as far as `what`
    /// allows.
    ///
    /// # Errors
    /// `Unknown`, `InFlight` for a running job (`NotQueued` for any but a queued one, to
    /// a cancel), or `Unavailable`.
    pub async fn remove(&self, id: JobId, what: Removable) -> Result<Removed, DeleteError> {
        let ttl = self.ttl_ms();
        let jobs = self.clone();
        self.on_db(move |client| {
            Box::pin(async move {
                let removed = removal::remove(client, id, what, ttl).await;
                // Here, with the removal: a client gone meanwhile leaves the job
                // removed all the same.
                if let Ok(removed) = removed {
                    jobs.removed(id, removed);
                }
                Ok(removed)
            })
        })
        .await?
    }

    /// What a removal changes on this node: its cached result, its waiters, its count
    /// of the cluster's queue, its log and its metrics.
    fn removed(&self, id: JobId, removed: Removed) {
        self.inner.cache.remove(id);
        self.wake_waiters(id);
        match removed {
            Removed::Cancelled => {
                self.unqueued(1);
                self.inner.metrics.job_cancelled();
                info!(self.inner.logger, "job cancelled"; "job_id" => %id);
            }
            Removed::Deleted => info!(self.inner.logger, "job removed"; "job_id" => %id),
        }
    }

    /// Stops claiming, refuses new jobs, finishes the jobs this node has claimed (their
    /// results committed), and leaves the queue to the other nodes. Reads go on until
    /// `close`.
    pub fn drain(&self) {
        let inner = &self.inner;
        inner.shutdown.trigger();
        inner.draining.store(true, Ordering::SeqCst);
        inner.wake_claimer.notify_one();
        while inner.accepts_in_progress.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A claim under way has marked its jobs running under this node's lease: they
        // reach the workers before the pool stops, instead of waiting out the lease
        // (an attempt spent) for another node. A claim gives up after a lease (its
        // connection's wait and its statement together), the margin beyond it the time
        // its jobs take to reach the workers.
        // How long the drain waits for a task of the node's to end: a lease (a claim's
        // connection and statement, or a round's), and a statement's time beyond it.
        let bound = inner.settings.lease + inner.settings.timeout;
        let claimer = inner.claimer.lock().take();
        if let Some(claimer) = claimer {
            let _ = inner
                .handle
                .block_on(async { tokio::time::timeout(bound, claimer).await });
        }
        inner.pool.shutdown();
        // The finisher commits what the workers left, or gives a result up after a
        // lease's time without the database (its job then runs again elsewhere). A
        // finisher that stopped commits nothing more: the other nodes take those back.
        while !inner.running.is_empty() && !inner.finishes.is_closed() {
            std::thread::sleep(Duration::from_millis(2));
        }
        // The rounds end between two statements, not in one (a statement cut off would
        // leave its connection busy in the pool); what does not end in time is cut off
        // (the `LISTEN`, which waits on a connection of its own).
        inner.leaving.trigger();
        let rounds: Vec<_> = inner.rounds.lock().drain(..).collect();
        let aborts: Vec<_> = rounds.iter().map(|round| round.abort_handle()).collect();
        let _ = inner.handle.block_on(async {
            tokio::time::timeout(bound, futures_util::future::join_all(rounds)).await
        });
        for round in aborts {
            round.abort();
        }
        // A claim given up whose cancel came too late committed jobs to this node that
        // no worker here runs, and a result given up left its job running: back to the
        // queue, rather than wait for their lease.
        let releasing = self.clone();
        match self.block_on_db(move |client| {
            Box::pin(async move { claim::release_unrun(&releasing, client).await })
        }) {
            Ok(0) => {}
            Ok(released) => {
                warn!(inner.logger, "jobs claimed too late to run here are queued again";
                    "jobs" => released);
            }
            Err(error) => {
                warn!(inner.logger, "cannot look for jobs claimed too late to run here";
                    "error" => %error);
            }
        }
        let node = inner.settings.node;
        let _ = self.block_on_db(move |client| Box::pin(claim::unregister_node(client, node)));
    }

    /// Stops the database's threads, once the requests still being answered after the
    /// drain have had their time: a team log being sent reads its chunks until then.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.runtime.lock().shut_down();
    }

    /// What a batch answered a submission, in the node's count of the cluster's queue,
    /// its log and its metrics: here, not where the client waits, as a client gone
    /// meanwhile leaves the job made all the same.
    fn answered(&self, arrived: Instant, answer: &Result<Submitted, SubmitError>) {
        let inner = &self.inner;
        match answer {
            Ok(Submitted {
                id,
                replayed: false,
            }) => {
                inner.cluster_queued.fetch_add(1, Ordering::Relaxed);
                inner.metrics.job_accepted(arrived.elapsed());
                info!(inner.logger, "job accepted"; "job_id" => %id);
            }
            Ok(Submitted { replayed: true, .. }) => {}
            Err(error) => inner.metrics.rejected(error.rejection()),
        }
    }

    /// Takes jobs this node claimed or cancelled off its count of the cluster's queue,
    /// which the heartbeat recounts from the database.
    fn unqueued(&self, jobs: usize) {
        let _ = self.inner.cluster_queued.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |queued| Some(queued.saturating_sub(jobs)),
        );
    }

    /// Folds a job's run time into the moving average (an eighth at a time).
    fn note_run_time(&self, ran: Duration) {
        let ran = u64::try_from(ran.as_micros()).unwrap_or(u64::MAX);
        let _ =
            self.inner
                .run_micros
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |average| {
                    Some(if average == u64::MAX {
                        ran
                    } else {
                        average - average / 8 + ran / 8
                    })
                });
    }

    /// Jobs this node has claimed and not yet finished.
    pub fn claimed_here(&self) -> usize {
        self.inner.running.len()
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = &self.inner;
        let queued = inner.cluster_queued.load(Ordering::Relaxed);
        Snapshot {
            queue_depth: queued,
            queue_bytes: 0,
            in_flight: queued + inner.cluster_running.load(Ordering::Relaxed),
            workers: inner.pool.live_workers(),
            running_here: inner.running.len(),
        }
    }

    pub fn is_accepting(&self) -> bool {
        !self.inner.shutdown.is_triggered()
    }

    fn db(&self) -> &Pool {
        &self.inner.db
    }

    /// A connection from the pool, within `--database-timeout`.
    async fn client(&self) -> Result<Object, Unavailable> {
        self.db().get().await.map_err(unavailable)
    }

    /// Runs `work` on one of the pool's connections, on the node's runtime, within
    /// `--database-timeout` (see `on_connection`).
    // Each timeout is made inside the database runtime (an async block), whose timer it
    // then uses: made on the calling thread it needs that thread's runtime, which a
    // plain thread (the drain's) does not have.
    async fn on_db<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(&'c mut Object) -> ConnectionWork<'c, T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        let (db, timeout) = (self.db().clone(), self.inner.settings.timeout);
        self.inner
            .handle
            .spawn(async move { on_connection(&db, timeout, work).await })
            .await
            .map_err(|_| stopping())?
    }

    /// `on_db` for a caller off the async threads (a worker, a blocking read, the
    /// drain).
    fn block_on_db<T>(
        &self,
        work: impl for<'c> FnOnce(&'c mut Object) -> ConnectionWork<'c, T>,
    ) -> Result<T, Unavailable> {
        // The runtime's timers are gone once it is shut down.
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(stopping());
        }
        let timeout = self.inner.settings.timeout;
        self.inner
            .handle
            .block_on(on_connection(self.db(), timeout, work))
    }

    pub(super) fn wake_waiters(&self, id: JobId) {
        self.inner.waiters.wake(id);
    }
}
