//! The file store, the job service's `Storage`: one set of files per job under the
//! results directory, guarded by a per-job lock while the job is in flight (see
//! `job_locks`), made durable by group commit.
//!
//! Files under the results directory (names are built only from parsed `JobId`s):
//! - `requests-<id>.jsonl`: a journal segment of accepted requests, one line per job
//!   (see `journal`); removed once every job in it has its result in place;
//! - `<id>.result`: a failed job's reason, or a done job's summary, work tables and
//!   (with `TeamLogs::Inline`, the default) team log, then the job's request (its
//!   config, shown once the journal is gone), in the binary layout of `result_file`,
//!   which the questions read a few records at a time; files of the earlier
//!   line-based layout are still read (`legacy_result`);
//! - `<id>.log`: with `TeamLogs::Files`, a done job's team log, in a file of its own;
//! - `.lock`: held (`flock`) by the one server using the directory, naming its pid and
//!   address (see `dir_lock`). Entries of any other kind than these are left alone.
//! - `deleted-jobs.txt`: ids of jobs deleted or cancelled while their request was
//!   still journaled, so that no restart runs them again (see `tombstones`).
//!
//! By default each job makes one inode, its result, and one directory entry:
//! file-system metadata per job is what bounds throughput on ext4. A result is written
//! under its own name, then made durable by the next group sync; only then is its job
//! `done`, so no reader opens it before. A crash before that sync may leave it cut
//! short, but its job's request is still journaled then, and start-up checks every
//! such result whole (its trailer's checksum): one that is not is removed and its job
//! runs again. A log file is written in place too, and its result written only once a
//! sync has made the log durable.

mod batch_thread;
mod dir_lock;
mod group_sync;
mod growth;
mod job_locks;
pub(super) mod journal;
mod legacy_result;
mod recovery;
mod regular_file;
pub(super) mod result_file;
mod results;
mod seam;
mod tombstones;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use self::dir_lock::{DirectoryLock, LockError};
use self::group_sync::GroupSync;
use self::job_locks::{JobGuard, JobLocks};
use self::journal::{FreeSpaceFloor, Journal, KeptSegments, StoredRequest};
use self::regular_file::create_fresh;
use self::result_file::LogPlace;
pub use self::results::StoredWork;
use self::tombstones::Tombstones;
use crate::jobs::JobId;
use crate::jobs::storage::Record;
use crate::wall::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the results directory {path} is not usable: {source}")]
    Unusable { path: PathBuf, source: io::Error },
    #[error(
        "the results directory {path} is in use by another icewall server ({holder}); \
         two servers on one directory would run the same jobs twice: stop that one, or \
         give this one another --results-dir"
    )]
    InUse { path: PathBuf, holder: String },
    #[error("no result is stored for this job")]
    Missing,
    #[error("the stored result is damaged: {0}")]
    Damaged(String),
    #[error("disk error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Unavailable(#[from] crate::jobs::Unavailable),
}

/// Where a done job's team log is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TeamLogs {
    /// Inside the result file, after the work tables: one inode per job.
    #[default]
    Inline,
    /// In `<id>.log` beside the result file: a second inode per job.
    Files,
}

/// How the store keeps jobs on disk.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Free bytes the file system must keep for requests to be accepted.
    pub min_free_space: u64,
    pub team_logs: TeamLogs,
    /// Where this server listens, written beside its pid into the directory's lock so
    /// that a second server refused the directory can name it.
    pub listening_on: Option<SocketAddr>,
    /// How large the idempotency-key file may grow before the records of removed jobs
    /// are dropped from it while the server runs.
    pub compaction_floor: u64,
}

/// Below this size the idempotency-key file and the tombstones are never rewritten while
/// the server runs (start-up still drops what they no longer need): a small file costs
/// nothing worth a rewrite. Past it, each is rewritten whenever it has doubled since.
pub const COMPACTION_FLOOR: u64 = 8 * 1024 * 1024;

/// The directory, inside the results directory, where earlier versions wrote results
/// before renaming them into place: start-up removes what a crash left there.
const TEMPORARY_DIR: &str = "tmp";

/// The start of the names of the files that probe the directory: each is removed at
/// once, and recovery removes any a crash left.
const PROBE_PREFIX: &str = ".probe-";

/// A new probe file's path in `dir`.
fn probe_path(dir: &Path) -> PathBuf {
    dir.join(format!("{PROBE_PREFIX}{}", JobId::generate()))
}

/// What `write_pending` wrote.
enum Written {
    /// The result, of this many bytes (its team log inside it, if it has one).
    Result(u64),
    /// A team log file of `log_len` bytes; the result (`result`, whole) is written only
    /// once a sync has made the log durable: no checksum covers a log file, so a result
    /// that a restart finds whole (its own checksum checked) must not point to a log a
    /// crash may have cut short, or left at its full length unwritten.
    AfterLog { log_len: u64, result: Vec<u8> },
}

/// Cheap to clone: the directory, the per-job locks and the sync thread are shared.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Held for as long as the store lives: no second server may use the directory.
    lock: DirectoryLock,
    /// One lock per job in flight (see `job_locks` for what it guards, and the lock order).
    locks: JobLocks,
    journal: Journal,
    floor: FreeSpaceFloor,
    sync: GroupSync,
    team_logs: TeamLogs,
    tombstones: Tombstones,
    /// Segments kept for a restart: those of jobs set aside (see `set_aside`).
    kept: Arc<KeptSegments>,
}

impl FileStore {
    /// Opens (creating if needed) the results directory, locks it for this process
    /// before anything in it is touched, and checks that it is writable.
    ///
    /// # Errors
    /// `InUse` when another server holds the directory; `Unusable` when it cannot be
    /// created, locked, written or synced.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<FileStore, StoreError> {
        let StoreOptions {
            min_free_space,
            team_logs,
            listening_on,
            compaction_floor,
        } = options;
        let unusable = |source| StoreError::Unusable {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(unusable)?;
        let holder = match listening_on {
            Some(address) => format!("pid {}, listening on {address}", std::process::id()),
            None => format!("pid {}", std::process::id()),
        };
        let lock = DirectoryLock::acquire(dir, &holder).map_err(|error| match error {
            LockError::Held { holder } => StoreError::InUse {
                path: dir.to_owned(),
                holder,
            },
            LockError::Io(source) => unusable(source),
        })?;
        let probe = probe_path(dir);
        // A full disk is a state the server runs through (submissions refused until
        // space is freed, reads answered), not a directory it cannot use.
        match fs::write(&probe, b"probe") {
            Err(error) if error.kind() != io::ErrorKind::StorageFull => {
                return Err(unusable(error));
            }
            _ => {}
        }
        match fs::remove_file(&probe) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(unusable(error));
            }
            _ => {}
        }
        let handle = File::open(dir).map_err(unusable)?;
        rustix::fs::syncfs(&handle).map_err(|error| unusable(error.into()))?;
        let kept = Arc::new(KeptSegments::default());
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                lock,
                locks: JobLocks::default(),
                journal: Journal::start(dir.to_owned(), min_free_space, compaction_floor)
                    .map_err(unusable)?,
                floor: FreeSpaceFloor {
                    dir: File::open(dir).map_err(unusable)?,
                    bytes: min_free_space,
                },
                sync: GroupSync::start(handle).map_err(unusable)?,
                team_logs,
                tombstones: Tombstones::new(dir, compaction_floor),
                kept,
            }),
        })
    }

    fn path(&self, id: JobId, suffix: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{suffix}"))
    }

    /// Holds the job's lock if the job is in flight (see `job_locks`).
    fn lock_job(&self, id: JobId) -> Option<JobGuard> {
        self.inner.locks.lock(id)
    }

    /// The stored request of a job.
    ///
    /// # Errors
    /// `Damaged` when the request's line in the journal is damaged or cut short (no
    /// later read would do better); `Io` when the journal cannot be read now.
    fn read_request(&self, stored: &StoredRequest) -> Result<Vec<u8>, StoreError> {
        if let Some(damage) = &stored.damage {
            return Err(StoreError::Damaged(damage.to_string()));
        }
        let mut journal = File::open(stored.journal.path())?;
        journal.seek(SeekFrom::Start(stored.offset))?;
        let mut request = vec![0; stored.len];
        journal.read_exact(&mut request).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::Damaged("the journal ends inside it".to_owned())
            } else {
                StoreError::Io(error)
            }
        })?;
        Ok(request)
    }

    /// Keeps a job's request for a restart to run it again, with no result stored:
    /// the request could not be read for now.
    fn set_aside(&self, id: JobId, request: StoredRequest) {
        self.inner.kept.hold(&request.journal);
        self.inner.locks.release(id);
    }

    /// Writes a done job's log in place, and returns its length (a rerun after a crash
    /// overwrites it).
    fn write_log_file(&self, id: JobId, outcome: &Outcome) -> io::Result<u64> {
        let mut log = BufWriter::new(create_fresh(&self.path(id, "log"))?);
        outcome.log.write_to(&mut log)?;
        let log = log.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(log.metadata()?.len())
    }

    /// Writes the result under its name, to be made durable by the next sync, and
    /// returns the bytes it takes; or, for a done job whose team log goes to a file of
    /// its own, writes that log and holds the result back until a sync has made the log
    /// durable (see `Written::AfterLog`). The result keeps the job's request,
    /// `request_bytes`; a job whose request could not be read has a result without it,
    /// rather than none. A result already there (the damaged one of a job run again) is
    /// replaced.
    fn write_pending(
        &self,
        id: JobId,
        record: &Record<'_>,
        finished_at: SystemTime,
        request: Option<&[u8]>,
    ) -> io::Result<Written> {
        match (record, self.inner.team_logs) {
            (Record::Done(outcome), TeamLogs::Files) => {
                let log_len = self.write_log_file(id, outcome)?;
                let mut result = Vec::new();
                let log = LogPlace::File { len: log_len };
                result_file::write_done(&mut result, outcome, log, request)?;
                Ok(Written::AfterLog { log_len, result })
            }
            (Record::Done(outcome), TeamLogs::Inline) => self
                .write_result_file(id, finished_at, |file| {
                    let log = LogPlace::Inline(&outcome.log);
                    result_file::write_done(file, outcome, log, request)
                })
                .map(Written::Result),
            (Record::Failed(reason), _) => self
                .write_result_file(id, finished_at, |file| {
                    result_file::write_failed(file, reason, request)
                })
                .map(Written::Result),
        }
    }

    /// Writes a result held back by `write_pending` under its name.
    fn write_held_result(
        &self,
        id: JobId,
        result: &[u8],
        finished_at: SystemTime,
    ) -> io::Result<u64> {
        self.write_result_file(id, finished_at, |mut file| {
            file.write_all(result)?;
            Ok(result.len() as u64)
        })
    }

    /// Makes `<id>.result` anew, has `write` write it (and say its length), and sets its
    /// modification time to the job's finish, which a restart reads back. Set, not left
    /// to the writes: the file system's clock is coarse, and may lag the job's start by
    /// a tick. Only a time: a file system that refuses it keeps the result all the same.
    fn write_result_file(
        &self,
        id: JobId,
        finished_at: SystemTime,
        write: impl FnOnce(&File) -> io::Result<u64>,
    ) -> io::Result<u64> {
        let file = create_fresh(&self.path(id, "result"))?;
        let len = write(&file)?;
        let _ = file.set_modified(finished_at);
        Ok(len)
    }

    /// Checks that the results directory has the free space it must keep, and that a
    /// file can be written, synced and removed in it.
    ///
    /// # Errors
    /// Whatever the file system answers.
    fn probe(&self) -> io::Result<()> {
        self.inner.floor.check()?;
        let probe = probe_path(&self.inner.dir);
        let written = File::create(&probe).and_then(|mut file| {
            file.write_all(b"probe")?;
            file.sync_all()
        });
        let _ = fs::remove_file(&probe);
        written
    }

    /// Records durably that a job must never run again from its journal line: for a
    /// job deleted or cancelled while a segment on disk still holds its request.
    ///
    /// # Errors
    /// When the record cannot be written and synced.
    fn bury(&self, id: JobId) -> io::Result<()> {
        self.inner.tombstones.bury(id)
    }

    /// Lets go of a cancelled (and buried) job: its lock, and its request.
    fn abandon(&self, id: JobId, request: StoredRequest) {
        self.inner.locks.release(id);
        drop(request);
    }

    /// Removes a finished job's files (the caller has buried it first if a journal
    /// still holds its request, which would run it again after a restart).
    ///
    /// # Errors
    /// When the result exists but cannot be removed; then nothing was removed.
    fn remove_result(&self, id: JobId) -> io::Result<()> {
        let _guard = self.lock_job(id);
        match fs::remove_file(self.path(id, "result")) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        // The job is gone with its result. A log that cannot be removed now is removed
        // at the next start-up, as any log without its result.
        let _ = fs::remove_file(self.path(id, "log"));
        Ok(())
    }

    /// Sets a result's modification time, which a restart reads as the job's finish; a
    /// result removed meanwhile is left gone.
    fn restamp(&self, id: JobId, finished_at: SystemTime) -> io::Result<()> {
        let _guard = self.lock_job(id);
        match File::open(self.path(id, "result")) {
            Ok(result) => result.set_modified(finished_at),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Makes the removals of names in the results directory so far durable.
    fn sync_directory(&self) -> io::Result<()> {
        sync_directory(&self.inner.dir)
    }

    /// Writes and answers every pending accept and commit, then stops the writer and
    /// sync threads.
    fn shutdown(&self) {
        self.inner.journal.shutdown();
        self.inner.sync.shutdown();
    }
}

/// Makes the names made, renamed or removed in `dir` so far durable.
fn sync_directory(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    {
        DIRECTORY_SYNCS.with(|syncs| syncs.set(syncs.get() + 1));
        if REFUSE_DIRECTORY_SYNCS.with(std::cell::Cell::get) {
            return Err(io::Error::other("a directory sync refused by the test"));
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
thread_local! {
    /// The directory syncs of this thread, for the tests of when they happen.
    static DIRECTORY_SYNCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set by a test: this thread's directory syncs fail, as a failing disk's would.
    pub(crate) static REFUSE_DIRECTORY_SYNCS: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests;
