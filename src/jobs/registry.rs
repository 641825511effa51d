//! The job registry: every known job's state in a `DashMap`, and the ids of each state
//! in order for listing, all in memory so status questions never touch the disk.

use std::collections::BTreeSet;
use std::num::{NonZeroU32, NonZeroU64};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::RwLock;

use super::JobId;
use super::storage::{RequestPin, StorePin};
use crate::wall::WallConfig;

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

/// The size of a job's wall, known from its request, or from its result's header
/// after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallShape {
    pub profiles: NonZeroU32,
    /// `None` when not known cheaply (a result recovered from a large file).
    pub sections: Option<NonZeroU32>,
    pub num_teams: Option<NonZeroU64>,
}

impl WallShape {
    pub fn of(config: &WallConfig) -> Option<WallShape> {
        Some(WallShape {
            profiles: count(config.profiles().len())?,
            sections: count(config.section_count()),
            num_teams: config.num_teams(),
        })
    }
}

/// A count as the record keeps it: every wall has at least one profile and section, and
/// no wall that fits in memory has 2^32 of them.
pub fn count(n: usize) -> Option<NonZeroU32> {
    u32::try_from(n).ok().and_then(NonZeroU32::new)
}

/// What a new record starts with.
pub struct NewRecord {
    pub state: JobState,
    /// When a recovered job's result was written.
    pub finished_at: Option<SystemTime>,
    pub shape: Option<WallShape>,
    /// What a recovered job's result takes on disk.
    pub result_bytes: u64,
    pub journal: StorePin,
}

/// What the registry knows of a job, as `GET /api/jobs/<id>` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    /// Milliseconds since the Unix epoch.
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub shape: Option<WallShape>,
    pub replayed: bool,
}

/// What the registry keeps of a job: a small, fixed-size record (see the test that
/// measures it), as a million finished jobs may be kept. Its creation time is in its id.
struct JobRecord {
    status: Status,
    /// A delete is under way: the job answers as unknown, and comes back if it fails.
    deleting: bool,
    /// A request with the job's Idempotency-Key was answered with it.
    replayed: bool,
    /// A failed job's reason, boxed: a thin pointer keeps every other record 8 bytes
    /// smaller, for one more allocation per failed job.
    reason: Option<Box<Arc<str>>>,
    /// Milliseconds since the Unix epoch; `None` while not known.
    started_ms: Option<NonZeroU64>,
    /// When the result was written (for retention); `None` while in flight.
    finished_ms: Option<NonZeroU64>,
    profiles: Option<NonZeroU32>,
    sections: Option<NonZeroU32>,
    num_teams: Option<NonZeroU64>,
    /// What a finished job's result (and log file) take on disk, for retention by size.
    result_bytes: u64,
    /// The journal holding the job's request, while jobs accepted with it still need it.
    /// Deleting the result before it is gone would make a restart run the job again.
    journal: StorePin,
}

/// A job's status in one byte (a failed job's reason is kept beside it), as the job
/// list filters by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Queued,
        Status::Running,
        Status::Done,
        Status::Failed,
    ];

    /// The status named as the API names it.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// Which end of the list a page starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

/// The ids of each status in creation order (v7 UUIDs sort by time). One set per status,
/// so that a filtered page walks only matching ids, and the whole list is their merge:
/// each id is kept once, which costs less than a set of all ids beside them.
#[derive(Default)]
struct Index {
    by_status: [BTreeSet<JobId>; 4],
}

impl Index {
    fn set(&mut self, status: Status) -> &mut BTreeSet<JobId> {
        &mut self.by_status[status as usize]
    }

    /// The ids of `statuses` in `order`, strictly beyond `after`: each set is read from
    /// the cursor on, and the next id is the first of their heads.
    fn walk(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
    ) -> impl Iterator<Item = JobId> + '_ {
        let mut heads: Vec<_> = statuses
            .iter()
            .map(|&status| {
                let set = &self.by_status[status as usize];
                let ids: Box<dyn Iterator<Item = &JobId>> = match (order, after) {
                    (Order::Oldest, None) => Box::new(set.iter()),
                    (Order::Oldest, Some(after)) => {
                        Box::new(set.range((Bound::Excluded(after), Bound::Unbounded)))
                    }
                    (Order::Newest, None) => Box::new(set.iter().rev()),
                    (Order::Newest, Some(after)) => Box::new(set.range(..after).rev()),
                };
                ids.copied().peekable()
            })
            .collect();
        std::iter::from_fn(move || {
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(at, ids)| ids.peek().map(|&id| (at, id)))
                .reduce(|first, other| match (order, other.1 < first.1) {
                    (Order::Oldest, true) | (Order::Newest, false) => other,
                    _ => first,
                })?;
            heads[next.0].next()
        })
    }
}

impl JobRecord {
    fn state(&self) -> JobState {
        match (self.status, &self.reason) {
            (Status::Queued, _) => JobState::Queued,
            (Status::Running, _) => JobState::Running,
            (Status::Done, _) => JobState::Done,
            (Status::Failed, reason) => JobState::Failed(
                reason
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| "no reason given".into()),
            ),
        }
    }

    fn set_state(&mut self, state: JobState) {
        (self.status, self.reason) = match state {
            JobState::Queued => (Status::Queued, None),
            JobState::Running => (Status::Running, None),
            JobState::Done => (Status::Done, None),
            JobState::Failed(reason) => (Status::Failed, Some(Box::new(reason))),
        };
    }

    fn is_finished(&self) -> bool {
        matches!(self.status, Status::Done | Status::Failed)
    }

    fn set_shape(&mut self, shape: WallShape) {
        self.profiles = Some(shape.profiles);
        self.sections = shape.sections;
        self.num_teams = shape.num_teams;
    }

    fn info(&self) -> JobInfo {
        JobInfo {
            state: self.state(),
            started_ms: self.started_ms.map(NonZeroU64::get),
            finished_ms: self.finished_ms.map(NonZeroU64::get),
            shape: self.shape(),
            replayed: self.replayed,
        }
    }

    fn shape(&self) -> Option<WallShape> {
        Some(WallShape {
            profiles: self.profiles?,
            sections: self.sections,
            num_teams: self.num_teams,
        })
    }
}

/// Milliseconds since the Unix epoch; a time before it (a clock set wrong) as `None`.
fn epoch_ms(time: SystemTime) -> Option<NonZeroU64> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    NonZeroU64::new(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

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
        let NewRecord {
            state,
            finished_at,
            shape,
            result_bytes,
            journal,
        } = new;
        let mut record = JobRecord {
            status: Status::Queued,
            deleting: false,
            replayed: false,
            reason: None,
            started_ms: None,
            finished_ms: finished_at.and_then(epoch_ms),
            profiles: None,
            sections: None,
            num_teams: None,
            result_bytes,
            journal,
        };
        record.set_state(state);
        if let Some(shape) = shape {
            record.set_shape(shape);
        }
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
