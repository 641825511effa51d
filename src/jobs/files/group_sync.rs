//! Group commit of results: one thread makes a batch of written results durable with
//! a single `syncfs`, then answers each. Under load a batch holds many results, so the
//! cost of a sync is shared instead of paid per job.

use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use super::batch_thread::{BatchThread, Batches, closed, repeat};

/// An answer to a sync.
pub type SyncThen = Box<dyn FnOnce(io::Result<()>) + Send>;

/// An answer to a sync that may ask for the next one (see `GroupSync::sync_then`).
type SyncThenAgain = Box<dyn FnOnce(io::Result<()>) -> Option<SyncThen> + Send>;

pub struct GroupSync {
    thread: BatchThread<SyncThenAgain>,
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
        self.sync_then(move |synced| {
            then(synced);
            None
        });
    }

    /// As `sync`, where `then` may write more and return the answer to the sync after
    /// that, which the thread runs itself: also while it shuts down, when no new sync
    /// is taken.
    pub fn sync_then(
        &self,
        then: impl FnOnce(io::Result<()>) -> Option<SyncThen> + Send + 'static,
    ) {
        if let Err(then) = self.thread.send(Box::new(then))
            && let Some(again) = then(Err(closed()))
        {
            again(Err(closed()));
        }
    }

    /// Syncs and answers everything queued so far, then stops the thread.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

fn sync_batches(handle: &File, batches: &Batches<SyncThenAgain>) {
    // Answers owed the next sync, asked for by the answers of the last one.
    let mut again: Vec<SyncThen> = Vec::new();
    loop {
        let batch = if again.is_empty() {
            match batches.next(None) {
                Ok(batch) => batch,
                Err(_) => return,
            }
        } else {
            // Whatever came meanwhile joins them; once the channel is closed, none.
            batches.next(Some(Duration::ZERO)).unwrap_or_default()
        };
        let synced = rustix::fs::syncfs(handle).map_err(io::Error::from);
        let answered = || synced.as_ref().map(|_| ()).map_err(repeat);
        // A panic in one answer must not drop the others unanswered: each holds its
        // job's request, whose last drop would remove a journal segment that a result
        // not yet synced still needs.
        for then in std::mem::take(&mut again) {
            let _ = catch_unwind(AssertUnwindSafe(|| then(answered())));
        }
        for then in batch {
            if let Ok(Some(next)) = catch_unwind(AssertUnwindSafe(|| then(answered()))) {
                again.push(next);
            }
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
    fn an_answer_may_ask_for_the_next_sync_also_while_the_thread_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap()).unwrap();
        let (held, holding) = mpsc::channel::<()>();
        let (go, wait) = mpsc::channel::<()>();
        let (sender, receiver) = mpsc::channel();
        sync.sync_then(move |first| {
            held.send(()).unwrap();
            wait.recv().unwrap();
            Some(Box::new(move |second: io::Result<()>| {
                sender.send((first.is_ok(), second.is_ok())).unwrap();
            }))
        });
        holding.recv().unwrap();
        // The shutdown closes the channel while the first answer is still running.
        let shutting_down = std::thread::spawn(move || sync.shutdown());
        std::thread::sleep(Duration::from_millis(50));
        go.send(()).unwrap();
        shutting_down.join().unwrap();
        assert_eq!(receiver.try_recv(), Ok((true, true)), "both syncs answered");
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
