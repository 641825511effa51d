//! Group commit of results: one thread makes a batch of written results durable with
//! a single `syncfs`, then answers each (the answer links or renames a result into
//! place), and lets go of the requests whose results were put in place before that
//! sync. Under load a batch holds many results, so the cost of a sync is shared instead
//! of paid per job.

use std::fs::File;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::batch_thread::{BatchThread, Batches, closed, repeat};
use super::journal::{KeptSegments, StoredRequest};

type SyncThen = Box<dyn FnOnce(io::Result<()>) + Send>;

enum Pending {
    /// Sync what was written before (a result), then answer.
    Sync { then: SyncThen },
    /// Wakes the thread for requests waiting in `Releases`.
    Release,
}

/// Requests whose results were put in place: each is dropped after the next sync, once
/// its result's name is durable. Kept apart from the channel, which closes at shutdown,
/// so that the results the last answers put in place still get their sync.
#[derive(Default)]
struct Releases {
    waiting: Vec<StoredRequest>,
    /// The thread has ended: nothing will sync any more.
    stopped: bool,
}

pub struct GroupSync {
    thread: BatchThread<Pending>,
    releases: Arc<Mutex<Releases>>,
    /// Where the journals of results a failed sync left unsettled are held.
    kept: Arc<KeptSegments>,
}

impl GroupSync {
    /// Starts the sync thread for the file system that holds the open `handle`; the
    /// journals it must keep for a restart are held in `kept`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(handle: File, kept: Arc<KeptSegments>) -> io::Result<GroupSync> {
        let releases = Arc::new(Mutex::new(Releases::default()));
        let thread_releases = Arc::clone(&releases);
        let thread_kept = Arc::clone(&kept);
        let thread = BatchThread::start("group-sync", move |batches| {
            sync_batches(&handle, &batches, &thread_releases, &thread_kept);
        })?;
        Ok(GroupSync {
            thread,
            releases,
            kept,
        })
    }

    /// Syncs everything written so far; `then` learns whether it is durable.
    pub fn sync(&self, then: impl FnOnce(io::Result<()>) + Send + 'static) {
        if let Err(Pending::Sync { then }) = self.thread.send(Pending::Sync {
            then: Box::new(then),
        }) {
            then(Err(closed()));
        }
    }

    /// Lets go of a request once its result is in place, after the next sync.
    pub fn release(&self, request: StoredRequest) {
        let mut releases = self.releases.lock();
        if releases.stopped {
            // No sync will follow: keep the journal for the restart.
            self.kept.hold(&request.journal);
            return;
        }
        releases.waiting.push(request);
        drop(releases);
        // Once shutdown has begun the thread is not woken, but it looks before it ends.
        let _ = self.thread.send(Pending::Release);
    }

    /// Syncs and answers everything queued so far, then stops the thread.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

fn sync_batches(
    handle: &File,
    batches: &Batches<Pending>,
    releases: &Mutex<Releases>,
    kept: &KeptSegments,
) {
    while let Ok(batch) = batches.next(None) {
        let syncs: Vec<SyncThen> = batch
            .into_iter()
            .filter_map(|pending| match pending {
                Pending::Sync { then } => Some(then),
                Pending::Release => None,
            })
            .collect();
        // Taken before the sync: their links and renames happened before it.
        let releasing = std::mem::take(&mut releases.lock().waiting);
        let synced = rustix::fs::syncfs(handle).map_err(io::Error::from);
        for then in syncs {
            then(synced.as_ref().map(|_| ()).map_err(repeat));
        }
        settle(releasing, &synced, kept);
    }
    // The answers above may have put results in place since the last sync: one more.
    loop {
        let releasing = {
            let mut releases = releases.lock();
            if releases.waiting.is_empty() {
                releases.stopped = true;
                return;
            }
            std::mem::take(&mut releases.waiting)
        };
        let synced = rustix::fs::syncfs(handle).map_err(io::Error::from);
        settle(releasing, &synced, kept);
    }
}

/// Drops requests whose results' names are now durable; keeps their journals if the sync
/// failed.
fn settle(releasing: Vec<StoredRequest>, synced: &io::Result<()>, kept: &KeptSegments) {
    if synced.is_err() {
        releasing
            .iter()
            .for_each(|request| kept.hold(&request.journal));
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;
    use std::sync::mpsc;

    use super::*;
    use crate::jobs::files::journal::Segment;

    fn stored_request(path: std::path::PathBuf) -> StoredRequest {
        fs::write(&path, b"{}").unwrap();
        StoredRequest {
            journal: Arc::new(Segment::new(path)),
            offset: 0,
            len: 2,
            damage: None,
        }
    }

    #[test]
    fn a_release_lets_go_of_the_journal_after_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap(), Arc::default()).unwrap();
        let request = stored_request(dir.path().join("requests-a.jsonl"));
        let path = request.journal.path().to_owned();
        sync.release(request);
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_ok()).unwrap());
        assert!(receiver.recv().unwrap());
        sync.shutdown();
        assert!(!path.exists(), "a journal nobody needs is removed");
    }

    #[test]
    fn a_journal_kept_after_a_failed_sync_stays_held() {
        let dir = tempfile::tempdir().unwrap();
        // `syncfs` refuses a descriptor opened only for its path.
        let path_only = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(dir.path())
            .unwrap();
        let sync = GroupSync::start(path_only, Arc::default()).unwrap();
        let request = stored_request(dir.path().join("requests-c.jsonl"));
        let journal = Arc::downgrade(&request.journal);
        sync.release(request);
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_err()).unwrap());
        assert!(receiver.recv().unwrap(), "the sync failed");
        // The answer comes before the thread settles the releases: let it finish.
        sync.shutdown();
        let journal = journal.upgrade().expect("held: its jobs stay pinned");
        assert!(journal.is_kept() && journal.path().exists());
    }

    #[test]
    fn after_shutdown_a_release_keeps_the_journal_and_a_sync_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::start(File::open(dir.path()).unwrap(), Arc::default()).unwrap();
        sync.shutdown();
        let request = stored_request(dir.path().join("requests-b.jsonl"));
        let path = request.journal.path().to_owned();
        sync.release(request);
        assert!(path.exists());
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_err()).unwrap());
        assert!(receiver.recv().unwrap());
    }
}
