//! The job service of a node on its own (the file store), and a job's life top to bottom:
//! `start` (recovery), `submit` -> `accept` -> `enqueue` (durable, then queued), `run`
//! on a worker (see `simulation`), `finish` once its result is durable, `delete` (in
//! `removal`: `cancel` or `remove_finished`), and `drain` at shutdown. Reads are in
//! `reads`; what a job hands from thread to thread is in `handoff`.

mod handoff;
mod queue;
mod reads;
mod recovery;
mod removal;
mod retention;
mod simulation;
mod types;

use self::handoff::{AcceptInProgress, AcceptedJob, Finished};
use self::queue::{QueueSlot, QueuedJob};
use self::simulation::Simulation;
pub(crate) use self::simulation::caught;
pub use self::types::{
    DebugHooks, DeleteError, JobsSettings, Removable, Removed, Retention, StartError, Submission,
    SubmitError, Submitted, Unavailable,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use slog::{Logger, error, info, warn};

use super::idempotency::{KeyClaim, Keys};
use super::job_clock::{self, Steps};
use super::queue_memory::QueueMemory;
use super::registry::{NewRecord, WallShape};
use super::storage::{Record, Storage, Store, StorePin, StoredRequest};
use super::waiters::Waiters;
use super::{JobId, JobState, Registry, StoreError};
use crate::metrics::Metrics;
use crate::pool::JobPool;
use crate::shutdown::Shutdown;

/// The job service of one node with its own store; cheap to clone, shared by the
/// HTTP handlers (through `Jobs`) and the workers.
#[derive(Clone)]
pub struct LocalJobs {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    store: Store,
    pool: JobPool,
    /// Jobs waiting in the pool, each in a slot of its own: a worker and a cancel both
    /// take the job out under the slot's lock, so exactly one of them gets it.
    queued: DashMap<JobId, QueueSlot>,
    /// Most jobs waiting (`--max-queue`), counted by their slots: a cancelled job's
    /// empty task left in the pool holds no place.
    max_queue: usize,
    queue_memory: Arc<QueueMemory>,
    /// The server's one shutdown flag: no accept once it is triggered.
    shutdown: Shutdown,
    /// Submissions between their shutdown check and their job being queued.
    accepts_in_progress: AtomicUsize,
    /// Idempotency keys of the jobs that still exist; the store's rewrites of its key
    /// records read them too.
    keys: Arc<Keys>,
    /// Wakes the requests waiting for a job in flight (`?wait=`). Waiters are futures,
    /// so any number of them cost no thread.
    waiters: Waiters,
    logger: Logger,
    metrics: Arc<Metrics>,
    retention: Retention,
    /// Wakes the retention sweeper; dropping it stops the sweeper.
    sweeper: Mutex<Option<mpsc::Sender<()>>>,
    /// How far the wall clock was from the job clock (nanoseconds) when the results'
    /// finish times were last set on it (see `LocalJobs::restamp_after_a_step`).
    results_offset_ns: Mutex<i64>,
    debug: DebugHooks,
}

impl LocalJobs {
    /// Opens the store, starts the workers, and queues again every job accepted before
    /// a restart that has no result yet.
    ///
    /// # Errors
    /// When the results directory is unusable or threads cannot be started.
    pub fn start(
        settings: &JobsSettings,
        shutdown: Shutdown,
        logger: Logger,
        metrics: Arc<Metrics>,
    ) -> Result<LocalJobs, StartError> {
        // Before the jobs on disk are read: their times are taken against it.
        job_clock::start();
        let store = Store::open(&settings.results_dir, settings.store)?;
        let pool = JobPool::start("icewall-worker", settings.workers)?;
        let jobs = LocalJobs {
            inner: Arc::new(Inner {
                registry: Registry::default(),
                store,
                pool,
                queued: DashMap::new(),
                max_queue: settings.max_queue,
                queue_memory: QueueMemory::new(settings.max_queue_bytes),
                shutdown,
                accepts_in_progress: AtomicUsize::new(0),
                keys: Arc::default(),
                waiters: Waiters::default(),
                logger,
                metrics,
                retention: settings.retention,
                sweeper: Mutex::new(None),
                results_offset_ns: Mutex::new(0),
                debug: settings.debug.clone(),
            }),
        };
        jobs.recover().map_err(StoreError::from)?;
        let keys = Arc::clone(&jobs.inner.keys);
        (jobs.inner.store).track_keys(Box::new(move || keys.records()));
        jobs.start_sweeper()?;
        // Limits may have been lowered since the jobs on disk were kept: apply them now.
        jobs.nudge_sweeper();
        Ok(jobs)
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
        let started = Instant::now();
        let answer = move |accepted: Result<Submitted, SubmitError>| {
            jobs.count(&accepted, started.elapsed());
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
            return answer(Err(SubmitError::QueueFull {
                limit: self.inner.max_queue,
            }));
        }
        let id = JobId::generate();
        let request = serde_json::to_vec(&config).expect("a wall config always serializes");
        let sections = config.section_count();
        let shape = WallShape::of(&config);
        let kept = QueuedJob::kept(&request, config);
        let held = QueuedJob::held_bytes(kept.as_ref(), request_id.as_ref());
        let memory = match self.inner.queue_memory.reserve(held) {
            Ok(memory) => memory,
            Err(over) => return answer(Err(SubmitError::QueueMemoryFull(over))),
        };
        let key_record = match &key {
            None => None,
            // The earlier job as reads see it: past its TTL it answers 404 even before
            // the sweeper removes it, and is not replayed.
            Some(key) => match self
                .inner
                .keys
                .claim(key, id, &request, |earlier| self.state(earlier).is_some())
            {
                Err(conflict) => return answer(Err(conflict.into())),
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
            kept,
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
            kept,
            key,
            request_id,
            memory,
        } = job;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                if let Some(key) = &key {
                    self.inner.keys.release(key, id);
                }
                return Err(SubmitError::Storage(error.to_string()));
            }
        };
        let logged_request_id = request_id.clone().unwrap_or_default();
        // The slot before the record: a cancel that finds the job queued finds its slot.
        self.park(QueuedJob {
            id,
            request: stored,
            kept,
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
                // A queued job's record holds no pin: `finish` brings one.
                journal: StorePin::default(),
            },
        );
        // Logged before a worker can take it: its start is logged after.
        info!(self.inner.logger, "job accepted"; "job_id" => %id, "sections" => sections,
            "request_id" => logged_request_id);
        self.dispatch(id);
        if let Some(key) = &key {
            self.inner.keys.confirm(key);
        }
        Ok(Submitted {
            id,
            replayed: false,
        })
    }

    /// Counts an accept's outcome in the metrics; `took` since the submission came.
    fn count(&self, accepted: &Result<Submitted, SubmitError>, took: Duration) {
        let metrics = &self.inner.metrics;
        match accepted {
            Ok(Submitted {
                replayed: false, ..
            }) => metrics.job_accepted(took),
            Ok(Submitted { replayed: true, .. }) => {}
            Err(error) => metrics.rejected(error.rejection()),
        }
    }

    /// Runs on a worker: simulates, stores the outcome, and records it when stored.
    fn run(&self, job: QueuedJob) {
        let QueuedJob {
            id,
            request,
            kept,
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
        let pin = Store::pin(&request);
        let simulation = self.simulate(id, &request, kept);
        let finished_at = job_clock::now();
        let (simulated, request_bytes) = match simulation {
            Simulation::Ran { outcome, request } => (outcome, request),
            Simulation::Unread(error) => {
                self.inner.store.set_aside(id, request);
                self.finish(Finished {
                    id,
                    finished_at,
                    logger,
                    started,
                    failure: None,
                    stored: Err(format!("its request could not be read from disk: {error}")),
                    pin,
                });
                return;
            }
        };
        let record = match &simulated {
            Ok(outcome) => Record::Done(outcome),
            Err(reason) => Record::Failed(reason),
        };
        let failure: Option<Arc<str>> = simulated
            .as_ref()
            .err()
            .map(|reason| reason.as_str().into());
        let jobs = self.clone();
        self.inner.store.commit(
            id,
            &record,
            // On the wall clock: a restart reads it back against the wall clock then.
            Steps::on_wall_time(finished_at, job_clock::current_offset()),
            request,
            request_bytes.as_deref(),
            move |stored| {
                jobs.finish(Finished {
                    id,
                    finished_at,
                    logger,
                    started,
                    failure,
                    stored: stored.map_err(|error| {
                        format!("the result could not be stored on disk: {error}")
                    }),
                    pin,
                });
            },
        );
    }

    /// Runs on the sync thread once the job's result is durable (or could not be
    /// stored): the job's final state, its log line and its metrics.
    fn finish(&self, finished: Finished) {
        let Finished {
            id,
            finished_at,
            logger,
            started,
            failure,
            stored,
            pin,
        } = finished;
        let elapsed_ms = crate::telemetry::millis(started.elapsed());
        let metrics = &self.inner.metrics;
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
            (Err(why), _) => {
                let reason = format!("{why}; it runs again after a restart");
                error!(logger, "job failed"; "reason" => %reason, "elapsed_ms" => elapsed_ms);
                JobState::Failed(reason.into())
            }
        };
        let (finished, stored_bytes) =
            (self.inner.registry).finish(id, state, finished_at, result_bytes, pin);
        self.wake_waiters(id);
        let retention = self.inner.retention;
        if finished > retention.max_results || stored_bytes > retention.max_bytes {
            self.nudge_sweeper();
        }
    }

    /// Blocks until every queued and running job has finished and its result is on
    /// disk, then stops the workers and the sync thread.
    pub fn drain(&self) {
        self.inner.shutdown.trigger();
        self.inner.sweeper.lock().take();
        while self.inner.accepts_in_progress.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.pool.shutdown();
        self.inner.store.shutdown();
    }
}

#[cfg(test)]
mod tests;
