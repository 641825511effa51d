//! The per-job lock map: one lock per job in flight, from its accept (or its recovery)
//! until its result is durable, so that no two threads touch a job's files at
//! once. A finished job's files never change, so it needs no lock.
//!
//! # What it guards
//!
//! The race between the thread that writes a job's result (a worker writes it under its
//! name, holding the lock; the map keeps the lock until the sync has made it durable)
//! and any other thread that opens, reads or removes that job's files: a reader
//! (`read_summary`, `open_work`, `open_log`) holding the lock sees the result whole or
//! not at all, and `remove_result` cannot run while it is being written, which would
//! leave a result half removed or bring one back.
//!
//! # Lock order
//!
//! Take them in this order, and never the other way round:
//!
//! 1. a queued job's slot (`service::queue`): a worker taking the job and a cancel
//!    burying it hold it;
//! 2. this map's per-job lock, around one job's file operations only;
//! 3. the short locks inside a call: the registry's and the idempotency table's
//!    `DashMap` shards, the tombstone file's mutex, the pool's queue, the journal's and
//!    the group sync's channels.
//!
//! A `DashMap` reference is never held across another call on the same map, nor across
//! file I/O: `lock` clones the job's `Arc` out of the map before it locks it, so a
//! thread waiting for a job's lock holds no shard of the map.

use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{ArcMutexGuard, Mutex, RawMutex};

use crate::jobs::JobId;

/// The guard of one job's lock.
pub type JobGuard = ArcMutexGuard<RawMutex, ()>;

#[derive(Default)]
pub struct JobLocks {
    locks: DashMap<JobId, Arc<Mutex<()>>>,
}

impl JobLocks {
    /// The job is in flight from now until `release`.
    pub fn hold(&self, id: JobId) {
        self.locks.insert(id, Arc::new(Mutex::new(())));
    }

    /// Holds the job's lock if the job is in flight; `None` for a finished job, whose
    /// files no longer change.
    pub fn lock(&self, id: JobId) -> Option<JobGuard> {
        let lock = self.locks.get(&id).map(|entry| Arc::clone(entry.value()));
        lock.map(|lock| lock.lock_arc())
    }

    /// The job is finished (or gone): its files no longer need the lock.
    pub fn release(&self, id: JobId) {
        self.locks.remove(&id);
    }

    /// The jobs in flight, for tests.
    #[cfg(test)]
    pub fn held(&self) -> Vec<JobId> {
        let mut held: Vec<JobId> = self.locks.iter().map(|entry| *entry.key()).collect();
        held.sort();
        held
    }
}
