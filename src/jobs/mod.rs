//! Jobs: ids and states, the in-memory registry, the result store on disk, and the
//! service that ties them to the thread pool.

mod batch_thread;
mod dir_lock;
mod group_sync;
mod id;
mod journal;
mod legacy_result;
mod queue_memory;
mod registry;
mod regular_file;
mod result_file;
mod service;
mod store;
mod tombstones;

pub use id::{InvalidJobId, JobId};
use registry::Registry;
pub use registry::{JobInfo, JobState, Order, Status, WallShape};
pub use service::{
    DebugHooks, DeleteError, IdempotencyKey, Jobs, JobsSettings, Removed, Retention, StartError,
    Submission, SubmitError, Submitted,
};
use store::ResultStore;
pub use store::{StoreError, StoreOptions, StoredWork, TeamLogs};
