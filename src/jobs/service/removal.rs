//! Removing a job for good, so that it does not come back after a restart: `delete`
//! cancels a queued job before it runs or removes a finished one, as retention does.

use std::io;
use std::sync::Arc;

use slog::{info, warn};

use super::{DeleteError, LocalJobs, Removable, Removed};
use crate::jobs::storage::Storage;
use crate::jobs::{JobId, JobState};

/// Who removes a finished job: a client's DELETE, which must hold through any crash,
/// or the retention sweeper, for which a job back after a power cut is only late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Removal {
    Requested,
    Retention,
}

impl LocalJobs {
    /// Removes a finished job (its record and its result file) or cancels a queued one,
    /// for good: neither comes back after a restart.
    ///
    /// # Errors
    /// `Unknown`, `InFlight` for a running job, or `Storage`: then the job is as it was,
    /// unless only making its removal durable failed; then it is gone, as the error says.
    pub fn delete(&self, id: JobId) -> Result<Removed, DeleteError> {
        match self.state(id).ok_or(DeleteError::Unknown)? {
            JobState::Queued => self.cancel(id).map(|()| Removed::Cancelled),
            JobState::Running => Err(DeleteError::InFlight("running")),
            JobState::Done | JobState::Failed(_) => self
                .remove_finished(id, Removal::Requested)
                .map(|()| Removed::Deleted),
        }
    }

    /// Removes what `what` may take, as `delete` does, but for a cancel a running or
    /// finished job is left as it is, whatever happened since the caller last looked.
    ///
    /// # Errors
    /// As `delete`; a cancel answers `NotQueued` for a running or finished job.
    pub fn remove(&self, id: JobId, what: Removable) -> Result<Removed, DeleteError> {
        if what == Removable::FinishedOrQueued {
            return self.delete(id);
        }
        let not_queued = match self.state(id).ok_or(DeleteError::Unknown)? {
            JobState::Queued => {
                return self
                    .cancel(id)
                    .map(|()| Removed::Cancelled)
                    .map_err(|error| {
                        match error {
                            // It left the queue meanwhile: a worker took it.
                            DeleteError::InFlight(state) => DeleteError::NotQueued(state),
                            other => other,
                        }
                    });
            }
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed(_) => "failed",
        };
        Err(DeleteError::NotQueued(not_queued))
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
        if let Err(error) = self.bury(id) {
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

    /// Records durably that `id` must never run again from its stored request. The
    /// records' rewrite, once they have grown, waits for the sweeper: a request never
    /// waits for it.
    fn bury(&self, id: JobId) -> io::Result<()> {
        self.inner.store.bury(id)?;
        if self.inner.store.rewrite_due() {
            self.nudge_sweeper();
        }
        Ok(())
    }

    /// Deletes a finished job. Until its result is gone it can still be restored as it
    /// was; meanwhile it answers as unknown, so that no read finds it half removed.
    pub(super) fn remove_finished(&self, id: JobId, removal: Removal) -> Result<(), DeleteError> {
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
        let removed =
            if bury { self.bury(id) } else { Ok(()) }.and_then(|()| store.remove_result(id));
        if let Err(error) = removed {
            registry.unmark_deleting(id);
            warn!(self.inner.logger, "job not removed"; "job_id" => %id, "error" => %error);
            return Err(DeleteError::Storage(error.to_string()));
        }
        // Its result is gone: the job is, whether or not that is durable yet.
        registry.remove_finished(id);
        if removal == Removal::Requested
            && let Err(error) = store.sync_removals()
        {
            warn!(self.inner.logger, "job removed, but not durably"; "job_id" => %id,
                "error" => %error);
            return Err(DeleteError::Storage(format!(
                "the job was removed, but its removal could not be made durable (a power cut \
                 may bring it back): {error}"
            )));
        }
        info!(self.inner.logger, "job removed"; "job_id" => %id);
        Ok(())
    }
}
