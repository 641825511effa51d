//! Group commit: one thread gathers what must become durable (accepted requests,
//! finished results), writes a batch's requests into one journal file, makes it all
//! durable with a single `syncfs`, then answers each item. Under load a batch holds many
//! jobs, so the cost of a file and a sync is shared instead of paid per job.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

use super::JobId;

/// Most items in one batch, so a flood of writes still gets synced and answered.
const MAX_BATCH: usize = 4096;

/// A journal line is `{"job_id":"<id>","request":<request JSON>}`; the request starts
/// at this fixed offset, so it can be read back without parsing the line.
pub const JOURNAL_PREFIX: &str = r#"{"job_id":""#;
pub const JOURNAL_INFIX: &str = r#"","request":"#;
pub const REQUEST_OFFSET: usize = JOURNAL_PREFIX.len() + 36 + JOURNAL_INFIX.len();

/// The file of idempotency keys, one JSON record per line, beside the journals.
pub const KEYS_FILE: &str = "idempotency-keys.jsonl";

/// A journal file of accepted requests. It is removed when the last job that needs it
/// lets go, unless some job's result could not be stored (then a restart reruns it).
pub struct Journal {
    path: PathBuf,
    keep: AtomicBool,
}

impl Journal {
    pub fn new(path: PathBuf) -> Journal {
        Journal {
            path,
            keep: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file past the end of this process.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where an accepted request is on disk.
#[derive(Clone)]
pub struct StoredRequest {
    pub journal: Arc<Journal>,
    pub offset: u64,
    pub len: usize,
}

type AcceptThen = Box<dyn FnOnce(io::Result<StoredRequest>) + Send>;
type SyncThen = Box<dyn FnOnce(io::Result<()>) + Send>;

/// A request to make durable, and what else must be durable with it.
pub struct Accept {
    pub id: JobId,
    pub request: Vec<u8>,
    /// A line for the idempotency-key file, for a request that came with a key.
    pub key_record: Option<Vec<u8>>,
}

enum Pending {
    /// Write the request to the batch's journal, sync, answer where it is.
    Accept(Accept, AcceptThen),
    /// Sync what was written before (a result), then answer.
    Sync { then: SyncThen },
    /// Drop after the next sync, once what was renamed before it is durable.
    Release(StoredRequest),
}

pub struct GroupSync {
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupSync {
    /// Starts the sync thread for the file system that holds `dir`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(dir: PathBuf, handle: File) -> io::Result<GroupSync> {
        let (sender, receiver) = mpsc::channel::<Pending>();
        let thread = thread::Builder::new()
            .name("group-sync".to_owned())
            .spawn(move || sync_batches(&dir, &handle, &receiver))?;
        Ok(GroupSync {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, pending: Pending) -> Result<(), Pending> {
        let sender = self.sender.lock().clone();
        match sender {
            Some(sender) => sender.send(pending).map_err(|mpsc::SendError(p)| p),
            None => Err(pending),
        }
    }

    /// Makes `request` durable; `then` learns where it is stored.
    pub fn accept(
        &self,
        accept: Accept,
        then: impl FnOnce(io::Result<StoredRequest>) + Send + 'static,
    ) {
        if let Err(Pending::Accept(_, then)) = self.send(Pending::Accept(accept, Box::new(then))) {
            then(Err(closed()));
        }
    }

    /// Syncs everything written so far; `then` learns whether it is durable.
    pub fn sync(&self, then: impl FnOnce(io::Result<()>) + Send + 'static) {
        if let Err(Pending::Sync { then }) = self.send(Pending::Sync {
            then: Box::new(then),
        }) {
            then(Err(closed()));
        }
    }

    /// Lets go of a request once its result is in place, after the next sync.
    pub fn release(&self, request: StoredRequest) {
        // After shutdown there is no next sync: keep the journal for the restart.
        if let Err(Pending::Release(request)) = self.send(Pending::Release(request)) {
            request.journal.keep();
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

fn closed() -> io::Error {
    io::Error::other("the result store is closed")
}

fn sync_batches(dir: &Path, handle: &File, receiver: &mpsc::Receiver<Pending>) {
    while let Ok(first) = receiver.recv() {
        let mut accepts = Vec::new();
        let mut syncs = Vec::new();
        let mut releases = Vec::new();
        for pending in std::iter::once(first).chain(receiver.try_iter().take(MAX_BATCH - 1)) {
            match pending {
                Pending::Accept(accept, then) => accepts.push((accept, then)),
                Pending::Sync { then } => syncs.push(then),
                Pending::Release(request) => releases.push(request),
            }
        }
        let journaled = write_journal(dir, &accepts).and_then(|stored| {
            write_key_records(&dir.join(KEYS_FILE), &accepts)?;
            Ok(stored)
        });
        let synced = rustix::fs::syncfs(handle).map_err(io::Error::from);
        let failure = |error: &io::Error| io::Error::new(error.kind(), error.to_string());
        match (journaled, &synced) {
            (Ok(stored), Ok(())) => {
                for ((_, then), stored) in accepts.into_iter().zip(stored) {
                    then(Ok(stored));
                }
            }
            (Ok(stored), Err(error)) => {
                for ((_, then), stored) in accepts.into_iter().zip(stored) {
                    // Never acknowledged, so never needed by a restart.
                    drop(stored);
                    then(Err(failure(error)));
                }
            }
            (Err(error), _) => {
                for (_, then) in accepts {
                    then(Err(failure(&error)));
                }
            }
        }
        for then in syncs {
            then(synced.as_ref().map(|_| ()).map_err(failure));
        }
        if synced.is_err() {
            releases.iter().for_each(|request| request.journal.keep());
        }
        drop(releases);
    }
}

/// Appends the batch's idempotency-key records. A torn last line (a crash mid-write)
/// belongs to a request that was never acknowledged; recovery skips it.
fn write_key_records(keys: &Path, accepts: &[(Accept, AcceptThen)]) -> io::Result<()> {
    let records: Vec<u8> = accepts
        .iter()
        .filter_map(|(accept, _)| accept.key_record.as_deref())
        .flat_map(|record| record.iter().copied().chain([b'\n']))
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    // Opened per batch, so that a start-up compaction may replace the file.
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(keys)?
        .write_all(&records)
}

/// Writes a batch's requests to one new journal file. On a failed write the journal's
/// last handle is dropped here, which removes the file.
fn write_journal(dir: &Path, accepts: &[(Accept, AcceptThen)]) -> io::Result<Vec<StoredRequest>> {
    let Some((Accept { id: first, .. }, _)) = accepts.first() else {
        return Ok(Vec::new());
    };
    let journal = Arc::new(Journal::new(dir.join(format!("requests-{first}.jsonl"))));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(journal.path())?;
    let mut out = BufWriter::new(file);
    let mut offset = 0u64;
    let mut stored = Vec::with_capacity(accepts.len());
    for (Accept { id, request, .. }, _) in accepts {
        write!(out, "{JOURNAL_PREFIX}{id}{JOURNAL_INFIX}")?;
        out.write_all(request)?;
        out.write_all(b"}\n")?;
        stored.push(StoredRequest {
            journal: Arc::clone(&journal),
            offset: offset + REQUEST_OFFSET as u64,
            len: request.len(),
        });
        offset += (REQUEST_OFFSET + request.len() + 2) as u64;
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use super::*;

    fn start(dir: &Path) -> GroupSync {
        GroupSync::start(dir.to_owned(), File::open(dir).unwrap()).unwrap()
    }

    fn read_back(stored: &StoredRequest) -> Vec<u8> {
        let mut file = File::open(stored.journal.path()).unwrap();
        file.seek(SeekFrom::Start(stored.offset)).unwrap();
        let mut request = vec![0; stored.len];
        file.read_exact(&mut request).unwrap();
        request
    }

    #[test]
    fn accepted_requests_are_journaled_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sync = start(dir.path());
        let (sender, receiver) = mpsc::channel();
        for index in 0..50 {
            let sender = sender.clone();
            let request = format!(r#"{{"n":{index}}}"#).into_bytes();
            let accept = Accept {
                id: JobId::generate(),
                request: request.clone(),
                key_record: (index % 2 == 0).then(|| format!("key {index}").into_bytes()),
            };
            sync.accept(accept, move |stored| {
                sender.send((request, stored.unwrap())).unwrap();
            });
        }
        sync.shutdown();
        drop(sender);
        let stored: Vec<(Vec<u8>, StoredRequest)> = receiver.iter().collect();
        assert_eq!(stored.len(), 50);
        for (request, location) in &stored {
            assert_eq!(&read_back(location), request);
        }
        let journal = stored[0].1.journal.path().to_owned();
        let line = fs::read_to_string(&journal).unwrap();
        let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(first["request"]["n"], 0);
        let keys = fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap();
        assert_eq!(keys.lines().count(), 25);
        drop(stored);
        assert!(!journal.exists(), "a journal nobody needs is removed");
    }

    #[test]
    fn a_kept_journal_survives_and_a_closed_sync_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let sync = start(dir.path());
        let (sender, receiver) = mpsc::channel();
        let accept = Accept {
            id: JobId::generate(),
            request: b"{}".to_vec(),
            key_record: None,
        };
        sync.accept(accept, move |stored| sender.send(stored.unwrap()).unwrap());
        let stored = receiver.recv().unwrap();
        sync.shutdown();
        let path = stored.journal.path().to_owned();
        sync.release(stored);
        assert!(path.exists());
        let (sender, receiver) = mpsc::channel();
        sync.sync(move |synced| sender.send(synced.is_err()).unwrap());
        assert!(receiver.recv().unwrap());
    }
}
