//! Reading a segment back at start-up, line by line, so that damage on disk costs only
//! the lines it hits and a job whose id can still be read fails with the reason.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::{
    JOURNAL_INFIX, JOURNAL_PREFIX, JOURNAL_SUFFIX, REQUEST_OFFSET, SEGMENT_MIN_BYTES, Segment,
    StoredRequest,
};
use crate::jobs::JobId;
use crate::jobs::files::regular_file::read_regular;

/// Whether a segment of `len` bytes can be whole: every segment is made at a power of
/// two of at least `SEGMENT_MIN_BYTES` (see `OpenSegment::next_capacity` and
/// `write_batch`), so any other length means the file was cut short.
fn is_segment_size(len: u64) -> bool {
    len >= SEGMENT_MIN_BYTES && len.is_power_of_two()
}

/// The requests in a segment. Each line is read on its own, so a damaged line costs
/// only itself. The acknowledged lines all end at or before the last newline: after it
/// there is at most a line a crash cut short before its sync (never acknowledged, so
/// reported and skipped), then the zeros no batch reached. Before it, a NUL is damage:
/// the bytes between newlines are split at runs of NULs, the part that ends at the
/// newline is a candidate line, and every part that is not a whole line is damaged. A
/// damaged part whose job id can be read comes back with `damage` set, so its job
/// fails with the reason (its client holds the id); the others are reported. A segment
/// whose length is not one the writer makes was cut short, and is reported too.
///
/// # Errors
/// When the file cannot be read, or is not a regular file.
pub fn read_segment(
    journal: &Arc<Segment>,
    warn: &mut impl FnMut(String),
) -> io::Result<Vec<(JobId, StoredRequest)>> {
    let bytes = read_regular(journal.path())?;
    let path = journal.path().display();
    let cut_short = !is_segment_size(bytes.len() as u64);
    if cut_short {
        warn(format!(
            "{path}: it is {} bytes long, a size no segment is made at: it was cut short, \
             and any requests after its end are lost",
            bytes.len()
        ));
    }
    let acknowledged_end = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let mut intact: BTreeMap<JobId, StoredRequest> = BTreeMap::new();
    let mut damaged: BTreeMap<JobId, StoredRequest> = BTreeMap::new();
    for part in line_parts(&bytes) {
        let text = &bytes[part.start..part.end];
        if part.ends_line
            && let Some(id) = parse_line(text)
        {
            intact.insert(
                id,
                StoredRequest {
                    journal: Arc::clone(journal),
                    offset: (part.start + REQUEST_OFFSET) as u64,
                    len: text.len() - REQUEST_OFFSET - JOURNAL_SUFFIX.len(),
                    damage: None,
                },
            );
            continue;
        }
        let start = part.start;
        let id = readable_id(text);
        let named = id.map_or_else(String::new, |id| format!(" (job {id})"));
        if start >= acknowledged_end && !(cut_short && part.end == bytes.len()) {
            warn(format!(
                "{path}: skipping a damaged line at byte {start}{named}: it has no line \
                 end, so a crash cut it short before it was acknowledged"
            ));
            continue;
        }
        let Some(id) = id else {
            warn(format!(
                "{path}: skipping a damaged line at byte {start}: its job id cannot be read"
            ));
            continue;
        };
        warn(format!(
            "{path}: a damaged line at byte {start} (job {id}): the job is marked failed"
        ));
        let damage = format!(
            "its line in the request journal was damaged on disk (byte {start} of {})",
            journal
                .path()
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
        );
        damaged.insert(
            id,
            StoredRequest {
                journal: Arc::clone(journal),
                offset: start as u64,
                len: 0,
                damage: Some(damage.into()),
            },
        );
    }
    // A whole line wins over a damaged copy of it (a NUL run before a rewritten line).
    damaged.retain(|id, _| !intact.contains_key(id));
    let mut requests: Vec<(JobId, StoredRequest)> = intact.into_iter().chain(damaged).collect();
    requests.sort_by_key(|(_, stored)| stored.offset);
    Ok(requests)
}

/// Every job id a start-up could find in the segment at `path`, whole line or damaged:
/// read without taking the segment in hand, which would remove its file once let go.
///
/// # Errors
/// When the file cannot be read, or is not a regular file.
pub fn mentioned_ids(path: &Path) -> io::Result<Vec<JobId>> {
    let bytes = read_regular(path)?;
    Ok(line_parts(&bytes)
        .filter_map(|part| readable_id(&bytes[part.start..part.end]))
        .collect())
}

/// A stretch of a segment with no NUL and no newline in it; `end` includes the newline
/// when the stretch ends at one.
struct LinePart {
    start: usize,
    end: usize,
    ends_line: bool,
}

/// The NUL-free stretches of `bytes`, split after each newline.
fn line_parts(bytes: &[u8]) -> impl Iterator<Item = LinePart> + '_ {
    let mut position = 0;
    std::iter::from_fn(move || {
        while bytes.get(position) == Some(&0) {
            position += 1;
        }
        if position >= bytes.len() {
            return None;
        }
        let start = position;
        let stop = bytes[start..]
            .iter()
            .position(|&byte| byte == 0 || byte == b'\n')
            .map_or(bytes.len(), |at| start + at);
        let ends_line = bytes.get(stop) == Some(&b'\n');
        let end = if ends_line { stop + 1 } else { stop };
        position = end;
        Some(LinePart {
            start,
            end,
            ends_line,
        })
    })
}

/// The job id of a whole journal line, `{"job_id":"<id>","request":<request>}\n`.
fn parse_line(line: &[u8]) -> Option<JobId> {
    line.strip_suffix(JOURNAL_SUFFIX)
        .filter(|line| line.len() > REQUEST_OFFSET)
        .and_then(|_| readable_id(line))
}

/// The job id at the head of a line, if the head is intact.
fn readable_id(line: &[u8]) -> Option<JobId> {
    let rest = line.strip_prefix(JOURNAL_PREFIX.as_bytes())?;
    let (id, rest) = rest.split_at_checked(36)?;
    let id = std::str::from_utf8(id).ok()?.parse::<JobId>().ok()?;
    rest.starts_with(JOURNAL_INFIX.as_bytes()).then_some(id)
}
