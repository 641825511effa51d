//! The jobs core: the service (`Jobs`, the only way in) of a node on its own or of a
//! cluster node, ids and states, the in-memory registry, idempotency keys, and the
//! storage seam with the file store behind it.

mod cluster;
mod files;
mod id;
mod idempotency;
mod job_clock;
mod modes;
mod queue_memory;
mod registry;
mod service;
mod storage;
mod waiters;

pub use cluster::{ClusterJobs, ClusterNode, ClusterSettings};
pub use files::{COMPACTION_FLOOR, StoreError, StoreOptions, StoredWork, TeamLogs};
pub use id::{InvalidJobId, JobId};
pub use idempotency::IdempotencyKey;
pub use modes::{Jobs, TeamLogReader};
use registry::Registry;
pub use registry::{JobInfo, JobState, Order, Status, WallShape};
pub use service::{
    DebugHooks, DeleteError, JobsSettings, LocalJobs, Removable, Removed, Retention, StartError,
    Submission, SubmitError, Submitted, Unavailable,
};
