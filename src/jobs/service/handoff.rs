//! What a job's life hands from one thread to the next: the accepted job, with the
//! count `drain` waits on, goes with its request to the journal's thread; the finished
//! job comes back from the store's sync thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use slog::Logger;

use super::queue::KeptRequest;
use super::{Inner, LocalJobs};
use crate::jobs::JobId;
use crate::jobs::idempotency::IdempotencyKey;
use crate::jobs::queue_memory::Reservation;
use crate::jobs::registry::WallShape;
use crate::jobs::storage::StorePin;

/// Counts one submission for as long as it lives, whichever way it ends; owned, so
/// that it can go with the accept to the journal's thread.
pub(super) struct AcceptInProgress(Arc<Inner>);

impl AcceptInProgress {
    pub(super) fn enter(jobs: &LocalJobs) -> AcceptInProgress {
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

/// A job whose request is on its way to the journal.
pub(super) struct AcceptedJob {
    pub(super) id: JobId,
    pub(super) sections: usize,
    pub(super) shape: Option<WallShape>,
    pub(super) kept: Option<KeptRequest>,
    pub(super) key: Option<IdempotencyKey>,
    pub(super) request_id: Option<String>,
    pub(super) memory: Reservation,
}

/// A job whose result the store has made durable, or failed to.
pub(super) struct Finished {
    pub(super) id: JobId,
    /// When it finished running, as its record and its stored result show.
    pub(super) finished_at: SystemTime,
    pub(super) logger: Logger,
    pub(super) started: Instant,
    /// Why the simulation failed, if it did.
    pub(super) failure: Option<Arc<str>>,
    /// The bytes the result takes, or why none was stored (its request is then kept,
    /// and a restart runs the job again).
    pub(super) stored: Result<u64, String>,
    /// Whether its request is still held, for the registry.
    pub(super) pin: StorePin,
}
