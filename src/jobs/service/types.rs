//! What goes into the job service and what comes out: its settings, a submission and
//! its answer, and the errors of submit, delete and start.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::idempotency::{IdempotencyKey, KeyConflict};
use crate::jobs::queue_memory::OverLimit;
use crate::jobs::{JobId, StoreError, StoreOptions};
use crate::metrics::Rejection;
use crate::wall::WallConfig;

pub struct JobsSettings {
    pub results_dir: PathBuf,
    pub workers: usize,
    pub max_queue: usize,
    /// The most bytes queued jobs may hold.
    pub max_queue_bytes: usize,
    pub store: StoreOptions,
    pub retention: Retention,
    pub debug: DebugHooks,
}

/// How long, how many and how many bytes of finished jobs are kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub ttl: Duration,
    pub max_results: usize,
    /// The most bytes the finished jobs' results may take on disk together.
    pub max_bytes: u64,
}

/// Test-only behaviour, off by default and hidden from `--help`: lets the integration
/// tests make jobs slow (to catch a shutdown mid-queue), panic (to check isolation), or
/// accepts slow (to let a client go away before its answer).
#[derive(Clone, Debug, Default)]
pub struct DebugHooks {
    pub job_delay: Duration,
    /// A job waits until this file exists before it runs.
    pub job_gate: Option<PathBuf>,
    pub panic_on_num_teams: Option<u64>,
    /// How long an accept waits once its request is journaled, before it completes.
    pub accept_delay: Duration,
    /// How long a cluster node's claim holds the jobs it took before it hands them to
    /// the workers.
    pub claim_delay: Duration,
    /// A cluster node's finisher panics when handed a failed job (with
    /// `panic_on_num_teams`, a job of those teams).
    pub finisher_panics: bool,
}

impl DebugHooks {
    /// Runs on a worker before a job's simulation: the panic first (a job that panics
    /// is never held), then the delay and the gate.
    pub fn apply(&self, config: &WallConfig) {
        let teams = config.num_teams().map(|teams| teams.get());
        if self.panic_on_num_teams.is_some() && self.panic_on_num_teams == teams {
            panic!("debug hook: panic on num_teams {teams:?}");
        }
        if !self.job_delay.is_zero() {
            std::thread::sleep(self.job_delay);
        }
        if let Some(gate) = &self.job_gate {
            while !gate.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// What a successful `delete` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    /// A finished job's record and result are gone.
    Deleted,
    /// A queued job was taken out before it ran.
    Cancelled,
}

/// What a removal may take: a `DELETE` a finished or a queued job, a cancel a queued one
/// only, so that a job that finished since its caller looked keeps its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removable {
    FinishedOrQueued,
    QueuedOnly,
}

impl Removed {
    /// The `status` string of the API.
    pub fn name(self) -> &'static str {
        match self {
            Removed::Deleted => "deleted",
            Removed::Cancelled => "cancelled",
        }
    }
}

/// An accepted submission: a new job, or the one an earlier request with the same key made.
pub struct Submitted {
    pub id: JobId,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is being accepted; retry in a moment")]
    KeyInProgress,
    #[error("the job queue is full (--max-queue {limit}); retry later")]
    QueueFull { limit: usize },
    #[error(
        "the queued jobs hold {} bytes, and this job would take them past the --max-queue-bytes limit of {} bytes; retry later",
        .0.used,
        .0.limit
    )]
    QueueMemoryFull(OverLimit),
    #[error("the server is shutting down and accepts no new jobs")]
    ShuttingDown,
    #[error("the job could not be stored on disk: {0}")]
    Storage(String),
    /// Cluster mode's: the database did not commit the job, or did not say.
    #[error("the job could not be stored in the database: {0}")]
    Database(String),
}

impl SubmitError {
    /// The reason `/metrics` counts this refusal under.
    pub fn rejection(&self) -> Rejection {
        match self {
            SubmitError::KeyReused | SubmitError::KeyInProgress => Rejection::Idempotency,
            SubmitError::QueueFull { .. } | SubmitError::QueueMemoryFull(_) => Rejection::QueueFull,
            SubmitError::ShuttingDown => Rejection::ShuttingDown,
            SubmitError::Storage(_) | SubmitError::Database(_) => Rejection::Storage,
        }
    }
}

impl From<KeyConflict> for SubmitError {
    fn from(conflict: KeyConflict) -> SubmitError {
        match conflict {
            KeyConflict::Reused => SubmitError::KeyReused,
            KeyConflict::InProgress => SubmitError::KeyInProgress,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("Invalid job_id")]
    Unknown,
    #[error("the job is {0}; only a finished job can be deleted, or a queued one cancelled")]
    InFlight(&'static str),
    /// A cancel found the job running or finished: it is left as it is.
    #[error("the job is {0}; only a queued job can be cancelled")]
    NotQueued(&'static str),
    #[error("the job could not be deleted and is unchanged: {0}")]
    Storage(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The shared store (cluster mode's database) cannot be reached now: a 503, and the
/// client may retry. A node on its own never answers it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the worker threads: {0}")]
    Threads(#[from] io::Error),
    #[error("cannot start on the database: {0}")]
    Database(String),
}

/// A submission: the config, and what came with it.
pub struct Submission {
    pub config: WallConfig,
    pub key: Option<IdempotencyKey>,
    /// The HTTP request's id, carried on the job's log lines.
    pub request_id: Option<String>,
}
