//! The result store: one set of files per job under the results directory, guarded by a
//! per-job lock while the job is in flight, made durable by group commit.
//!
//! Files of job `<id>` (names are built only from a parsed `JobId`):
//! - `<id>.request.json`: the accepted config, synced before the job is acknowledged;
//! - `<id>.result`: line 1 is the `/api/get_results` body (`done` with the summary,
//!   or `failed` with the reason); a done job's file goes on with line 2, the work
//!   tables, and then the team log, one event per line.
//!
//! One result file per job (not three) halves the inodes made per job, which is what
//! bounds throughput on ext4. It is written to `<id>.result.tmp`, synced, then renamed,
//! so a reader (or a restart) sees a whole file or none.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::group_sync::GroupSync;
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

/// A job found on disk at start-up: finished, or accepted and still to run.
pub struct Recovered {
    pub id: JobId,
    pub state: JobState,
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
    sync: GroupSync,
}

impl ResultStore {
    /// Opens (creating if needed) the results directory and checks that it is writable.
    ///
    /// # Errors
    /// `Unusable` when the directory cannot be created, written or synced.
    pub fn open(dir: &Path) -> Result<ResultStore, StoreError> {
        let unusable = |source| StoreError::Unusable {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(unusable)?;
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
                sync: GroupSync::start(handle).map_err(unusable)?,
            }),
        })
    }

    fn path(&self, id: JobId, suffix: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{suffix}"))
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

    /// Stores an accepted job's request durably; `then` learns the outcome once it is
    /// synced. The job's lock lives from here until its result is written.
    pub fn accept(
        &self,
        id: JobId,
        request: Vec<u8>,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.inner.locks.insert(id, Arc::new(Mutex::new(())));
        let store = self.clone();
        let path = self.path(id, "request.json");
        self.inner.sync.submit(
            Box::new(move || {
                let _guard = store.lock_job(id);
                write_new(&path, &request)
            }),
            Box::new({
                let store = self.clone();
                move |outcome| {
                    if outcome.is_err() {
                        store.forget(id);
                    }
                    then(outcome.map_err(StoreError::from));
                }
            }),
        );
    }

    /// Removes what an accept left behind when the job could not be queued after all.
    pub fn forget(&self, id: JobId) {
        {
            let _guard = self.lock_job(id);
            let _ = fs::remove_file(self.path(id, "request.json"));
        }
        self.inner.locks.remove(&id);
    }

    /// The stored request of a job.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn read_request(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        let _guard = self.lock_job(id);
        Ok(fs::read(self.path(id, "request.json"))?)
    }

    /// Writes a finished job's files, then (after the next group sync) renames them into
    /// place, releases the job's lock and calls `then`.
    pub fn commit(
        &self,
        id: JobId,
        record: &Record<'_>,
        then: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let written = {
            let _guard = self.lock_job(id);
            self.write_temporary(id, record)
        };
        let store = self.clone();
        match written {
            Err(error) => {
                let _ = fs::remove_file(self.path(id, "result.tmp"));
                self.inner.locks.remove(&id);
                then(Err(error));
            }
            Ok(()) => self.inner.sync.submit(
                Box::new(|| Ok(())),
                Box::new(move |synced| {
                    let renamed = synced.and_then(|()| store.rename_into_place(id));
                    if renamed.is_err() {
                        let _ = fs::remove_file(store.path(id, "result.tmp"));
                    }
                    store.inner.locks.remove(&id);
                    then(renamed.map_err(StoreError::from));
                }),
            ),
        }
    }

    fn write_temporary(&self, id: JobId, record: &Record<'_>) -> Result<(), StoreError> {
        let mut result = BufWriter::new(File::create(self.path(id, "result.tmp"))?);
        match record {
            Record::Done(outcome) => {
                let status = StatusLine::Done {
                    data: &outcome.summary,
                };
                serde_json::to_writer(&mut result, &status).map_err(io::Error::from)?;
                result.write_all(b"\n")?;
                serde_json::to_writer(&mut result, &outcome.work).map_err(io::Error::from)?;
                result.write_all(b"\n")?;
                outcome.log.write_to(&mut result)?;
            }
            Record::Failed(reason) => {
                serde_json::to_writer(&mut result, &StatusLine::Failed { reason })
                    .map_err(io::Error::from)?;
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
        fs::rename(self.path(id, "result.tmp"), self.path(id, "result"))
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

    /// The team log of a done job, as text: what follows the work tables.
    ///
    /// # Errors
    /// `Missing` or `Io`.
    pub fn read_log(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        let _guard = self.lock_job(id);
        let mut reader = BufReader::new(open_existing(&self.path(id, "result"))?);
        reader.skip_until(b'\n')?;
        reader.skip_until(b'\n')?;
        let mut log = Vec::new();
        reader.read_to_end(&mut log)?;
        Ok(log)
    }

    /// Lists the jobs on disk, oldest first: finished ones with their state, accepted
    /// ones without a whole result as `Queued`. Temporary files are removed; a damaged
    /// result is removed so that its job runs again; `warn` hears of each oddity.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn recover(&self, mut warn: impl FnMut(String)) -> io::Result<Vec<Recovered>> {
        let mut requests = Vec::new();
        for entry in fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                warn(format!("skipping a file whose name is not UTF-8: {name:?}"));
                continue;
            };
            let Some((stem, suffix)) = name.split_once('.') else {
                warn(format!("skipping an unknown file: {name}"));
                continue;
            };
            match (stem.parse::<JobId>(), suffix) {
                (Ok(id), "request.json") => requests.push(id),
                (Ok(_), "result") => {}
                (Ok(_), "result.tmp") => {
                    let _ = fs::remove_file(entry.path());
                }
                _ if name.starts_with(".probe-") => {
                    let _ = fs::remove_file(entry.path());
                }
                _ => warn(format!("skipping an unknown file: {name}")),
            }
        }
        requests.sort_unstable();
        Ok(requests
            .into_iter()
            .map(|id| {
                let state = self.recovered_state(id).unwrap_or_else(|problem| {
                    if let Some(problem) = problem {
                        warn(format!("job {id}: {problem}; it will run again"));
                        let _ = fs::remove_file(self.path(id, "result"));
                    }
                    JobState::Queued
                });
                Recovered { id, state }
            })
            .collect())
    }

    /// The state a stored result shows; `Err(None)` if there is none, `Err(Some(why))`
    /// if it is damaged.
    fn recovered_state(&self, id: JobId) -> Result<JobState, Option<String>> {
        let path = self.path(id, "result");
        let line = match self.read_status(id) {
            Ok(line) => line,
            Err(StoreError::Missing) => return Err(None),
            Err(error) => return Err(Some(error.to_string())),
        };
        match serde_json::from_slice::<StoredStatus>(&line) {
            Ok(StoredStatus::Failed { reason }) => Ok(JobState::Failed(reason.into())),
            Ok(StoredStatus::Done { .. }) if ends_with_newline(&path) => Ok(JobState::Done),
            Ok(StoredStatus::Done { .. }) => Err(Some("its result file is incomplete".to_owned())),
            Err(error) => Err(Some(format!("its result file is damaged: {error}"))),
        }
    }

    /// Writes and answers every pending accept and commit, then stops the sync thread.
    pub fn shutdown(&self) {
        self.inner.sync.shutdown();
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)
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
    use crate::wall::{self, EXAMPLE_WALL, Limits, WallConfig};

    fn example_outcome() -> Outcome {
        let profiles = wall::parse_text(EXAMPLE_WALL.as_bytes(), &Limits::default()).unwrap();
        wall::simulate(&WallConfig::try_new(profiles, None).unwrap())
    }

    fn accept(store: &ResultStore, id: JobId) {
        let (sender, receiver) = mpsc::channel();
        store.accept(id, b"{}".to_vec(), move |outcome| {
            sender.send(outcome.is_ok()).unwrap()
        });
        assert!(receiver.recv().unwrap());
    }

    fn commit(store: &ResultStore, id: JobId, record: &Record<'_>) {
        let (sender, receiver) = mpsc::channel();
        store.commit(id, record, move |outcome| {
            sender.send(outcome.is_ok()).unwrap()
        });
        assert!(receiver.recv().unwrap());
    }

    #[test]
    fn a_done_job_stores_status_work_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path()).unwrap();
        let id = JobId::generate();
        accept(&store, id);
        assert_eq!(store.read_request(id).unwrap(), b"{}");
        assert!(matches!(store.read_status(id), Err(StoreError::Missing)));
        let outcome = example_outcome();
        commit(&store, id, &Record::Done(&outcome));
        let status: serde_json::Value =
            serde_json::from_slice(&store.read_status(id).unwrap()).unwrap();
        assert_eq!(status["status"], "done");
        assert_eq!(status["data"]["cost"], 32_233_500);
        assert_eq!(store.read_work(id).unwrap(), outcome.work);
        assert!(
            String::from_utf8(store.read_log(id).unwrap())
                .unwrap()
                .starts_with("day 2: team 3")
        );
        assert!(store.inner.locks.is_empty());
    }

    #[test]
    fn recovery_finds_done_failed_and_pending_jobs_and_reruns_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultStore::open(dir.path()).unwrap();
        let ids: Vec<JobId> = (0..4).map(|_| JobId::generate()).collect();
        for &id in &ids {
            accept(&store, id);
        }
        commit(&store, ids[0], &Record::Done(&example_outcome()));
        commit(&store, ids[1], &Record::Failed("bad luck"));
        fs::write(
            dir.path().join(format!("{}.result", ids[3])),
            b"{\"status\":\"do",
        )
        .unwrap();
        fs::write(dir.path().join(format!("{}.result.tmp", ids[2])), b"half").unwrap();
        fs::write(dir.path().join("notes.txt"), b"?").unwrap();
        store.shutdown();

        let store = ResultStore::open(dir.path()).unwrap();
        let mut warnings = Vec::new();
        let recovered = store.recover(|warning| warnings.push(warning)).unwrap();
        let states: Vec<(JobId, JobState)> =
            recovered.into_iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(
            states,
            vec![
                (ids[0], JobState::Done),
                (ids[1], JobState::Failed("bad luck".into())),
                (ids[2], JobState::Queued),
                (ids[3], JobState::Queued),
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(!dir.path().join(format!("{}.result.tmp", ids[2])).exists());
        assert!(!dir.path().join(format!("{}.result", ids[3])).exists());
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            ResultStore::open(&file.join("results")),
            Err(StoreError::Unusable { .. })
        ));
    }
}
