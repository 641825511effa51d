//! The queue: a job waits in a slot of its own while the pool's task only names it, so
//! that a worker and a cancel take it out under the slot's lock and exactly one wins.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::LocalJobs;
use crate::jobs::JobId;
use crate::jobs::queue_memory::Reservation;
use crate::jobs::storage::StoredRequest;
use crate::pool::Task;

/// Requests this small wait in the queue as the compact JSON the journal holds (a
/// decoded wall costs some 27 times that); larger ones are read back from the journal
/// when they run. Either way a queued job holds what `QueuedJob::held_bytes` counts.
const MAX_REQUEST_BYTES_KEPT_IN_QUEUE: usize = 64 * 1024;

/// Where a queued job waits: taken out by a worker, or by a cancel.
pub(super) type QueueSlot = Arc<Mutex<Option<QueuedJob>>>;

/// A job as it waits in the pool.
pub(super) struct QueuedJob {
    pub(super) id: JobId,
    pub(super) request: StoredRequest,
    /// A small request's JSON rides along; a large one is read back from the journal.
    pub(super) body: Option<Vec<u8>>,
    pub(super) accepted_at: Instant,
    pub(super) request_id: Option<String>,
    /// Its share of `--max-queue-bytes`, given back when it leaves the queue.
    pub(super) memory: Reservation,
}

impl QueuedJob {
    /// The request's JSON, to wait in the queue with the job, if it is small enough.
    pub(super) fn kept_body(request: &[u8]) -> Option<Vec<u8>> {
        (request.len() <= MAX_REQUEST_BYTES_KEPT_IN_QUEUE).then(|| request.to_vec())
    }

    /// What a queued job holds: its slot (behind the `Arc`'s two counts), the slot's
    /// entry in the map of queued jobs, its task in the pool (boxed, and the pool's
    /// pointer to it), and its heap parts.
    pub(super) fn held_bytes(body: Option<&Vec<u8>>, request_id: Option<&String>) -> usize {
        size_of::<Mutex<Option<QueuedJob>>>()
            + 2 * size_of::<usize>()
            + size_of::<(JobId, QueueSlot)>()
            + size_of::<(LocalJobs, JobId)>()
            + size_of::<Task>()
            + body.map_or(0, Vec::capacity)
            + request_id.map_or(0, String::capacity)
    }
}

impl LocalJobs {
    /// Puts a registered job in the pool. It waits in its slot, where a cancel can take
    /// it; the pool's task only names it.
    pub(super) fn queue(&self, job: QueuedJob) {
        let id = job.id;
        self.park(job);
        self.dispatch(id);
    }

    /// Puts a job in its slot, where a cancel can find it.
    pub(super) fn park(&self, job: QueuedJob) {
        self.inner
            .queued
            .insert(job.id, Arc::new(Mutex::new(Some(job))));
    }

    /// Hands a parked job to the pool, whose worker takes it from its slot.
    pub(super) fn dispatch(&self, id: JobId) {
        let jobs = self.clone();
        self.inner
            .pool
            .submit(Box::new(move || jobs.take_and_run(id)))
            .expect("the pool takes work until every accept in progress has finished");
    }

    /// Runs on a worker: takes the job from its slot and runs it, unless it was cancelled.
    pub(super) fn take_and_run(&self, id: JobId) {
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
}
