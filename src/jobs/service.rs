//! The job service: accepts a config (durably), queues it in the pool, runs the
//! simulation on a worker, and records the outcome in the store and the registry.
//! Restart recovery and the drain at shutdown live here too.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use slog::{Logger, error, info, warn};

use super::group_sync::StoredRequest;
use super::store::Record;
use super::{JobId, JobState, Registry, ResultStore, StoreError};
use crate::pool::JobPool;
use crate::wall::{self, Limits, WallConfig};

/// Configs this small ride along in the queue; larger ones are read back from their
/// request file when they run, so a full queue of huge walls does not fill memory.
const MAX_SECTIONS_KEPT_IN_QUEUE: usize = 10_000;

pub struct JobsSettings {
    pub results_dir: PathBuf,
    pub workers: usize,
    pub max_queue: usize,
    pub debug: DebugHooks,
}

/// Test-only behaviour, off by default and hidden from `--help`: lets the integration
/// tests make jobs slow (to catch a shutdown mid-queue) or panic (to check isolation).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugHooks {
    pub job_delay: Duration,
    pub panic_on_num_teams: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the job queue is full; retry later")]
    QueueFull,
    #[error("the server is shutting down and accepts no new jobs")]
    ShuttingDown,
    #[error("the job could not be stored on disk: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the worker threads: {0}")]
    Threads(#[from] io::Error),
}

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
    logger: Logger,
    debug: DebugHooks,
}

impl Jobs {
    /// Opens the store, starts the workers, and queues again every job accepted before
    /// a restart that has no result yet.
    ///
    /// # Errors
    /// When the results directory is unusable or threads cannot be started.
    pub fn start(settings: &JobsSettings, logger: Logger) -> Result<Jobs, StartError> {
        let store = ResultStore::open(&settings.results_dir)?;
        let pool = JobPool::start("icewall-worker", settings.workers, settings.max_queue)?;
        let jobs = Jobs {
            inner: Arc::new(Inner {
                registry: Registry::default(),
                store,
                pool,
                accepting: AtomicBool::new(true),
                accepts_in_progress: AtomicUsize::new(0),
                logger,
                debug: settings.debug,
            }),
        };
        jobs.recover().map_err(StoreError::from)?;
        Ok(jobs)
    }

    fn recover(&self) -> io::Result<()> {
        let logger = &self.inner.logger;
        let recovered = self
            .inner
            .store
            .recover(|problem| warn!(logger, "results directory: {}", problem))?;
        let (mut finished, mut requeued) = (0, 0);
        for job in recovered {
            self.inner.registry.insert(job.id, job.state);
            if let Some(request) = job.request {
                let jobs = self.clone();
                self.inner
                    .pool
                    .submit_unbounded(Box::new(move || jobs.run(job.id, request, None)))
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
    pub async fn submit(&self, config: WallConfig) -> Result<JobId, SubmitError> {
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
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.inner.store.accept(id, request, move |stored| {
            let _ = sender.send(stored);
        });
        let stored = receiver
            .await
            .unwrap_or(Err(StoreError::Missing))
            .map_err(|error| SubmitError::Storage(error.to_string()))?;

        let sections = config.section_count();
        self.inner.registry.insert(id, JobState::Queued);
        let kept = (sections <= MAX_SECTIONS_KEPT_IN_QUEUE).then_some(config);
        let jobs = self.clone();
        self.inner
            .pool
            .submit_unbounded(Box::new(move || jobs.run(id, stored, kept)))
            .expect("the pool takes work until every accept in progress has finished");
        info!(self.inner.logger, "job accepted"; "job_id" => %id, "sections" => sections);
        Ok(id)
    }

    /// Runs on a worker: simulates, stores the outcome, and records it when stored.
    fn run(&self, id: JobId, request: StoredRequest, config: Option<WallConfig>) {
        let logger = self.inner.logger.new(slog::o!("job_id" => id.to_string()));
        self.inner.registry.set_running(id);
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
        self.inner.store.commit(id, &record, request, move |stored| {
            let elapsed_ms = started.elapsed().as_millis() as u64;
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
            registry_jobs.inner.registry.finish(id, state);
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

    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.inner.registry.state(id)
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn store(&self) -> &ResultStore {
        &self.inner.store
    }

    pub fn live_workers(&self) -> usize {
        self.inner.pool.live_workers()
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

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "no message".to_owned()
    }
}
