//! Start-up recovery of the file store: what the results directory holds after a stop
//! or a crash (finished results checked, accepted requests to run again, leftovers
//! removed), read once before the first accept.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::sync::{Arc, Weak};

use super::dir_lock::LOCK_FILE;
use super::journal::{
    KEYS_FILE, Segment, StoredRequest, UNFINISHED_SEGMENT_PREFIX, is_segment_name, read_segment,
    replace_keys_file,
};
use super::regular_file::{for_each_line, kind_of, open_regular};
use super::results::StoredResult;
use super::tombstones::{TOMBSTONES_FILE, TOMBSTONES_TEMPORARY};
use super::{FileStore, PROBE_PREFIX, StoreError, TEMPORARY_DIR, legacy_result};
use crate::jobs::idempotency::KeyRecord;
use crate::jobs::registry::{self, WallShape};
use crate::jobs::storage::{Recovered, RecoveredJobs};
use crate::jobs::{JobId, JobState};

/// Results up to this size have their checksum verified at start-up: reading them
/// whole costs about what reading their first block does, and most results are a few
/// KiB. Larger ones are checked by their header, trailer and length alone (a file cut
/// short anywhere fails that), so that start-up does not read gigabytes, unless their
/// job's request is still journaled: such a result may not have been synced before a
/// crash, and is read whole (the jobs of segments still held: the last second's or so,
/// and more while a backlog held older segments).
pub(super) const CHECKSUM_AT_START_UP_MAX: u64 = 1024 * 1024;

impl FileStore {
    /// Lists the jobs on disk, oldest first: finished ones with their state, accepted
    /// ones without a whole result as `Queued` with their request. Called once, before
    /// the first accept: every journal segment it finds is taken for a leftover.
    /// Temporary files are removed; a job with a damaged result runs again if its request is still in a
    /// journal, and is marked failed otherwise; a journal no job needs any more is
    /// removed; `warn` hears of each oddity.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub(super) fn recover(
        &self,
        mut warn: impl FnMut(String),
    ) -> io::Result<RecoveredJobs<FileStore>> {
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
            let id = JobId::parse_canonical(stem).ok();
            match (id, suffix) {
                (Some(id), "result") => results.push(id),
                (Some(id), "log") => logs.push(id),
                _ if name == TEMPORARY_DIR => {
                    // Results an earlier version was writing when it crashed: their
                    // jobs run again.
                    for temporary in fs::read_dir(entry.path())? {
                        let _ = fs::remove_file(temporary?.path());
                    }
                    let _ = fs::remove_dir(entry.path());
                }
                _ if name.starts_with(PROBE_PREFIX)
                    || name.starts_with(UNFINISHED_SEGMENT_PREFIX)
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
        // Sorted lists searched in place of sets: no table per job at start-up's peak.
        results.sort_unstable();
        let (mut with_log, orphans): (Vec<JobId>, Vec<JobId>) = logs
            .into_iter()
            .partition(|id| results.binary_search(id).is_ok());
        with_log.sort_unstable();
        for id in orphans {
            let _ = fs::remove_file(self.path(id, "log"));
        }
        let mut requests: BTreeMap<JobId, StoredRequest> = BTreeMap::new();
        for path in journals {
            requests.extend(read_segment(&Arc::new(Segment::new(path)), &mut warn)?);
        }
        // Deleted or cancelled: their lines stay in their segments, their jobs do not.
        let buried = self
            .inner
            .tombstones
            .recover(|id| requests.contains_key(&id), &mut warn)?;
        requests.retain(|id, _| !buried.contains(id));
        // One vector, made once and sorted once: a map of every job would take about
        // twice the memory at start-up's peak.
        let mut jobs: Vec<Recovered<FileStore>> =
            Vec::with_capacity(results.len() + requests.len());
        let mut damaged_removed = false;
        for id in results {
            // A buried job's line is journaled too: a cancel whose tombstone could not be
            // taken back lets its job run, and a crash may leave that result unsynced.
            let journaled = requests.contains_key(&id) || buried.contains(&id);
            let (state, shape) = match self.recovered_state(id, journaled) {
                Ok(recovered) => recovered,
                Err(problem) if requests.contains_key(&id) => {
                    // Removed before it runs again: were the rerun cancelled, a later
                    // start-up would find the damaged result without its request, and
                    // bring the job back as failed.
                    match self.remove_result(id) {
                        Ok(()) => {
                            damaged_removed = true;
                            warn(format!("job {id}: {problem}; it will run again"));
                        }
                        Err(error) => warn(format!(
                            "job {id}: {problem}; it will run again (the damaged result \
                             could not be removed: {error})"
                        )),
                    }
                    continue;
                }
                Err(problem) => {
                    // Nothing to rerun it from: keep the id, and say what happened.
                    warn(format!("job {id}: {problem}; it is marked failed"));
                    let reason = format!("the stored result is damaged: {problem}");
                    (JobState::Failed(reason.into()), None)
                }
            };
            let pin = requests
                .remove(&id)
                .map_or_else(Weak::new, |request| Arc::downgrade(&request.journal));
            let metadata = fs::metadata(self.path(id, "result")).ok();
            let finished_at = metadata
                .as_ref()
                .and_then(|metadata| metadata.modified().ok());
            let log_len = if with_log.binary_search(&id).is_ok() {
                fs::metadata(self.path(id, "log")).map_or(0, |log| log.len())
            } else {
                0
            };
            let result_bytes = metadata.map_or(0, |metadata| metadata.len()) + log_len;
            jobs.push(Recovered {
                id,
                state,
                finished_at,
                shape,
                result_bytes,
                request: None,
                pin,
            });
        }
        if damaged_removed {
            self.sync_directory()?;
        }
        for (id, request) in requests {
            // In flight again: its files go through its lock until its result is written.
            self.inner.locks.hold(id);
            jobs.push(Recovered {
                id,
                state: JobState::Queued,
                finished_at: None,
                shape: None,
                result_bytes: 0,
                request: Some(request),
                // A queued job's record holds no pin: `finish` brings one.
                pin: Weak::new(),
            });
        }
        jobs.sort_unstable_by_key(|job| job.id);
        // One entry per job: the registry takes them in this order, without looking.
        debug_assert!(jobs.windows(2).all(|pair| pair[0].id < pair[1].id));
        let keys = self.recover_keys(
            |id| jobs.binary_search_by_key(&id, |job| job.id).is_ok(),
            &mut warn,
        )?;
        Ok((jobs, keys))
    }

    /// The idempotency keys of jobs that still exist; the file is rewritten without the
    /// others (and without a torn last line).
    fn recover_keys(
        &self,
        exists: impl Fn(JobId) -> bool,
        warn: &mut impl FnMut(String),
    ) -> io::Result<Vec<KeyRecord>> {
        let path = self.inner.dir.join(KEYS_FILE);
        let file = match open_regular(&path, OpenOptions::new().read(true)) {
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
        for_each_line(file, |line| {
            lines += 1;
            match serde_json::from_slice::<KeyRecord>(line) {
                Ok(record) => {
                    if record.job_id.parse().is_ok_and(&exists) {
                        live.push(record);
                    }
                }
                Err(error) => warn(format!("{KEYS_FILE}: skipping a damaged line: {error}")),
            }
        })?;
        if live.len() < lines {
            // Later keys go to the new file: the old one back after a power cut would be
            // without them.
            match replace_keys_file(&path, &live) {
                Ok(replaced) => replaced.directory_synced?,
                // The old file has every live record and more: it serves until there
                // is room to rewrite it.
                Err(error) if error.kind() == io::ErrorKind::StorageFull => {
                    warn(format!("{KEYS_FILE} is left as it is: {error}"));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(live)
    }

    /// The state a stored result shows, or why it cannot be trusted: a result in the
    /// binary layout must have its header, trailer and length agree, its checksum match
    /// if it is small (see `CHECKSUM_AT_START_UP_MAX`) or `journaled` (its job's request
    /// still in a journal, so perhaps never synced), and its team log file, if it has
    /// one, the length it was written with. A done job's wall's size comes with it, from
    /// the header (and the summary rows of a small result, read by the checksum).
    fn recovered_state(
        &self,
        id: JobId,
        journaled: bool,
    ) -> Result<(JobState, Option<WallShape>), String> {
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
        if small || journaled {
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
}
