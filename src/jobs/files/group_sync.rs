//! Group commit of results: one thread makes a batch of written results durable with
//! a single `syncfs`, then answers each. Under load a batch holds many results, so the
//! cost of a sync is shared instead of paid per job.

use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::batch_thread::{BatchThread, Batches, closed, repeat};

type SyncThen = Box<dyn FnOnce(io::Result<()>) + Send>;

pub struct GroupSync {
    thread: BatchThread<SyncThen>,
}

impl GroupSync {
    /// Starts the sync thread for the file system that holds the open `handle`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(handle: File) -> io::Result<GroupSync> {
        let thread = BatchThread::start("group-sync", move |batches| {
            sync_batches(&handle, &batches);
        })?;
        Ok(GroupSync { thread })
    }

    /// Syncs everything written so far; `then` learns whether it is durable.
    pub fn sync(&self, then: impl FnOnce(io::Result<()>) + Send + 'static) {
        if let Err(then) = self.thread.send(Box::new(then)) {
            then(Err(closed()));
        }
    }

    /// Syncs and answers everything queued so far, then stops the thread.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

fn sync_batches(handle: &File, batches: &Batches<SyncThen>) {
    while let Ok(batch) = batches.next(None) {
        let synced = rustix::fs::syncfs(handle).map_err(io::Error::from);
        for then in batch {
            // A panic in one answer must not drop the others unanswered: each holds its
            // job's request, whose last drop would remove a journal segment that a
            // result not yet synced still needs.
            let answered = synced.as_ref().map(|_| ()).map_err(repeat);
            let _ = catch_unwind(AssertUnwindSafe(|| then(answered)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_sync_answers_whether_it_made_the_writes_durable() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_ok()).unwrap());
        assert!(receiver.recv().unwrap());
        sync.shutdown();

        // `syncfs` refuses a descriptor opened only for its path.
        let path_only = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(dir.path())
            .unwrap();
        let sync = GroupSync::start(path_only).unwrap();
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_err()).unwrap());
        assert!(receiver.recv().unwrap(), "the sync failed");
        sync.shutdown();
    }

    #[test]
    fn an_answer_that_panics_leaves_the_others_answered_and_the_thread_running() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        let (sender, receiver) = mpsc::channel();
        sync.sync(|_| panic!("an answer that panics (this test's own)"));
        let answered = sender.clone();
        sync.sync(move |synced| answered.send(synced.is_ok()).unwrap());
        sync.sync(move |synced| sender.send(synced.is_ok()).unwrap());
        for _ in 0..2 {
            let answer = receiver.recv_timeout(std::time::Duration::from_secs(10));
            assert_eq!(answer, Ok(true));
        }
        sync.shutdown();
    }

    #[test]
    fn after_shutdown_a_sync_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        sync.shutdown();
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_err()).unwrap());
        assert!(receiver.recv().unwrap());
    }
}
