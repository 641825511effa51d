//! The results directory's lock: one server at a time uses a results directory, or two
//! would run the same queued jobs (each recovers the other's journal) and race on its
//! files. An advisory `flock` on a file in the directory, held for the life of the
//! process (the kernel lets go of it however the process ends, `kill -9` included).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};

use super::regular_file::open_regular;

/// The lock file, inside the results directory. It is never removed: removing it would
/// let a second server lock a new file while the first still holds the old one.
pub const LOCK_FILE: &str = ".lock";

/// Why the directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; `holder` is what it wrote about itself.
    #[error("it is in use by another icewall server ({holder})")]
    Held { holder: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// How long a look that found the directory in place stands for `lately_in_place`: it
/// is asked on every read of an answer kept in memory, and a look is a system call.
const IN_PLACE_FOR_MS: u64 = 100;

/// Held while it lives; the lock goes with the file descriptor.
pub struct DirectoryLock {
    file: File,
    /// When a look last found the directory in place, in `coarse_clock::monotonic_millis`
    /// (0: never).
    seen_in_place: AtomicU64,
}

impl DirectoryLock {
    /// Takes the lock of `dir` without waiting, then writes `holder` (who this process
    /// is) into the lock file, so that a server refused later can name it.
    ///
    /// # Errors
    /// `Held` when another process has it; `Io` when the file cannot be made or locked.
    pub fn acquire(dir: &Path, holder: &str) -> Result<DirectoryLock, LockError> {
        let mut file = open_regular(
            &dir.join(LOCK_FILE),
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut written = String::new();
                file.read_to_string(&mut written)?;
                let holder = match written.trim() {
                    "" => "one that has not written its pid yet".to_owned(),
                    holder => holder.to_owned(),
                };
                return Err(LockError::Held { holder });
            }
            Err(error) => return Err(LockError::Io(error.into())),
        }
        file.set_len(0)?;
        file.write_all_at(format!("{holder}\n").as_bytes(), 0)?;
        Ok(DirectoryLock {
            file,
            seen_in_place: AtomicU64::new(0),
        })
    }

    /// Whether the lock file still has a name, that is the directory was not removed
    /// from under the server: a check on the open file that never blocks.
    pub fn still_in_place(&self) -> bool {
        rustix::fs::fstat(&self.file).is_ok_and(|stat| stat.st_nlink > 0)
    }

    /// `still_in_place`, or true when a look found it so less than `IN_PLACE_FOR_MS` ago:
    /// a directory removed from under the server shows within that.
    pub fn lately_in_place(&self) -> bool {
        let now = crate::coarse_clock::monotonic_millis();
        let seen = self.seen_in_place.load(Ordering::Relaxed);
        if seen > 0 && now.saturating_sub(seen) < IN_PLACE_FOR_MS {
            return true;
        }
        let in_place = self.still_in_place();
        if in_place {
            self.seen_in_place.store(now.max(1), Ordering::Relaxed);
        }
        in_place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryLock::acquire(dir.path(), "pid 1, listening on a").unwrap();
        match DirectoryLock::acquire(dir.path(), "pid 2") {
            Err(LockError::Held { holder }) => assert_eq!(holder, "pid 1, listening on a"),
            Err(error) => panic!("{error}"),
            Ok(_) => panic!("two holders of one directory"),
        }
        assert!(first.still_in_place());
        drop(first);
        let _second = DirectoryLock::acquire(dir.path(), "pid 2").unwrap();
        let written = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(written, "pid 2\n");
        assert!(_second.lately_in_place());
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        assert!(!_second.still_in_place());
        // A look that found it in place stands for a while, then shows the removal.
        assert!(_second.lately_in_place());
        // A tick more: the coarse clock reads up to one behind.
        std::thread::sleep(Duration::from_millis(IN_PLACE_FOR_MS + 20));
        assert!(!_second.lately_in_place());
        assert!(!_second.lately_in_place());
    }
}
