//! The result store: one set of files per job under the results directory, guarded by a
//! per-job lock while the job is in flight, made durable by group commit.
//!
//! Files under the results directory (names are built only from parsed `JobId`s):
//! - `requests-<id>.jsonl`: a journal segment of accepted requests, one line per job
//!   (see `journal`); removed once every job in it has its result in place;
//! - `<id>.result`: a failed job's reason, or a done job's summary, work tables and
//!   (with `TeamLogs::Inline`, the default) team log, in the binary layout of
//!   `result_file`, which the questions read a few records at a time; files of the
//!   earlier line-based layout are still read (`legacy_result`);
//! - `<id>.log`: with `TeamLogs::Files`, a done job's team log, in a file of its own;
//! - `.lock`: held (`flock`) by the one server using the directory, naming its pid and
//!   address (see `dir_lock`). Entries of any other kind than these are left alone.
//! - `deleted-jobs.txt`: ids of jobs deleted or cancelled while their request was
//!   still journaled, so that no restart runs them again (see `tombstones`).
//!
//! By default each job makes one inode, its result: file-system metadata per job is
//! what bounds throughput on ext4. A result is written to `tmp/<id>.result.tmp`,
//! synced, then renamed, so a reader (or a restart) sees a whole file or none. A log
//! file is written in place before that: it is read only once the result is in place,
//! and the sync before the rename makes it durable too, so it is whole when read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::dir_lock::{DirectoryLock, LOCK_FILE, LockError};
use super::group_sync::GroupSync;
use super::journal::{
    Accept, FreeSpaceFloor, Journal, JournalWriter, KEYS_FILE, StoredRequest, is_segment_name,
    read_segment,
};
use super::registry::{self, WallShape};
use super::regular_file::{kind_of, open_regular, read_regular};
use super::result_file::{self, HEADER_LEN, LogPlace, ResultFile};
use super::tombstones::{TOMBSTONES_FILE, TOMBSTONES_TEMPORARY, Tombstones};
use super::{JobId, JobState, legacy_result};
use crate::wall::{Outcome, Step, Summary, Table, WorkSource, WorkTables};

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
}

/// What a finished job leaves behind.
pub enum Record<'a> {
    Done(&'a Outcome),
    Failed(&'a str),
}

/// A stored result, open, in whichever layout it was written.
enum StoredResult {
    Indexed(ResultFile),
    Legacy(File),
}

/// A done job's work tables as the questions read them: a step at a time from a result
/// in the binary layout, or parsed whole from one in the earlier layout.
pub enum StoredWork {
    Indexed(ResultFile),
    Legacy(WorkTables),
}

impl WorkSource for StoredWork {
    type Error = StoreError;

    fn profile_count(&self) -> usize {
        match self {
            StoredWork::Indexed(result) => result.profile_count(),
            StoredWork::Legacy(tables) => tables.profile_count(),
        }
    }

    fn step_on(&self, table: Table, day: u64) -> Result<Option<Step>, StoreError> {
        match self {
            StoredWork::Indexed(result) => result.step_on(table, day),
            StoredWork::Legacy(tables) => {
                let Ok(step) = tables.step_on(table, day);
                Ok(step)
            }
        }
    }
}

/// Results up to this size have their checksum verified at start-up: reading them
/// whole costs about what reading their first block does, and most results are a few
/// KiB. Larger ones are checked by their header, trailer and length alone (a file cut
/// short anywhere fails that), so that start-up does not read gigabytes.
const CHECKSUM_AT_START_UP_MAX: u64 = 1024 * 1024;

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
}

/// The directory, inside the results directory, of results being written.
const TEMPORARY_DIR: &str = "tmp";

/// An idempotency key, the job it made, and a digest of that job's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: String,
    pub job_id: String,
    pub fingerprint: String,
}

/// A job found on disk at start-up: finished, or accepted and still to run.
pub struct Recovered {
    pub id: JobId,
    pub state: JobState,
    /// When a finished job's result was written (its file's modification time).
    pub finished_at: Option<SystemTime>,
    /// A done job's wall as its result's header tells it (sections only from a small
    /// result, whose rows are read anyway); `None` for others.
    pub shape: Option<WallShape>,
    /// What a finished job's result (and log file) take on disk.
    pub result_bytes: u64,
    /// The request of a job still to run.
    pub request: Option<StoredRequest>,
    /// The journal that still holds a finished job's request, if any.
    pub journal: Weak<Journal>,
}

/// Cheap to clone: the directory, the per-job locks and the sync thread are shared.
#[derive(Clone)]
pub struct ResultStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Held for as long as the store lives: no second server may use the directory.
    _lock: DirectoryLock,
    /// One lock per job in flight, from submission until its result is written, so
    /// no two threads touch a job's files at once; finished jobs' files never change.
    locks: DashMap<JobId, Arc<Mutex<()>>>,
    journal: JournalWriter,
    floor: FreeSpaceFloor,
    sync: GroupSync,
    team_logs: TeamLogs,
    tombstones: Tombstones,
    /// Segments kept for a restart because a result could not be stored. Held so that
    /// the jobs in them stay pinned (see `Registry::is_pinned`): deleting one of those
    /// must leave a tombstone, or the restart would run it again.
    kept: Mutex<Vec<Arc<Journal>>>,
}

impl ResultStore {
    /// Opens (creating if needed) the results directory, locks it for this process
    /// before anything in it is touched, and checks that it is writable.
    ///
    /// # Errors
    /// `InUse` when another server holds the directory; `Unusable` when it cannot be
    /// created, locked, written or synced.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<ResultStore, StoreError> {
        let StoreOptions {
            min_free_space,
            team_logs,
            listening_on,
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
        fs::create_dir_all(dir.join(TEMPORARY_DIR)).map_err(unusable)?;
        let probe = dir.join(format!(".probe-{}", JobId::generate()));
        fs::write(&probe, b"probe")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(unusable)?;
        let handle = File::open(dir).map_err(unusable)?;
        rustix::fs::syncfs(&handle).map_err(|error| unusable(error.into()))?;
        Ok(ResultStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                _lock: lock,
                locks: DashMap::new(),
                journal: JournalWriter::start(dir.to_owned(), min_free_space).map_err(unusable)?,
                floor: FreeSpaceFloor {
                    dir: File::open(dir).map_err(unusable)?,
                    bytes: min_free_space,
                },
                sync: GroupSync::start(handle).map_err(unusable)?,
                team_logs,
                tombstones: Tombstones::new(dir),
                kept: Mutex::new(Vec::new()),
            }),
        })
    }

    fn path(&self, id: JobId, suffix: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{suffix}"))
    }

    /// Where a result is written before it is renamed into place. A directory of its
    /// own stays small: the big one then sees one new name per job, not three changes
    /// (on ext4 each lands in a random directory block that the next sync rewrites).
    fn temporary_path(&self, id: JobId) -> PathBuf {
        self.inner
            .dir
            .join(TEMPORARY_DIR)
            .join(format!("{id}.result.tmp"))
    }

    /// Holds the job's lock if the job is in flight. The map entry is cloned out at
    /// once: no DashMap reference is held across file I/O.
    fn lock_job(&self, id: JobId) -> Option<parking_lot::ArcMutexGuard<parking_lot::RawMutex, ()>> {
        let lock = self
            .inner
            .locks
            .get(&id)
            .map(|entry| Arc::clone(entry.value()));
        lock.map(|lock| lock.lock_arc())
    }

    /// Stores an accepted job's request durably; `then` learns where, once it is
    /// synced. The job's lock lives from here until its result is written.
    pub fn accept(
        &self,
        id: JobId,
        request: Vec<u8>,
        key: Option<&KeyRecord>,
        then: impl FnOnce(Result<StoredRequest, StoreError>) + Send + 'static,
    ) {
        self.inner.locks.insert(id, Arc::new(Mutex::new(())));
        let store = self.clone();
        let accept = Accept {
            id,
            request,
            key_record: key.map(|key| serde_json::to_vec(key).expect("a key record serializes")),
        };
        self.inner.journal.accept(accept, move |stored| {
            if stored.is_err() {
                store.inner.locks.remove(&id);
            }
            then(stored.map_err(StoreError::from));
        });
    }

    /// The stored request of a job.
    ///
    /// # Errors
    /// When the journal cannot be read, or the request's line in it is damaged.
    pub fn read_request(&self, stored: &StoredRequest) -> Result<Vec<u8>, StoreError> {
        stored.check_intact()?;
        let mut journal = File::open(stored.journal.path())?;
        journal.seek(SeekFrom::Start(stored.offset))?;
        let mut request = vec![0; stored.len];
        journal.read_exact(&mut request)?;
        Ok(request)
    }

    /// Writes a finished job's result, then (after the next group sync) renames it into
    /// place, releases the job's lock and its request, and calls `then` with the bytes
    /// the job's files take.
    pub fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        request: StoredRequest,
        then: impl FnOnce(Result<u64, StoreError>) + Send + 'static,
    ) {
        let written = {
            let _guard = self.lock_job(id);
            self.write_temporary(id, record)
        };
        let store = self.clone();
        let finish = move |stored: io::Result<u64>| {
            match &stored {
                Ok(_) => store.inner.sync.release(request),
                Err(_) => {
                    // The request must outlive this process so a restart reruns the job.
                    request.journal.keep();
                    store.hold_kept(&request.journal);
                    let _ = fs::remove_file(store.temporary_path(id));
                    let _ = fs::remove_file(store.path(id, "log"));
                }
            }
            store.inner.locks.remove(&id);
            then(stored.map_err(StoreError::from));
        };
        match written {
            Err(error) => finish(Err(error)),
            Ok(bytes) => {
                let store = self.clone();
                self.inner.sync.sync(move |synced| {
                    finish(
                        synced
                            .and_then(|()| store.rename_into_place(id))
                            .map(|()| bytes),
                    )
                });
            }
        }
    }

    /// Writes a done job's log in place, and returns its length (a rerun after a
    /// crash overwrites it).
    fn write_log_file(&self, id: JobId, outcome: &Outcome) -> io::Result<u64> {
        let mut log = BufWriter::new(File::create(self.path(id, "log"))?);
        outcome.log.write_to(&mut log)?;
        let log = log.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(log.metadata()?.len())
    }

    /// Writes the result (and a log file) and returns the bytes they take.
    fn write_temporary(&self, id: JobId, record: &Record<'_>) -> io::Result<u64> {
        match record {
            Record::Done(outcome) => {
                let (log, log_len) = match self.inner.team_logs {
                    TeamLogs::Inline => (LogPlace::Inline(&outcome.log), 0),
                    TeamLogs::Files => {
                        let len = self.write_log_file(id, outcome)?;
                        (LogPlace::File { len }, len)
                    }
                };
                let result_len = result_file::write_done(self.create_temporary(id)?, outcome, log)?;
                Ok(result_len + log_len)
            }
            Record::Failed(reason) => result_file::write_failed(self.create_temporary(id)?, reason),
        }
    }

    fn create_temporary(&self, id: JobId) -> io::Result<File> {
        let path = self.temporary_path(id);
        File::create(&path).or_else(|error| match (error.kind(), path.parent()) {
            // Someone removed it (or the whole results directory, then made it again).
            (io::ErrorKind::NotFound, Some(temporary_dir)) => {
                fs::create_dir_all(temporary_dir)?;
                File::create(&path)
            }
            _ => Err(error),
        })
    }

    fn hold_kept(&self, journal: &Arc<Journal>) {
        let mut kept = self.inner.kept.lock();
        if !kept.iter().any(|held| Arc::ptr_eq(held, journal)) {
            kept.push(Arc::clone(journal));
        }
    }

    fn rename_into_place(&self, id: JobId) -> io::Result<()> {
        let _guard = self.lock_job(id);
        fs::rename(self.temporary_path(id), self.path(id, "result"))
    }

    /// Opens a job's result and tells its layout by its first bytes; a result in the
    /// binary layout has its header and trailer checked. The caller holds the job's lock.
    fn open_result(&self, id: JobId) -> Result<StoredResult, StoreError> {
        let file = open_existing(&self.path(id, "result"))?;
        let mut head = [0; HEADER_LEN as usize];
        let read = result_file::read_start(&file, &mut head)?;
        if result_file::is_this_layout(&head[..read]) {
            if read < head.len() {
                return Err(StoreError::Damaged("its header is cut short".to_owned()));
            }
            Ok(StoredResult::Indexed(ResultFile::open(file, &head)?))
        } else if head[..read].starts_with(b"{") {
            Ok(StoredResult::Legacy(file))
        } else {
            Err(StoreError::Damaged("it is not a result file".to_owned()))
        }
    }

    /// A done job's summary with the rows of profiles `first + 1 ..= first + limit`
    /// (those that exist), and how many profiles the wall has. A result in the binary
    /// layout is read no further than those rows.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub fn read_summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        let _guard = self.lock_job(id);
        match self.open_result(id)? {
            StoredResult::Indexed(result) => result.summary(first, limit),
            StoredResult::Legacy(file) => legacy_result::summary(&file, first, limit),
        }
    }

    /// The work tables of a done job, ready for questions.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub fn open_work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        let _guard = self.lock_job(id);
        match self.open_result(id)? {
            StoredResult::Indexed(result) => Ok(StoredWork::Indexed(result)),
            StoredResult::Legacy(file) => legacy_result::work(&file).map(StoredWork::Legacy),
        }
    }

    /// The team log of a done job, readable to its end and no further, and its length
    /// in bytes, so that it can be streamed. A wall that needed no work has an empty log.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the log is not where its result says, or not whole.
    pub fn open_log(&self, id: JobId) -> Result<(io::Take<File>, u64), StoreError> {
        let _guard = self.lock_job(id);
        let (file, length) = match self.open_result(id)? {
            StoredResult::Indexed(result) => match result.log_file_len() {
                None => result.into_inline_log()?,
                Some(length) => {
                    let file =
                        open_regular(&self.path(id, "log"), fs::OpenOptions::new().read(true))
                            .map_err(|error| match error.kind() {
                                io::ErrorKind::NotFound => {
                                    StoreError::Damaged("the team log file is missing".to_owned())
                                }
                                _ => StoreError::Io(error),
                            })?;
                    if file.metadata()?.len() != length {
                        return Err(StoreError::Damaged(
                            "the team log file is not the one written".to_owned(),
                        ));
                    }
                    (file, length)
                }
            },
            // Earlier versions kept it in `<id>.log` if there is one, whatever the setting.
            StoredResult::Legacy(result) => {
                match open_regular(&self.path(id, "log"), fs::OpenOptions::new().read(true)) {
                    Ok(file) => {
                        let length = file.metadata()?.len();
                        (file, length)
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        legacy_result::inline_log(result)?
                    }
                    Err(error) => return Err(StoreError::Io(error)),
                }
            }
        };
        Ok((file.take(length), length))
    }

    /// Lists the jobs on disk, oldest first: finished ones with their state, accepted
    /// ones without a whole result as `Queued` with their request. Called once, before
    /// the first accept: every journal segment it finds is taken for a leftover.
    /// Temporary files are removed; a job with a damaged result runs again if its request is still in a
    /// journal, and is marked failed otherwise; a journal no job needs any more is
    /// removed; `warn` hears of each oddity.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn recover(
        &self,
        mut warn: impl FnMut(String),
    ) -> io::Result<(Vec<Recovered>, Vec<KeyRecord>)> {
        let mut results = Vec::new();
        let mut logs = Vec::new();
        let mut journals = Vec::new();
        for entry in fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                warn(format!("skipping a file whose name is not UTF-8: {name:?}"));
                continue;
            };
            // The entry's own type (a symlink is not followed): opening a FIFO would
            // block start-up, and a directory would fail it.
            let file_type = entry.file_type()?;
            let as_expected = if name == TEMPORARY_DIR {
                file_type.is_dir()
            } else {
                file_type.is_file()
            };
            if !as_expected {
                warn(format!(
                    "skipping {name}: it is {}, which the server never makes there; left alone",
                    kind_of(file_type)
                ));
                continue;
            }
            let (stem, suffix) = name.split_once('.').unwrap_or((name, ""));
            match (stem.parse::<JobId>(), suffix) {
                (Ok(id), "result") => results.push(id),
                (Ok(id), "log") => logs.push(id),
                _ if name == TEMPORARY_DIR => {
                    // Results a crash left half written: their jobs run again.
                    for temporary in fs::read_dir(entry.path())? {
                        let _ = fs::remove_file(temporary?.path());
                    }
                }
                _ if name.starts_with(".probe-")
                    || name == format!("{KEYS_FILE}.tmp")
                    || name == TOMBSTONES_TEMPORARY =>
                {
                    let _ = fs::remove_file(entry.path());
                }
                _ if name == KEYS_FILE || name == LOCK_FILE || name == TOMBSTONES_FILE => {}
                // The repository's placeholder that keeps its `results/` in git.
                _ if name == ".gitkeep" => {}
                _ if is_segment_name(name) => {
                    journals.push(entry.path());
                }
                _ => warn(format!("skipping an unknown file: {name}")),
            }
        }
        // A log without its result was left by a job that runs again, or was removed.
        let with_result: std::collections::HashSet<JobId> = results.iter().copied().collect();
        let (with_log, orphans): (
            std::collections::HashSet<JobId>,
            std::collections::HashSet<JobId>,
        ) = logs.into_iter().partition(|id| with_result.contains(id));
        for id in orphans {
            let _ = fs::remove_file(self.path(id, "log"));
        }
        let mut requests: BTreeMap<JobId, StoredRequest> = BTreeMap::new();
        for path in journals {
            requests.extend(read_segment(&Arc::new(Journal::new(path)), &mut warn)?);
        }
        // Deleted or cancelled: their lines stay in their segments, their jobs do not.
        let buried = self
            .inner
            .tombstones
            .recover(|id| requests.contains_key(&id), &mut warn)?;
        requests.retain(|id, _| !buried.contains(id));
        let mut jobs: BTreeMap<JobId, Recovered> = BTreeMap::new();
        for id in results {
            let (state, shape) = match self.recovered_state(id) {
                Ok(recovered) => recovered,
                Err(problem) if requests.contains_key(&id) => {
                    warn(format!("job {id}: {problem}; it will run again"));
                    continue;
                }
                Err(problem) => {
                    // Nothing to rerun it from: keep the id, and say what happened.
                    warn(format!("job {id}: {problem}; it is marked failed"));
                    let reason = format!("the stored result is damaged: {problem}");
                    (JobState::Failed(reason.into()), None)
                }
            };
            let journal = requests
                .remove(&id)
                .map_or_else(Weak::new, |request| Arc::downgrade(&request.journal));
            let metadata = fs::metadata(self.path(id, "result")).ok();
            let finished_at = metadata
                .as_ref()
                .and_then(|metadata| metadata.modified().ok());
            let log_len = if with_log.contains(&id) {
                fs::metadata(self.path(id, "log")).map_or(0, |log| log.len())
            } else {
                0
            };
            let result_bytes = metadata.map_or(0, |metadata| metadata.len()) + log_len;
            jobs.insert(
                id,
                Recovered {
                    id,
                    state,
                    finished_at,
                    shape,
                    result_bytes,
                    request: None,
                    journal,
                },
            );
        }
        for (id, request) in requests {
            // In flight again: its files go through its lock until its result is written.
            self.inner.locks.insert(id, Arc::new(Mutex::new(())));
            let journal = Arc::downgrade(&request.journal);
            jobs.insert(
                id,
                Recovered {
                    id,
                    state: JobState::Queued,
                    finished_at: None,
                    shape: None,
                    result_bytes: 0,
                    request: Some(request),
                    journal,
                },
            );
        }
        let keys = self.recover_keys(|id| jobs.contains_key(&id), &mut warn)?;
        Ok((jobs.into_values().collect(), keys))
    }

    /// The idempotency keys of jobs that still exist; the file is rewritten without the
    /// others (and without a torn last line).
    fn recover_keys(
        &self,
        exists: impl Fn(JobId) -> bool,
        warn: &mut impl FnMut(String),
    ) -> io::Result<Vec<KeyRecord>> {
        let path = self.inner.dir.join(KEYS_FILE);
        let text = match read_regular(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                // Not a regular file: left alone; keyed submissions fail until it is moved.
                warn(format!("{error}; no idempotency keys are recovered"));
                return Ok(Vec::new());
            }
            other => other?,
        };
        let mut lines = 0;
        let mut live = Vec::new();
        for line in text
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            lines += 1;
            match serde_json::from_slice::<KeyRecord>(line) {
                Ok(record) => {
                    if record.job_id.parse().is_ok_and(&exists) {
                        live.push(record);
                    }
                }
                Err(error) => warn(format!("{KEYS_FILE}: skipping a damaged line: {error}")),
            }
        }
        if live.len() < lines {
            let temporary = self.inner.dir.join(format!("{KEYS_FILE}.tmp"));
            let mut out = BufWriter::new(File::create(&temporary)?);
            for record in &live {
                serde_json::to_writer(&mut out, record)?;
                out.write_all(b"\n")?;
            }
            out.into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .sync_all()?;
            fs::rename(&temporary, &path)?;
        }
        Ok(live)
    }

    /// The state a stored result shows, or why it cannot be trusted: a result in the
    /// binary layout must have its header, trailer and length agree, its checksum match
    /// if it is small (see `CHECKSUM_AT_START_UP_MAX`), and its team log file, if it
    /// has one, the length it was written with. A done job's wall's size comes with it,
    /// from the header (and the summary rows of a small result, read by the checksum).
    fn recovered_state(&self, id: JobId) -> Result<(JobState, Option<WallShape>), String> {
        let problem = |error: StoreError| match error {
            StoreError::Damaged(problem) => format!("its result file is damaged: {problem}"),
            other => other.to_string(),
        };
        let result = match self.open_result(id).map_err(problem)? {
            StoredResult::Legacy(file) => {
                return legacy_result::recovered_state(&file).map(|state| (state, None));
            }
            StoredResult::Indexed(result) => result,
        };
        let small = result.len() <= CHECKSUM_AT_START_UP_MAX;
        if small {
            result.verify_checksum().map_err(problem)?;
        }
        if let Some(length) = result.log_file_len() {
            let found = fs::metadata(self.path(id, "log")).map(|log| log.len());
            if found.ok() != Some(length) {
                return Err("its team log file is missing or incomplete".to_owned());
            }
        }
        let shape = match (registry::count(result.profile_count()), result.num_teams()) {
            (Some(profiles), Some(num_teams)) => Some(WallShape {
                profiles,
                sections: if small {
                    let sections = result.section_count().map_err(problem)?;
                    registry::count(usize::try_from(sections).unwrap_or(usize::MAX))
                } else {
                    None
                },
                num_teams: num_teams.and_then(std::num::NonZeroU64::new),
            }),
            _ => None,
        };
        Ok(match result.failure().map_err(problem)? {
            Some(reason) => (JobState::Failed(reason.into()), None),
            None => (JobState::Done, shape),
        })
    }

    /// Checks that the results directory has the free space it must keep, and that a
    /// file can be written, synced and removed in it.
    ///
    /// # Errors
    /// Whatever the file system answers.
    pub fn probe(&self) -> io::Result<()> {
        self.inner.floor.check()?;
        let probe = self.inner.dir.join(format!(".probe-{}", JobId::generate()));
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
    pub fn bury(&self, id: JobId) -> io::Result<()> {
        self.inner.tombstones.bury(id)
    }

    /// Lets go of a cancelled (and buried) job: its lock, and its request.
    pub fn abandon(&self, id: JobId, request: StoredRequest) {
        self.inner.locks.remove(&id);
        drop(request);
    }

    /// Removes a finished job's files (the caller has buried it first if a journal
    /// still holds its request, which would run it again after a restart).
    ///
    /// # Errors
    /// When the result exists but cannot be removed; then nothing was removed.
    pub fn remove_result(&self, id: JobId) -> io::Result<()> {
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

    /// Makes the removals of names in the results directory so far durable.
    ///
    /// # Errors
    /// Whatever the file system answers.
    pub fn sync_directory(&self) -> io::Result<()> {
        File::open(&self.inner.dir)?.sync_all()
    }

    /// Writes and answers every pending accept and commit, then stops the writer and
    /// sync threads.
    pub fn shutdown(&self) {
        self.inner.journal.shutdown();
        self.inner.sync.shutdown();
    }
}

/// Opens a result or log file; whatever is not a regular file is refused, never waited on.
fn open_existing(path: &Path) -> Result<File, StoreError> {
    open_regular(path, fs::OpenOptions::new().read(true)).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => StoreError::Missing,
        _ => StoreError::Io(error),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::jobs::journal::{JOURNAL_INFIX, JOURNAL_PREFIX, SEGMENT_MIN_BYTES};
    use crate::wall::{self, EXAMPLE_WALL, Limits, WallConfig};

    fn options(team_logs: TeamLogs) -> StoreOptions {
        StoreOptions {
            min_free_space: 0,
            team_logs,
            listening_on: None,
        }
    }

    fn example_outcome() -> Outcome {
        let profiles = wall::parse_text(EXAMPLE_WALL.as_bytes(), &Limits::default()).unwrap();
        wall::simulate(&WallConfig::try_new(profiles, None).unwrap())
    }

    fn accept(store: &ResultStore, id: JobId) -> StoredRequest {
        let (sender, receiver) = mpsc::channel();
        store.accept(
            id,
            format!(r#"{{"id":"{id}"}}"#).into_bytes(),
            None,
            move |stored| sender.send(stored.unwrap()).unwrap(),
        );
        receiver.recv().unwrap()
    }

    fn commit(store: &ResultStore, id: JobId, record: &Record<'_>, request: StoredRequest) {
        let (sender, receiver) = mpsc::channel();
        store.commit(id, record, request, move |outcome| {
            sender.send(outcome.is_ok()).unwrap()
        });
        assert!(receiver.recv().unwrap());
    }

    fn journals(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("requests-")
            })
            .count()
    }

    #[test]
    fn a_done_job_stores_status_work_and_log_and_releases_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let id = JobId::generate();
        let request = accept(&store, id);
        assert_eq!(
            store.read_request(&request).unwrap(),
            format!(r#"{{"id":"{id}"}}"#).as_bytes()
        );
        assert!(matches!(
            store.read_summary(id, 0, 10),
            Err(StoreError::Missing)
        ));
        let outcome = example_outcome();
        commit(&store, id, &Record::Done(&outcome), request);
        let (summary, profiles) = store.read_summary(id, 0, 10).unwrap();
        assert_eq!((summary.clone(), profiles), (outcome.summary.clone(), 3));
        assert_eq!(summary.cost, 32_233_500);
        assert_same_answers(&store.open_work(id).unwrap(), &outcome.work);
        let (mut file, length) = store.open_log(id).unwrap();
        let mut log = String::new();
        file.read_to_string(&mut log).unwrap();
        assert_eq!(log.len() as u64, length);
        assert!(log.starts_with("day 2: team 3"), "{log}");
        assert_eq!(log.lines().count(), 18);
        assert!(store.inner.locks.is_empty());
        store.shutdown();
        assert_eq!(
            journals(dir.path()),
            0,
            "the journal goes once its job is done"
        );
    }

    #[test]
    fn recovery_finds_done_failed_and_pending_jobs_and_reruns_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let ids: Vec<JobId> = (0..4).map(|_| JobId::generate()).collect();
        let mut requests: Vec<StoredRequest> = ids.iter().map(|&id| accept(&store, id)).collect();
        let pending = requests.split_off(2);
        commit(
            &store,
            ids[0],
            &Record::Done(&example_outcome()),
            requests.remove(0),
        );
        commit(
            &store,
            ids[1],
            &Record::Failed("bad luck"),
            requests.remove(0),
        );
        fs::write(
            dir.path().join(format!("{}.result", ids[3])),
            b"{\"status\":\"do",
        )
        .unwrap();
        fs::write(store.temporary_path(ids[2]), b"half").unwrap();
        // A log written before a crash, its result not.
        fs::write(dir.path().join(format!("{}.log", ids[2])), b"day 1").unwrap();
        fs::write(dir.path().join("notes.txt"), b"?").unwrap();
        // A crash: the pending jobs' journals stay.
        pending.iter().for_each(|request| request.journal.keep());
        drop(pending);
        store.shutdown();
        // The process ends: its lock on the directory goes with it.
        drop(store);
        let torn = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        let mut torn_segment = format!(
            "{JOURNAL_PREFIX}{}{JOURNAL_INFIX}{{\"prof",
            JobId::generate()
        )
        .into_bytes();
        // A segment is made at its full size: the zeros no write reached follow the tear.
        torn_segment.resize(SEGMENT_MIN_BYTES as usize, 0);
        fs::write(&torn, torn_segment).unwrap();

        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let mut warnings = Vec::new();
        let (recovered, keys) = store.recover(|warning| warnings.push(warning)).unwrap();
        assert!(keys.is_empty());
        let states: Vec<(JobId, JobState, bool)> = recovered
            .iter()
            .map(|job| (job.id, job.state.clone(), job.request.is_some()))
            .collect();
        assert_eq!(
            states,
            vec![
                (ids[0], JobState::Done, false),
                (ids[1], JobState::Failed("bad luck".into()), false),
                (ids[2], JobState::Queued, true),
                (ids[3], JobState::Queued, true),
            ]
        );
        let request = recovered[2].request.as_ref().unwrap();
        assert_eq!(
            store.read_request(request).unwrap(),
            format!(r#"{{"id":"{}"}}"#, ids[2]).as_bytes()
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let mut locked: Vec<JobId> = store.inner.locks.iter().map(|entry| *entry.key()).collect();
        locked.sort();
        assert_eq!(locked, [ids[2], ids[3]], "jobs to run again are in flight");
        assert!(!store.temporary_path(ids[2]).exists());
        assert!(!dir.path().join(format!("{}.log", ids[2])).exists());
        drop(recovered);
        assert_eq!(journals(dir.path()), 0);
    }

    #[test]
    fn recovery_leaves_the_new_writer_able_to_accept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        // Time for the writer to run: were it to make a segment before its first
        // request, the recovery below would take it for one left over, and remove it.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (recovered, _) = store.recover(|warning| panic!("{warning}")).unwrap();
        assert!(recovered.is_empty());
        let id = JobId::generate();
        let request = accept(&store, id);
        commit(&store, id, &Record::Failed("checked"), request);
    }

    fn read_log(store: &ResultStore, id: JobId) -> String {
        let (mut file, length) = store.open_log(id).unwrap();
        let mut log = String::new();
        file.read_to_string(&mut log).unwrap();
        assert_eq!(log.len() as u64, length);
        log
    }

    #[test]
    fn team_log_files_sit_beside_results_and_either_layout_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let inline = JobId::generate();
        commit(
            &store,
            inline,
            &Record::Done(&example_outcome()),
            accept(&store, inline),
        );
        store.shutdown();
        drop(store);

        let store = ResultStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
        store.recover(|warning| panic!("{warning}")).unwrap();
        let own = JobId::generate();
        commit(
            &store,
            own,
            &Record::Done(&example_outcome()),
            accept(&store, own),
        );
        let result = fs::read(dir.path().join(format!("{own}.result"))).unwrap();
        assert!(
            !result.windows(4).any(|bytes| bytes == b"day "),
            "status and work tables only"
        );
        let file = fs::read_to_string(dir.path().join(format!("{own}.log"))).unwrap();
        assert_eq!(read_log(&store, own), file);
        assert_eq!(file.lines().count(), 18);
        assert_eq!(
            read_log(&store, inline),
            file,
            "a log kept inline is still served"
        );
        assert!(!dir.path().join(format!("{inline}.log")).exists());

        fs::remove_file(dir.path().join(format!("{own}.log"))).unwrap();
        assert!(
            matches!(store.open_log(own), Err(StoreError::Damaged(_))),
            "a missing log is reported, never served empty"
        );
        store.remove_result(inline).unwrap();
        assert!(matches!(store.open_log(inline), Err(StoreError::Missing)));
    }

    /// The same step, for every table, on every day around the work and after it.
    fn assert_same_answers(stored: &StoredWork, work: &WorkTables) {
        assert_eq!(stored.profile_count(), work.profile_count());
        let tables = (1..=work.profile_count())
            .map(Table::Profile)
            .chain([Table::Wall]);
        for table in tables {
            for day in (0..=work.days() + 2).chain([u64::MAX]) {
                let Ok(expected) = work.step_on(table, day);
                let found = stored.step_on(table, day).unwrap();
                assert_eq!(found, expected, "{table:?} on day {day}");
            }
        }
    }

    fn write_result(dir: &Path, id: JobId, bytes: &[u8]) {
        fs::write(dir.join(format!("{id}.result")), bytes).unwrap();
    }

    /// A job whose request stays in its journal, as after a crash.
    fn accept_kept(store: &ResultStore) -> JobId {
        let id = JobId::generate();
        accept(store, id).journal.keep();
        id
    }

    #[test]
    fn a_result_cut_short_anywhere_is_refused_and_its_job_reruns_or_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let id = JobId::generate();
        commit(
            &store,
            id,
            &Record::Done(&example_outcome()),
            accept(&store, id),
        );
        let whole = fs::read(dir.path().join(format!("{id}.result"))).unwrap();
        let StoredResult::Indexed(result) = store.open_result(id).unwrap() else {
            panic!("a new result is in the binary layout");
        };
        let layout = result.layout();
        let len = whole.len() as u64;
        let mut cuts = vec![
            0,
            1,
            5,
            8,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + 3,
            layout.rows,
            layout.index,
            layout.index + 4,
            layout.steps,
            layout.steps + 10,
            layout.log,
            layout.log + 7,
            layout.trailer,
            layout.trailer + 12,
            len - 1,
        ];
        cuts.sort_unstable();
        cuts.dedup();
        let mut flipped = whole.clone();
        flipped[layout.steps as usize + 5] ^= 1;
        let mut longer = whole.clone();
        longer.push(b'\n');
        let mut damaged: Vec<Vec<u8>> = cuts
            .iter()
            .map(|&cut| whole[..cut as usize].to_vec())
            .collect();
        damaged.extend([flipped, longer]);

        // Each damaged file three times: with its request kept (it runs again),
        // without (it answers failed), and in tmp/, as a crash before the rename left it.
        let with_request: Vec<JobId> = damaged.iter().map(|_| accept_kept(&store)).collect();
        let crashed: Vec<JobId> = damaged.iter().map(|_| accept_kept(&store)).collect();
        let without_request: Vec<JobId> = damaged.iter().map(|_| JobId::generate()).collect();
        store.shutdown();
        for (i, bytes) in damaged.iter().enumerate() {
            write_result(dir.path(), with_request[i], bytes);
            write_result(dir.path(), without_request[i], bytes);
            fs::write(store.temporary_path(crashed[i]), bytes).unwrap();
        }

        drop(store); // a restart: the first server is gone, and with it its lock
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let mut warnings = Vec::new();
        let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
        let state = |id: JobId| {
            let job = recovered.iter().find(|job| job.id == id).unwrap();
            (job.state.clone(), job.request.is_some())
        };
        assert_eq!(state(id), (JobState::Done, false), "the whole one is done");
        for (i, bytes) in damaged.iter().enumerate() {
            let what = format!("a result of {} bytes of {len}", bytes.len());
            assert_eq!(state(with_request[i]), (JobState::Queued, true), "{what}");
            assert_eq!(state(crashed[i]), (JobState::Queued, true), "{what}");
            match state(without_request[i]) {
                (JobState::Failed(reason), false) => assert!(
                    reason.starts_with("the stored result is damaged: "),
                    "{what}: {reason}"
                ),
                other => panic!("{what}: {other:?}"),
            }
        }
        assert_eq!(warnings.len(), 2 * damaged.len(), "{warnings:#?}");
    }

    #[test]
    fn a_team_log_file_lost_before_a_restart_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
        let [whole, lost, cut] = [(); 3].map(|()| JobId::generate());
        for id in [whole, lost, cut] {
            commit(
                &store,
                id,
                &Record::Done(&example_outcome()),
                accept(&store, id),
            );
        }
        store.shutdown();
        fs::remove_file(dir.path().join(format!("{lost}.log"))).unwrap();
        let log = dir.path().join(format!("{cut}.log"));
        let text = fs::read(&log).unwrap();
        fs::write(&log, &text[..text.len() / 2]).unwrap();

        drop(store); // a restart: the first server is gone, and with it its lock
        let store = ResultStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
        let (recovered, _) = store.recover(|_| {}).unwrap();
        let states: Vec<(JobId, bool)> = recovered
            .iter()
            .map(|job| (job.id, job.state == JobState::Done))
            .collect();
        let mut expected = vec![(whole, true), (lost, false), (cut, false)];
        expected.sort();
        assert_eq!(states, expected);
    }

    #[test]
    fn results_of_the_line_based_layout_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = example_outcome();
        let mut legacy = serde_json::to_vec(&serde_json::json!({
            "status": "done",
            "data": outcome.summary,
        }))
        .unwrap();
        legacy.push(b'\n');
        serde_json::to_writer(&mut legacy, &outcome.work).unwrap();
        legacy.push(b'\n');
        outcome.log.write_to(&mut legacy).unwrap();
        let [done, failed, cut] = [(); 3].map(|()| JobId::generate());
        write_result(dir.path(), done, &legacy);
        write_result(
            dir.path(),
            failed,
            b"{\"status\":\"failed\",\"reason\":\"old\"}\n",
        );
        let status_line = legacy.iter().position(|&byte| byte == b'\n').unwrap() + 1;
        write_result(dir.path(), cut, &legacy[..status_line]);

        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let mut warnings = Vec::new();
        let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
        let state = |id: JobId| {
            let job = recovered.iter().find(|job| job.id == id).unwrap();
            job.state.clone()
        };
        assert_eq!(state(done), JobState::Done);
        assert_eq!(state(failed), JobState::Failed("old".into()));
        assert_eq!(
            state(cut),
            JobState::Failed("the stored result is damaged: its result file is incomplete".into()),
            "a done job's status line alone is not a whole result"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (summary, profiles) = store.read_summary(done, 1, 1).unwrap();
        assert_eq!(profiles, 3);
        assert_eq!(summary.profiles, outcome.summary.profiles[1..2]);
        assert_same_answers(&store.open_work(done).unwrap(), &outcome.work);
        let mut text = Vec::new();
        outcome.log.write_to(&mut text).unwrap();
        assert_eq!(read_log(&store, done).as_bytes(), text);
    }

    #[test]
    fn a_wall_that_needs_no_work_has_an_empty_log_in_either_layout() {
        let profiles = wall::parse_text(b"30 30\n30\n", &Limits::default()).unwrap();
        let outcome = wall::simulate(&WallConfig::try_new(profiles, None).unwrap());
        for team_logs in [TeamLogs::Inline, TeamLogs::Files] {
            let dir = tempfile::tempdir().unwrap();
            let store = ResultStore::open(dir.path(), options(team_logs)).unwrap();
            let id = JobId::generate();
            commit(&store, id, &Record::Done(&outcome), accept(&store, id));
            assert_eq!(read_log(&store, id), "", "{team_logs:?}");
            store.shutdown();
            drop(store); // a restart: the first server is gone, and with it its lock
            let store = ResultStore::open(dir.path(), options(team_logs)).unwrap();
            let (recovered, _) = store.recover(|warning| panic!("{warning}")).unwrap();
            assert_eq!(recovered[0].state, JobState::Done, "{team_logs:?}");
        }
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            ResultStore::open(&file.join("results"), options(TeamLogs::Inline)),
            Err(StoreError::Unusable { .. })
        ));
    }

    #[test]
    fn a_second_store_on_the_directory_is_refused_before_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let leftover = dir.path().join(TEMPORARY_DIR).join("leftover.result.tmp");
        fs::write(&leftover, b"half").unwrap();
        match ResultStore::open(dir.path(), options(TeamLogs::Inline)) {
            Err(StoreError::InUse { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            Err(error) => panic!("{error}"),
            Ok(_) => panic!("two stores on one directory"),
        }
        assert!(leftover.exists());
        first.shutdown();
        drop(first);
        let second = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        second.recover(|warning| panic!("{warning}")).unwrap();
        assert!(!leftover.exists(), "the holder recovers");
    }

    #[test]
    fn entries_that_are_not_regular_files_are_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let segment_dir = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        fs::create_dir(&segment_dir).unwrap();
        let keys_dir = dir.path().join(KEYS_FILE);
        fs::create_dir(&keys_dir).unwrap();
        let segment_fifo = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        let result_fifo = dir.path().join(format!("{}.result", JobId::generate()));
        for fifo in [&segment_fifo, &result_fifo] {
            let made = std::process::Command::new("mkfifo")
                .arg(fifo)
                .status()
                .unwrap();
            assert!(made.success());
        }
        let link = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let mut warnings = Vec::new();
        let (recovered, keys) = store.recover(|warning| warnings.push(warning)).unwrap();
        assert!(recovered.is_empty() && keys.is_empty());
        for (path, kind) in [
            (&segment_dir, "a directory"),
            (&keys_dir, "a directory"),
            (&segment_fifo, "a FIFO"),
            (&result_fifo, "a FIFO"),
            (&link, "a symbolic link"),
        ] {
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                warnings
                    .iter()
                    .any(|warning| warning.contains(&*name) && warning.contains(kind)),
                "{name}: {warnings:?}"
            );
            assert!(fs::symlink_metadata(path).is_ok(), "{name} is left alone");
        }
        // Keyed requests are refused while the keys file is a directory, not stuck.
        let (sender, receiver) = mpsc::channel();
        let key = KeyRecord {
            key: "k".to_owned(),
            job_id: JobId::generate().to_string(),
            fingerprint: "f".to_owned(),
        };
        store.accept(
            JobId::generate(),
            b"{}".to_vec(),
            Some(&key),
            move |stored| {
                sender.send(stored.is_err()).unwrap();
            },
        );
        assert!(receiver.recv().unwrap());
    }

    #[test]
    fn a_fifo_named_like_the_keys_file_neither_blocks_recovery_nor_keyed_requests() {
        let dir = tempfile::tempdir().unwrap();
        let keys_fifo = dir.path().join(KEYS_FILE);
        let made = std::process::Command::new("mkfifo")
            .arg(&keys_fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let store = ResultStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        let mut warnings = Vec::new();
        store.recover(|warning| warnings.push(warning)).unwrap();
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains(KEYS_FILE) && warning.contains("a FIFO")),
            "{warnings:?}"
        );
        let (sender, receiver) = mpsc::channel();
        let key = KeyRecord {
            key: "k".to_owned(),
            job_id: JobId::generate().to_string(),
            fingerprint: "f".to_owned(),
        };
        store.accept(
            JobId::generate(),
            b"{}".to_vec(),
            Some(&key),
            move |stored| {
                sender.send(stored.is_err()).unwrap();
            },
        );
        assert!(
            receiver.recv().unwrap(),
            "a keyed request is refused, not stuck"
        );
    }
}
