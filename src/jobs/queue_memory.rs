//! The memory queued jobs hold, counted against `--max-queue-bytes`: each accepted job
//! reserves what it will hold while it waits, and gives it back when it leaves the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held by queued jobs, and the most they may hold.
pub struct QueueMemory {
    used: AtomicUsize,
    limit: usize,
}

/// Why a job did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub used: usize,
    pub limit: usize,
}

impl QueueMemory {
    pub fn new(limit: usize) -> Arc<QueueMemory> {
        Arc::new(QueueMemory {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Reserves `bytes` for a job about to be queued. An empty queue takes any job, so a
    /// limit below one job's size slows submissions down rather than refusing them all.
    ///
    /// # Errors
    /// `OverLimit` when the queued jobs hold too much for this one to join them.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, OverLimit> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used == 0 || used.saturating_add(bytes) <= self.limit).then_some(used + bytes)
            })
            .map(|_| self.reservation(bytes))
            .map_err(|used| OverLimit {
                used,
                limit: self.limit,
            })
    }

    /// Counts `bytes` whatever the limit: for jobs accepted before a restart, which must
    /// run whatever the queue holds.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.used.fetch_add(bytes, Ordering::SeqCst);
        self.reservation(bytes)
    }

    fn reservation(self: &Arc<Self>, bytes: usize) -> Reservation {
        Reservation {
            memory: Arc::clone(self),
            bytes,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

/// A queued job's share of the queue's memory; given back when dropped.
pub struct Reservation {
    memory: Arc<QueueMemory>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_are_given_back_when_dropped() {
        let memory = QueueMemory::new(100);
        let first = memory.reserve(60).unwrap();
        let second = memory.reserve(40).unwrap();
        assert_eq!(
            memory.reserve(1).err(),
            Some(OverLimit {
                used: 100,
                limit: 100
            })
        );
        drop(first);
        assert_eq!(memory.used(), 40);
        let recovered = memory.take(500);
        assert_eq!(memory.used(), 540);
        drop((second, recovered));
        assert_eq!(memory.used(), 0);
        let oversized = memory.reserve(1000).expect("an empty queue takes any job");
        assert!(memory.reserve(1).is_err());
        drop(oversized);
        assert_eq!(memory.used(), 0);
    }
}
