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
use crate::wall::WallConfig;

/// Requests this small wait in the queue with their job (see `KeptRequest`); larger ones
/// are read back from the journal and parsed when they run. Either way a queued job
/// holds what `QueuedJob::held_bytes` counts.
const MAX_REQUEST_BYTES_KEPT_IN_QUEUE: usize = 64 * 1024;

/// Where a queued job waits: taken out by a worker, or by a cancel.
pub(super) type QueueSlot = Arc<Mutex<Option<QueuedJob>>>;

/// A job as it waits in the pool.
pub(super) struct QueuedJob {
    pub(super) id: JobId,
    pub(super) request: StoredRequest,
    /// A small request rides along; a large one is read back from the journal.
    pub(super) kept: Option<KeptRequest>,
    pub(super) accepted_at: Instant,
    pub(super) request_id: Option<String>,
    /// Its share of `--max-queue-bytes`, given back when it leaves the queue.
    pub(super) memory: Reservation,
}

/// A small request as it waits with its job: its compact JSON, which the result keeps,
/// and the wall parsed from it at accept, so that the worker does not parse it again.
/// Parsing is most of a small wall's work: a 50 KiB wall of 20,000 sections takes some
/// 400 µs to parse and 120-260 µs to simulate. A parsed wall is a byte a section, less
/// than its JSON.
pub(super) struct KeptRequest {
    pub(super) json: Vec<u8>,
    pub(super) wall: WallConfig,
}

impl QueuedJob {
    /// The request (`json`, and `wall` parsed) to wait in the queue with the job, if it
    /// is small enough.
    pub(super) fn kept(json: &[u8], wall: WallConfig) -> Option<KeptRequest> {
        (json.len() <= MAX_REQUEST_BYTES_KEPT_IN_QUEUE).then(|| KeptRequest {
            json: json.to_vec(),
            wall,
        })
    }

    /// What a queued job holds: its slot (behind the `Arc`'s two counts), the slot's
    /// entry in the map of queued jobs, its task in the pool (boxed, and the pool's
    /// pointer to it), and its heap parts.
    pub(super) fn held_bytes(kept: Option<&KeptRequest>, request_id: Option<&String>) -> usize {
        size_of::<Mutex<Option<QueuedJob>>>()
            + 2 * size_of::<usize>()
            + size_of::<(JobId, QueueSlot)>()
            + size_of::<(LocalJobs, JobId)>()
            + size_of::<Task>()
            + kept.map_or(0, |kept| kept.json.capacity() + kept.wall.heap_bytes())
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
