//! What the registry keeps of a job: its state as the API names it, and the record of a
//! job in flight.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::jobs::storage::StorePin;
use crate::wall::WallConfig;

/// Where a job is, as the API names it; a failed job with its reason.
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
    /// Kept for a finished job (see `Registry::is_pinned`).
    pub journal: StorePin,
}

/// What the registry knows of a job, as `GET /api/jobs/<id>` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    /// Milliseconds since the Unix epoch, when the store keeps the job's acceptance
    /// apart from its id: a cluster's database, on the clock its other times are on
    /// (a node's clock, which made the id, may be minutes off it). `None`: the id's time.
    pub created_ms: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub shape: Option<WallShape>,
    pub replayed: bool,
}

/// What the registry keeps of a job in flight (queued or running); a finished job moves
/// to the compact store of `finished.rs`.
pub(super) struct InFlightRecord {
    /// Running, or else queued.
    pub(super) running: bool,
    /// A request with the job's Idempotency-Key was answered with it.
    pub(super) replayed: bool,
    /// Milliseconds since the Unix epoch; `None` while not known.
    pub(super) started_ms: Option<NonZeroU64>,
    pub(super) shape: Option<WallShape>,
}

/// A job's status without a failed job's reason: what the job list filters by and
/// counts.
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

impl InFlightRecord {
    pub(super) fn state(&self) -> JobState {
        if self.running {
            JobState::Running
        } else {
            JobState::Queued
        }
    }

    pub(super) fn info(&self) -> JobInfo {
        JobInfo {
            state: self.state(),
            created_ms: None,
            started_ms: self.started_ms.map(NonZeroU64::get),
            finished_ms: None,
            shape: self.shape,
            replayed: self.replayed,
        }
    }
}

/// Milliseconds since the Unix epoch; a time before it (a clock set wrong) as `None`.
pub(super) fn epoch_ms(time: SystemTime) -> Option<NonZeroU64> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    NonZeroU64::new(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
