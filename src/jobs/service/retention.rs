//! Retention: the sweeper thread that removes finished jobs past `--result-ttl`, beyond
//! `--max-results` or over `--max-results-bytes`, oldest first, every so often and when
//! a finish nudges it.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slog::{Logger, error, info, warn};

use super::LocalJobs;
use super::removal::Removal;
use super::simulation::panic_message;
use crate::jobs::job_clock::{self, Steps};
use crate::jobs::storage::Storage;

/// How soon the retention sweeper looks again at jobs it had to leave pinned.
const PINNED_RETRY: Duration = Duration::from_millis(250);

impl LocalJobs {
    /// Removes expired jobs, and the oldest beyond `max_results` or `max_bytes`, every
    /// so often.
    pub(super) fn start_sweeper(&self) -> io::Result<()> {
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = (self.inner.retention.ttl / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        // A weak handle: the sweeper never keeps the service alive.
        let jobs = Arc::downgrade(&self.inner);
        let logger = self.inner.logger.clone();
        std::thread::Builder::new()
            .name("icewall-retention".to_owned())
            .spawn(move || {
                sweep_until_stopped(&stopped, interval, &logger, || {
                    let inner = jobs.upgrade()?;
                    Some(LocalJobs { inner }.sweep())
                });
            })?;
        *self.inner.sweeper.lock() = Some(stop);
        Ok(())
    }

    pub(super) fn nudge_sweeper(&self) {
        if let Some(sweeper) = &*self.inner.sweeper.lock() {
            let _ = sweeper.send(());
        }
    }

    /// Removes the jobs past their time or beyond the count or the bytes; returns how many of them
    /// had to wait because their request is still in a journal segment in use.
    pub(super) fn sweep(&self) -> usize {
        let registry = &self.inner.registry;
        let retention = self.inner.retention;
        let cutoff = job_clock::now()
            .checked_sub(retention.ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.restamp_after_a_step();
        let expired = registry.finished_before(cutoff);
        let excess = registry.finished_beyond(retention.max_results);
        let oversize = registry.finished_over_bytes(retention.max_bytes);
        let (mut removed, mut pinned) = (0, 0);
        for id in expired.into_iter().chain(excess).chain(oversize) {
            // Waiting costs nothing, while a tombstone costs a sync: a segment in use
            // goes soon. One kept for a restart stays, so its jobs are buried.
            if registry.is_pinned_for_now(id) {
                pinned += 1;
            } else if self.remove_finished(id, Removal::Retention).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            info!(self.inner.logger, "retention removed jobs"; "removed" => removed);
        }
        // After the removals, so that their keys go now (with those of jobs deleted
        // since the last sweep), not a sweep later. A job being deleted keeps its key:
        // the delete may fail and leave the job as it was.
        self.inner.keys.forget_removed(|id| registry.holds(id));
        if self.inner.store.rewrite_due()
            && let Err(error) = self.inner.store.rewrite_grown()
        {
            warn!(self.inner.logger, "the tombstones were not rewritten; they are tried \
                again once they have doubled"; "error" => %error);
        }
        pinned
    }

    /// After a step of the wall clock, sets the finish time that a restart reads back of
    /// every result on the clock as it reads now: those written before the step would
    /// be off by it (a day, or 56 years for a clock set right after a boot in 1970), and
    /// a restart would expire the results at once, or keep them that much longer.
    fn restamp_after_a_step(&self) {
        let offset = job_clock::current_offset();
        let mut results_offset = self.inner.results_offset_ns.lock();
        if *results_offset == offset {
            return;
        }
        let registry = &self.inner.registry;
        let every_finish = UNIX_EPOCH + Duration::from_secs(1 << 40);
        let (mut restamped, mut refused) = (0_usize, 0_usize);
        for id in registry.finished_before(every_finish) {
            let Some((_, Some(finished_ms))) = registry.state_and_finish(id) else {
                continue;
            };
            let finished = UNIX_EPOCH + Duration::from_millis(finished_ms);
            match (self.inner.store).restamp(id, Steps::on_wall_time(finished, offset)) {
                Ok(()) => restamped += 1,
                Err(_) => refused += 1,
            }
        }
        info!(self.inner.logger, "the wall clock stepped: the results' finish times are set \
            on it for a restart"; "results" => restamped, "refused" => refused,
            "stepped_since_start_ms" => offset / 1_000_000);
        *results_offset = offset;
    }
}

/// Runs `sweep` every `interval`, and at once when `stopped` brings a message, until
/// `stopped` closes or `sweep` finds no service left (`None`); `sweep` returns how many
/// jobs it left pinned. A sweep that panics is logged and the next one runs as
/// planned: a thread that died with it would leave every later result on disk for good.
fn sweep_until_stopped(
    stopped: &mpsc::Receiver<()>,
    interval: Duration,
    logger: &Logger,
    mut sweep: impl FnMut() -> Option<usize>,
) {
    let mut wait = interval;
    while !matches!(
        stopped.recv_timeout(wait),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ) {
        // Nudges that queued up meanwhile are served by this one sweep.
        while stopped.try_recv().is_ok() {}
        let pinned = match panic::catch_unwind(AssertUnwindSafe(&mut sweep)) {
            Ok(Some(pinned)) => pinned,
            Ok(None) => return,
            Err(payload) => {
                error!(logger, "a retention sweep panicked; the next one runs as planned";
                    "panic" => panic_message(&*payload));
                0
            }
        };
        // A pinned job is free once its journal segment goes, soon.
        wait = if pinned > 0 {
            interval.min(PINNED_RETRY)
        } else {
            interval
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::sweep_until_stopped;

    #[test]
    fn a_sweep_that_panics_is_followed_by_the_next() {
        let (_stop, stopped) = mpsc::channel::<()>();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut sweeps = 0;
        sweep_until_stopped(&stopped, Duration::from_millis(1), &logger, || {
            sweeps += 1;
            match sweeps {
                1 => panic!("a sweep's defect"),
                2 => Some(0),
                _ => None,
            }
        });
        assert_eq!(sweeps, 3, "the sweeps after the one that panicked ran");
    }
}
