//! The job registry: every known job's state in a `DashMap`, and an ordered index of
//! ids for listing, all in memory so status questions never touch the disk.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use dashmap::DashMap;
use parking_lot::RwLock;

use super::JobId;
use super::journal::Journal;

/// Where a job is. The failure reason is a short sentence, so the record stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed(Arc<str>),
}

impl JobState {
    /// The `status` string of the API.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed(_) => "failed",
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, JobState::Done | JobState::Failed(_))
    }
}

/// What the registry keeps of a job: a small, fixed-size record.
struct JobRecord {
    state: JobState,
    /// When the result was written (for retention); `None` while in flight.
    finished_at: Option<SystemTime>,
    /// The journal holding the job's request, while jobs accepted with it still need it.
    /// Deleting the result before it is gone would make a restart run the job again.
    journal: Weak<Journal>,
    /// A delete is under way: the job answers as unknown, and comes back if it fails.
    deleting: bool,
}

#[derive(Default)]
pub struct Registry {
    records: DashMap<JobId, JobRecord>,
    /// Ids in creation order (v7 UUIDs sort by time), for oldest-first paging.
    order: RwLock<BTreeSet<JobId>>,
    /// Queued plus running, kept as a counter so `/api/num_jobs` is O(1).
    in_flight: AtomicUsize,
    /// Failed jobs known, so that the overview's count by state is O(1) too.
    failed: AtomicUsize,
}

impl Registry {
    /// Records a job, counting it in flight unless it is already finished.
    pub fn insert(
        &self,
        id: JobId,
        state: JobState,
        finished_at: Option<SystemTime>,
        journal: Weak<Journal>,
    ) {
        if !state.is_finished() {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        if matches!(state, JobState::Failed(_)) {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        self.order.write().insert(id);
        self.records.insert(
            id,
            JobRecord {
                state,
                finished_at,
                journal,
                deleting: false,
            },
        );
    }

    pub fn set_running(&self, id: JobId) {
        if let Some(mut record) = self.records.get_mut(&id) {
            record.state = JobState::Running;
        }
    }

    /// Marks a job done or failed now; it leaves the in-flight count once.
    pub fn finish(&self, id: JobId, outcome: JobState, journal: Weak<Journal>) {
        debug_assert!(outcome.is_finished());
        if let Some(mut record) = self.records.get_mut(&id) {
            if !record.state.is_finished() {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            let was_failed = matches!(record.state, JobState::Failed(_));
            match (was_failed, matches!(outcome, JobState::Failed(_))) {
                (false, true) => self.failed.fetch_add(1, Ordering::SeqCst),
                (true, false) => self.failed.fetch_sub(1, Ordering::SeqCst),
                _ => 0,
            };
            record.state = outcome;
            record.finished_at = Some(SystemTime::now());
            record.journal = journal;
        }
    }

    /// Hides a finished job while it is deleted; false if it is unknown, in flight or
    /// already being deleted.
    pub fn mark_deleting(&self, id: JobId) -> bool {
        self.records.get_mut(&id).is_some_and(|mut record| {
            let free = record.state.is_finished() && !record.deleting;
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
        let removed = self
            .records
            .remove_if(&id, |_, record| record.state == JobState::Queued)
            .is_some();
        if removed {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.order.write().remove(&id);
        }
        removed
    }

    /// Forgets a finished job; false if it is unknown or still in flight.
    pub fn remove_finished(&self, id: JobId) -> bool {
        let removed = self
            .records
            .remove_if(&id, |_, record| record.state.is_finished());
        if let Some((_, record)) = &removed {
            if matches!(record.state, JobState::Failed(_)) {
                self.failed.fetch_sub(1, Ordering::SeqCst);
            }
            self.order.write().remove(&id);
        }
        removed.is_some()
    }

    /// A job's state; `None` for a job unknown or being deleted.
    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.records
            .get(&id)
            .filter(|record| !record.deleting)
            .map(|record| record.state.clone())
    }

    /// When a finished job finished.
    pub fn finished_at(&self, id: JobId) -> Option<SystemTime> {
        self.records.get(&id).and_then(|record| record.finished_at)
    }

    /// Whether a job's request is still in a journal segment on disk (needed by other
    /// jobs, or kept for a restart): deleting the job must then leave a tombstone.
    pub fn is_pinned(&self, id: JobId) -> bool {
        self.records
            .get(&id)
            .is_some_and(|record| record.journal.strong_count() > 0)
    }

    /// Whether a job's request is in a segment that goes once its other jobs finish
    /// (soon), rather than one kept for a restart.
    pub fn is_pinned_for_now(&self, id: JobId) -> bool {
        let journal = self
            .records
            .get(&id)
            .and_then(|record| record.journal.upgrade());
        journal.is_some_and(|journal| !journal.is_kept())
    }

    /// Finished jobs that finished before `cutoff`.
    pub fn finished_before(&self, cutoff: SystemTime) -> Vec<JobId> {
        self.records
            .iter()
            .filter(|record| record.finished_at.is_some_and(|at| at < cutoff))
            .map(|record| *record.key())
            .collect()
    }

    /// Finished jobs known. The in-flight count is raised before a new job's record is
    /// inserted, so for a moment it may exceed the records: never below zero.
    pub fn finished(&self) -> usize {
        self.records.len().saturating_sub(self.in_flight())
    }

    /// The oldest finished jobs beyond the newest `keep` of them.
    pub fn finished_beyond(&self, keep: usize) -> Vec<JobId> {
        let excess = self.finished().saturating_sub(keep);
        if excess == 0 {
            return Vec::new();
        }
        // Copy the ids first: no DashMap access while the index lock is held.
        let ids: Vec<JobId> = self.order.read().iter().copied().collect();
        ids.into_iter()
            .filter(|&id| self.state(id).is_some_and(|state| state.is_finished()))
            .take(excess)
            .collect()
    }

    /// Failed jobs known; the other finished ones are done.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Up to `limit` jobs, oldest first, strictly after `after` when given.
    pub fn page(&self, after: Option<JobId>, limit: usize) -> Vec<(JobId, JobState)> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        // Copy the ids first: no DashMap access while the index lock is held.
        let ids: Vec<JobId> = self
            .order
            .read()
            .range((start, Bound::Unbounded))
            .take(limit)
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|id| self.state(id).map(|state| (id, state)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(registry: &Registry, id: JobId, state: JobState) {
        let finished_at = state.is_finished().then(SystemTime::now);
        registry.insert(id, state, finished_at, Weak::new());
    }

    #[test]
    fn the_finished_count_never_goes_below_zero() {
        let registry = Registry::default();
        // As a submission does for a moment: counted in flight, its record not yet in.
        registry.in_flight.fetch_add(1, Ordering::SeqCst);
        assert_eq!(registry.finished(), 0);
        assert!(registry.finished_beyond(0).is_empty());
    }

    #[test]
    fn failed_jobs_are_counted_until_they_are_removed() {
        let registry = Registry::default();
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        insert(&registry, a, JobState::Failed("recovered".into()));
        insert(&registry, b, JobState::Queued);
        insert(&registry, c, JobState::Done);
        registry.finish(b, JobState::Failed("boom".into()), Weak::new());
        assert_eq!((registry.failed(), registry.finished()), (2, 3));
        assert!(registry.remove_finished(a));
        assert!(registry.remove_finished(c));
        assert_eq!((registry.failed(), registry.finished()), (1, 1));
    }

    #[test]
    fn in_flight_counts_queued_and_running_only() {
        let registry = Registry::default();
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        insert(&registry, a, JobState::Queued);
        insert(&registry, b, JobState::Queued);
        insert(&registry, c, JobState::Done);
        assert_eq!(registry.in_flight(), 2);
        registry.set_running(a);
        assert_eq!(registry.in_flight(), 2);
        registry.finish(a, JobState::Done, Weak::new());
        registry.finish(a, JobState::Done, Weak::new());
        assert_eq!(registry.in_flight(), 1);
        registry.finish(b, JobState::Failed("no".into()), Weak::new());
        assert_eq!(registry.in_flight(), 0);
    }

    #[test]
    fn pages_run_oldest_first_after_a_cursor() {
        let registry = Registry::default();
        let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
        for &id in ids.iter().rev() {
            insert(&registry, id, JobState::Queued);
        }
        let first: Vec<JobId> = registry
            .page(None, 2)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(first, ids[..2]);
        let rest: Vec<JobId> = registry
            .page(Some(ids[1]), 10)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(rest, ids[2..]);
    }

    #[test]
    fn only_finished_jobs_are_removed_and_the_oldest_go_first() {
        let registry = Registry::default();
        let ids: Vec<JobId> = (0..4).map(|_| JobId::generate()).collect();
        insert(&registry, ids[0], JobState::Done);
        insert(&registry, ids[1], JobState::Running);
        insert(&registry, ids[2], JobState::Failed("x".into()));
        insert(&registry, ids[3], JobState::Done);
        assert_eq!(registry.finished_beyond(1), vec![ids[0], ids[2]]);
        assert_eq!(registry.finished_beyond(3), Vec::<JobId>::new());
        assert!(!registry.remove_finished(ids[1]));
        assert!(registry.remove_finished(ids[0]));
        assert_eq!(registry.state(ids[0]), None);
        assert_eq!(registry.page(None, 10).len(), 3);
        let later = SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(registry.finished_before(later).len(), 2);
    }

    #[test]
    fn a_job_being_deleted_answers_as_unknown_until_it_is_restored() {
        let registry = Registry::default();
        let (done, queued) = (JobId::generate(), JobId::generate());
        insert(&registry, done, JobState::Done);
        insert(&registry, queued, JobState::Queued);
        assert!(
            !registry.mark_deleting(queued),
            "only a finished job is deleted"
        );
        assert!(registry.mark_deleting(done));
        assert!(!registry.mark_deleting(done), "one delete at a time");
        assert_eq!(registry.state(done), None);
        assert_eq!(registry.page(None, 10).len(), 1);
        registry.unmark_deleting(done);
        assert_eq!(registry.state(done), Some(JobState::Done));
        assert_eq!(registry.page(None, 10).len(), 2);
    }

    #[test]
    fn only_a_queued_job_is_removed_as_cancelled() {
        let registry = Registry::default();
        let (queued, running) = (JobId::generate(), JobId::generate());
        insert(&registry, queued, JobState::Queued);
        insert(&registry, running, JobState::Queued);
        registry.set_running(running);
        assert!(!registry.remove_queued(running));
        assert!(registry.remove_queued(queued));
        assert!(!registry.remove_queued(queued));
        assert_eq!(registry.in_flight(), 1);
        assert_eq!(registry.page(None, 10).len(), 1);
    }

    #[test]
    fn a_job_is_pinned_while_its_journal_lives() {
        let registry = Registry::default();
        let journal = Arc::new(Journal::new(std::path::PathBuf::from("/nonexistent/j")));
        journal.keep();
        let id = JobId::generate();
        registry.insert(
            id,
            JobState::Done,
            Some(SystemTime::now()),
            Arc::downgrade(&journal),
        );
        assert!(registry.is_pinned(id));
        drop(journal);
        assert!(!registry.is_pinned(id));
    }
}
