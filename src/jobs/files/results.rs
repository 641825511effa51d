//! Reading a finished job's stored result, in whichever layout it was written: its
//! summary rows, its work tables a step at a time, and its team log to stream.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::regular_file::open_regular;
use super::result_file::{self, HEADER_LEN, ResultFile};
use super::{FileStore, StoreError, legacy_result};
use crate::jobs::JobId;
use crate::wall::{Step, Summary, Table, WorkSource, WorkTables};

/// A stored result, open, in whichever layout it was written.
pub(super) enum StoredResult {
    Indexed(ResultFile),
    Legacy(File),
}

/// A done job's work tables as the questions read them: a step at a time from a result
/// in the binary layout (its file, or its bytes from cluster mode's database), or parsed
/// whole from one in the earlier layout.
pub enum StoredWork {
    Indexed(ResultFile),
    Fetched(ResultFile<Arc<[u8]>>),
    Legacy(WorkTables),
}

impl WorkSource for StoredWork {
    type Error = StoreError;

    fn profile_count(&self) -> usize {
        match self {
            StoredWork::Indexed(result) => result.profile_count(),
            StoredWork::Fetched(result) => result.profile_count(),
            StoredWork::Legacy(tables) => tables.profile_count(),
        }
    }

    fn step_on(&self, table: Table, day: u64) -> Result<Option<Step>, StoreError> {
        match self {
            StoredWork::Indexed(result) => result.step_on(table, day),
            StoredWork::Fetched(result) => result.step_on(table, day),
            StoredWork::Legacy(tables) => {
                let Ok(step) = tables.step_on(table, day);
                Ok(step)
            }
        }
    }
}

/// Opens a result or log file; whatever is not a regular file is refused, never waited on.
pub(super) fn open_existing(path: &Path) -> Result<File, StoreError> {
    open_regular(path, fs::OpenOptions::new().read(true)).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => StoreError::Missing,
        _ => StoreError::Io(error),
    })
}

impl FileStore {
    /// Opens a job's result and tells its layout by its first bytes; a result in the
    /// binary layout has its header and trailer checked. The caller holds the job's lock.
    pub(super) fn open_result(&self, id: JobId) -> Result<StoredResult, StoreError> {
        let file = open_existing(&self.path(id, "result"))?;
        let mut head = [0; HEADER_LEN as usize];
        let read = result_file::read_start(&file, &mut head)?;
        if result_file::is_this_layout(&head[..read]) {
            if read < head.len() {
                return Err(StoreError::Damaged("its header is cut short".to_owned()));
            }
            Ok(StoredResult::Indexed(ResultFile::open(file, &head)?))
        } else if head[..read].starts_with(b"{") {
            Ok(StoredResult::Legacy(file))
        } else {
            Err(StoreError::Damaged("it is not a result file".to_owned()))
        }
    }

    /// A done job's summary with the rows of profiles `first + 1 ..= first + limit`
    /// (those that exist), and how many profiles the wall has. A result in the binary
    /// layout is read no further than those rows.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub(super) fn read_summary(
        &self,
        id: JobId,
        first: usize,
        limit: usize,
    ) -> Result<(Summary, usize), StoreError> {
        let _guard = self.lock_job(id);
        match self.open_result(id)? {
            StoredResult::Indexed(result) => result.summary(first, limit),
            StoredResult::Legacy(file) => legacy_result::summary(&file, first, limit),
        }
    }

    /// The work tables of a done job, ready for questions.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not a whole done job's.
    pub(super) fn open_work(&self, id: JobId) -> Result<StoredWork, StoreError> {
        let _guard = self.lock_job(id);
        match self.open_result(id)? {
            StoredResult::Indexed(result) => Ok(StoredWork::Indexed(result)),
            StoredResult::Legacy(file) => legacy_result::work(&file).map(StoredWork::Legacy),
        }
    }

    /// A finished job's request, as its result keeps it; `None` for a result written
    /// without it (the line-based layout, or the binary one before version 2).
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the result is not whole.
    pub(super) fn read_kept_request(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let _guard = self.lock_job(id);
        match self.open_result(id)? {
            StoredResult::Indexed(result) => result.request(),
            StoredResult::Legacy(_) => Ok(None),
        }
    }

    /// The team log of a done job, readable to its end and no further, and its length
    /// in bytes, so that it can be streamed. A wall that needed no work has an empty log.
    ///
    /// # Errors
    /// `Missing`, `Io`, or `Damaged` when the log is not where its result says, or not whole.
    pub(super) fn open_log(&self, id: JobId) -> Result<(io::Take<File>, u64), StoreError> {
        let _guard = self.lock_job(id);
        let (file, length) = match self.open_result(id)? {
            StoredResult::Indexed(result) => match result.log_file_len() {
                None => result.into_inline_log()?,
                Some(length) => {
                    let file =
                        open_regular(&self.path(id, "log"), fs::OpenOptions::new().read(true))
                            .map_err(|error| match error.kind() {
                                io::ErrorKind::NotFound => {
                                    StoreError::Damaged("the team log file is missing".to_owned())
                                }
                                _ => StoreError::Io(error),
                            })?;
                    if file.metadata()?.len() != length {
                        return Err(StoreError::Damaged(
                            "the team log file is not the one written".to_owned(),
                        ));
                    }
                    (file, length)
                }
            },
            // Earlier versions kept it in `<id>.log` if there is one, whatever the setting.
            StoredResult::Legacy(result) => {
                match open_regular(&self.path(id, "log"), fs::OpenOptions::new().read(true)) {
                    Ok(file) => {
                        let length = file.metadata()?.len();
                        (file, length)
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        legacy_result::inline_log(result)?
                    }
                    Err(error) => return Err(StoreError::Io(error)),
                }
            }
        };
        Ok((file.take(length), length))
    }
}
