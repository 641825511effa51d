//! A named thread fed through a channel that takes its work in batches, and that on
//! shutdown finishes what was sent before stopping: the shape of the journal writer and
//! of the result sync thread.

use std::io;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

/// Most items taken as one batch, so that a flood of work is still answered in turn.
const MAX_BATCH: usize = 4096;

pub struct BatchThread<T> {
    sender: Mutex<Option<mpsc::Sender<T>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> BatchThread<T> {
    /// Starts `work` on a thread named `name`; it runs until the channel closes.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        name: &str,
        work: impl FnOnce(Batches<T>) + Send + 'static,
    ) -> io::Result<BatchThread<T>> {
        let (sender, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || work(Batches { receiver }))?;
        Ok(BatchThread {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands `item` to the thread, or back when it has been shut down.
    pub fn send(&self, item: T) -> Result<(), T> {
        let sender = self.sender.lock().clone();
        match sender {
            Some(sender) => sender.send(item).map_err(|mpsc::SendError(item)| item),
            None => Err(item),
        }
    }
}

impl<T> BatchThread<T> {
    /// Lets the thread finish every item sent so far, then joins it.
    pub fn shutdown(&self) {
        self.sender.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl<T> Drop for BatchThread<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The thread's side of the channel.
pub struct Batches<T> {
    receiver: mpsc::Receiver<T>,
}

impl<T> Batches<T> {
    /// Waits for the next item, for at most `timeout` when one is given; then takes
    /// whatever else is waiting, up to a batch. `Err(Disconnected)` once shut down.
    pub fn next(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<Vec<T>, mpsc::RecvTimeoutError> {
        let first = match timeout {
            None => self
                .receiver
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)?,
            Some(timeout) => self.receiver.recv_timeout(timeout)?,
        };
        Ok(std::iter::once(first)
            .chain(self.receiver.try_iter().take(MAX_BATCH - 1))
            .collect())
    }
}

/// The answer to a send after shutdown.
pub fn closed() -> io::Error {
    io::Error::other("the result store is closed")
}

/// The same error again, for each of a batch's waiters (`io::Error` is not `Clone`).
pub fn repeat(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}
