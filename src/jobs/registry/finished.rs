//! The finished jobs, kept compact: once many jobs are retained they are nearly all of
//! the registry's memory, and they change little (a delete, a replay).
//!
//! Done jobs lie in one double-ended queue in id order, 56 bytes each (see the test
//! that measures it): v7 ids are made in order and jobs finish nearly in that order, so
//! an insert lands near the back, and retention removes the oldest from the front. A
//! job removed from the middle leaves a tombstone, so that a delete moves nothing; the
//! tombstones go in one pass once they are more than a quarter of the entries. The queue is its
//! own index of done jobs: a page of them is a binary search and a walk. Failed jobs
//! are rare and carry their reason: they have their own map, the index of their status.

mod packed;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU64;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::Range;
use std::sync::Arc;

use self::packed::{Packed, Unusual};
use super::Order;
use super::index::in_order;
use super::record::{JobInfo, JobState, WallShape};
use crate::jobs::JobId;
use crate::jobs::storage::StorePin;

/// What the registry knows of a finished job, unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FinishedJob {
    /// `Done` or `Failed`.
    pub(super) state: JobState,
    pub(super) started_ms: Option<NonZeroU64>,
    /// When the result was written (for retention); `None` when not known.
    pub(super) finished_ms: Option<NonZeroU64>,
    pub(super) shape: Option<WallShape>,
    /// What the result (and log file) take on disk, for retention by size.
    pub(super) result_bytes: u64,
    /// A request with the job's Idempotency-Key was answered with it.
    pub(super) replayed: bool,
    /// A delete is under way: the job answers as unknown, and comes back if it fails.
    pub(super) deleting: bool,
}

impl FinishedJob {
    pub(super) fn info(&self) -> JobInfo {
        JobInfo {
            state: self.state.clone(),
            created_ms: None,
            started_ms: self.started_ms.map(NonZeroU64::get),
            finished_ms: self.finished_ms.map(NonZeroU64::get),
            shape: self.shape,
            replayed: self.replayed,
        }
    }
}

/// Finished jobs by id, each status in id order.
#[derive(Default)]
pub(super) struct FinishedJobs {
    done: VecDeque<(JobId, Packed)>,
    /// Entries of `done` that are tombstones, never its first or last.
    tombstones: usize,
    failed: BTreeMap<JobId, FailedRecord>,
    /// The values a packed record has no room for, by id: rare (see `Unusual`).
    unusual: HashMap<JobId, Unusual>,
    /// The bytes the results of these jobs take on disk.
    bytes: u64,
}

/// Where a scan of the finished jobs goes on from: after an id of the done jobs (or
/// from their first), or of the failed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ScanFrom {
    Done(Option<JobId>),
    Failed(Option<JobId>),
}

struct FailedRecord {
    packed: Packed,
    reason: Arc<str>,
}

impl FinishedJobs {
    /// Makes room for `additional` done jobs at once (start-up knows how many).
    pub(super) fn reserve(&mut self, additional: usize) {
        self.done.reserve_exact(additional);
    }

    pub(super) fn done_len(&self) -> usize {
        self.done.len() - self.tombstones
    }

    pub(super) fn failed_len(&self) -> usize {
        self.failed.len()
    }

    /// The bytes the results of these jobs take on disk.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records a finished job that is not recorded yet.
    pub(super) fn insert(&mut self, id: JobId, job: FinishedJob, journal: StorePin) {
        // Saturating: a size no file has (a damaged record) must not wrap the total.
        self.bytes = self.bytes.saturating_add(job.result_bytes);
        let (packed, unusual) = Packed::new(&job, journal);
        if let Some(unusual) = unusual {
            self.unusual.insert(id, unusual);
        }
        match job.state {
            JobState::Failed(reason) => {
                self.failed.insert(id, FailedRecord { packed, reason });
            }
            _ => self.insert_done(id, packed),
        }
    }

    fn insert_done(&mut self, id: JobId, packed: Packed) {
        if self.done.back().is_none_or(|(last, _)| *last < id) {
            self.done.push_back((id, packed));
            return;
        }
        match self.done.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => {
                // Only the tombstone of the same id, removed and finished again: `insert`
                // takes jobs not recorded yet, and a live entry's bytes would be counted
                // twice.
                let tombstone = self.done[at].1.is_tombstone();
                debug_assert!(tombstone, "{id} is recorded already");
                self.tombstones -= usize::from(tombstone);
                self.done[at].1 = packed;
            }
            Err(at) => self.done.insert(at, (id, packed)),
        }
    }

    /// Forgets a finished job, returning what was known of it.
    pub(super) fn remove(&mut self, id: JobId) -> Option<FinishedJob> {
        let job = if let Some(at) = self.done_position(id) {
            let job = self.unpack(id, &self.done[at].1, JobState::Done);
            self.bury(at);
            job
        } else {
            let failed = self.failed.remove(&id)?;
            self.unpack(id, &failed.packed, JobState::Failed(failed.reason))
        };
        self.unusual.remove(&id);
        self.bytes = self.bytes.saturating_sub(job.result_bytes);
        Some(job)
    }

    /// Takes the done job at `at` out: it becomes a tombstone (which lets go of the
    /// journal's memory at once), tombstones at either end are popped, and the rest are
    /// compacted away once they pass a quarter of the entries.
    fn bury(&mut self, at: usize) {
        self.done[at].1 = Packed::tombstone();
        self.tombstones += 1;
        while self
            .done
            .front()
            .is_some_and(|(_, packed)| packed.is_tombstone())
        {
            self.done.pop_front();
            self.tombstones -= 1;
        }
        while self
            .done
            .back()
            .is_some_and(|(_, packed)| packed.is_tombstone())
        {
            self.done.pop_back();
            self.tombstones -= 1;
        }
        if self.tombstones * 4 > self.done.len() {
            self.done.retain(|(_, packed)| !packed.is_tombstone());
            self.tombstones = 0;
        }
    }

    /// What is known of a finished job.
    pub(super) fn get(&self, id: JobId) -> Option<FinishedJob> {
        if let Some(at) = self.done_position(id) {
            return Some(self.unpack(id, &self.done[at].1, JobState::Done));
        }
        let failed = self.failed.get(&id)?;
        Some(self.unpack(id, &failed.packed, JobState::Failed(failed.reason.clone())))
    }

    pub(super) fn result_bytes(&self, id: JobId) -> Option<u64> {
        let packed = self.packed(id)?;
        Some(match self.unusual_of(id, packed) {
            Some(unusual) => unusual.result_bytes,
            None => packed.result_bytes(),
        })
    }

    pub(super) fn journal(&self, id: JobId) -> Option<&StorePin> {
        Some(self.packed(id)?.journal())
    }

    /// Marks a job as being deleted; false if it is unknown or already marked.
    pub(super) fn mark_deleting(&mut self, id: JobId) -> bool {
        self.packed_mut(id).is_some_and(|packed| {
            let free = !packed.is_deleting();
            packed.set_deleting(true);
            free
        })
    }

    pub(super) fn unmark_deleting(&mut self, id: JobId) {
        if let Some(packed) = self.packed_mut(id) {
            packed.set_deleting(false);
        }
    }

    pub(super) fn mark_replayed(&mut self, id: JobId) {
        if let Some(packed) = self.packed_mut(id) {
            packed.set_replayed();
        }
    }

    /// Adds to `found` the jobs that finished before `cutoff_ms` among at most `budget`
    /// entries from `from` on, done ones first, each in id order; returns where the scan
    /// goes on from, `None` once it has seen every job. A scan in steps lets the caller
    /// release the registry's lock between them: the finished jobs are not ordered by
    /// finish time, so each scan sees them all.
    pub(super) fn finished_before(
        &self,
        cutoff_ms: u64,
        from: ScanFrom,
        budget: usize,
        found: &mut Vec<JobId>,
    ) -> Option<ScanFrom> {
        let before = |packed: &Packed| {
            !packed.is_tombstone() && packed.finished_ms().is_some_and(|at| at.get() < cutoff_ms)
        };
        let budget = budget.max(1);
        let beyond = |after: Option<JobId>| (after.map_or(Unbounded, Excluded), Unbounded);
        match from {
            ScanFrom::Done(after) => {
                let start = self.done_positions(beyond(after)).start;
                let end = self.done.len().min(start + budget);
                let step = self.done.range(start..end);
                found.extend(step.filter(|(_, packed)| before(packed)).map(|(id, _)| *id));
                Some(match end < self.done.len() {
                    true => ScanFrom::Done(Some(self.done[end - 1].0)),
                    false => ScanFrom::Failed(None),
                })
            }
            ScanFrom::Failed(after) => {
                let (mut seen, mut last) = (0, None);
                for (id, failed) in self.failed.range(beyond(after)).take(budget) {
                    (seen, last) = (seen + 1, Some(*id));
                    if before(&failed.packed) {
                        found.push(*id);
                    }
                }
                // A full step may have more behind it (at worst, one empty step more).
                (seen == budget).then_some(ScanFrom::Failed(last))
            }
        }
    }

    /// The ids of done jobs in `order`, strictly beyond `after`.
    pub(super) fn done_ids(
        &self,
        order: Order,
        after: Option<JobId>,
    ) -> Box<dyn Iterator<Item = JobId> + '_> {
        in_order(order, after, |ids| {
            self.done
                .range(self.done_positions(ids))
                .filter(|(_, packed)| !packed.is_tombstone())
                .map(|(id, _)| id)
        })
    }

    /// The positions in `done` of the ids within `bounds`.
    fn done_positions(&self, (lower, upper): (Bound<JobId>, Bound<JobId>)) -> Range<usize> {
        // The position of the first id at or past `at`, and of the first past it.
        let at_or_past = |at: JobId| self.done.partition_point(|(id, _)| *id < at);
        let past = |at: JobId| self.done.partition_point(|(id, _)| *id <= at);
        let start = match lower {
            Unbounded => 0,
            Included(at) => at_or_past(at),
            Excluded(at) => past(at),
        };
        let end = match upper {
            Unbounded => self.done.len(),
            Included(at) => past(at),
            Excluded(at) => at_or_past(at),
        };
        start..end
    }

    /// The ids of failed jobs in `order`, strictly beyond `after`.
    pub(super) fn failed_ids(
        &self,
        order: Order,
        after: Option<JobId>,
    ) -> Box<dyn Iterator<Item = JobId> + '_> {
        in_order(order, after, |ids| self.failed.range(ids).map(|(id, _)| id))
    }

    fn done_position(&self, id: JobId) -> Option<usize> {
        let at = self.done.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        (!self.done[at].1.is_tombstone()).then_some(at)
    }

    fn packed(&self, id: JobId) -> Option<&Packed> {
        match self.done_position(id) {
            Some(at) => Some(&self.done[at].1),
            None => self.failed.get(&id).map(|failed| &failed.packed),
        }
    }

    fn packed_mut(&mut self, id: JobId) -> Option<&mut Packed> {
        match self.done_position(id) {
            Some(at) => Some(&mut self.done[at].1),
            None => self.failed.get_mut(&id).map(|failed| &mut failed.packed),
        }
    }

    fn unusual_of(&self, id: JobId, packed: &Packed) -> Option<&Unusual> {
        if packed.is_unusual() {
            self.unusual.get(&id)
        } else {
            None
        }
    }

    fn unpack(&self, id: JobId, packed: &Packed, state: JobState) -> FinishedJob {
        packed.job(state, self.unusual_of(id, packed))
    }
}

#[cfg(test)]
mod tests;
