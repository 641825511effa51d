//! Results written into unnamed files (`O_TMPFILE`) in the results directory, and
//! linked into place as `<id>.result` once the group sync has made them durable: the
//! big directory sees one new name per job and no other directory operation (no file
//! made in `tmp/`, no rename out of it). A crash before the link leaves nothing on disk
//! (the file system frees an unnamed file with its last descriptor, or at the next
//! mount), so the journal reruns the job; after it, the name points at a whole,
//! synced file. A file system that refuses unnamed files, or a process that cannot
//! link them (without `/proc`), gets the named temporaries of `tmp/` instead.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

/// Whether results are written into unnamed files, and how many are open now.
pub struct UnnamedResults {
    /// Cleared when the file system refuses them: every result takes the named path.
    usable: AtomicBool,
    open: Arc<AtomicUsize>,
    /// Most unnamed files open at once. Each holds a descriptor from its write until
    /// its link, after the next sync; past this, results take the named path, which
    /// holds none, so that a slow disk cannot use up the descriptors the HTTP side needs.
    max_open: usize,
}

/// A written result without a name yet; its descriptor is its only hold on the disk.
pub struct UnnamedFile {
    file: File,
    open: Arc<AtomicUsize>,
}

impl UnnamedResults {
    /// Tries the whole path once in `dir` (an unnamed file made, written, linked and
    /// removed); when any step fails, results take the named path and the second value
    /// says why, for the log.
    pub fn probe(dir: &Path) -> (UnnamedResults, Option<String>) {
        let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let max_open = open_files.map_or(4096, |limit| {
            usize::try_from(limit / 4).unwrap_or(usize::MAX).max(16)
        });
        let results = UnnamedResults {
            usable: AtomicBool::new(true),
            open: Arc::new(AtomicUsize::new(0)),
            max_open,
        };
        let probe = super::probe_path(dir);
        let tried = results
            .create(dir)
            .and_then(|file| file.ok_or_else(|| io::Error::other("refused")))
            .and_then(|file| {
                io::Write::write_all(&mut file.file(), b"probe")?;
                file.link(&probe)?;
                std::fs::remove_file(&probe)
            });
        match tried {
            // A full disk tells nothing of unnamed files: they are tried with the first
            // result, which takes the named path if they are refused then.
            Ok(()) => (results, None),
            Err(error) if error.kind() == io::ErrorKind::StorageFull => {
                let _ = std::fs::remove_file(&probe);
                (results, None)
            }
            Err(error) => {
                results.usable.store(false, Ordering::Relaxed);
                let note = format!(
                    "results are written in {}/tmp/ and renamed into place, one directory \
                     operation more per job than with an unnamed file (O_TMPFILE), which \
                     this file system or process refuses: {error}",
                    dir.display()
                );
                (results, Some(note))
            }
        }
    }

    /// Sends every result down the named path from now on.
    #[cfg(test)]
    pub fn refuse(&self) {
        self.usable.store(false, Ordering::Relaxed);
    }

    /// An unnamed file in `dir` to write a result into, or `None` when the result is to
    /// take the named path: the file system refuses unnamed files, or `max_open` are
    /// open already.
    ///
    /// # Errors
    /// Whatever else `open` answers (say, the directory is gone).
    pub fn create(&self, dir: &Path) -> io::Result<Option<UnnamedFile>> {
        if !self.usable.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_open {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        // Counted from here; the file gives its place back when dropped.
        let counted = |file| UnnamedFile {
            file,
            open: Arc::clone(&self.open),
        };
        let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
        match rustix::fs::openat(CWD, dir, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => Ok(Some(counted(File::from(fd)))),
            Err(error) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                match error {
                    // A kernel or file system without `O_TMPFILE` answers one of these
                    // (a kernel that predates it takes the flag for `O_DIRECTORY`).
                    Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL => {
                        self.usable.store(false, Ordering::Relaxed);
                        Ok(None)
                    }
                    Errno::MFILE | Errno::NFILE => Ok(None),
                    other => Err(other.into()),
                }
            }
        }
    }
}

impl UnnamedFile {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file the name `path`. A file already there (the damaged result of a
    /// job run again) is replaced: not atomically, but its job's request stays in the
    /// journal until the sync after this, so a crash in between runs it once more.
    ///
    /// # Errors
    /// Whatever `linkat` or `unlink` answers.
    pub fn link(&self, path: &Path) -> io::Result<()> {
        let source = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let link = || rustix::fs::linkat(CWD, &*source, CWD, path, AtFlags::SYMLINK_FOLLOW);
        match link() {
            Err(Errno::EXIST) => {
                std::fs::remove_file(path)?;
                link().map_err(io::Error::from)
            }
            linked => linked.map_err(io::Error::from),
        }
    }
}

impl Drop for UnnamedFile {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_most_open_results_take_the_named_path_until_one_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut results, refused) = UnnamedResults::probe(dir.path());
        assert_eq!(refused, None);
        results.max_open = 2;
        let first = results.create(dir.path()).unwrap().expect("room for one");
        let second = results.create(dir.path()).unwrap().expect("room for two");
        assert!(results.create(dir.path()).unwrap().is_none());
        first.link(&dir.path().join("first")).unwrap();
        drop(first);
        let third = results.create(dir.path()).unwrap();
        assert!(third.is_some(), "a linked file gives its place back");
        drop((second, third));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["first"], "the unlinked ones left nothing");
    }

    #[test]
    fn a_directory_where_the_probe_fails_sends_results_down_the_named_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let (results, refused) = UnnamedResults::probe(&missing);
        let refused = refused.expect("a reason for the log");
        assert!(
            refused.contains("tmp/") && refused.contains("O_TMPFILE"),
            "{refused}"
        );
        std::fs::create_dir(&missing).unwrap();
        assert!(results.create(&missing).unwrap().is_none());
    }
}
