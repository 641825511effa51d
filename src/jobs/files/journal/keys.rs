//! The idempotency-key file: each batch's key records appended and synced before its
//! requests are acknowledged, and the file rewritten with the live records alone once
//! it has doubled since the last rewrite, so that it does not grow for as long as the
//! server runs with the records of jobs long removed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::KEYS_FILE;
use crate::jobs::files::growth::Growth;
use crate::jobs::files::regular_file::{Replaced, open_for_append, replace_durably};
use crate::jobs::files::sync_directory;
use crate::jobs::idempotency::KeyRecord;
use crate::jobs::storage::LiveKeys;

/// The key file as the journal's writer thread sees it; appends and rewrites both run
/// there, so a rewrite never races an append.
pub struct KeysFile {
    path: PathBuf,
    /// Set once the server's table of keys is filled from what start-up found; until
    /// then nothing is rewritten.
    live: Arc<OnceLock<LiveKeys>>,
    /// What start-up left, as the first append finds it, is live: it is not rewritten
    /// before it has doubled.
    growth: Growth,
}

impl KeysFile {
    pub fn new(dir: &Path, live: Arc<OnceLock<LiveKeys>>, floor: u64) -> KeysFile {
        KeysFile {
            path: dir.join(KEYS_FILE),
            live,
            growth: Growth::new(floor),
        }
    }

    /// Appends a batch's key records and syncs them. A torn last line (a crash
    /// mid-write) belongs to a request that was never acknowledged; start-up skips it.
    ///
    /// # Errors
    /// Whatever the file system answers; then no record of the batch counts as kept.
    pub fn append(&mut self, records: &[u8]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Opened per batch, so that a rewrite may replace the file; never a FIFO or a
        // directory put in its place, which would block or fail every batch.
        let (mut file, len_before) = open_for_append(&self.path)?;
        let sync_name = self.growth.appending(len_before);
        // Records start on a line of their own even after a write that failed half way
        // left a fragment behind (empty lines are skipped).
        file.write_all(b"\n")?;
        file.write_all(records)?;
        file.sync_data()?;
        if sync_name {
            sync_directory(self.directory())?;
        }
        self.growth.appended(len_before, 1 + records.len() as u64);
        Ok(())
    }

    /// Rewrites the file with the live records alone once it has grown past the floor
    /// and to twice what the last rewrite left: each record is written at most about
    /// twice more, however long the server runs.
    ///
    /// # Errors
    /// When the rewrite failed; the file is then whole as it was, and the next growth
    /// to twice its length tries again.
    pub fn rewrite_if_grown(&mut self) -> io::Result<()> {
        let Some(live) = self.live.get() else {
            return Ok(());
        };
        if !self.growth.due() {
            return Ok(());
        }
        let replaced = replace_keys_file(&self.path, &live());
        self.growth.rewritten(replaced)
    }

    fn directory(&self) -> &Path {
        self.path
            .parent()
            .expect("the key file is in the results directory")
    }
}

/// Replaces the key file at `path` with `records`, a JSON line each, durably.
///
/// # Errors
/// When the new file could not be written, synced or renamed; the old one is then as
/// it was.
pub fn replace_keys_file(path: &Path, records: &[KeyRecord]) -> io::Result<Replaced> {
    replace_durably(
        path,
        &path.with_file_name(format!("{KEYS_FILE}.tmp")),
        |out| {
            for record in records {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        },
    )
}
