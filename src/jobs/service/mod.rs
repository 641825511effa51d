//! The job service of a node on its own (the file store), and a job's life top to bottom:
//! `start` (recovery), `submit` -> `accept` -> `enqueue` (durable, then queued), `run`
//! on a worker, `finish` once its result is durable, `delete` (`cancel` or
//! `remove_finished`), and `drain` at shutdown. Reads are in `reads`.

mod queue;
mod reads;
mod recovery;
mod retention;
mod types;

use self::queue::{QueueSlot, QueuedJob};
pub use self::types::{
    DebugHooks, DeleteError, JobsSettings, Removed, Retention, StartError, Submission, SubmitError,
    Submitted, Unavailable,
};

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use slog::{Logger, error, info, warn};
use tokio::sync::Notify;

use super::idempotency::{IdempotencyKey, KeyClaim, Keys};
use super::queue_memory::{QueueMemory, Reservation};
use super::registry::{NewRecord, WallShape};
use super::storage::{Record, Storage, Store, StorePin, StoredRequest};
use super::{JobId, JobState, Registry, StoreError};
use crate::metrics::{Metrics, Rejection};
use crate::pool::JobPool;
use crate::shutdown::Shutdown;
use crate::wall::{self, Limits, WallConfig};

/// Requests this small wait in the queue as the compact JSON the journal holds (a
/// decoded wall costs some 27 times that); larger ones are read back from the journal
/// when they run. Either way a queued job holds what `QueuedJob::held_bytes` counts.
const MAX_REQUEST_BYTES_KEPT_IN_QUEUE: usize = 64 * 1024;

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
    /// Idempotency keys of the jobs that still exist.
    keys: Keys,
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
                keys: Keys::default(),
                waiters: DashMap::new(),
                logger,
                metrics,
                retention: settings.retention,
                sweeper: Mutex::new(None),
                debug: settings.debug.clone(),
            }),
        };
        jobs.recover().map_err(StoreError::from)?;
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
            Some(key) => match self.inner.keys.claim(key, id, &request, |earlier| {
                self.inner.registry.state(earlier).is_some()
            }) {
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
                    self.inner.keys.release(key, id);
                }
                return Err(SubmitError::Storage(error.to_string()));
            }
        };
        let pin = Store::pin(&stored);
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
                journal: pin,
            },
        );
        self.dispatch(id);
        if let Some(key) = &key {
            self.inner.keys.confirm(key);
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
            self.inner.debug.apply(&config);
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
        let jobs = self.clone();
        let pin = Store::pin(&request);
        self.inner
            .store
            .commit(id, &record, request, move |stored| {
                jobs.finish(Finished {
                    id,
                    logger,
                    started,
                    failure,
                    stored,
                    pin,
                });
            });
    }

    /// Runs on the sync thread once the job's result is durable (or could not be
    /// stored): the job's final state, its log line and its metrics.
    fn finish(&self, finished: Finished) {
        let Finished {
            id,
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
            (Err(error), _) => {
                let reason = format!("the result could not be stored on disk: {error}");
                error!(logger, "job failed"; "reason" => %reason, "elapsed_ms" => elapsed_ms);
                JobState::Failed(reason.into())
            }
        };
        let registry = &self.inner.registry;
        registry.finish(id, state, result_bytes, pin);
        self.wake_waiters(id);
        let retention = self.inner.retention;
        if registry.finished() > retention.max_results
            || registry.stored_bytes() > retention.max_bytes
        {
            self.nudge_sweeper();
        }
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
                    store.sync_removals()
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
    fn enter(jobs: &LocalJobs) -> AcceptInProgress {
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

/// A job whose result the store has made durable, or failed to.
struct Finished {
    id: JobId,
    logger: Logger,
    started: Instant,
    /// Why the simulation failed, if it did.
    failure: Option<Arc<str>>,
    /// The bytes the result takes, or why it could not be stored.
    stored: Result<u64, StoreError>,
    /// Whether its request is still held, for the registry.
    pin: StorePin,
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

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "no message".to_owned()
    }
}

#[cfg(test)]
mod tests;
