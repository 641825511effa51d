//! The job registry: every known job's state in a `DashMap`, and the ids of each state
//! in order for listing, all in memory so status questions never touch the disk.

mod index;
mod record;

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::RwLock;

use self::index::Index;
pub use self::index::Order;
pub use self::record::{JobInfo, JobState, NewRecord, Status, WallShape, count};
use self::record::{JobRecord, epoch_ms};
use super::JobId;
use super::storage::{RequestPin, StorePin};

#[derive(Default)]
pub struct Registry {
    records: DashMap<JobId, JobRecord>,
    /// A job's status changes in its record and its place in the index together, under
    /// this lock, taken before the record's (never while a record is held): a page sees
    /// every job once, in the list of the status it shows.
    index: RwLock<Index>,
    /// The bytes the finished jobs' results take, changed with their records.
    stored_bytes: AtomicU64,
}

impl Registry {
    /// Records a job in the index under its state.
    pub fn insert(&self, id: JobId, new: NewRecord) {
        let result_bytes = new.result_bytes;
        let record = JobRecord::new(new);
        let mut index = self.index.write();
        index.set(record.status).insert(id);
        self.stored_bytes.fetch_add(result_bytes, Ordering::SeqCst);
        self.records.insert(id, record);
    }

    /// Changes a job's record, moving it in the index if its status changed.
    fn update(&self, id: JobId, change: impl FnOnce(&mut JobRecord)) {
        let mut index = self.index.write();
        if let Some(mut record) = self.records.get_mut(&id) {
            let before = record.status;
            change(&mut record);
            if record.status != before {
                index.set(before).remove(&id);
                index.set(record.status).insert(id);
            }
        }
    }

    pub fn set_running(&self, id: JobId) {
        self.update(id, |record| {
            record.status = Status::Running;
            record.started_ms = epoch_ms(SystemTime::now());
        });
    }

    /// Fills in the size of a job's wall if it is not known yet (a job recovered from
    /// its journal, once its request is read to run it).
    pub fn describe(&self, id: JobId, shape: WallShape) {
        if let Some(mut record) = self.records.get_mut(&id) {
            if record.profiles.is_none() {
                record.set_shape(shape);
            }
        }
    }

    /// Notes that a request with the job's Idempotency-Key was answered with it.
    pub fn mark_replayed(&self, id: JobId) {
        if let Some(mut record) = self.records.get_mut(&id) {
            record.replayed = true;
        }
    }

    /// Marks a job done or failed now, its result taking `result_bytes` (counted once).
    pub fn finish(&self, id: JobId, outcome: JobState, result_bytes: u64, journal: StorePin) {
        debug_assert!(outcome.is_finished());
        self.update(id, |record| {
            if !record.is_finished() {
                self.stored_bytes.fetch_add(result_bytes, Ordering::SeqCst);
                record.result_bytes = result_bytes;
            }
            record.set_state(outcome);
            record.finished_ms = epoch_ms(SystemTime::now());
            record.journal = journal;
        });
    }

    /// Hides a finished job while it is deleted; false if it is unknown, in flight or
    /// already being deleted.
    pub fn mark_deleting(&self, id: JobId) -> bool {
        self.records.get_mut(&id).is_some_and(|mut record| {
            let free = record.is_finished() && !record.deleting;
            record.deleting |= free;
            free
        })
    }

    /// Shows a job again whose delete failed.
    pub fn unmark_deleting(&self, id: JobId) {
        if let Some(mut record) = self.records.get_mut(&id) {
            record.deleting = false;
        }
    }

    /// Forgets a queued job (a cancelled one); false if it is not queued.
    pub fn remove_queued(&self, id: JobId) -> bool {
        let mut index = self.index.write();
        let removed = self
            .records
            .remove_if(&id, |_, record| record.status == Status::Queued)
            .is_some();
        if removed {
            index.set(Status::Queued).remove(&id);
        }
        removed
    }

    /// Forgets a finished job; false if it is unknown or still in flight.
    pub fn remove_finished(&self, id: JobId) -> bool {
        let mut index = self.index.write();
        let removed = self
            .records
            .remove_if(&id, |_, record| record.is_finished());
        if let Some((_, record)) = &removed {
            index.set(record.status).remove(&id);
            self.stored_bytes
                .fetch_sub(record.result_bytes, Ordering::SeqCst);
        }
        removed.is_some()
    }

    /// A job's state; `None` for a job unknown or being deleted.
    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.records
            .get(&id)
            .filter(|record| !record.deleting)
            .map(|record| record.state())
    }

    /// What is known of a job; `None` for a job unknown or being deleted.
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        self.records
            .get(&id)
            .filter(|record| !record.deleting)
            .map(|record| record.info())
    }

    /// When a finished job finished.
    pub fn finished_at(&self, id: JobId) -> Option<SystemTime> {
        let finished_ms = self.records.get(&id)?.finished_ms?;
        Some(UNIX_EPOCH + Duration::from_millis(finished_ms.get()))
    }

    /// Whether a job's request is still in a journal segment on disk (needed by other
    /// jobs, or kept for a restart): deleting the job must then leave a tombstone.
    pub fn is_pinned(&self, id: JobId) -> bool {
        self.records
            .get(&id)
            .is_some_and(|record| record.journal.is_held())
    }

    /// Whether a job's request is in a segment that goes once its other jobs finish
    /// (soon), rather than one kept for a restart.
    pub fn is_pinned_for_now(&self, id: JobId) -> bool {
        self.records
            .get(&id)
            .is_some_and(|record| record.journal.is_held_for_now())
    }

    /// Finished jobs that finished before `cutoff`.
    pub fn finished_before(&self, cutoff: SystemTime) -> Vec<JobId> {
        let cutoff = epoch_ms(cutoff).map_or(0, NonZeroU64::get);
        self.records
            .iter()
            .filter(|record| record.finished_ms.is_some_and(|at| at.get() < cutoff))
            .map(|record| *record.key())
            .collect()
    }

    /// Finished jobs known, counted by the index, like the jobs in flight: one place
    /// says where a job is, so the counts cannot disagree.
    pub fn finished(&self) -> usize {
        let [_, _, done, failed] = self.counts();
        done + failed
    }

    /// The oldest finished jobs beyond the newest `keep` of them.
    pub fn finished_beyond(&self, keep: usize) -> Vec<JobId> {
        let excess = self.finished().saturating_sub(keep);
        if excess == 0 {
            return Vec::new();
        }
        self.index
            .read()
            .walk(&[Status::Done, Status::Failed], Order::Oldest, None)
            .take(excess)
            .collect()
    }

    /// The bytes the finished jobs' results take on disk.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::SeqCst)
    }

    /// The oldest finished jobs whose results, removed, bring the bytes stored down to
    /// `max_bytes`.
    pub fn finished_over_bytes(&self, max_bytes: u64) -> Vec<JobId> {
        let mut excess = self.stored_bytes().saturating_sub(max_bytes);
        let mut oldest = Vec::new();
        // Records are read under the index lock, as a status change takes it first.
        let index = self.index.read();
        for id in index.walk(&[Status::Done, Status::Failed], Order::Oldest, None) {
            if excess == 0 {
                break;
            }
            let bytes = self
                .records
                .get(&id)
                .map_or(0, |record| record.result_bytes);
            excess = excess.saturating_sub(bytes);
            oldest.push(id);
        }
        oldest
    }

    /// Jobs known of each status, in `Status::ALL` order, read from the index in O(1).
    pub fn counts(&self) -> [usize; 4] {
        let index = self.index.read();
        Status::ALL.map(|status| index.by_status[status as usize].len())
    }

    /// Queued plus running.
    pub fn in_flight(&self) -> usize {
        let [queued, running, _, _] = self.counts();
        queued + running
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Up to `limit` jobs of `statuses` in `order`, strictly beyond `after` when given.
    /// Only ids of those statuses are walked, whatever the others number.
    pub fn page(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
        limit: usize,
    ) -> Vec<(JobId, JobInfo)> {
        // Records are read under the index lock, which a status change takes first: each
        // row shows the status it was listed under.
        let index = self.index.read();
        index
            .walk(statuses, order, after)
            .filter_map(|id| Some((id, self.info(id)?)))
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests;
