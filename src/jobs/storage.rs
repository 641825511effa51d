//! The storage seam of a node on its own: everything `LocalJobs` needs to keep durably
//! (the accept journal, results written once, start-up recovery, tombstones and
//! idempotency records) behind one trait, with the file store (`files/`) behind it.
//! Cluster mode is not a second `Storage`: there the database is the truth about every
//! job, so it plugs in one level up, as a second `Jobs` (see ARCHITECTURE.md).
//!
//! Choices made when a database store was meant to fit here (they still hold):
//! - **Completion callbacks, not `async fn`.** `accept` and `commit` hand their answer
//!   to `then` on the store's own thread, once the write is durable. Each store batches
//!   inside itself (the file store's journal and group sync; a database's one
//!   transaction for a batch of accepts), and the callback costs neither a runtime nor
//!   an allocation more than the file store already makes. An async store spawns the
//!   work on its runtime and calls `then` from there.
//! - **Results are written once**: `commit` stores a finished job's record, and nothing
//!   rewrites it; `remove_result` deletes it.
//! - **No claim or lease here.** The file store has one server per directory, so every
//!   recovered job is this server's. A shared store would add claiming (its jobs to run
//!   come from a claim, not from `recover` alone); nothing here assumes otherwise.
//! - Reads (`read_summary`, `open_work`, `open_log`, `probe`) block: the service calls
//!   them off the async threads.

use std::io::{self, Read};
use std::time::SystemTime;

use super::files::FileStore;
use super::idempotency::KeyRecord;
use super::registry::WallShape;
use super::{JobId, JobState, StoreError};
use crate::wall::{Outcome, Summary, WorkSource};

/// What a finished job leaves behind.
pub enum Record<'a> {
    Done(&'a Outcome),
    Failed(&'a str),
}

/// The store this build runs on.
pub type Store = FileStore;

/// What the registry keeps of a finished job's request, of the store `Store`.
pub type StorePin = <Store as Storage>::Pin;

/// Where `Store` keeps an accepted request.
pub type StoredRequest = <Store as Storage>::Request;

/// The idempotency-key records of the jobs that still exist (and of claims under way),
/// for a store to drop the others from its own while it runs.
pub type LiveKeys = Box<dyn Fn() -> Vec<KeyRecord> + Send + Sync>;

/// Whether a finished job's request is still held where a restart would run it again.
pub trait RequestPin: Default + Send + Sync {
    /// The request is still held: deleting the job must `bury` it first.
    fn is_held(&self) -> bool;
    /// The request is held, but only until the other jobs stored with it finish.
    fn is_held_for_now(&self) -> bool;
}

/// A job found in the store at start-up: finished, or accepted and still to run.
pub struct Recovered<S: Storage + ?Sized> {
    pub id: JobId,
    pub state: JobState,
    /// When a finished job's result was written.
    pub finished_at: Option<SystemTime>,
    /// A done job's wall, when the store knows it cheaply; `None` for others.
    pub shape: Option<WallShape>,
    /// What a finished job's result takes in the store.
    pub result_bytes: u64,
    /// The request of a job still to run.
    pub request: Option<S::Request>,
    /// Whether a finished job's request is still held.
    pub pin: S::Pin,
}

/// What the jobs found at start-up, and the idempotency keys of those that exist.
pub type RecoveredJobs<S> = (Vec<Recovered<S>>, Vec<KeyRecord>);

pub trait Storage: Send + Sync + 'static {
    /// Where an accepted request is kept until its job's result is stored.
    type Request: Send + 'static;
    /// See `RequestPin`.
    type Pin: RequestPin;
    /// A done job's work tables, read a step at a time.
    type Work: WorkSource<Error = StoreError> + Send + 'static;
    /// A done job's team log, readable to its end.
    type Log: Read + Send + 'static;

    /// Stores an accepted job's request (and its idempotency record) durably; `then`
    /// learns where once it is.
    fn accept(
        &self,
        id: JobId,
        request: Vec<u8>,
        key: Option<&KeyRecord>,
        then: impl FnOnce(Result<Self::Request, StoreError>) + Send + 'static,
    );

    /// The pin of a stored request, for the registry.
    fn pin(request: &Self::Request) -> Self::Pin;

    /// The bytes of a stored request.
    ///
    /// # Errors
    /// `Damaged` when the stored request is damaged for good; another error when it
    /// cannot be read now (a later read may succeed).
    fn read_request(&self, request: &Self::Request) -> Result<Vec<u8>, StoreError>;

    /// Keeps the request of a job that could not read it, storing no record, so that a
    /// restart runs the job again.
    fn set_aside(&self, id: JobId, request: Self::Request);

    /// Stores a finished job's record, once, and lets go of its request; `then` gets the
    /// bytes the record takes once it is durable. `request_bytes` are the request's
    /// bytes, which the job ran from; `None` when they could not be read (the job then
    /// failed for it), and the record keeps none. The record carries `finished_at`, so
    /// that a restart finds the time the job's record showed.
    fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        finished_at: SystemTime,
        request: Self::Request,
        request_bytes: Option<&[u8]>,
        then: impl FnOnce(Result<u64, StoreError>) + Send + 'static,
    );

    /// The jobs in the store, oldest first, and their idempotency keys. Called once,
    /// before the first accept; `warn` hears of each oddity.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn recover(&self, warn: impl FnMut(String)) -> io::Result<RecoveredJobs<Self>>;

    /// From now on the store may drop from its idempotency-key records those that
    /// `live` does not give (called once, after `recover`).
    fn track_keys(&self, live: LiveKeys);

    /// Records durably that a job must never run again from its stored request.
    ///
    /// # Errors
    /// When the record cannot be made durable.
    fn bury(&self, id: JobId) -> io::Result<()>;

    /// Whether the records `bury` adds to have grown past what a rewrite would keep: a
    /// cheap look, so that the request that made them so hands the rewrite to the
    /// retention sweeper instead of waiting for it.
    fn rewrite_due(&self) -> bool;

    /// Rewrites the records that `rewrite_due` found grown; the retention sweeper's work.
    ///
    /// # Errors
    /// Whatever the store answers; the records are then as they were.
    fn rewrite_grown(&self) -> io::Result<()>;

    /// Lets go of a cancelled (and buried) job's request.
    fn abandon(&self, id: JobId, request: Self::Request);

    /// Removes a finished job's record.
    ///
    /// # Errors
    /// When it exists but cannot be removed; then nothing was removed.
    fn remove_result(&self, id: JobId) -> io::Result<()>;

    /// Sets the time a restart reads back as a finished job's finish (after a step of the
    /// wall clock, its time on the clock as it reads now). Not made durable: after a
    /// crash a record may show the time it had.
    ///
    /// # Errors
    /// When the record exists but its time cannot be set.
    fn restamp(&self, id: JobId, finished_at: SystemTime) -> io::Result<()>;

    /// A done job's summary with the rows of profiles `first + 1 ..= first + limit`,
    /// and how many profiles the wall has.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged`.
    fn read_summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError>;

    /// A finished job's request, kept with its record; `None` when the record was
    /// written without it.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged`.
    fn read_kept_request(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError>;

    /// A done job's work tables.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged`.
    fn open_work(&self, id: JobId) -> Result<Self::Work, StoreError>;

    /// A done job's team log and its length in bytes.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged`.
    fn open_log(&self, id: JobId) -> Result<(Self::Log, u64), StoreError>;

    /// Checks that the store takes a write now (for `/readyz`).
    ///
    /// # Errors
    /// Whatever the store answers.
    fn probe(&self) -> io::Result<()>;

    /// Whether the store's files are still where it keeps them, from a check that never
    /// blocks (the file store looks at most every 100 ms): answers kept in memory are
    /// served only while they are.
    fn in_place(&self) -> bool;

    /// Makes the removals so far durable (a DELETE answers only after it).
    ///
    /// # Errors
    /// Whatever the store answers.
    fn sync_removals(&self) -> io::Result<()>;

    /// Answers every pending accept and commit, then stops the store's threads.
    fn shutdown(&self);
}
