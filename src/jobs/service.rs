//! The job service: accepts a config (durably), queues it in the pool, runs the
//! simulation on a worker, and records the outcome in the store and the registry.
//! Restart recovery and the drain at shutdown live here too.

use std::any::Any;
use std::future::Future;
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
use tokio::sync::Notify;

use super::journal::StoredRequest;
use super::queue_memory::{OverLimit, QueueMemory, Reservation};
use super::registry::{JobInfo, NewRecord, Order, Status, WallShape};
use super::store::{KeyRecord, Record};
use super::{JobId, JobState, Registry, ResultStore, StoreError, StoreOptions};
use crate::metrics::{Metrics, Rejection, Snapshot};
use crate::pool::{JobPool, Task};
use crate::wall::{self, Limits, WallConfig};

/// Requests this small wait in the queue as the compact JSON the journal holds (a
/// decoded wall costs some 27 times that); larger ones are read back from the journal
/// when they run. Either way a queued job holds what `QueuedJob::held_bytes` counts.
const MAX_REQUEST_BYTES_KEPT_IN_QUEUE: usize = 64 * 1024;

pub struct JobsSettings {
    pub results_dir: PathBuf,
    pub workers: usize,
    pub max_queue: usize,
    /// The most bytes queued jobs may hold.
    pub max_queue_bytes: usize,
    pub store: StoreOptions,
    pub retention: Retention,
    pub debug: DebugHooks,
}

/// How long, how many and how many bytes of finished jobs are kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub ttl: Duration,
    pub max_results: usize,
    /// The most bytes the finished jobs' results may take on disk together.
    pub max_bytes: u64,
}

/// Test-only behaviour, off by default and hidden from `--help`: lets the integration
/// tests make jobs slow (to catch a shutdown mid-queue), panic (to check isolation), or
/// accepts slow (to let a client go away before its answer).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugHooks {
    pub job_delay: Duration,
    pub panic_on_num_teams: Option<u64>,
    /// How long an accept waits once its request is journaled, before it completes.
    pub accept_delay: Duration,
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

/// What a successful `delete` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// A finished job's record and result are gone.
    Deleted,
    /// A queued job was taken out before it ran.
    Cancelled,
}

impl Removed {
    /// The `status` string of the API.
    pub fn name(self) -> &'static str {
        match self {
            Removed::Deleted => "deleted",
            Removed::Cancelled => "cancelled",
        }
    }
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
    #[error(
        "the queued jobs hold {} bytes, at the --max-queue-bytes limit of {} bytes; retry later",
        .0.used,
        .0.limit
    )]
    QueueMemoryFull(OverLimit),
    #[error("the server is shutting down and accepts no new jobs")]
    ShuttingDown,
    #[error("the job could not be stored on disk: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("Invalid job_id")]
    Unknown,
    #[error("the job is {0}; only a finished job can be deleted, or a queued one cancelled")]
    InFlight(&'static str),
    #[error("the job could not be deleted and is unchanged: {0}")]
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
    /// Jobs waiting in the pool, each in a slot of its own: a worker and a cancel both
    /// take the job out under the slot's lock, so exactly one of them gets it.
    queued: DashMap<JobId, QueueSlot>,
    /// Most jobs waiting (`--max-queue`), counted by their slots: a cancelled job's
    /// empty task left in the pool holds no place.
    max_queue: usize,
    queue_memory: Arc<QueueMemory>,
    accepting: AtomicBool,
    /// Submissions between their `accepting` check and their job being queued.
    accepts_in_progress: AtomicUsize,
    /// Idempotency keys of the jobs that still exist.
    keys: DashMap<String, KeyEntry>,
    /// Wakes the requests waiting for a job in flight (`?wait=`): made by the first
    /// waiter, removed when the job finishes or is cancelled. Waiters are futures, so
    /// any number of them cost no thread.
    waiters: DashMap<JobId, Arc<Notify>>,
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
                queued: DashMap::new(),
                max_queue: settings.max_queue,
                queue_memory: QueueMemory::new(settings.max_queue_bytes),
                accepting: AtomicBool::new(true),
                accepts_in_progress: AtomicUsize::new(0),
                keys: DashMap::new(),
                waiters: DashMap::new(),
                logger,
                metrics,
                retention: settings.retention,
                sweeper: Mutex::new(None),
                debug: settings.debug,
            }),
        };
        jobs.recover().map_err(StoreError::from)?;
        jobs.start_sweeper()?;
        // Limits may have been lowered since the jobs on disk were kept: apply them now.
        jobs.nudge_sweeper();
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
            self.inner.registry.insert(
                job.id,
                NewRecord {
                    state: job.state,
                    finished_at: job.finished_at,
                    shape: job.shape,
                    result_bytes: job.result_bytes,
                    journal: job.journal,
                },
            );
            if let Some(request) = job.request {
                self.queue(QueuedJob {
                    id: job.id,
                    request,
                    body: None,
                    accepted_at: Instant::now(),
                    request_id: None,
                    memory: self
                        .inner
                        .queue_memory
                        .take(QueuedJob::held_bytes(None, None)),
                });
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
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.accept(submission, move |accepted| {
            // The client may be gone: the job is accepted (or not) all the same.
            let _ = answer.send(accepted);
        });
        answered.await.unwrap_or_else(|_| {
            Err(SubmitError::Storage(
                "the result store stopped before answering".to_owned(),
            ))
        })
    }

    /// Accepts a submission and tells `then` how it went. Once the request is handed to
    /// the journal, the rest (the job registered and queued, its key confirmed, or the
    /// key released) runs on the journal's thread, whatever becomes of the caller: an
    /// HTTP client that goes away must not leave a journaled job unqueued, nor jam its
    /// Idempotency-Key.
    fn accept(
        &self,
        submission: Submission,
        then: impl FnOnce(Result<Submitted, SubmitError>) + Send + 'static,
    ) {
        let Submission {
            config,
            key,
            request_id,
        } = submission;
        let jobs = self.clone();
        let answer = move |accepted: Result<Submitted, SubmitError>| {
            jobs.count(&accepted);
            then(accepted);
        };
        // Counted before the check, so that `drain` either sees this accept or it sees
        // the refusal: a durable request always reaches the queue.
        let accepting = AcceptInProgress::enter(self);
        if !self.is_accepting() {
            return answer(Err(SubmitError::ShuttingDown));
        }
        // The bound is checked before the request is stored; concurrent accepts may
        // pass it together, so the queue can exceed it by the accepts in flight.
        if self.inner.queued.len() >= self.inner.max_queue {
            return answer(Err(SubmitError::QueueFull));
        }
        let id = JobId::generate();
        let request = serde_json::to_vec(&config).expect("a wall config always serializes");
        let sections = config.section_count();
        let shape = WallShape::of(&config);
        let body = (request.len() <= MAX_REQUEST_BYTES_KEPT_IN_QUEUE).then(|| request.clone());
        let held = QueuedJob::held_bytes(body.as_ref(), request_id.as_ref());
        let memory = match self.inner.queue_memory.reserve(held) {
            Ok(memory) => memory,
            Err(over) => return answer(Err(SubmitError::QueueMemoryFull(over))),
        };
        let key_record = match &key {
            None => None,
            Some(key) => match self.claim_key(key, id, &request) {
                Err(error) => return answer(Err(error)),
                Ok(KeyClaim::Replay(earlier)) => {
                    self.inner.registry.mark_replayed(earlier);
                    return answer(Ok(Submitted {
                        id: earlier,
                        replayed: true,
                    }));
                }
                Ok(KeyClaim::Claimed(record)) => Some(record),
            },
        };
        let job = AcceptedJob {
            id,
            sections,
            shape,
            body,
            key,
            request_id,
            memory,
        };
        let jobs = self.clone();
        self.inner
            .store
            .accept(id, request, key_record.as_ref(), move |stored| {
                let _accepting = accepting;
                if !jobs.inner.debug.accept_delay.is_zero() {
                    std::thread::sleep(jobs.inner.debug.accept_delay);
                }
                answer(jobs.enqueue(job, stored));
            });
    }

    /// Registers and queues a job whose request is stored, or releases its key if it
    /// could not be.
    fn enqueue(
        &self,
        job: AcceptedJob,
        stored: Result<StoredRequest, StoreError>,
    ) -> Result<Submitted, SubmitError> {
        let AcceptedJob {
            id,
            sections,
            shape,
            body,
            key,
            request_id,
            memory,
        } = job;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                if let Some(key) = &key {
                    self.inner.keys.remove_if(&key.0, |_, entry| entry.id == id);
                }
                return Err(SubmitError::Storage(error.to_string()));
            }
        };
        let journal = Arc::downgrade(&stored.journal);
        let logged_request_id = request_id.clone().unwrap_or_default();
        // The slot before the record: a cancel that finds the job queued finds its slot.
        self.park(QueuedJob {
            id,
            request: stored,
            body,
            accepted_at: Instant::now(),
            request_id,
            memory,
        });
        self.inner.registry.insert(
            id,
            NewRecord {
                state: JobState::Queued,
                finished_at: None,
                shape,
                result_bytes: 0,
                journal,
            },
        );
        self.dispatch(id);
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

    /// Counts an accept's outcome in the metrics.
    fn count(&self, accepted: &Result<Submitted, SubmitError>) {
        let metrics = &self.inner.metrics;
        match accepted {
            Ok(Submitted {
                replayed: false, ..
            }) => metrics.job_accepted(),
            Ok(Submitted { replayed: true, .. }) => {}
            Err(error) => metrics.rejected(match error {
                SubmitError::KeyReused | SubmitError::KeyInProgress => Rejection::Idempotency,
                SubmitError::QueueFull | SubmitError::QueueMemoryFull(_) => Rejection::QueueFull,
                SubmitError::ShuttingDown => Rejection::ShuttingDown,
                SubmitError::Storage(_) => Rejection::Storage,
            }),
        }
    }

    /// Puts a registered job in the pool. It waits in its slot, where a cancel can take
    /// it; the pool's task only names it.
    fn queue(&self, job: QueuedJob) {
        let id = job.id;
        self.park(job);
        self.dispatch(id);
    }

    /// Puts a job in its slot, where a cancel can find it.
    fn park(&self, job: QueuedJob) {
        self.inner
            .queued
            .insert(job.id, Arc::new(Mutex::new(Some(job))));
    }

    /// Hands a parked job to the pool, whose worker takes it from its slot.
    fn dispatch(&self, id: JobId) {
        let jobs = self.clone();
        self.inner
            .pool
            .submit_unbounded(Box::new(move || jobs.take_and_run(id)))
            .expect("the pool takes work until every accept in progress has finished");
    }

    /// Runs on a worker: takes the job from its slot and runs it, unless it was cancelled.
    fn take_and_run(&self, id: JobId) {
        let Some((_, slot)) = self.inner.queued.remove(&id) else {
            return;
        };
        let job = {
            let mut slot = slot.lock();
            let Some(job) = slot.take() else {
                return;
            };
            // Under the slot's lock: a cancel sees the job queued, or running.
            self.inner.registry.set_running(id);
            job
        };
        self.run(job);
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
            body,
            accepted_at,
            request_id,
            memory,
        } = job;
        // Out of the queue: what it holds from here is a running job's.
        drop(memory);
        let logger = self.inner.logger.new(slog::o!("job_id" => id.to_string()));
        // A recovered job has no request id: no empty key for it.
        let logger = match request_id {
            Some(request_id) => logger.new(slog::o!("request_id" => request_id)),
            None => logger,
        };
        self.inner.metrics.job_started(accepted_at.elapsed());
        info!(logger, "job started");
        let started = Instant::now();
        let simulated = panic::catch_unwind(AssertUnwindSafe(|| {
            let config = self.load_request(&request, body)?;
            if let Some(shape) = WallShape::of(&config) {
                self.inner.registry.describe(id, shape);
            }
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
            // A result that could not be stored takes nothing.
            let result_bytes = *stored.as_ref().unwrap_or(&0);
            metrics.job_finished(stored.is_ok() && failure.is_none(), started.elapsed());
            let state = match (stored, failure) {
                (Ok(_), None) => {
                    info!(logger, "job finished"; "elapsed_ms" => elapsed_ms);
                    JobState::Done
                }
                (Ok(_), Some(reason)) => {
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
            registry.finish(id, state, result_bytes, journal);
            registry_jobs.wake_waiters(id);
            let retention = registry_jobs.inner.retention;
            if registry.finished() > retention.max_results
                || registry.stored_bytes() > retention.max_bytes
            {
                registry_jobs.nudge_sweeper();
            }
        });
    }

    /// The job's wall, from the request it carried or else from the journal.
    fn load_request(
        &self,
        request: &StoredRequest,
        body: Option<Vec<u8>>,
    ) -> Result<WallConfig, String> {
        let request = match body {
            Some(body) => body,
            None => self
                .inner
                .store
                .read_request(request)
                .map_err(|error| format!("the stored request cannot be read: {error}"))?,
        };
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

    /// A job's state; a job past its retention answers as unknown (the sweeper removes
    /// it: a read never writes).
    pub fn state(&self, id: JobId) -> Option<JobState> {
        let state = self.inner.registry.state(id)?;
        (!self.is_expired(id)).then_some(state)
    }

    /// A job's state once it is finished, `timeout` has passed or `stop` resolves,
    /// whichever comes first; `None` for a job unknown (or cancelled meanwhile).
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Option<JobState> {
        let state = self.state(id)?;
        if state.is_finished() || timeout.is_zero() {
            return Some(state);
        }
        let notify = Arc::clone(self.inner.waiters.entry(id).or_default().value());
        let notified = notify.notified();
        tokio::pin!(notified);
        // Listening before the second look: a finish after it is heard.
        notified.as_mut().enable();
        let Some(state) = self.state(id) else {
            // Cancelled or removed meanwhile: nothing will ever remove the entry.
            self.inner
                .waiters
                .remove_if(&id, |_, entry| Arc::ptr_eq(entry, &notify));
            return None;
        };
        if state.is_finished() {
            // It finished before the waiter was in: no finish will remove the entry.
            self.inner
                .waiters
                .remove_if(&id, |_, entry| Arc::ptr_eq(entry, &notify));
            return Some(state);
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(timeout) => {}
            () = stop => {}
        }
        self.state(id)
    }

    /// Answers every request waiting for a job that finished or left the queue.
    fn wake_waiters(&self, id: JobId) {
        if let Some((_, notify)) = self.inner.waiters.remove(&id) {
            notify.notify_waiters();
        }
    }

    /// A page of the job list (see `Registry::page`); jobs past their retention are
    /// listed until the sweeper removes them, as before.
    pub fn page(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
        limit: usize,
    ) -> Vec<(JobId, JobInfo)> {
        self.inner.registry.page(statuses, order, after, limit)
    }

    /// What is known of a job, from memory; a job past its retention answers as unknown.
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        let info = self.inner.registry.info(id)?;
        (!self.is_expired(id)).then_some(info)
    }

    fn is_expired(&self, id: JobId) -> bool {
        self.inner.registry.finished_at(id).is_some_and(|at| {
            at.elapsed()
                .is_ok_and(|age| age >= self.inner.retention.ttl)
        })
    }

    /// Removes a finished job (its record and its result file) or cancels a queued one,
    /// for good: neither comes back after a restart.
    ///
    /// # Errors
    /// `Unknown`, `InFlight` for a running job, or `Storage` (then the job is as it was).
    pub fn delete(&self, id: JobId) -> Result<Removed, DeleteError> {
        match self.state(id).ok_or(DeleteError::Unknown)? {
            JobState::Queued => self.cancel(id).map(|()| Removed::Cancelled),
            JobState::Running => Err(DeleteError::InFlight("running")),
            JobState::Done | JobState::Failed(_) => self
                .remove_finished(id, Removal::Requested)
                .map(|()| Removed::Deleted),
        }
    }

    /// Takes a queued job out before it runs. It is buried first, under its slot's lock
    /// (a worker waits meanwhile): if that fails, the job stays queued as it was.
    fn cancel(&self, id: JobId) -> Result<(), DeleteError> {
        // No slot, or an empty one: a worker has taken the job.
        let slot = self
            .inner
            .queued
            .get(&id)
            .map(|slot| Arc::clone(slot.value()))
            .ok_or(DeleteError::InFlight("running"))?;
        let mut slot = slot.lock();
        if slot.is_none() {
            return Err(DeleteError::InFlight("running"));
        }
        if let Err(error) = self.inner.store.bury(id) {
            warn!(self.inner.logger, "job not cancelled"; "job_id" => %id, "error" => %error);
            return Err(DeleteError::Storage(error.to_string()));
        }
        let job = slot.take().expect("the slot was checked under its lock");
        self.inner.queued.remove(&id);
        self.inner.registry.remove_queued(id);
        self.wake_waiters(id);
        // Its memory, its journal segment and its lock go with it.
        self.inner.store.abandon(id, job.request);
        self.inner.metrics.job_cancelled();
        info!(self.inner.logger, "job cancelled"; "job_id" => %id);
        Ok(())
    }

    /// Deletes a finished job. Until its result is gone it can still be restored as it
    /// was; meanwhile it answers as unknown, so that no read finds it half removed.
    fn remove_finished(&self, id: JobId, removal: Removal) -> Result<(), DeleteError> {
        let registry = &self.inner.registry;
        if !registry.mark_deleting(id) {
            return Err(DeleteError::Unknown);
        }
        let store = &self.inner.store;
        // A request still journaled would run the job again after a restart. A DELETE
        // that answers 200 buries the job whatever the journal's state (a segment may be
        // on its way out, or its removal not yet durable) and syncs the result's removal:
        // it stays deleted through a crash or a power cut. Retention only buries jobs
        // whose segment is known to be in use. A tombstone left by a delete that then
        // fails is harmless: the result, kept, wins.
        let bury = removal == Removal::Requested || registry.is_pinned(id);
        let removed = if bury { store.bury(id) } else { Ok(()) }
            .and_then(|()| store.remove_result(id))
            .and_then(|()| {
                if removal == Removal::Requested {
                    store.sync_directory()
                } else {
                    Ok(())
                }
            });
        if let Err(error) = removed {
            registry.unmark_deleting(id);
            warn!(self.inner.logger, "job not removed"; "job_id" => %id, "error" => %error);
            return Err(DeleteError::Storage(error.to_string()));
        }
        registry.remove_finished(id);
        info!(self.inner.logger, "job removed"; "job_id" => %id);
        Ok(())
    }

    /// Removes expired jobs, and the oldest beyond `max_results` or `max_bytes`, every
    /// so often.
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

    /// Removes the jobs past their time or beyond the count or the bytes; returns how many of them
    /// had to wait because their request is still in a journal segment in use.
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
        let oversize = registry.finished_over_bytes(retention.max_bytes);
        let (mut removed, mut pinned) = (0, 0);
        for id in expired.into_iter().chain(excess).chain(oversize) {
            // Waiting costs nothing, while a tombstone costs a sync: a segment in use
            // goes soon. One kept for a restart stays, so its jobs are buried.
            if registry.is_pinned_for_now(id) {
                pinned += 1;
            } else if self.remove_finished(id, Removal::Retention).is_ok() {
                removed += 1;
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
            queue_depth: self.inner.queued.len(),
            queue_bytes: self.inner.queue_memory.used(),
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

/// Who removes a finished job: a client's DELETE, which must hold through any crash,
/// or the retention sweeper, for which a job back after a power cut is only late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Requested,
    Retention,
}

/// Counts one submission for as long as it lives, whichever way it ends; owned, so
/// that it can go with the accept to the journal's thread.
struct AcceptInProgress(Arc<Inner>);

impl AcceptInProgress {
    fn enter(jobs: &Jobs) -> AcceptInProgress {
        jobs.inner
            .accepts_in_progress
            .fetch_add(1, Ordering::SeqCst);
        AcceptInProgress(Arc::clone(&jobs.inner))
    }
}

impl Drop for AcceptInProgress {
    fn drop(&mut self) {
        self.0.accepts_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A submission: the config, and what came with it.
pub struct Submission {
    pub config: WallConfig,
    pub key: Option<IdempotencyKey>,
    /// The HTTP request's id, carried on the job's log lines.
    pub request_id: Option<String>,
}

/// A job whose request is on its way to the journal.
struct AcceptedJob {
    id: JobId,
    sections: usize,
    shape: Option<WallShape>,
    body: Option<Vec<u8>>,
    key: Option<IdempotencyKey>,
    request_id: Option<String>,
    memory: Reservation,
}

/// Where a queued job waits: taken out by a worker, or by a cancel.
type QueueSlot = Arc<Mutex<Option<QueuedJob>>>;

/// A job as it waits in the pool.
struct QueuedJob {
    id: JobId,
    request: StoredRequest,
    /// A small request's JSON rides along; a large one is read back from the journal.
    body: Option<Vec<u8>>,
    accepted_at: Instant,
    request_id: Option<String>,
    /// Its share of `--max-queue-bytes`, given back when it leaves the queue.
    memory: Reservation,
}

impl QueuedJob {
    /// What a queued job holds: its slot (behind the `Arc`'s two counts), the slot's
    /// entry in the map of queued jobs, its task in the pool (boxed, and the pool's
    /// pointer to it), and its heap parts.
    fn held_bytes(body: Option<&Vec<u8>>, request_id: Option<&String>) -> usize {
        size_of::<Mutex<Option<QueuedJob>>>()
            + 2 * size_of::<usize>()
            + size_of::<(JobId, QueueSlot)>()
            + size_of::<(Jobs, JobId)>()
            + size_of::<Task>()
            + body.map_or(0, Vec::capacity)
            + request_id.map_or(0, String::capacity)
    }
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
