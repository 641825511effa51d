//! The request journal: accepted requests are appended to preallocated segment files
//! and made durable by one `fdatasync` per batch, before any of them is acknowledged.
//!
//! A segment is created at its full size, filled with zeros and synced, so that writing
//! into it later changes no metadata: the `fdatasync` that makes a batch durable writes
//! the batch's data blocks and nothing else (no inode, bitmap or directory block, and on
//! a journaled file system no journal commit). Requests are JSON, which never holds a
//! NUL byte or a raw newline: a NUL in a segment is either the zeros no batch reached
//! or damage, and each line is read on its own, so damage costs only the lines it hits.
//!
//! A segment takes requests for at most `SEGMENT_MAX_AGE`; then it is sealed, and it is
//! removed as soon as no job needs it any more: every job in it has its result in place
//! (unless a result could not be stored: then it is kept for a restart to rerun).

mod keys;
mod read;
mod write;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

pub use self::keys::replace_keys_file;
pub use self::read::{mentioned_ids, read_segment};
pub use self::write::{Accept, FreeSpaceFloor, Journal};

/// How long a segment takes new requests. Short, so that a segment (and with it the
/// need for a tombstone when one of its jobs is deleted, see `Registry::is_pinned`) is
/// let go soon after its jobs finish, even when requests trickle in.
const SEGMENT_MAX_AGE: Duration = Duration::from_secs(1);

/// The size of a new segment follows the traffic of the one before it, within these.
pub(super) const SEGMENT_MIN_BYTES: u64 = 64 * 1024;
const SEGMENT_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A journal line is `{"job_id":"<id>","request":<request JSON>}`; the request starts
/// at this fixed offset, so it can be read back without parsing the line.
pub const JOURNAL_PREFIX: &str = r#"{"job_id":""#;
pub const JOURNAL_INFIX: &str = r#"","request":"#;
pub const REQUEST_OFFSET: usize = JOURNAL_PREFIX.len() + 36 + JOURNAL_INFIX.len();
const JOURNAL_SUFFIX: &[u8] = b"}\n";

/// The start of the name of a segment being made: start-up removes it without a word.
pub const UNFINISHED_SEGMENT_PREFIX: &str = ".requests-";

/// The file of idempotency keys, one JSON record per line, beside the journals.
pub const KEYS_FILE: &str = "idempotency-keys.jsonl";

/// Whether `name` is the name of a journal segment.
pub fn is_segment_name(name: &str) -> bool {
    name.starts_with("requests-") && name.ends_with(".jsonl")
}

/// A journal segment file. It is removed when the last job that needs it lets go,
/// unless some job's result could not be stored (then a restart reruns it).
pub struct Segment {
    path: PathBuf,
    keep: AtomicBool,
}

impl Segment {
    pub fn new(path: PathBuf) -> Segment {
        Segment {
            path,
            keep: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file past the end of this process.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    pub fn is_kept(&self) -> bool {
        self.keep.load(Ordering::SeqCst)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Segments kept for a restart (a result could not be stored, or a sync failed), held
/// for as long as the store lives: while held, the jobs in them stay pinned (see
/// `Registry::is_pinned`), so deleting or retiring one leaves a tombstone, or the
/// restart would run it again.
#[derive(Default)]
pub struct KeptSegments(Mutex<Vec<Arc<Segment>>>);

impl KeptSegments {
    /// Keeps `segment` past the end of this process, and holds it.
    pub fn hold(&self, segment: &Arc<Segment>) {
        segment.keep();
        let mut held = self.0.lock();
        if !held.iter().any(|kept| Arc::ptr_eq(kept, segment)) {
            held.push(Arc::clone(segment));
        }
    }
}

/// Where an accepted request is on disk.
#[derive(Clone)]
pub struct StoredRequest {
    pub journal: Arc<Segment>,
    pub offset: u64,
    pub len: usize,
    /// Why the line holding it is damaged, for a line whose job id could still be read:
    /// its job then fails with this reason instead of vanishing.
    pub damage: Option<Arc<str>>,
}

#[cfg(test)]
mod tests;
