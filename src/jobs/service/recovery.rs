//! Recovery at start-up: the jobs the store found on disk are registered again, those
//! without a result queued again, and their idempotency keys restored.

use std::io;
use std::time::Instant;

use slog::{info, warn};

use super::LocalJobs;
use super::queue::QueuedJob;
use crate::jobs::JobId;
use crate::jobs::job_clock;
use crate::jobs::registry::{JobState, NewRecord};
use crate::jobs::storage::Storage;

impl LocalJobs {
    pub(super) fn recover(&self) -> io::Result<()> {
        let logger = &self.inner.logger;
        let (recovered, keys) = self
            .inner
            .store
            .recover(|problem| warn!(logger, "results directory: {}", problem))?;
        self.inner.keys.restore(keys);
        if let Some(newest) = recovered.iter().map(|job| job.id).max() {
            JobId::never_before(newest);
        }
        // Room for the finished jobs at once: no larger copy made and left behind.
        let registry = &self.inner.registry;
        let done = recovered.iter().filter(|job| job.state == JobState::Done);
        registry.reserve_finished(done.count());
        let (mut finished, mut requeued) = (0, 0);
        let now = job_clock::now();
        for job in recovered {
            registry.insert(
                job.id,
                NewRecord {
                    state: job.state,
                    // A result from the future (the clock set back since, or ahead
                    // when it was written) counts as finished now: it is kept one TTL
                    // from here, not for as long as the clock was off.
                    finished_at: job.finished_at.map(|at| at.min(now)),
                    shape: job.shape,
                    result_bytes: job.result_bytes,
                    journal: job.pin,
                },
            );
            if let Some(request) = job.request {
                self.queue(QueuedJob {
                    id: job.id,
                    request,
                    kept: None,
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
}
