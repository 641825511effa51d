//! Tombstones: the durable record of jobs deleted or cancelled while their request was
//! still in a journal segment on disk, so that no restart runs them again.
//!
//! The file `deleted-jobs.txt` in the results directory holds one job id per line, each
//! appended and synced before the delete or cancel is answered. Recovery skips the
//! journal lines of these ids, and rewrites the file without the ids that no segment
//! mentions any more (their segments are gone, so nothing could bring them back).

use std::collections::HashSet;
use std::fs;

use super::regular_file::{create_fresh, open_for_append, read_regular};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::jobs::JobId;

/// The file of tombstones, beside the journals.
pub const TOMBSTONES_FILE: &str = "deleted-jobs.txt";

/// The temporary name the file is compacted under at start-up.
pub const TOMBSTONES_TEMPORARY: &str = "deleted-jobs.txt.tmp";

pub struct Tombstones {
    dir: PathBuf,
    /// One append (and its sync) at a time, so lines never interleave.
    appending: Mutex<()>,
}

impl Tombstones {
    pub fn new(dir: &Path) -> Tombstones {
        Tombstones {
            dir: dir.to_owned(),
            appending: Mutex::new(()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(TOMBSTONES_FILE)
    }

    /// Records that `id` must never run again; durable when this returns.
    ///
    /// # Errors
    /// Whatever the file system answers; then nothing durable was recorded that matters
    /// (a torn line is skipped at start-up).
    pub fn bury(&self, id: JobId) -> io::Result<()> {
        let _appending = self.appending.lock();
        let path = self.path();
        // Never blocks on, or follows, an entry that is not a regular file.
        let (mut file, name_maybe_unsynced) = open_for_append(&path)?;
        // A line of its own even after a write that failed half way left a fragment
        // behind (empty lines are skipped).
        file.write_all(format!("\n{id}\n").as_bytes())?;
        file.sync_data()?;
        if name_maybe_unsynced {
            // A new file's name must be durable too.
            super::sync_directory(&self.dir)?;
        }
        Ok(())
    }

    /// The buried ids that `is_journaled` still finds in a segment; the file is rewritten
    /// without the others (and without a torn last line). Called once, at start-up.
    ///
    /// # Errors
    /// When the file cannot be read or rewritten.
    pub fn recover(
        &self,
        is_journaled: impl Fn(JobId) -> bool,
        warn: &mut impl FnMut(String),
    ) -> io::Result<HashSet<JobId>> {
        let path = self.path();
        let text = match read_regular(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            // Unlike the keys file, left alone at a cost to retries: without its
            // tombstones a restart would run cancelled and deleted jobs again.
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                return Err(io::Error::new(
                    error.kind(),
                    format!(
                        "{error}: it keeps the jobs that must never run again (cancelled or \
                         deleted), and the server does not start without it; put the regular \
                         file back, or remove the entry if no job was ever cancelled or \
                         deleted here"
                    ),
                ));
            }
            other => other?,
        };
        let mut lines = 0;
        let mut live = HashSet::new();
        for line in text
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            lines += 1;
            match std::str::from_utf8(line)
                .ok()
                .and_then(|id| id.parse().ok())
            {
                Some(id) if is_journaled(id) => {
                    live.insert(id);
                }
                Some(_) => {}
                None => warn(format!("{TOMBSTONES_FILE}: skipping a damaged line")),
            }
        }
        if live.len() < lines {
            let temporary = self.dir.join(TOMBSTONES_TEMPORARY);
            let mut out = BufWriter::new(create_fresh(&temporary)?);
            for id in &live {
                writeln!(out, "{id}")?;
            }
            out.into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .sync_all()?;
            fs::rename(&temporary, &path)?;
            // Later tombstones go to the new file: the old one back after a power cut
            // would be without them.
            super::sync_directory(&self.dir)?;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    #[test]
    fn buried_ids_survive_while_a_segment_mentions_them() {
        let dir = tempfile::tempdir().unwrap();
        let tombstones = Tombstones::new(dir.path());
        let (journaled, forgotten) = (JobId::generate(), JobId::generate());
        tombstones.bury(journaled).unwrap();
        tombstones.bury(forgotten).unwrap();
        // A torn last line, as a crash mid-append leaves it.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(TOMBSTONES_FILE))
            .unwrap();
        file.write_all(b"0192f0c5-7b7e").unwrap();
        let mut warnings = Vec::new();
        let live = tombstones
            .recover(|id| id == journaled, &mut |warning| warnings.push(warning))
            .unwrap();
        assert_eq!(live, HashSet::from([journaled]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let text = fs::read_to_string(dir.path().join(TOMBSTONES_FILE)).unwrap();
        assert_eq!(text, format!("{journaled}\n"), "compacted");
        assert!(!dir.path().join(TOMBSTONES_TEMPORARY).exists());
    }

    #[test]
    fn a_fragment_left_by_a_failed_append_does_not_swallow_the_next_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let tombstones = Tombstones::new(dir.path());
        let first = JobId::generate();
        tombstones.bury(first).unwrap();
        // What a write that failed part-way (ENOSPC, EIO) leaves in this process: the
        // bury answered Err, but the bytes it wrote stay.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(TOMBSTONES_FILE))
            .unwrap();
        file.write_all(b"0192f0c5-7b7e").unwrap();
        // A later cancel is answered 200 once this returns Ok.
        let second = JobId::generate();
        tombstones.bury(second).unwrap();
        let live = tombstones.recover(|_| true, &mut |_| {}).unwrap();
        assert!(
            live.contains(&second),
            "the later tombstone was lost: {live:?}"
        );
    }
}
