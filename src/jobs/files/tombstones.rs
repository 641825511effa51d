//! Tombstones: the durable record of jobs deleted or cancelled while their request was
//! still in a journal segment on disk, so that no restart runs them again.
//!
//! The file `deleted-jobs.txt` in the results directory holds one job id per line, each
//! appended and synced before the delete or cancel is answered. Recovery skips the
//! journal lines of these ids. The file is rewritten without the ids that no segment
//! mentions any more (their segments are gone, so nothing could bring them back): at
//! start-up, and while the server runs whenever it has doubled past a floor, since
//! every `DELETE` adds a line. That rewrite runs on a thread that answers no request
//! (the retention sweeper's), and holds off the appends only at its end.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::growth::Growth;
use super::journal::{is_segment_name, mentioned_ids};
use super::regular_file::{
    Replaced, Replacement, for_each_line, open_for_append, open_regular, replace_durably,
};
use crate::jobs::JobId;

/// The file of tombstones, beside the journals.
pub const TOMBSTONES_FILE: &str = "deleted-jobs.txt";

/// The temporary name the file is rewritten under.
pub const TOMBSTONES_TEMPORARY: &str = "deleted-jobs.txt.tmp";

pub struct Tombstones {
    dir: PathBuf,
    /// One append at a time, so lines never interleave and none is lost; a rewrite
    /// holds it only to take in the lines appended while it looked.
    appending: Mutex<Growth>,
    /// One rewrite at a time.
    rewriting: Mutex<()>,
}

/// What a rewrite found with the appends going on: the ids buried before it began
/// that a segment still mentions, in the new file and synced there.
pub struct Look {
    replacement: Replacement,
    /// Where the lines it read end: those after it came meanwhile, and are all kept.
    read_to: u64,
}

impl Tombstones {
    pub fn new(dir: &Path, floor: u64) -> Tombstones {
        Tombstones {
            dir: dir.to_owned(),
            appending: Mutex::new(Growth::new(floor)),
            rewriting: Mutex::new(()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(TOMBSTONES_FILE)
    }

    /// Records that `id` must never run again; durable when this returns. Every call
    /// adds a line: see `rewrite_due`.
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
        let sync_name = growth.appending(before);
        // A line of its own even after a write that failed half way left a fragment
        // behind (empty lines are skipped).
        let line = format!("\n{id}\n");
        let recorded = (|| {
            file.write_all(line.as_bytes())?;
            file.sync_data()?;
            if sync_name {
                super::sync_directory(&self.dir)
            } else {
                Ok(())
            }
        })();
        if let Err(error) = recorded {
            let _ = file.set_len(before).and_then(|()| file.sync_data());
            return Err(error);
        }
        growth.appended(before, line.len() as u64);
        Ok(())
    }

    /// Whether the file has grown enough to be rewritten (past the floor, and twice
    /// what the last rewrite left): a cheap look, for the `bury` callers to hand the
    /// rewrite to a thread that answers no request.
    pub fn rewrite_due(&self) -> bool {
        self.appending.lock().due()
    }

    /// Rewrites the file without the ids that no segment on disk mentions any more, if
    /// it is due. The appends wait only while the lines they added meanwhile are
    /// copied and the new file renamed into place, not while the results directory is
    /// listed and the segments read.
    ///
    /// # Errors
    /// When the directory or the file cannot be read, or the new file written; the old
    /// one is then as it was, and the next try waits until it has doubled again.
    pub fn rewrite_if_due(&self) -> io::Result<()> {
        let _rewriting = self.rewriting.lock();
        let read_to = {
            let growth = self.appending.lock();
            if !growth.due() {
                return Ok(());
            }
            growth.len()
        };
        let look = self.look(read_to);
        let mut growth = self.appending.lock();
        let replaced = look.and_then(|look| self.replace(look, &growth));
        growth.rewritten(replaced)
    }

    /// Writes, into the new file, the ids of the first `read_to` bytes of the file that
    /// a segment on disk mentions. A segment not seen in the directory may only have
    /// been unlinked, not durably: the directory is synced after the look, so that
    /// none comes back after a power cut to run a job whose tombstone went. A segment
    /// made after the look holds no request of a job buried before it: a job is
    /// journaled before it can be deleted or cancelled, and no segment is written
    /// again.
    fn look(&self, read_to: u64) -> io::Result<Look> {
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
        let mut replacement =
            Replacement::begin(&self.path(), &self.dir.join(TOMBSTONES_TEMPORARY))?;
        // Bytes up to `read_to` are not written again before the rename: the appends
        // go after them.
        let file = open_regular(&self.path(), OpenOptions::new().read(true))?;
        let mut kept = HashSet::new();
        for_each_line(file.take(read_to), |line| {
            kept.extend(parse_id(line).filter(|id| journaled.contains(id)));
        })?;
        let out = replacement.writer();
        kept.iter().try_for_each(|id| writeln!(out, "{id}"))?;
        replacement.sync()?;
        Ok(Look {
            replacement,
            read_to,
        })
    }

    /// Adds to the new file the lines appended since `look` read the old one, then
    /// renames it into place. Called with the appends held off (`growth`).
    fn replace(&self, mut look: Look, growth: &Growth) -> io::Result<Replaced> {
        let mut file = open_regular(&self.path(), OpenOptions::new().read(true))?;
        file.seek(SeekFrom::Start(look.read_to))?;
        let mut buried_since = Vec::new();
        for_each_line(file.take(growth.len() - look.read_to), |line| {
            buried_since.extend(parse_id(line));
        })?;
        let out = look.replacement.writer();
        buried_since
            .iter()
            .try_for_each(|id| writeln!(out, "{id}"))?;
        look.replacement.finish()
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
        growth.found(len);
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
            match parse_id(line) {
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

fn parse_id(line: &[u8]) -> Option<JobId> {
    std::str::from_utf8(line).ok()?.parse().ok()
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

    /// A segment in `dir` holding the request of `id`, the zeros after its line.
    fn journal(dir: &Path, id: JobId) -> PathBuf {
        let mut segment =
            format!(r#"{{"job_id":"{id}","request":{{"profiles":[[1]]}}}}"#).into_bytes();
        segment.push(b'\n');
        segment.resize(64 * 1024, 0);
        let path = dir.join(format!("requests-{}.jsonl", JobId::generate()));
        fs::write(&path, segment).unwrap();
        path
    }

    #[test]
    fn while_running_a_grown_file_keeps_only_the_ids_a_segment_still_mentions() {
        let dir = tempfile::tempdir().unwrap();
        let journaled = JobId::generate();
        let segment = journal(dir.path(), journaled);
        // Each tombstone takes 38 bytes: the fourth passes the floor.
        let tombstones = Tombstones::new(dir.path(), 150);
        tombstones.bury(journaled).unwrap();
        let forgotten: Vec<JobId> = (0..3).map(|_| JobId::generate()).collect();
        for id in &forgotten {
            assert!(!tombstones.rewrite_due());
            tombstones.bury(*id).unwrap();
        }
        // The bury that made it due left the rewrite to its caller's sweeper.
        assert!(tombstones.rewrite_due());
        let path = dir.path().join(TOMBSTONES_FILE);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 8);
        tombstones.rewrite_if_due().unwrap();
        assert!(!tombstones.rewrite_due());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{journaled}\n"), "rewritten");
        assert!(!dir.path().join(TOMBSTONES_TEMPORARY).exists());
        // Below twice what the rewrite left, appends only append.
        let later = JobId::generate();
        tombstones.bury(later).unwrap();
        assert!(!tombstones.rewrite_due());
        let live = tombstones.recover(|_| true, &mut |_| {}).unwrap();
        assert_eq!(live, HashSet::from([journaled, later]));
        // A segment gone, its ids go at the next rewrite; the segment is never removed
        // by the look.
        assert!(segment.exists());
        fs::remove_file(&segment).unwrap();
        for _ in 0..4 {
            tombstones.bury(JobId::generate()).unwrap();
        }
        tombstones.rewrite_if_due().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&journaled.to_string()), "{text}");
    }

    #[test]
    fn a_tombstone_added_while_a_rewrite_looks_is_kept_without_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let journaled = JobId::generate();
        journal(dir.path(), journaled);
        let tombstones = Tombstones::new(dir.path(), 150);
        tombstones.bury(journaled).unwrap();
        for _ in 0..3 {
            tombstones.bury(JobId::generate()).unwrap();
        }
        let read_to = tombstones.appending.lock().len();
        let look = tombstones.look(read_to).unwrap();
        // Buried after the look listed the segments, its segment maybe not yet seen
        // (or, as here, one the look did not find): a rewrite must not drop it.
        let meanwhile = JobId::generate();
        tombstones.bury(meanwhile).unwrap();
        let mut growth = tombstones.appending.lock();
        let replaced = tombstones.replace(look, &growth);
        growth.rewritten(replaced).unwrap();
        drop(growth);
        let text = fs::read_to_string(dir.path().join(TOMBSTONES_FILE)).unwrap();
        assert_eq!(text, format!("{journaled}\n{meanwhile}\n"));
        // The next append goes after the new file's lines.
        let next = JobId::generate();
        tombstones.bury(next).unwrap();
        let live = tombstones.recover(|_| true, &mut |_| {}).unwrap();
        assert_eq!(live, HashSet::from([journaled, meanwhile, next]));
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
        assert!(!restarted.rewrite_due());
        restarted.rewrite_if_due().unwrap();
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
