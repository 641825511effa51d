//! The one shutdown trigger: `/api/graceful_shutdown`, SIGINT, SIGTERM and tests all
//! pull it, and `App::run_until_stopped` waits on it (a signal after it stops the wait).
//! Before the server listens, a signal stops the process at once instead.

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

/// SIGINT and SIGTERM while the server starts, until dropped: they stop the process at
/// once, by the signal's default action, as nothing is owed to anyone yet (every job
/// accepted before is journaled, and runs at the next start). Taken rather than left to
/// the default action, which the kernel skips for a PID namespace's first process (a
/// container's entry point): there a start-up, a cluster node waiting a minute for its
/// database, could not be stopped but by SIGKILL.
pub struct SignalsWhileStarting {
    signals: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalsWhileStarting {
    /// # Errors
    /// When the signals cannot be taken or their thread started.
    pub fn take() -> std::io::Result<SignalsWhileStarting> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::low_level::{emulate_default_handler, signal_name};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("icewall-start-signals".to_owned())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let name = signal_name(signal).unwrap_or("a signal");
                    eprintln!("icewall: stopped by {name} while starting");
                    if !rustix::process::getpid().is_init() {
                        // Never returns but by its fallback, `abort`.
                        let _ = emulate_default_handler(signal);
                    }
                    // A namespace's first process, which the default action (and
                    // `abort`) would skip: exits as a shell reports a death by the
                    // signal, and as that death would: `exit` would run the process's
                    // destructors under the threads still using them.
                    // SAFETY: `_exit` ends the process and touches none of its memory.
                    unsafe { libc::_exit(128 + signal) };
                }
            })?;
        Ok(SignalsWhileStarting {
            signals: handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalsWhileStarting {
    fn drop(&mut self) {
        self.signals.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
