//! The job registry: every known job's state in a `DashMap`, and an ordered index of
//! ids for listing, all in memory so status questions never touch the disk.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use parking_lot::RwLock;

use super::JobId;

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

#[derive(Default)]
pub struct Registry {
    states: DashMap<JobId, JobState>,
    /// Ids in creation order (v7 UUIDs sort by time), for oldest-first paging.
    order: RwLock<BTreeSet<JobId>>,
    /// Queued plus running, kept as a counter so `/api/num_jobs` is O(1).
    in_flight: AtomicUsize,
}

impl Registry {
    /// Records a job, counting it in flight unless it is already finished.
    pub fn insert(&self, id: JobId, state: JobState) {
        if !state.is_finished() {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        self.order.write().insert(id);
        self.states.insert(id, state);
    }

    pub fn set_running(&self, id: JobId) {
        if let Some(mut state) = self.states.get_mut(&id) {
            *state = JobState::Running;
        }
    }

    /// Marks a job done or failed; it leaves the in-flight count once.
    pub fn finish(&self, id: JobId, outcome: JobState) {
        debug_assert!(outcome.is_finished());
        if let Some(mut state) = self.states.get_mut(&id) {
            if !state.is_finished() {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            *state = outcome;
        }
    }

    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.states.get(&id).map(|state| state.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
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

    #[test]
    fn in_flight_counts_queued_and_running_only() {
        let registry = Registry::default();
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        registry.insert(a, JobState::Queued);
        registry.insert(b, JobState::Queued);
        registry.insert(c, JobState::Done);
        assert_eq!(registry.in_flight(), 2);
        registry.set_running(a);
        assert_eq!(registry.in_flight(), 2);
        registry.finish(a, JobState::Done);
        registry.finish(a, JobState::Done);
        assert_eq!(registry.in_flight(), 1);
        registry.finish(b, JobState::Failed("no".into()));
        assert_eq!(registry.in_flight(), 0);
    }

    #[test]
    fn pages_run_oldest_first_after_a_cursor() {
        let registry = Registry::default();
        let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
        for &id in ids.iter().rev() {
            registry.insert(id, JobState::Queued);
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
}
