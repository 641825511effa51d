//! Tombstones: the durable record of jobs deleted or cancelled while their request was
//! still in a journal segment on disk, so that no restart runs them again.
//!
//! The file `deleted-jobs.txt` in the results directory holds one job id per line, each
//! appended and synced before the delete or cancel is answered. Recovery skips the
//! journal lines of these ids. The file is rewritten without the ids that no segment
//! mentions any more (their segments are gone, so nothing could bring them back): at
//! start-up, and while the server runs whenever it has doubled past a floor, since
//! every `DELETE` adds a line.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::journal::{is_segment_name, mentioned_ids};
use super::regular_file::{for_each_line, open_for_append, open_regular, replace_durably};
use crate::jobs::JobId;

/// The file of tombstones, beside the journals.
pub const TOMBSTONES_FILE: &str = "deleted-jobs.txt";

/// The temporary name the file is rewritten under.
pub const TOMBSTONES_TEMPORARY: &str = "deleted-jobs.txt.tmp";

pub struct Tombstones {
    dir: PathBuf,
    /// One append or rewrite at a time, so lines never interleave and none is lost.
    appending: Mutex<Growth>,
    /// The length below which the file is not rewritten while the server runs.
    floor: u64,
}

/// How long the file is, and how long it may grow before the next rewrite.
#[derive(Default)]
struct Growth {
    len: u64,
    /// Twice the length the last rewrite (or look that found nothing to drop) left.
    rewrite_at: u64,
    /// A rewrite failed, maybe after its rename: the next append syncs the directory,
    /// or a power cut could bring back the old file without that append's tombstone.
    directory_unsynced: bool,
}

impl Tombstones {
    pub fn new(dir: &Path, floor: u64) -> Tombstones {
        Tombstones {
            dir: dir.to_owned(),
            appending: Mutex::default(),
            floor,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(TOMBSTONES_FILE)
    }

    /// Records that `id` must never run again; durable when this returns.
    ///
    /// # Errors
    /// Whatever the file system answers; then the line is taken out again, so that a
    /// refused cancel does not take effect at the next start after all. (Should that
    /// fail too, the disk refusing twice in a row, the line may stay.)
    pub fn bury(&self, id: JobId) -> io::Result<()> {
        let mut growth = self.appending.lock();
        let path = self.path();
        // Never blocks on, or follows, an entry that is not a regular file.
        let (mut file, before) = open_for_append(&path)?;
        // A line of its own even after a write that failed half way left a fragment
        // behind (empty lines are skipped).
        let line = format!("\n{id}\n");
        let recorded = (|| {
            file.write_all(line.as_bytes())?;
            file.sync_data()?;
            if before == 0 || growth.directory_unsynced {
                // A new file's name must be durable too.
                super::sync_directory(&self.dir)?;
                growth.directory_unsynced = false;
            }
            Ok(())
        })();
        if let Err(error) = recorded {
            let _ = file.set_len(before).and_then(|()| file.sync_data());
            return Err(error);
        }
        // The tombstone is durable: a rewrite that fails now costs only the space.
        growth.len = before + line.len() as u64;
        if growth.len >= self.floor.max(growth.rewrite_at) {
            match self.rewrite_while_running() {
                Ok(len) => {
                    growth.len = len;
                    growth.rewrite_at = len.saturating_mul(2);
                }
                Err(_) => {
                    growth.rewrite_at = growth.len.saturating_mul(2);
                    growth.directory_unsynced = true;
                }
            }
        }
        Ok(())
    }

    /// Rewrites the file with the ids that a segment on disk still mentions; its new
    /// length. Called with the appends held off. A segment not seen in the directory
    /// may only have been unlinked, not durably: the directory is synced after the
    /// look, so that none comes back after a power cut to run a job whose tombstone
    /// went. A segment made after the look holds no request of a buried job.
    fn rewrite_while_running(&self) -> io::Result<u64> {
        let mut journaled = HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_name().to_str().is_some_and(is_segment_name) {
                continue;
            }
            match mentioned_ids(&entry.path()) {
                Ok(ids) => journaled.extend(ids),
                // Removed since the look: the sync below makes that durable.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        super::sync_directory(&self.dir)?;
        self.keep_only(|id| journaled.contains(&id), &mut |_| {})
            .map(|(_, len)| len)
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
        let mut growth = self.appending.lock();
        let (live, len) = self.keep_only(is_journaled, warn)?;
        // All of it is needed now: it is not looked at again before it has doubled.
        growth.len = len;
        growth.rewrite_at = len.saturating_mul(2);
        Ok(live)
    }

    /// Rewrites the file with the ids `keep` keeps, if it holds others; those ids, and
    /// the file's length.
    fn keep_only(
        &self,
        keep: impl Fn(JobId) -> bool,
        warn: &mut impl FnMut(String),
    ) -> io::Result<(HashSet<JobId>, u64)> {
        let path = self.path();
        let file = match open_regular(&path, OpenOptions::new().read(true)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok((HashSet::new(), 0));
            }
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
        let len = file.metadata()?.len();
        // Every DELETE adds a line: read one at a time.
        let mut lines = 0;
        let mut live = HashSet::new();
        for_each_line(file, |line| {
            lines += 1;
            match std::str::from_utf8(line)
                .ok()
                .and_then(|id| id.parse().ok())
            {
                Some(id) if keep(id) => {
                    live.insert(id);
                }
                Some(_) => {}
                None => warn(format!("{TOMBSTONES_FILE}: skipping a damaged line")),
            }
        })?;
        if live.len() == lines {
            return Ok((live, len));
        }
        let replaced = replace_durably(&path, &self.dir.join(TOMBSTONES_TEMPORARY), |out| {
            live.iter().try_for_each(|id| writeln!(out, "{id}"))
        });
        match replaced {
            Ok(replaced) => {
                // Later tombstones go to the new file: the old one back after a power
                // cut would be without them.
                replaced.directory_synced?;
                Ok((live, replaced.len))
            }
            // The old file has every id still needed and more: it serves until there
            // is room to rewrite it.
            Err(error) if error.kind() == io::ErrorKind::StorageFull => {
                warn(format!("{TOMBSTONES_FILE} is left as it is: {error}"));
                Ok((live, len))
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;
    use crate::jobs::files::COMPACTION_FLOOR;

    #[test]
    fn buried_ids_survive_while_a_segment_mentions_them() {
        let dir = tempfile::tempdir().unwrap();
        let tombstones = Tombstones::new(dir.path(), COMPACTION_FLOOR);
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
        let tombstones = Tombstones::new(dir.path(), COMPACTION_FLOOR);
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

    #[test]
    fn while_running_a_grown_file_keeps_only_the_ids_a_segment_still_mentions() {
        let dir = tempfile::tempdir().unwrap();
        // A segment on disk with one job's request in it, the zeros after its line.
        let journaled = JobId::generate();
        let mut segment =
            format!(r#"{{"job_id":"{journaled}","request":{{"profiles":[[1]]}}}}"#).into_bytes();
        segment.push(b'\n');
        segment.resize(64 * 1024, 0);
        let segment_path = dir
            .path()
            .join(format!("requests-{}.jsonl", JobId::generate()));
        fs::write(&segment_path, segment).unwrap();
        // Each tombstone takes 38 bytes: the fourth passes the floor.
        let tombstones = Tombstones::new(dir.path(), 150);
        tombstones.bury(journaled).unwrap();
        let forgotten: Vec<JobId> = (0..3).map(|_| JobId::generate()).collect();
        for id in &forgotten {
            tombstones.bury(*id).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(TOMBSTONES_FILE)).unwrap();
        assert_eq!(text, format!("{journaled}\n"), "rewritten");
        assert!(!dir.path().join(TOMBSTONES_TEMPORARY).exists());
        // Below twice what the rewrite left, appends only append.
        let later = JobId::generate();
        tombstones.bury(later).unwrap();
        let live = tombstones.recover(|_| true, &mut |_| {}).unwrap();
        assert_eq!(live, HashSet::from([journaled, later]));
        // A segment gone, its ids go at the next rewrite; the segment is never removed
        // by the look.
        assert!(segment_path.exists());
        fs::remove_file(&segment_path).unwrap();
        for _ in 0..4 {
            tombstones.bury(JobId::generate()).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(TOMBSTONES_FILE)).unwrap();
        assert!(!text.contains(&journaled.to_string()), "{text}");
    }

    #[test]
    fn after_start_up_a_file_of_needed_ids_is_not_looked_at_again_before_it_doubles() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let buried: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
        for id in &buried {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join(TOMBSTONES_FILE))
                .unwrap()
                .write_all(format!("{id}\n").as_bytes())
                .unwrap();
        }
        // Past the floor at start-up, and every id needed.
        let restarted = Tombstones::new(dir.path(), 150);
        assert_eq!(restarted.recover(|_| true, &mut |_| {}).unwrap().len(), 5);
        let path = dir.path().join(TOMBSTONES_FILE);
        let before = fs::metadata(&path).unwrap().ino();
        restarted.bury(JobId::generate()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), before, "rewritten");
    }

    #[test]
    fn on_a_full_disk_the_file_is_left_as_it_is_and_its_needed_ids_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        }
        let (needed, forgotten) = (JobId::generate(), JobId::generate());
        let tombstones = Tombstones::new(dir.path(), COMPACTION_FLOOR);
        tombstones.bury(needed).unwrap();
        tombstones.bury(forgotten).unwrap();
        // Every page taken: the rewrite's one line has no room.
        let mut ballast = fs::File::create(dir.path().join("ballast")).unwrap();
        while ballast.write_all(&[0; 4096]).is_ok() {}
        let mut warnings = Vec::new();
        let live = Tombstones::new(dir.path(), COMPACTION_FLOOR)
            .recover(|id| id == needed, &mut |warning| warnings.push(warning));
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(dir.path())
            .status();
        assert_eq!(live.unwrap(), HashSet::from([needed]));
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains("left as it is")),
            "{warnings:?}"
        );
    }
}
