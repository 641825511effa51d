//! The job service: accepts a config (durably), queues it in the pool, runs the
//! simulation on a worker, and records the outcome in the store and the registry.
//! Restart recovery and the drain at shutdown live here too.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;
use slog::{Logger, error, info, warn};

use super::journal::StoredRequest;
use super::store::{KeyRecord, Record};
use super::{JobId, JobState, Registry, ResultStore, StoreError, StoreOptions};
use crate::metrics::{Metrics, Rejection, Snapshot};
use crate::pool::JobPool;
use crate::wall::{self, Limits, WallConfig};

/// Configs this small ride along in the queue; larger ones are read back from their
/// request file when they run, so a full queue of huge walls does not fill memory.
const MAX_SECTIONS_KEPT_IN_QUEUE: usize = 10_000;

pub struct JobsSettings {
    pub results_dir: PathBuf,
    pub workers: usize,
    pub max_queue: usize,
    pub store: StoreOptions,
    pub retention: Retention,
    pub debug: DebugHooks,
}

/// How long and how many finished jobs are kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub ttl: Duration,
    pub max_results: usize,
}

/// Test-only behaviour, off by default and hidden from `--help`: lets the integration
/// tests make jobs slow (to catch a shutdown mid-queue) or panic (to check isolation).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugHooks {
    pub job_delay: Duration,
    pub panic_on_num_teams: Option<u64>,
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Option<IdempotencyKey> {
        let visible = text.bytes().all(|byte| (0x21..=0x7e).contains(&byte));
        (visible && (1..=255).contains(&text.len())).then(|| IdempotencyKey(text.to_owned()))
    }
}

/// What a key points at. `accepted` is false while the first request with the key is
/// being stored: a second one then waits its turn (409) rather than get an id that
/// might not be kept.
#[derive(Clone)]
struct KeyEntry {
    id: JobId,
    fingerprint: String,
    accepted: bool,
}

/// An accepted submission: a new job, or the one an earlier request with the same key made.
pub struct Submitted {
    pub id: JobId,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is being accepted; retry in a moment")]
    KeyInProgress,
    #[error("the job queue is full; retry later")]
    QueueFull,
    #[error("the server is shutting down and accepts no new jobs")]
    ShuttingDown,
    #[error("the job could not be stored on disk: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("Invalid job_id")]
    Unknown,
    #[error("the job is {0}; only a finished job can be deleted")]
    InFlight(&'static str),
    #[error("the job's request is still needed by jobs accepted with it; retry in a moment")]
    Pinned,
    #[error("the result could not be removed: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the worker threads: {0}")]
    Threads(#[from] io::Error),
}

/// How soon the retention sweeper looks again at jobs it had to leave pinned.
const PINNED_RETRY: Duration = Duration::from_millis(250);

/// Cheap to clone; shared by the HTTP handlers and the workers.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    store: ResultStore,
    pool: JobPool,
    accepting: AtomicBool,
    /// Submissions between their `accepting` check and their job being queued.
    accepts_in_progress: AtomicUsize,
    /// Idempotency keys of the jobs that still exist.
    keys: DashMap<String, KeyEntry>,
    logger: Logger,
    metrics: Arc<Metrics>,
    retention: Retention,
    /// Wakes the retention sweeper; dropping it stops the sweeper.
    sweeper: Mutex<Option<mpsc::Sender<()>>>,
    debug: DebugHooks,
}

impl Jobs {
    /// Opens the store, starts the workers, and queues again every job accepted before
    /// a restart that has no result yet.
    ///
    /// # Errors
    /// When the results directory is unusable or threads cannot be started.
    pub fn start(
        settings: &JobsSettings,
        logger: Logger,
        metrics: Arc<Metrics>,
    ) -> Result<Jobs, StartError> {
        let store = ResultStore::open(&settings.results_dir, settings.store)?;
        let pool = JobPool::start("icewall-worker", settings.workers, settings.max_queue)?;
        let jobs = Jobs {
            inner: Arc::new(Inner {
                registry: Registry::default(),
                store,
                pool,
                accepting: AtomicBool::new(true),
                accepts_in_progress: AtomicUsize::new(0),
                keys: DashMap::new(),
                logger,
                metrics,
                retention: settings.retention,
                sweeper: Mutex::new(None),
                debug: settings.debug,
            }),
        };
        jobs.recover().map_err(StoreError::from)?;
        jobs.start_sweeper()?;
        Ok(jobs)
    }

    fn recover(&self) -> io::Result<()> {
        let logger = &self.inner.logger;
        let (recovered, keys) = self
            .inner
            .store
            .recover(|problem| warn!(logger, "results directory: {}", problem))?;
        for record in keys {
            if let Ok(id) = record.job_id.parse() {
                let entry = KeyEntry {
                    id,
                    fingerprint: record.fingerprint,
                    accepted: true,
                };
                self.inner.keys.insert(record.key, entry);
            }
        }
        let (mut finished, mut requeued) = (0, 0);
        for job in recovered {
            self.inner
                .registry
                .insert(job.id, job.state, job.finished_at, job.journal);
            if let Some(request) = job.request {
                let jobs = self.clone();
                let accepted_at = Instant::now();
                self.inner
                    .pool
                    .submit_unbounded(Box::new(move || {
                        jobs.run(QueuedJob {
                            id: job.id,
                            request,
                            config: None,
                            accepted_at,
                            request_id: None,
                        })
                    }))
                    .expect("the pool accepts work until shutdown begins");
                requeued += 1;
            } else {
                finished += 1;
            }
        }
        info!(logger, "recovered jobs from disk"; "finished" => finished, "requeued" => requeued);
        Ok(())
    }

    /// Accepts a job: its request is on disk (synced) before this returns its id.
    ///
    /// # Errors
    /// `QueueFull` or `ShuttingDown` (nothing was stored), or `Storage` when the request
    /// could not be made durable.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        let submitted = self.accept(submission).await;
        match &submitted {
            Ok(Submitted {
                replayed: false, ..
            }) => self.inner.metrics.job_accepted(),
            Ok(Submitted { replayed: true, .. }) => {}
            Err(error) => self.inner.metrics.rejected(match error {
                SubmitError::KeyReused | SubmitError::KeyInProgress => Rejection::Idempotency,
                SubmitError::QueueFull => Rejection::QueueFull,
                SubmitError::ShuttingDown => Rejection::ShuttingDown,
                SubmitError::Storage(_) => Rejection::Storage,
            }),
        }
        submitted
    }

    async fn accept(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        let Submission {
            config,
            key,
            request_id,
        } = submission;
        // Counted before the check, so that `drain` either sees this accept or it sees
        // the refusal: a durable request always reaches the queue.
        let _accepting = AcceptInProgress::enter(&self.inner.accepts_in_progress);
        if !self.is_accepting() {
            return Err(SubmitError::ShuttingDown);
        }
        // The bound is checked before the request is stored; concurrent accepts may
        // pass it together, so the queue can exceed it by the accepts in flight.
        if self.inner.pool.is_full() {
            return Err(SubmitError::QueueFull);
        }
        let id = JobId::generate();
        let request = serde_json::to_vec(&config).expect("a wall config always serializes");
        let key_record = match &key {
            None => None,
            Some(key) => match self.claim_key(key, id, &request)? {
                KeyClaim::Replay(earlier) => {
                    return Ok(Submitted {
                        id: earlier,
                        replayed: true,
                    });
                }
                KeyClaim::Claimed(record) => Some(record),
            },
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.inner
            .store
            .accept(id, request, key_record.as_ref(), move |stored| {
                let _ = sender.send(stored);
            });
        let stored = receiver.await.unwrap_or_else(|_| {
            Err(StoreError::Io(io::Error::other(
                "the result store stopped before answering",
            )))
        });
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                if let Some(key) = &key {
                    self.inner.keys.remove_if(&key.0, |_, entry| entry.id == id);
                }
                return Err(SubmitError::Storage(error.to_string()));
            }
        };

        let sections = config.section_count();
        self.inner
            .registry
            .insert(id, JobState::Queued, None, Arc::downgrade(&stored.journal));
        let kept = (sections <= MAX_SECTIONS_KEPT_IN_QUEUE).then_some(config);
        let jobs = self.clone();
        let accepted_at = Instant::now();
        let logged_request_id = request_id.clone().unwrap_or_default();
        self.inner
            .pool
            .submit_unbounded(Box::new(move || {
                jobs.run(QueuedJob {
                    id,
                    request: stored,
                    config: kept,
                    accepted_at,
                    request_id,
                })
            }))
            .expect("the pool takes work until every accept in progress has finished");
        if let Some(key) = &key {
            if let Some(mut entry) = self.inner.keys.get_mut(&key.0) {
                entry.accepted = true;
            }
        }
        info!(self.inner.logger, "job accepted"; "job_id" => %id, "sections" => sections,
            "request_id" => logged_request_id);
        Ok(Submitted {
            id,
            replayed: false,
        })
    }

    /// Claims `key` for job `id`, or finds the job an earlier request with it made.
    fn claim_key(
        &self,
        key: &IdempotencyKey,
        id: JobId,
        request: &[u8],
    ) -> Result<KeyClaim, SubmitError> {
        let fingerprint = fingerprint(request);
        let claim = KeyEntry {
            id,
            fingerprint: fingerprint.clone(),
            accepted: false,
        };
        match self.inner.keys.entry(key.0.clone()) {
            Entry::Occupied(mut entry) => {
                let earlier = entry.get().clone();
                if !earlier.accepted {
                    return Err(SubmitError::KeyInProgress);
                }
                // A key whose job was removed (expired or deleted) is free again.
                if self.inner.registry.state(earlier.id).is_some() {
                    return if earlier.fingerprint == fingerprint {
                        Ok(KeyClaim::Replay(earlier.id))
                    } else {
                        Err(SubmitError::KeyReused)
                    };
                }
                entry.insert(claim);
            }
            Entry::Vacant(entry) => {
                entry.insert(claim);
            }
        }
        Ok(KeyClaim::Claimed(KeyRecord {
            key: key.0.clone(),
            job_id: id.to_string(),
            fingerprint,
        }))
    }

    /// Runs on a worker: simulates, stores the outcome, and records it when stored.
    fn run(&self, job: QueuedJob) {
        let QueuedJob {
            id,
            request,
            config,
            accepted_at,
            request_id,
        } = job;
        let logger = self.inner.logger.new(slog::o!("job_id" => id.to_string()));
        // A recovered job has no request id: no empty key for it.
        let logger = match request_id {
            Some(request_id) => logger.new(slog::o!("request_id" => request_id)),
            None => logger,
        };
        self.inner.registry.set_running(id);
        self.inner.metrics.job_started(accepted_at.elapsed());
        info!(logger, "job started");
        let started = Instant::now();
        let simulated = panic::catch_unwind(AssertUnwindSafe(|| {
            let config = match config {
                Some(config) => config,
                None => self.load_request(&request)?,
            };
            self.apply_debug_hooks(&config);
            Ok(wall::simulate(&config))
        }));
        let simulated = simulated.unwrap_or_else(|payload| {
            Err(format!(
                "the simulation panicked: {}",
                panic_message(&*payload)
            ))
        });
        let record = match &simulated {
            Ok(outcome) => Record::Done(outcome),
            Err(reason) => Record::Failed(reason),
        };
        let failure: Option<Arc<str>> = simulated
            .as_ref()
            .err()
            .map(|reason| reason.as_str().into());
        let registry_jobs = self.clone();
        let journal = Arc::downgrade(&request.journal);
        self.inner.store.commit(id, &record, request, move |stored| {
            let elapsed_ms = crate::telemetry::millis(started.elapsed());
            let metrics = &registry_jobs.inner.metrics;
            if stored.is_err() {
                metrics.store_error();
            }
            metrics.job_finished(stored.is_ok() && failure.is_none(), started.elapsed());
            let state = match (stored, failure) {
                (Ok(()), None) => {
                    info!(logger, "job finished"; "elapsed_ms" => elapsed_ms);
                    JobState::Done
                }
                (Ok(()), Some(reason)) => {
                    warn!(logger, "job failed"; "reason" => %reason, "elapsed_ms" => elapsed_ms);
                    JobState::Failed(reason)
                }
                (Err(error), _) => {
                    let reason = format!("the result could not be stored on disk: {error}");
                    error!(logger, "job failed"; "reason" => %reason, "elapsed_ms" => elapsed_ms);
                    JobState::Failed(reason.into())
                }
            };
            let registry = &registry_jobs.inner.registry;
            registry.finish(id, state, journal);
            if registry.finished() > registry_jobs.inner.retention.max_results {
                registry_jobs.nudge_sweeper();
            }
        });
    }

    fn load_request(&self, request: &StoredRequest) -> Result<WallConfig, String> {
        let request = self
            .inner
            .store
            .read_request(request)
            .map_err(|error| format!("the stored request cannot be read: {error}"))?;
        wall::parse_json(&request, &Limits::engine_bounds())
            .map_err(|error| format!("the stored request is damaged: {error}"))
    }

    fn apply_debug_hooks(&self, config: &WallConfig) {
        let debug = self.inner.debug;
        if !debug.job_delay.is_zero() {
            std::thread::sleep(debug.job_delay);
        }
        let teams = config.num_teams().map(|teams| teams.get());
        if debug.panic_on_num_teams.is_some() && debug.panic_on_num_teams == teams {
            panic!("debug hook: panic on num_teams {teams:?}");
        }
    }

    /// A job's state; a job past its retention answers as unknown, and goes.
    pub fn state(&self, id: JobId) -> Option<JobState> {
        let state = self.inner.registry.state(id)?;
        if self.is_expired(id) && self.delete(id).is_ok() {
            return None;
        }
        Some(state)
    }

    fn is_expired(&self, id: JobId) -> bool {
        self.inner.registry.finished_at(id).is_some_and(|at| {
            at.elapsed()
                .is_ok_and(|age| age >= self.inner.retention.ttl)
        })
    }

    /// Removes a finished job: its record and its result file.
    ///
    /// # Errors
    /// `Unknown`, `InFlight`, `Pinned` (see `Registry::is_pinned`), or `Storage`.
    pub fn delete(&self, id: JobId) -> Result<(), DeleteError> {
        let registry = &self.inner.registry;
        let state = registry.state(id).ok_or(DeleteError::Unknown)?;
        if !state.is_finished() {
            return Err(DeleteError::InFlight(state.name()));
        }
        if registry.is_pinned(id) {
            return Err(DeleteError::Pinned);
        }
        if !registry.remove_finished(id) {
            return Err(DeleteError::Unknown);
        }
        self.inner
            .store
            .remove_result(id)
            .map_err(|error| DeleteError::Storage(error.to_string()))?;
        info!(self.inner.logger, "job removed"; "job_id" => %id);
        Ok(())
    }

    /// Removes expired jobs, and the oldest beyond `max_results`, every so often.
    fn start_sweeper(&self) -> io::Result<()> {
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = (self.inner.retention.ttl / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        // A weak handle: the sweeper never keeps the service alive.
        let jobs = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("icewall-retention".to_owned())
            .spawn(move || {
                let mut wait = interval;
                // A message asks for a sweep now; a closed channel ends the thread.
                while !matches!(
                    stopped.recv_timeout(wait),
                    Err(mpsc::RecvTimeoutError::Disconnected)
                ) {
                    // Nudges that queued up meanwhile are served by this one sweep.
                    while stopped.try_recv().is_ok() {}
                    let Some(inner) = jobs.upgrade() else { return };
                    let pinned = Jobs { inner }.sweep();
                    // A pinned job is free once its journal segment goes, soon.
                    wait = if pinned > 0 {
                        interval.min(PINNED_RETRY)
                    } else {
                        interval
                    };
                }
            })?;
        *self.inner.sweeper.lock() = Some(stop);
        Ok(())
    }

    fn nudge_sweeper(&self) {
        if let Some(sweeper) = &*self.inner.sweeper.lock() {
            let _ = sweeper.send(());
        }
    }

    /// Removes the jobs past their time or beyond the count; returns how many of them
    /// had to stay because their request is still in a journal segment in use.
    fn sweep(&self) -> usize {
        let registry = &self.inner.registry;
        self.inner
            .keys
            .retain(|_, entry| !entry.accepted || registry.state(entry.id).is_some());
        let registry = &self.inner.registry;
        let retention = self.inner.retention;
        let cutoff = SystemTime::now()
            .checked_sub(retention.ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let expired = registry.finished_before(cutoff);
        let excess = registry.finished_beyond(retention.max_results);
        let (mut removed, mut pinned) = (0, 0);
        for id in expired.into_iter().chain(excess) {
            match self.delete(id) {
                Ok(()) => removed += 1,
                Err(DeleteError::Pinned) => pinned += 1,
                Err(_) => {}
            }
        }
        if removed > 0 {
            info!(self.inner.logger, "retention removed jobs"; "removed" => removed);
        }
        pinned
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn store(&self) -> &ResultStore {
        &self.inner.store
    }

    /// The live numbers `/metrics` reports.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            queue_depth: self.inner.pool.queued(),
            in_flight: self.inner.registry.in_flight(),
            workers: self.inner.pool.live_workers(),
        }
    }

    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// Refuses new jobs from now on; true the first time.
    pub fn stop_accepting(&self) -> bool {
        self.inner.accepting.swap(false, Ordering::SeqCst)
    }

    /// Blocks until every queued and running job has finished and its result is on
    /// disk, then stops the workers and the sync thread.
    pub fn drain(&self) {
        self.stop_accepting();
        self.inner.sweeper.lock().take();
        while self.inner.accepts_in_progress.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.pool.shutdown();
        self.inner.store.shutdown();
    }
}

/// Counts one submission for as long as it lives, whichever way it ends.
struct AcceptInProgress<'a>(&'a AtomicUsize);

impl<'a> AcceptInProgress<'a> {
    fn enter(counter: &'a AtomicUsize) -> AcceptInProgress<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        AcceptInProgress(counter)
    }
}

impl Drop for AcceptInProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A submission: the config, and what came with it.
pub struct Submission {
    pub config: WallConfig,
    pub key: Option<IdempotencyKey>,
    /// The HTTP request's id, carried on the job's log lines.
    pub request_id: Option<String>,
}

/// A job as it waits in the pool.
struct QueuedJob {
    id: JobId,
    request: StoredRequest,
    /// Small configs ride along; large ones are read back from the journal.
    config: Option<WallConfig>,
    accepted_at: Instant,
    request_id: Option<String>,
}

enum KeyClaim {
    Replay(JobId),
    Claimed(KeyRecord),
}

/// SHA-256 of the normalized request, in hex: equal for the same wall and teams,
/// whichever form they were sent in.
fn fingerprint(request: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(request)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "no message".to_owned()
    }
}
