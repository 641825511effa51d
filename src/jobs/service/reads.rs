//! The read side of the job service: a job's state and record, waiting for it to
//! finish, the listing and the counts, and a done job's stored result. Reads never
//! write: an expired job answers as unknown until the retention sweeper removes it.

use std::fs::File;
use std::future::Future;
use std::io;
use std::time::Duration;

use super::LocalJobs;
use crate::jobs::files::StoredWork;
use crate::jobs::job_clock::{self, Steps};
use crate::jobs::registry::{JobInfo, Order, Status};
use crate::jobs::storage::Storage;
use crate::jobs::{JobId, JobState, StoreError};
use crate::metrics::Snapshot;
use crate::wall::Summary;

impl LocalJobs {
    /// A job's state; a job past its retention answers as unknown (the sweeper removes
    /// it: a read never writes).
    pub fn state(&self, id: JobId) -> Option<JobState> {
        let (state, finished_ms) = self.inner.registry.state_and_finish(id)?;
        self.unexpired(finished_ms, state)
    }

    /// A job's state once it is finished, `timeout` has passed or `stop` resolves,
    /// whichever comes first; `None` for a job unknown (or cancelled meanwhile).
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Option<JobState> {
        let state = self.state(id)?;
        if state.is_finished() || timeout.is_zero() {
            return Some(state);
        }
        // Boxed: inline, what a wait holds (a timer, a notification) would size every
        // read's future, most of which do not wait.
        Box::pin(self.wait_for_finish(id, timeout, stop)).await
    }

    async fn wait_for_finish(
        &self,
        id: JobId,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Option<JobState> {
        let listener = self.inner.waiters.listen(id);
        let notified = listener.notified();
        tokio::pin!(notified);
        // Listening before the second look: a finish after it is heard.
        notified.as_mut().enable();
        let state = self.state(id)?;
        if state.is_finished() {
            return Some(state);
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(timeout) => {}
            () = stop => {}
        }
        self.state(id)
    }

    /// Answers every request waiting for a job that finished or left the queue.
    pub(super) fn wake_waiters(&self, id: JobId) {
        self.inner.waiters.wake(id);
    }

    /// A page of the job list (see `Registry::page`); jobs past their retention are
    /// listed until the sweeper removes them, as before.
    pub fn page(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
        limit: usize,
    ) -> Vec<(JobId, JobInfo)> {
        let mut page = self.inner.registry.page(statuses, order, after, limit);
        let steps = job_clock::steps();
        for (_, info) in &mut page {
            on_wall_clock(info, &steps);
        }
        page
    }

    /// What is known of a job, from memory; a job past its retention answers as unknown.
    pub fn info(&self, id: JobId) -> Option<JobInfo> {
        let mut info = self.inner.registry.info(id)?;
        let finished_ms = info.finished_ms;
        on_wall_clock(&mut info, &job_clock::steps());
        self.unexpired(finished_ms, info)
    }

    /// `known` of a job that finished at `finished_ms` (on the job clock), unless that is
    /// past retention.
    fn unexpired<T>(&self, finished_ms: Option<u64>, known: T) -> Option<T> {
        // To the tick: asked on every read, and a job a tick late to expire is no harm.
        let now = job_clock::coarse_now_ms();
        let past_ttl = finished_ms.is_some_and(|ms| {
            now.checked_sub(ms)
                .is_some_and(|age| u128::from(age) >= self.inner.retention.ttl.as_millis())
        });
        (!past_ttl).then_some(known)
    }

    /// How many jobs are queued or running.
    pub fn in_flight(&self) -> usize {
        self.inner.registry.in_flight()
    }

    /// How many jobs are queued, running, done and failed, in that order (O(1)).
    pub fn counts(&self) -> [usize; 4] {
        self.inner.registry.counts()
    }

    /// How many jobs are known, in any state.
    pub fn known(&self) -> usize {
        self.inner.registry.len()
    }

    /// A done job's summary with the rows of profiles `first + 1 ..= first + limit`,
    /// and how many profiles the wall has (see `FileStore::read_summary`). Blocks on
    /// the disk: call it off the async threads.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub fn summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        self.inner.store.read_summary(id, first, limit)
    }

    /// A finished job's request, as its result keeps it; `None` for a result written
    /// without it (by an earlier version). Blocks on the disk.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not whole.
    pub fn kept_request(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.store.read_kept_request(id)
    }

    /// A done job's work tables, ready for questions. Blocks on the disk.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub fn work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        self.inner.store.open_work(id)
    }

    /// A done job's team log, readable to its end, and its length. Blocks on the disk.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the log is not where its result says, or not whole.
    pub fn team_log(&self, id: JobId) -> Result<(io::Take<File>, u64), StoreError> {
        self.inner.store.open_log(id)
    }

    /// Checks that the store takes a write and keeps its free space. Blocks on the disk.
    ///
    /// # Errors
    /// Whatever the file system answers.
    pub fn probe_store(&self) -> io::Result<()> {
        self.inner.store.probe()
    }

    /// See `Storage::in_place`.
    pub fn store_in_place(&self) -> bool {
        self.inner.store.in_place()
    }

    /// The live numbers `/metrics` reports.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            queue_depth: self.inner.queued.len(),
            queue_bytes: self.inner.queue_memory.used(),
            in_flight: self.inner.registry.in_flight(),
            running_here: self.inner.registry.counts()[1],
            workers: self.inner.pool.live_workers(),
        }
    }

    pub fn is_accepting(&self) -> bool {
        !self.inner.shutdown.is_triggered()
    }
}

/// A record's times, kept on the job clock, as the wall clock read them then, as the
/// job's id (its `created_at`) and the log have them.
fn on_wall_clock(info: &mut JobInfo, steps: &Steps) {
    info.started_ms = info.started_ms.and_then(|ms| steps.shown(ms));
    info.finished_ms = info.finished_ms.and_then(|ms| steps.shown(ms));
}
