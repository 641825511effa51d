//! The one shutdown trigger: `/api/graceful_shutdown`, SIGINT, SIGTERM and tests all
//! pull it, and `App::run_until_stopped` waits on it.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            sender: watch::Sender::new(false),
        }
    }

    /// Asks for shutdown; later calls change nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once `trigger` has been called.
    pub async fn triggered(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|&triggered| triggered).await;
    }

    /// Triggers on SIGINT or SIGTERM.
    pub async fn on_signals(self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        self.trigger();
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
