//! The job registry: every known job's state in memory, so status questions never touch
//! the disk. The few jobs in flight, which change often, in a `DashMap`; the many
//! finished ones, which change little, in a compact store ordered by id (`finished.rs`);
//! the ids of each status in order for listing.

mod finished;
mod index;
mod record;

use std::num::NonZeroU64;
use std::time::SystemTime;

use dashmap::DashMap;
use parking_lot::RwLock;

use self::finished::{FinishedJob, ScanFrom};
use self::index::Index;
pub use self::index::Order;
use self::record::{InFlightRecord, epoch_ms};

/// Finished jobs a retention scan looks at per hold of the registry's lock.
const SCAN_STEP: usize = 4096;
pub use self::record::{JobInfo, JobState, NewRecord, Status, WallShape, count};
use super::JobId;
use super::storage::{RequestPin, StorePin};

#[derive(Default)]
pub struct Registry {
    /// Hashed with foldhash rather than SipHash: every read looks here first, and its
    /// keys are ids this server made, not a client's choice.
    in_flight: DashMap<JobId, InFlightRecord, foldhash::fast::RandomState>,
    /// A job's status changes in its record and its place in the index together, under
    /// this lock, taken before an in-flight record's (never while one is held): a page
    /// sees every job once, in the list of the status it shows. The finished jobs are
    /// kept under it too: a job moves there from `in_flight` under the write lock, so
    /// a lookup that misses it in `in_flight` finds it there. A finished job's flags (a
    /// delete under way, a replay) change under the write lock too: briefly, and rarely
    /// beside the reads.
    index: RwLock<Index>,
}

impl Registry {
    /// Records a job in the index under its state.
    pub fn insert(&self, id: JobId, new: NewRecord) {
        let NewRecord {
            state,
            finished_at,
            shape,
            result_bytes,
            journal,
        } = new;
        let mut index = self.index.write();
        let running = match state {
            JobState::Queued => false,
            JobState::Running => true,
            JobState::Done | JobState::Failed(_) => {
                let job = FinishedJob {
                    state,
                    started_ms: None,
                    finished_ms: finished_at.and_then(epoch_ms),
                    shape,
                    result_bytes,
                    replayed: false,
                    deleting: false,
                };
                index.finished.insert(id, job, journal);
                return;
            }
        };
        // A job in flight is pinned by its queued request; `finish` brings its pin.
        index.in_flight(running).insert(id);
        let record = InFlightRecord {
            running,
            replayed: false,
            started_ms: None,
            shape,
        };
        self.in_flight.insert(id, record);
    }

    /// Makes room for `additional` done jobs at once (start-up knows how many).
    pub fn reserve_finished(&self, additional: usize) {
        self.index.write().finished.reserve(additional);
    }

    pub fn set_running(&self, id: JobId) {
        let mut index = self.index.write();
        if let Some(mut record) = self.in_flight.get_mut(&id) {
            if !record.running {
                index.in_flight(false).remove(&id);
                index.in_flight(true).insert(id);
            }
            record.running = true;
            record.started_ms = super::job_clock::now_stamp();
        }
    }

    /// Fills in the size of a job's wall if it is not known yet (a job recovered from
    /// its journal, once its request is read to run it).
    pub fn describe(&self, id: JobId, shape: WallShape) {
        if let Some(mut record) = self.in_flight.get_mut(&id) {
            record.shape.get_or_insert(shape);
        }
    }

    /// Notes that a request with the job's Idempotency-Key was answered with it.
    pub fn mark_replayed(&self, id: JobId) {
        if let Some(mut record) = self.in_flight.get_mut(&id) {
            record.replayed = true;
            return;
        }
        self.index.write().finished.mark_replayed(id);
    }

    /// Marks a job in flight done or failed at `finished_at`, its result taking `result_bytes`; a
    /// job already finished (or unknown) stays as it is. Answers how many jobs are
    /// finished then and the bytes their results take (for the retention limits),
    /// read under the same lock.
    pub fn finish(
        &self,
        id: JobId,
        outcome: JobState,
        finished_at: SystemTime,
        result_bytes: u64,
        journal: StorePin,
    ) -> (usize, u64) {
        debug_assert!(outcome.is_finished());
        let finished_ms = epoch_ms(finished_at);
        let mut index = self.index.write();
        let finished = |index: &Index| {
            let [_, _, done, failed] = index.counts();
            (done + failed, index.finished.bytes())
        };
        let Some((_, record)) = self.in_flight.remove(&id) else {
            return finished(&index);
        };
        index.in_flight(record.running).remove(&id);
        let job = FinishedJob {
            state: outcome,
            started_ms: record.started_ms,
            finished_ms,
            shape: record.shape,
            result_bytes,
            replayed: record.replayed,
            deleting: false,
        };
        index.finished.insert(id, job, journal);
        finished(&index)
    }

    /// Hides a finished job while it is deleted; false if it is unknown, in flight or
    /// already being deleted.
    pub fn mark_deleting(&self, id: JobId) -> bool {
        self.index.write().finished.mark_deleting(id)
    }

    /// Shows a job again whose delete failed.
    pub fn unmark_deleting(&self, id: JobId) {
        self.index.write().finished.unmark_deleting(id);
    }

    /// Forgets a queued job (a cancelled one); false if it is not queued.
    pub fn remove_queued(&self, id: JobId) -> bool {
        let mut index = self.index.write();
        let removed = self
            .in_flight
            .remove_if(&id, |_, record| !record.running)
            .is_some();
        if removed {
            index.in_flight(false).remove(&id);
        }
        removed
    }

    /// Forgets a finished job; false if it is unknown or still in flight.
    pub fn remove_finished(&self, id: JobId) -> bool {
        self.index.write().finished.remove(id).is_some()
    }

    /// Whether the registry holds the job, a job being deleted included (the delete may
    /// still fail and leave it as it was).
    pub fn holds(&self, id: JobId) -> bool {
        self.in_flight.contains_key(&id) || self.index.read().finished.get(id).is_some()
    }

    /// A job's state; `None` for a job unknown or being deleted.
    #[cfg(test)]
    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.state_and_finish(id).map(|(state, _)| state)
    }

    /// A job's state and, once it is finished, when it finished (milliseconds since the
    /// Unix epoch), in one lookup (a read checks both); `None` for a job unknown or
    /// being deleted.
    pub fn state_and_finish(&self, id: JobId) -> Option<(JobState, Option<u64>)> {
        // The map's guard goes before the index lock is taken (see `index`): a job that
        // moves on meanwhile is in the finished jobs by the time the lock is had.
        let in_flight = self.in_flight.get(&id).map(|record| record.state());
        if let Some(state) = in_flight {
            return Some((state, None));
        }
        let job = self.index.read().finished.get(id)?;
        (!job.deleting).then(|| (job.state, job.finished_ms.map(NonZeroU64::get)))
    }

    /// What is known of a job; `None` for a job unknown or being deleted. A job in
    /// flight is found without the index lock, as in `state_and_finish`.
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        let in_flight = self.in_flight.get(&id).map(|record| record.info());
        in_flight.or_else(|| Self::finished_info(&self.index.read(), id))
    }

    /// `info` under the index lock already held.
    fn info_in(&self, index: &Index, id: JobId) -> Option<JobInfo> {
        let in_flight = self.in_flight.get(&id).map(|record| record.info());
        in_flight.or_else(|| Self::finished_info(index, id))
    }

    fn finished_info(index: &Index, id: JobId) -> Option<JobInfo> {
        let job = index.finished.get(id)?;
        (!job.deleting).then(|| job.info())
    }

    /// Whether a job's request is still in a journal segment on disk (needed by other
    /// jobs, or kept for a restart): deleting the job must then leave a tombstone.
    pub fn is_pinned(&self, id: JobId) -> bool {
        self.index
            .read()
            .finished
            .journal(id)
            .is_some_and(RequestPin::is_held)
    }

    /// Whether a job's request is in a segment that goes once its other jobs finish
    /// (soon), rather than one kept for a restart.
    pub fn is_pinned_for_now(&self, id: JobId) -> bool {
        self.index
            .read()
            .finished
            .journal(id)
            .is_some_and(RequestPin::is_held_for_now)
    }

    /// Finished jobs that finished before `cutoff`.
    pub fn finished_before(&self, cutoff: SystemTime) -> Vec<JobId> {
        let cutoff = epoch_ms(cutoff).map_or(0, NonZeroU64::get);
        let mut found = Vec::new();
        let mut from = Some(ScanFrom::Done(None));
        while let Some(at) = from {
            // The lock is taken a step at a time: a million jobs would otherwise hold a
            // finish (and the reads queued behind its wait for the write lock) for the
            // whole walk.
            from = self
                .index
                .read()
                .finished
                .finished_before(cutoff, at, SCAN_STEP, &mut found);
        }
        found
    }

    /// Finished jobs known, counted by the index, like the jobs in flight: one place
    /// says where a job is, so the counts cannot disagree.
    pub fn finished(&self) -> usize {
        let [_, _, done, failed] = self.counts();
        done + failed
    }

    /// The oldest finished jobs beyond the newest `keep` of them.
    pub fn finished_beyond(&self, keep: usize) -> Vec<JobId> {
        let mut excess = self.finished().saturating_sub(keep);
        self.oldest_finished_while(|_, _| {
            let more = excess > 0;
            excess = excess.saturating_sub(1);
            more
        })
    }

    /// The bytes the finished jobs' results take on disk.
    pub fn stored_bytes(&self) -> u64 {
        self.index.read().finished.bytes()
    }

    /// The oldest finished jobs whose results, removed, bring the bytes stored down to
    /// `max_bytes`.
    pub fn finished_over_bytes(&self, max_bytes: u64) -> Vec<JobId> {
        let mut excess = self.stored_bytes().saturating_sub(max_bytes);
        self.oldest_finished_while(|index, id| {
            let more = excess > 0;
            excess = excess.saturating_sub(index.finished.result_bytes(id).unwrap_or(0));
            more
        })
    }

    /// The finished jobs, oldest first, for as long as `take` says yes to the next. The
    /// lock is taken a step at a time, as in `finished_before`.
    fn oldest_finished_while(&self, mut take: impl FnMut(&Index, JobId) -> bool) -> Vec<JobId> {
        let mut taken = Vec::new();
        loop {
            let index = self.index.read();
            let after = taken.last().copied();
            let mut walked = 0;
            for id in index.walk(&[Status::Done, Status::Failed], Order::Oldest, after) {
                if walked == SCAN_STEP {
                    break;
                }
                walked += 1;
                if !take(&index, id) {
                    return taken;
                }
                taken.push(id);
            }
            if walked < SCAN_STEP {
                return taken;
            }
        }
    }

    /// Jobs known of each status, in `Status::ALL` order, read from the index in O(1).
    pub fn counts(&self) -> [usize; 4] {
        self.index.read().counts()
    }

    /// Queued plus running.
    pub fn in_flight(&self) -> usize {
        let [queued, running, _, _] = self.counts();
        queued + running
    }

    pub fn len(&self) -> usize {
        self.counts().iter().sum()
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
            .filter_map(|id| Some((id, self.info_in(&index, id)?)))
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests;
