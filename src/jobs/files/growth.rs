//! When an append-only file of the results directory (the idempotency keys, the
//! tombstones) is due a rewrite without the lines no longer needed: past a floor, and
//! at twice the length the last rewrite left, so that each line is written at most
//! about twice more however long the server runs.

use std::io;

use super::regular_file::Replaced;

/// A file's length as its appends and rewrites left it, and when it is due again.
pub struct Growth {
    floor: u64,
    /// The length after the last append or rewrite.
    len: u64,
    /// Twice what the last rewrite (or the first look at the file) left; `None` until
    /// then.
    rewrite_at: Option<u64>,
    /// A rewrite's rename may not be durable: until the next append syncs the
    /// directory, a power cut could bring the old file back without that append.
    name_unsynced: bool,
}

impl Growth {
    pub fn new(floor: u64) -> Growth {
        Growth {
            floor,
            len: 0,
            rewrite_at: None,
            name_unsynced: false,
        }
    }

    /// The length the file had when this process first looked at it, all of it
    /// needed then: it is not rewritten before it has doubled.
    pub fn found(&mut self, len: u64) {
        self.len = len;
        self.rewrite_at = Some(len.saturating_mul(2));
    }

    /// An append is about to go after `len_before` bytes; whether the directory must
    /// be synced once it is, for the file's name (new, or renamed over the old one)
    /// to be durable too.
    pub fn appending(&mut self, len_before: u64) -> bool {
        if self.rewrite_at.is_none() {
            self.found(len_before);
        }
        len_before == 0 || self.name_unsynced
    }

    /// An append went in whole and durable, the directory synced if `appending` asked.
    pub fn appended(&mut self, len_before: u64, added: u64) {
        self.len = len_before + added;
        self.name_unsynced = false;
    }

    /// The length after the last append or rewrite, where its last line ends.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn due(&self) -> bool {
        self.len >= self.floor.max(self.rewrite_at.unwrap_or(0))
    }

    /// Takes in what a rewrite left, or that it failed (the old file whole as it was):
    /// either way the next one waits for the file to double again.
    pub fn rewritten(&mut self, outcome: io::Result<Replaced>) -> io::Result<()> {
        match outcome {
            Ok(replaced) => {
                self.len = replaced.len;
                self.rewrite_at = Some(replaced.len.saturating_mul(2));
                self.name_unsynced = replaced.directory_synced.is_err();
                Ok(())
            }
            Err(error) => {
                self.rewrite_at = Some(self.len.saturating_mul(2));
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(len: u64, directory_synced: bool) -> io::Result<Replaced> {
        Ok(Replaced {
            len,
            directory_synced: if directory_synced {
                Ok(())
            } else {
                Err(io::Error::other("refused"))
            },
        })
    }

    #[test]
    fn due_past_the_floor_then_at_twice_what_each_rewrite_left() {
        let mut growth = Growth::new(100);
        assert!(growth.appending(0), "a new file's name is synced");
        growth.appended(0, 99);
        assert!(!growth.due());
        assert!(!growth.appending(99));
        growth.appended(99, 1);
        assert!(growth.due());
        growth.rewritten(replaced(60, true)).unwrap();
        growth.appended(60, 59);
        assert!(!growth.due(), "below the floor");
        growth.rewritten(replaced(80, true)).unwrap();
        growth.appended(80, 79);
        assert!(!growth.due());
        growth.appended(159, 1);
        assert!(growth.due(), "at twice 80, past the floor");
    }

    #[test]
    fn what_start_up_found_waits_until_it_has_doubled() {
        let mut growth = Growth::new(100);
        growth.found(300);
        assert!(!growth.due());
        growth.appended(300, 299);
        assert!(!growth.due());
        growth.appended(599, 1);
        assert!(growth.due());
        // Without a first look, the first append's length counts as found.
        let mut growth = Growth::new(100);
        assert!(!growth.appending(300));
        growth.appended(300, 10);
        assert!(!growth.due());
    }

    #[test]
    fn a_failed_rewrite_waits_for_the_next_doubling_and_an_unsynced_rename_for_the_next_append() {
        let mut growth = Growth::new(100);
        growth.found(0);
        growth.appended(0, 200);
        assert!(growth.due());
        assert!(growth.rewritten(Err(io::Error::other("full"))).is_err());
        assert!(!growth.due());
        assert!(!growth.appending(200), "the old file was left as it was");
        growth.appended(200, 200);
        assert!(growth.due());
        growth.rewritten(replaced(50, false)).unwrap();
        assert!(growth.appending(50), "the rename is made durable");
        growth.appended(50, 10);
        assert!(!growth.appending(60));
    }
}
