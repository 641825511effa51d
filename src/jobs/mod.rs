//! The jobs core: the service (`Jobs`, the only way in), ids and states, the in-memory
//! registry, idempotency keys, and the storage seam with the file store behind it.

mod files;
mod id;
mod idempotency;
mod queue_memory;
mod registry;
mod service;
mod storage;

pub use files::{StoreError, StoreOptions, StoredWork, TeamLogs};
pub use id::{InvalidJobId, JobId};
pub use idempotency::IdempotencyKey;
use registry::Registry;
pub use registry::{JobInfo, JobState, Order, Status, WallShape};
pub use service::{
    DebugHooks, DeleteError, Jobs, JobsSettings, Removed, Retention, StartError, Submission,
    SubmitError, Submitted,
};
