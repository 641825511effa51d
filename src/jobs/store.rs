//! The result store: one set of files per job under the results directory, guarded by a
//! per-job lock while the job is in flight, made durable by group commit.
//!
//! Files under the results directory (names are built only from parsed `JobId`s):
//! - `requests-<id>.jsonl`: a journal segment of accepted requests, one line per job
//!   (see `journal`); removed once every job in it has its result in place;
//! - `<id>.result`: line 1 is the `/api/get_results` body (`done` with the summary,
//!   or `failed` with the reason); a done job's file goes on with line 2, the work
//!   tables, and then (with `TeamLogs::Inline`, the default) the team log, one event
//!   per line;
//! - `<id>.log`: with `TeamLogs::Files`, a done job's team log, in a file of its own.
//!
//! By default each job makes one inode, its result: file-system metadata per job is
//! what bounds throughput on ext4. A result is written to `tmp/<id>.result.tmp`,
//! synced, then renamed, so a reader (or a restart) sees a whole file or none. A log
//! file is written in place before that: it is read only once the result is in place,
//! and the sync before the rename makes it durable too, so it is whole when read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::group_sync::GroupSync;
use super::journal::{
    Accept, FreeSpaceFloor, Journal, JournalWriter, KEYS_FILE, StoredRequest, is_segment_name,
    read_segment,
};
use super::{JobId, JobState};
use crate::wall::{Outcome, Summary, WorkTables};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the results directory {path} is not usable: {source}")]
    Unusable { path: PathBuf, source: io::Error },
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

/// Line 1 of a result file, exactly the body `/api/get_results` answers.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum StatusLine<'a> {
    Done { data: &'a Summary },
    Failed { reason: &'a str },
}

/// What recovery needs of line 1; the summary itself is not needed to rebuild the registry.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum StoredStatus {
    Done {
        #[allow(dead_code)]
        data: serde::de::IgnoredAny,
    },
    Failed {
        reason: String,
    },
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
    /// One lock per job in flight, from submission until its result is written, so
    /// no two threads touch a job's files at once; finished jobs' files never change.
    locks: DashMap<JobId, Arc<Mutex<()>>>,
    journal: JournalWriter,
    floor: FreeSpaceFloor,
    sync: GroupSync,
    team_logs: TeamLogs,
}

impl ResultStore {
    /// Opens (creating if needed) the results directory and checks that it is writable.
    ///
    /// # Errors
    /// `Unusable` when the directory cannot be created, written or synced.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<ResultStore, StoreError> {
        let StoreOptions {
            min_free_space,
            team_logs,
        } = options;
        let unusable = |source| StoreError::Unusable {
            path: dir.to_owned(),
            source,
        };
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
                locks: DashMap::new(),
                journal: JournalWriter::start(dir.to_owned(), min_free_space).map_err(unusable)?,
                floor: FreeSpaceFloor {
                    dir: File::open(dir).map_err(unusable)?,
                    bytes: min_free_space,
                },
                sync: GroupSync::start(handle).map_err(unusable)?,
                team_logs,
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
    /// When the journal cannot be read.
    pub fn read_request(&self, stored: &StoredRequest) -> Result<Vec<u8>, StoreError> {
        let mut journal = File::open(stored.journal.path())?;
        journal.seek(SeekFrom::Start(stored.offset))?;
        let mut request = vec![0; stored.len];
        journal.read_exact(&mut request)?;
        Ok(request)
    }

    /// Writes a finished job's result, then (after the next group sync) renames it into
    /// place, releases the job's lock and its request, and calls `then`.
    pub fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        request: StoredRequest,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let written = {
            let _guard = self.lock_job(id);
            self.write_log_file(id, record)
                .and_then(|()| self.write_temporary(id, record))
        };
        let store = self.clone();
        let finish = move |stored: io::Result<()>| {
            match &stored {
                Ok(()) => store.inner.sync.release(request),
                Err(_) => {
                    // The request must outlive this process so a restart reruns the job.
                    request.journal.keep();
                    let _ = fs::remove_file(store.temporary_path(id));
                    let _ = fs::remove_file(store.path(id, "log"));
                }
            }
            store.inner.locks.remove(&id);
            then(stored.map_err(StoreError::from));
        };
        match written {
            Err(error) => finish(Err(error)),
            Ok(()) => {
                let store = self.clone();
                self.inner
                    .sync
                    .sync(move |synced| finish(synced.and_then(|()| store.rename_into_place(id))));
            }
        }
    }

    /// With `TeamLogs::Files`, writes a done job's log in place (a rerun after a crash
    /// overwrites it).
    fn write_log_file(&self, id: JobId, record: &Record<'_>) -> io::Result<()> {
        let (TeamLogs::Files, Record::Done(outcome)) = (self.inner.team_logs, record) else {
            return Ok(());
        };
        let mut log = BufWriter::new(File::create(self.path(id, "log"))?);
        outcome.log.write_to(&mut log)?;
        log.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(())
    }

    fn write_temporary(&self, id: JobId, record: &Record<'_>) -> io::Result<()> {
        let path = self.temporary_path(id);
        let file = File::create(&path).or_else(|error| match (error.kind(), path.parent()) {
            // Someone removed it (or the whole results directory, then made it again).
            (io::ErrorKind::NotFound, Some(temporary_dir)) => {
                fs::create_dir_all(temporary_dir)?;
                File::create(&path)
            }
            _ => Err(error),
        })?;
        let mut result = BufWriter::new(file);
        match record {
            Record::Done(outcome) => {
                let status = StatusLine::Done {
                    data: &outcome.summary,
                };
                serde_json::to_writer(&mut result, &status)?;
                result.write_all(b"\n")?;
                serde_json::to_writer(&mut result, &outcome.work)?;
                result.write_all(b"\n")?;
                if self.inner.team_logs == TeamLogs::Inline {
                    outcome.log.write_to(&mut result)?;
                }
            }
            Record::Failed(reason) => {
                serde_json::to_writer(&mut result, &StatusLine::Failed { reason })?;
                result.write_all(b"\n")?;
            }
        }
        result
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok(())
    }

    fn rename_into_place(&self, id: JobId) -> io::Result<()> {
        let _guard = self.lock_job(id);
        fs::rename(self.temporary_path(id), self.path(id, "result"))
    }

    /// Line 1 of the result file: the body `/api/get_results` answers for this job.
    ///
    /// # Errors
    /// `Missing` when there is no result file, `Io` when it cannot be read.
    pub fn read_status(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        let _guard = self.lock_job(id);
        let mut reader = BufReader::new(open_existing(&self.path(id, "result"))?);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        if line.pop() != Some(b'\n') {
            return Err(StoreError::Damaged(
                "the status line is incomplete".to_owned(),
            ));
        }
        Ok(line)
    }

    /// The work tables of a done job.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when line 2 is not valid work tables.
    pub fn read_work(&self, id: JobId) -> Result<WorkTables, StoreError> {
        let _guard = self.lock_job(id);
        let mut reader = BufReader::new(open_existing(&self.path(id, "result"))?);
        reader.skip_until(b'\n')?;
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        serde_json::from_slice(&line).map_err(|error| StoreError::Damaged(error.to_string()))
    }

    /// The team log of a done job, open at its start, and its length in bytes, so that
    /// it can be streamed. It is read from `<id>.log` if there is one (whatever the
    /// present setting: a directory may hold jobs from both), else from the result.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when neither holds it.
    pub fn open_log(&self, id: JobId) -> Result<(File, u64), StoreError> {
        let _guard = self.lock_job(id);
        match File::open(self.path(id, "log")) {
            Ok(file) => {
                let length = file.metadata()?.len();
                Ok((file, length))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => self.open_inline_log(id),
            Err(error) => Err(StoreError::Io(error)),
        }
    }

    /// The result file positioned at the log that follows the work tables.
    fn open_inline_log(&self, id: JobId) -> Result<(File, u64), StoreError> {
        let mut reader = BufReader::new(open_existing(&self.path(id, "result"))?);
        let start = reader.skip_until(b'\n')? + reader.skip_until(b'\n')?;
        let mut file = reader.into_inner();
        let end = file.seek(SeekFrom::End(0))?;
        if end <= start as u64 {
            // Every done job has a log of at least one line: it is not here.
            return Err(StoreError::Damaged("the team log is missing".to_owned()));
        }
        file.seek(SeekFrom::Start(start as u64))?;
        Ok((file, end - start as u64))
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
                _ if name.starts_with(".probe-") || name == format!("{KEYS_FILE}.tmp") => {
                    let _ = fs::remove_file(entry.path());
                }
                _ if name == KEYS_FILE => {}
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
        for id in logs.into_iter().filter(|id| !with_result.contains(id)) {
            let _ = fs::remove_file(self.path(id, "log"));
        }
        let mut requests: BTreeMap<JobId, StoredRequest> = BTreeMap::new();
        for path in journals {
            requests.extend(read_segment(&Arc::new(Journal::new(path)), &mut warn)?);
        }
        let mut jobs: BTreeMap<JobId, Recovered> = BTreeMap::new();
        for id in results {
            let state = match self.recovered_state(id) {
                Ok(state) => state,
                Err(problem) if requests.contains_key(&id) => {
                    warn(format!("job {id}: {problem}; it will run again"));
                    continue;
                }
                Err(problem) => {
                    // Nothing to rerun it from: keep the id, and say what happened.
                    warn(format!("job {id}: {problem}; it is marked failed"));
                    JobState::Failed(format!("the stored result is damaged: {problem}").into())
                }
            };
            let journal = requests
                .remove(&id)
                .map_or_else(Weak::new, |request| Arc::downgrade(&request.journal));
            let finished_at = fs::metadata(self.path(id, "result"))
                .and_then(|metadata| metadata.modified())
                .ok();
            jobs.insert(
                id,
                Recovered {
                    id,
                    state,
                    finished_at,
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
        let text = match fs::read(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
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

    /// The state a stored result shows, or why it cannot be trusted.
    fn recovered_state(&self, id: JobId) -> Result<JobState, String> {
        let line = self.read_status(id).map_err(|error| error.to_string())?;
        match serde_json::from_slice::<StoredStatus>(&line) {
            Ok(StoredStatus::Failed { reason }) => Ok(JobState::Failed(reason.into())),
            Ok(StoredStatus::Done { .. }) if ends_with_newline(&self.path(id, "result")) => {
                Ok(JobState::Done)
            }
            Ok(StoredStatus::Done { .. }) => Err("its result file is incomplete".to_owned()),
            Err(error) => Err(format!("its result file is damaged: {error}")),
        }
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

    /// Removes a finished job's files (the caller has checked that no journal
    /// still holds its request, which would run it again after a restart).
    ///
    /// # Errors
    /// When the file exists but cannot be removed.
    pub fn remove_result(&self, id: JobId) -> io::Result<()> {
        let _guard = self.lock_job(id);
        // The result first: a log left without it is removed at the next start-up.
        for suffix in ["result", "log"] {
            match fs::remove_file(self.path(id, suffix)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes and answers every pending accept and commit, then stops the writer and
    /// sync threads.
    pub fn shutdown(&self) {
        self.inner.journal.shutdown();
        self.inner.sync.shutdown();
    }
}

fn open_existing(path: &Path) -> Result<File, StoreError> {
    File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => StoreError::Missing,
        _ => StoreError::Io(error),
    })
}

fn ends_with_newline(path: &Path) -> bool {
    let mut last = [0u8];
    File::open(path)
        .and_then(|mut file| {
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)
        })
        .is_ok_and(|()| last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::jobs::journal::{JOURNAL_INFIX, JOURNAL_PREFIX};
    use crate::wall::{self, EXAMPLE_WALL, Limits, WallConfig};

    fn options(team_logs: TeamLogs) -> StoreOptions {
        StoreOptions {
            min_free_space: 0,
            team_logs,
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
        assert!(matches!(store.read_status(id), Err(StoreError::Missing)));
        let outcome = example_outcome();
        commit(&store, id, &Record::Done(&outcome), request);
        let status: serde_json::Value =
            serde_json::from_slice(&store.read_status(id).unwrap()).unwrap();
        assert_eq!(status["status"], "done");
        assert_eq!(status["data"]["cost"], 32_233_500);
        assert_eq!(store.read_work(id).unwrap(), outcome.work);
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
        let torn = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        fs::write(
            &torn,
            format!(
                "{JOURNAL_PREFIX}{}{JOURNAL_INFIX}{{\"prof",
                JobId::generate()
            ),
        )
        .unwrap();

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

        let store = ResultStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
        store.recover(|warning| panic!("{warning}")).unwrap();
        let own = JobId::generate();
        commit(
            &store,
            own,
            &Record::Done(&example_outcome()),
            accept(&store, own),
        );
        let result = fs::read_to_string(dir.path().join(format!("{own}.result"))).unwrap();
        assert_eq!(result.lines().count(), 2, "status and work tables only");
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
}
