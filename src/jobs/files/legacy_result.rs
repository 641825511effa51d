//! Results in the line-based layout of earlier versions, still read so that an upgrade
//! keeps its finished jobs: line 1 is the `/api/get_results` body, line 2 the work
//! tables as JSON, then (inline) the team log. They answer as they did before, and cost
//! what they did: a question parses the whole work tables. New results use `result_file`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::StoreError;
use crate::jobs::JobState;
use crate::wall::{Summary, WorkTables};

/// Line 1, with the summary as `T` (`IgnoredAny` when only the state matters).
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum StatusLine<T> {
    Done { data: T },
    Failed { reason: String },
}

fn status_line(file: &File) -> Result<Vec<u8>, StoreError> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(StoreError::Damaged(
            "the status line is incomplete".to_owned(),
        ));
    }
    Ok(line)
}

/// The state a stored result shows, or why it cannot be trusted. The layout has no
/// length or checksum: a done job's file must end a line, after its status line.
/// (One cut right after its work tables cannot be told from a job whose log is empty
/// or kept in `<id>.log`; the binary layout has a trailer for that.)
pub fn recovered_state(file: &File) -> Result<JobState, String> {
    let line = status_line(file).map_err(|error| error.to_string())?;
    let past_status_line = file
        .metadata()
        .is_ok_and(|metadata| metadata.len() > line.len() as u64 + 1);
    match serde_json::from_slice::<StatusLine<IgnoredAny>>(&line) {
        Ok(StatusLine::Failed { reason }) => Ok(JobState::Failed(reason.into())),
        Ok(StatusLine::Done { .. }) if past_status_line && ends_with_newline(file) => {
            Ok(JobState::Done)
        }
        Ok(StatusLine::Done { .. }) => Err("its result file is incomplete".to_owned()),
        Err(error) => Err(format!("its result file is damaged: {error}")),
    }
}

fn ends_with_newline(mut file: &File) -> bool {
    let mut last = [0u8];
    file.seek(SeekFrom::End(-1))
        .and_then(|_| file.read_exact(&mut last))
        .is_ok_and(|()| last[0] == b'\n')
}

/// The summary with the rows of profiles `first + 1 ..= first + limit`, and how many
/// profiles there are.
///
/// # Errors
/// `Damaged` when line 1 is not a done job's summary, `Io` when it cannot be read.
pub fn summary(file: &File, first: usize, limit: usize) -> Result<(Summary, usize), StoreError> {
    let line = status_line(file)?;
    match serde_json::from_slice::<StatusLine<Summary>>(&line) {
        Ok(StatusLine::Done { data: mut summary }) => {
            let total = summary.profiles.len();
            let first = first.min(total);
            let end = first + limit.min(total - first);
            summary.profiles.truncate(end);
            summary.profiles.drain(..first);
            Ok((summary, total))
        }
        Ok(StatusLine::Failed { .. }) => Err(StoreError::Damaged(
            "it holds a failure, not a finished wall".to_owned(),
        )),
        Err(error) => Err(StoreError::Damaged(error.to_string())),
    }
}

/// The work tables of line 2.
///
/// # Errors
/// `Damaged` when line 2 is not valid work tables, `Io` when it cannot be read.
pub fn work(file: &File) -> Result<WorkTables, StoreError> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    reader.skip_until(b'\n')?;
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    serde_json::from_slice(&line).map_err(|error| StoreError::Damaged(error.to_string()))
}

/// The inline team log: the file positioned at its start, and its length. A wall that
/// needed no work has an empty log; any other must have one.
///
/// # Errors
/// `Damaged` when the log is missing, `Io` when the file cannot be read.
pub fn inline_log(file: File) -> Result<(File, u64), StoreError> {
    let mut reader = BufReader::new(&file);
    reader.seek(SeekFrom::Start(0))?;
    let start = (reader.skip_until(b'\n')? + reader.skip_until(b'\n')?) as u64;
    let end = file.metadata()?.len();
    if end <= start && summary(&file, 0, 0)?.0.cost != 0 {
        return Err(StoreError::Damaged("the team log is missing".to_owned()));
    }
    let mut file = file;
    file.seek(SeekFrom::Start(start.min(end)))?;
    Ok((file, end.saturating_sub(start)))
}
