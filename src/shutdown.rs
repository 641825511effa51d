//! The one shutdown trigger: `/api/graceful_shutdown`, SIGINT, SIGTERM and tests all
//! pull it, and `App::run_until_stopped` waits on it (a signal after it stops the wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The one shutdown flag: once triggered, no new job is accepted (the job service and
/// the handlers read it here) and the server drains and stops.
#[derive(Clone)]
pub struct Shutdown {
    /// Read on every accept: an atomic load, no lock. Sequentially consistent, so that
    /// the drain's wait for accepts in progress sees every accept that passed it.
    triggered: Arc<AtomicBool>,
    /// Wakes those waiting for the trigger.
    sender: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            triggered: Arc::new(AtomicBool::new(false)),
            sender: watch::Sender::new(false),
        }
    }

    /// Asks for shutdown; later calls change nothing.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::SeqCst);
        self.sender.send_replace(true);
    }

    /// Whether shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once `trigger` has been called.
    pub async fn triggered(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|&triggered| triggered).await;
    }

    /// Takes SIGINT and SIGTERM from now on (called in a runtime, before the server
    /// says it listens: a signal sent the moment it does must drain it, not kill it).
    /// The future triggers on the first, and sends `impatient` on the next one: the
    /// operator will not wait for the drain. Counted by signals, so that the first one
    /// after a shutdown asked over HTTP (`docker stop` after a preStop hook) still waits.
    ///
    /// # Errors
    /// When the signals cannot be taken.
    pub fn on_signals(
        self,
        impatient: tokio::sync::oneshot::Sender<()>,
    ) -> std::io::Result<impl Future<Output = ()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            let mut next = async || {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            };
            next().await;
            self.trigger();
            next().await;
            let _ = impatient.send(());
        })
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
