//! The end of a `--timeout` (or of `status --wait`), and the work given up on when it
//! comes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// When a timeout given on the command line ends, and how long it was, for messages.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deadline {
    pub(super) given: Duration,
    pub(super) at: Instant,
}

impl Deadline {
    /// `given` from now. A flag's duration is at most 1000 years (see
    /// `settings::parse_duration`), far from the end of the clock.
    pub(super) fn after(given: Duration) -> Deadline {
        Deadline {
            given,
            at: Instant::now() + given,
        }
    }

    pub(super) fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// `work`'s value, or `None` if `deadline` comes first (or has come). The work runs on a
/// thread of its own, left running when the deadline comes: ureq bounds neither a name
/// lookup nor a connect by a request's own timeout, and that timeout, where it applies,
/// replaces the silence timeout between reads. A deadline that passes ends the command,
/// and what is left running with it.
pub(super) fn by<T: Send + 'static>(
    deadline: Option<Deadline>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let Some(deadline) = deadline else {
        return Some(work());
    };
    if deadline.left().is_zero() {
        return None;
    }
    let (sender, receiver) = mpsc::sync_channel(1);
    let worker = std::thread::spawn(move || {
        // The receiver is gone if the deadline came first: nobody wants the value.
        let _ = sender.send(work());
    });
    match receiver.recv_timeout(deadline.left()) {
        Ok(value) => Some(value),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(
            worker
                .join()
                .expect_err("a worker ends without its value only by panicking"),
        ),
    }
}
