//! `Jobs`, the one way into the jobs core for the HTTP handlers, whichever way the node
//! runs: on its own with the file store (`LocalJobs`), or as one node of a cluster on
//! PostgreSQL (`ClusterJobs`). Each call goes to the one the node was started with.
//!
//! The reads are `async` and may answer `Unavailable`: a node on its own answers them
//! from memory and never fails, a cluster node asks its database. Reads of a finished
//! job's stored result block (files or database): callers run them off the async threads.
//! A cluster node's calls are boxed futures: inline, a database round trip's state would
//! size every caller's future, a local read's too (a read's handler was 3 KiB, allocated
//! and copied per request; `LocalJobs::wait` boxes its waiting likewise).

use std::future::Future;
use std::io::{self, Read};
use std::time::Duration;

use super::cluster::{ClusterJobs, ClusterNode};
use super::service::{
    DeleteError, LocalJobs, Removable, Removed, Submission, SubmitError, Submitted,
};
use super::{JobId, JobInfo, JobState, Order, Status, StoreError, StoredWork, Unavailable};
use crate::metrics::Snapshot;
use crate::wall::{self, Limits, Summary, WallConfig};

/// A done job's team log, readable to its end.
pub type TeamLogReader = Box<dyn Read + Send>;

#[derive(Clone)]
pub enum Jobs {
    Local(LocalJobs),
    Cluster(ClusterJobs),
}

impl Jobs {
    /// Accepts a job: its request is durable (synced to disk, or committed to the
    /// database) before this returns its id.
    ///
    /// # Errors
    /// See `SubmitError`.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        match self {
            Jobs::Local(jobs) => jobs.submit(submission).await,
            Jobs::Cluster(jobs) => Box::pin(jobs.submit(submission)).await,
        }
    }

    /// A job's state; `None` for a job unknown, deleted, or past its retention.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn state(&self, id: JobId) -> Result<Option<JobState>, Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.state(id)),
            Jobs::Cluster(jobs) => Box::pin(jobs.state(id)).await,
        }
    }

    /// A job's state when it is known without waiting: on a node on its own (as `state`
    /// answers it); `None` for an unknown job, and on a cluster node, whose database is
    /// to be asked.
    pub fn state_at_once(&self, id: JobId) -> Option<JobState> {
        match self {
            Jobs::Local(jobs) => jobs.state(id),
            Jobs::Cluster(_) => None,
        }
    }

    /// A job's state once it is finished, `timeout` has passed or `stop` resolves.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<Option<JobState>, Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.wait(id, timeout, stop).await),
            Jobs::Cluster(jobs) => Box::pin(jobs.wait(id, timeout, stop)).await,
        }
    }

    /// A page of the job list, in id (creation) order.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn page(
        &self,
        statuses: &[Status],
        order: Order,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<(JobId, JobInfo)>, Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.page(statuses, order, after, limit)),
            Jobs::Cluster(jobs) => Box::pin(jobs.page(statuses, order, after, limit)).await,
        }
    }

    /// What is known of a job.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn info(&self, id: JobId) -> Result<Option<JobInfo>, Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.info(id)),
            Jobs::Cluster(jobs) => Box::pin(jobs.info(id)).await,
        }
    }

    /// How many jobs are queued or running (in the whole cluster, in cluster mode).
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn in_flight(&self) -> Result<usize, Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.in_flight()),
            Jobs::Cluster(jobs) => Box::pin(jobs.in_flight()).await,
        }
    }

    /// How many jobs are queued, running, done and failed, in that order.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn counts(&self) -> Result<[usize; 4], Unavailable> {
        match self {
            Jobs::Local(jobs) => Ok(jobs.counts()),
            Jobs::Cluster(jobs) => Box::pin(jobs.counts()).await,
        }
    }

    /// The cluster's nodes, each as its heartbeat last left it; `None` on a node on its
    /// own, which has no others to show.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    pub async fn nodes(&self) -> Result<Option<Vec<ClusterNode>>, Unavailable> {
        match self {
            Jobs::Local(_) => Ok(None),
            Jobs::Cluster(jobs) => Box::pin(jobs.nodes()).await.map(Some),
        }
    }

    /// How many jobs this node keeps (for its start-up and shutdown log lines); `None`
    /// in cluster mode, where the database keeps them.
    pub fn known_here(&self) -> Option<usize> {
        match self {
            Jobs::Local(jobs) => Some(jobs.known()),
            Jobs::Cluster(_) => None,
        }
    }

    /// What this node still has to finish before it can stop: every job queued or
    /// running on its own, only the jobs it has claimed in cluster mode.
    pub fn pending_here(&self) -> usize {
        match self {
            Jobs::Local(jobs) => jobs.in_flight(),
            Jobs::Cluster(jobs) => jobs.claimed_here(),
        }
    }

    /// A done job's summary with the rows of profiles `first + 1 ..= first + limit`,
    /// and how many profiles the wall has. Blocks.
    ///
    /// # Errors
    /// `Missing`, `Io`, `Damaged`, or `Unavailable`.
    pub fn summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        match self {
            Jobs::Local(jobs) => jobs.summary(id, first, limit),
            Jobs::Cluster(jobs) => jobs.summary(id, first, limit),
        }
    }

    /// A finished job's wall config, from the request it was run from; `None` when its
    /// result was stored without it (by a version before the request was kept). Blocks.
    ///
    /// # Errors
    /// `Missing`, `Io`, `Damaged` (the kept request does not parse), or `Unavailable`.
    pub fn config(&self, id: JobId) -> Result<Option<WallConfig>, StoreError> {
        let request = match self {
            Jobs::Local(jobs) => jobs.kept_request(id)?,
            Jobs::Cluster(jobs) => jobs.kept_request(id)?,
        };
        request
            .map(|request| {
                wall::parse_json(&request, &Limits::engine_bounds()).map_err(|error| {
                    StoreError::Damaged(format!("its kept request does not parse: {error}"))
                })
            })
            .transpose()
    }

    /// A done job's work tables, ready for questions. Blocks.
    ///
    /// # Errors
    /// `Missing`, `Io`, `Damaged`, or `Unavailable`.
    pub fn work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        match self {
            Jobs::Local(jobs) => jobs.work(id),
            Jobs::Cluster(jobs) => jobs.work(id),
        }
    }

    /// A done job's team log, readable to its end, and its length. Blocks, and so does
    /// reading it.
    ///
    /// # Errors
    /// `Missing`, `Io`, `Damaged`, or `Unavailable`.
    pub fn team_log(&self, id: JobId) -> Result<(TeamLogReader, u64), StoreError> {
        match self {
            Jobs::Local(jobs) => jobs
                .team_log(id)
                .map(|(log, length)| (Box::new(log) as TeamLogReader, length)),
            Jobs::Cluster(jobs) => jobs.team_log(id),
        }
    }

    /// Removes a finished job or cancels a queued one, for good, as far as `what` allows
    /// (a cancel leaves a running or finished job as it is).
    ///
    /// # Errors
    /// See `DeleteError`.
    pub async fn remove(&self, id: JobId, what: Removable) -> Result<Removed, DeleteError> {
        match self {
            Jobs::Local(jobs) => {
                let jobs = jobs.clone();
                actix_web::rt::task::spawn_blocking(move || jobs.remove(id, what))
                    .await
                    .map_err(|_| DeleteError::Storage("the removal was interrupted".to_owned()))?
            }
            Jobs::Cluster(jobs) => Box::pin(jobs.remove(id, what)).await,
        }
    }

    /// Checks that the store takes a write now (for `/readyz`). Blocks.
    ///
    /// # Errors
    /// Whatever the store answers.
    pub fn probe_store(&self) -> io::Result<()> {
        match self {
            Jobs::Local(jobs) => jobs.probe_store(),
            Jobs::Cluster(jobs) => jobs.probe_store(),
        }
    }

    /// Whether what a done job's result says may be answered from memory now: in cluster
    /// mode always (the database keeps the results, and a job's state is read from it
    /// first), on its own while its results directory has not been removed from under it,
    /// so that a result gone from the disk shows however often it was read. Never blocks.
    pub fn results_in_place(&self) -> bool {
        match self {
            Jobs::Local(jobs) => jobs.store_in_place(),
            Jobs::Cluster(_) => true,
        }
    }

    /// The live numbers `/metrics` reports.
    pub fn snapshot(&self) -> Snapshot {
        match self {
            Jobs::Local(jobs) => jobs.snapshot(),
            Jobs::Cluster(jobs) => jobs.snapshot(),
        }
    }

    pub fn is_accepting(&self) -> bool {
        match self {
            Jobs::Local(jobs) => jobs.is_accepting(),
            Jobs::Cluster(jobs) => jobs.is_accepting(),
        }
    }

    /// Refuses new jobs and finishes this node's own; reads go on until `close`. Blocks.
    pub fn drain(&self) {
        match self {
            Jobs::Local(jobs) => jobs.drain(),
            Jobs::Cluster(jobs) => jobs.drain(),
        }
    }

    /// Lets go of what reads need after the drain (the database's threads), once the
    /// HTTP server has stopped.
    pub fn close(&self) {
        if let Jobs::Cluster(jobs) = self {
            jobs.close();
        }
    }
}
