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

/// A kept request's parsed wall rides along too when it holds at most this many times
/// its JSON's bytes, or at most `SMALL_WALL_BYTES`: a wall of long profiles holds a byte
/// a section, less than its JSON, but one of many one-section profiles holds some eight
/// times its JSON (a vector for each), and is parsed on the worker instead.
const WALL_BYTES_PER_JSON_BYTE: usize = 2;
const SMALL_WALL_BYTES: usize = 1024;

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
/// and (see `WALL_BYTES_PER_JSON_BYTE`) the wall parsed from it at accept, so that the
/// worker does not parse it again. Parsing is most of a small wall's work: a 53 KiB
/// wall of 20,000 sections takes some 410 µs to parse and 120-260 µs to simulate
/// (bench/history.md, twenty-first pass).
pub(super) struct KeptRequest {
    pub(super) json: Vec<u8>,
    pub(super) wall: Option<WallConfig>,
}

impl QueuedJob {
    /// The request (`json`, and `wall` parsed) to wait in the queue with the job, if it
    /// is small enough.
    pub(super) fn kept(json: &[u8], wall: WallConfig) -> Option<KeptRequest> {
        let wall_bound = (WALL_BYTES_PER_JSON_BYTE * json.len()).max(SMALL_WALL_BYTES);
        (json.len() <= MAX_REQUEST_BYTES_KEPT_IN_QUEUE).then(|| KeptRequest {
            json: json.to_vec(),
            wall: (wall.heap_bytes() <= wall_bound).then_some(wall),
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
            + kept.map_or(0, |kept| {
                kept.json.capacity() + kept.wall.as_ref().map_or(0, WallConfig::heap_bytes)
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wall::{Limits, parse_json};

    /// A wall as the HTTP thread hands it over: its compact JSON, and the wall.
    fn request(profiles: &[Vec<u8>]) -> (Vec<u8>, WallConfig) {
        let json = serde_json::to_vec(&serde_json::json!({ "profiles": profiles })).unwrap();
        let wall = parse_json(&json, &Limits::default()).unwrap();
        (json, wall)
    }

    #[test]
    fn a_parsed_wall_waits_with_its_job_only_when_it_holds_little_beside_its_json() {
        let (json, wall) = request(&vec![vec![21; 1000]; 20]);
        let kept = QueuedJob::kept(&json, wall.clone()).unwrap();
        assert_eq!(kept.wall, Some(wall), "long profiles: a byte a section");
        let (json, wall) = request(&[vec![21, 25, 28], vec![17]]);
        assert!(
            QueuedJob::kept(&json, wall).unwrap().wall.is_some(),
            "a small wall"
        );
        let (json, wall) = request(&vec![vec![5]; 5000]);
        assert!(wall.heap_bytes() > 4 * json.len());
        let kept = QueuedJob::kept(&json, wall).unwrap();
        assert_eq!(
            kept.wall, None,
            "one vector a section: parsed on the worker"
        );
        assert_eq!(
            QueuedJob::held_bytes(Some(&kept), None),
            QueuedJob::held_bytes(None, None) + json.len(),
            "and only its JSON counted"
        );
        let (json, wall) = request(&vec![vec![5; 2000]; 40]);
        assert!(json.len() > MAX_REQUEST_BYTES_KEPT_IN_QUEUE);
        assert!(
            QueuedJob::kept(&json, wall).is_none(),
            "read back from the journal"
        );
    }
}
