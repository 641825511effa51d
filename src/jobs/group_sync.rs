//! Group commit: one thread gathers pending file writes, makes them all durable with a
//! single `syncfs`, then runs each one's continuation. Under load a batch holds many
//! jobs, so the cost of a sync is shared instead of paid per job.

use std::fs::File;
use std::io;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

/// Runs on the sync thread before the sync; its error skips the sync for this item.
pub type Write = Box<dyn FnOnce() -> io::Result<()> + Send>;
/// Runs on the sync thread after the sync, with the item's outcome.
pub type Then = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Pending {
    write: Write,
    then: Then,
}

/// Most items in one batch, so a flood of writes still gets synced and answered.
const MAX_BATCH: usize = 4096;

pub struct GroupSync {
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupSync {
    /// Starts the sync thread for the file system that holds `dir`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(dir: File) -> io::Result<GroupSync> {
        let (sender, receiver) = mpsc::channel::<Pending>();
        let thread = thread::Builder::new()
            .name("group-sync".to_owned())
            .spawn(move || sync_batches(&dir, &receiver))?;
        Ok(GroupSync {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `write`; `then` learns whether it is durable. After `shutdown`, `then` is
    /// called at once with an error.
    pub fn submit(&self, write: Write, then: Then) {
        let sender = self.sender.lock().clone();
        let pending = Pending { write, then };
        let refused = match sender {
            Some(sender) => sender.send(pending).err().map(|mpsc::SendError(p)| p),
            None => Some(pending),
        };
        if let Some(pending) = refused {
            (pending.then)(Err(io::Error::other("the result store is closed")));
        }
    }

    /// Syncs and answers everything queued so far, then stops the thread.
    pub fn shutdown(&self) {
        self.sender.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GroupSync {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn sync_batches(dir: &File, receiver: &mpsc::Receiver<Pending>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
        let written: Vec<(io::Result<()>, Then)> = batch
            .into_iter()
            .map(|pending| ((pending.write)(), pending.then))
            .collect();
        let synced = rustix::fs::syncfs(dir).map_err(io::Error::from);
        for (written, then) in written {
            let outcome = match (&written, &synced) {
                (Err(_), _) => written,
                (Ok(()), Err(error)) => Err(io::Error::new(error.kind(), error.to_string())),
                (Ok(()), Ok(())) => Ok(()),
            };
            then(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn every_item_is_written_and_answered_even_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        for index in 0..100 {
            let path = dir.path().join(format!("{index}"));
            let answered = Arc::clone(&answered);
            sync.submit(
                Box::new(move || std::fs::write(path, b"x")),
                Box::new(move |outcome| {
                    outcome.unwrap();
                    answered.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        sync.shutdown();
        assert_eq!(answered.load(Ordering::SeqCst), 100);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 100);
    }

    #[test]
    fn a_failed_write_is_reported_to_its_item_only() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        let (sender, receiver) = mpsc::channel();
        let bad = sender.clone();
        sync.submit(
            Box::new(|| Err(io::Error::other("no room"))),
            Box::new(move |outcome| bad.send(outcome.is_err()).unwrap()),
        );
        sync.submit(
            Box::new(|| Ok(())),
            Box::new(move |outcome| sender.send(outcome.is_err()).unwrap()),
        );
        sync.shutdown();
        assert_eq!(receiver.iter().collect::<Vec<_>>(), vec![true, false]);
        let (sender, receiver) = mpsc::channel();
        sync.submit(
            Box::new(|| Ok(())),
            Box::new(move |outcome| sender.send(outcome.is_err()).unwrap()),
        );
        assert!(receiver.recv().unwrap());
    }
}
