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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::batch_thread::{BatchThread, Batches, closed, repeat};
use super::regular_file::{open_regular, read_regular};
use crate::jobs::JobId;

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

/// The file of idempotency keys, one JSON record per line, beside the journals.
pub const KEYS_FILE: &str = "idempotency-keys.jsonl";

/// Whether `name` is the name of a journal segment.
pub fn is_segment_name(name: &str) -> bool {
    name.starts_with("requests-") && name.ends_with(".jsonl")
}

/// Whether a segment of `len` bytes can be whole: every segment is made at a power of
/// two of at least `SEGMENT_MIN_BYTES` (see `OpenSegment::next_capacity` and
/// `write_batch`), so any other length means the file was cut short.
fn is_segment_size(len: u64) -> bool {
    len >= SEGMENT_MIN_BYTES && len.is_power_of_two()
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

impl StoredRequest {
    /// # Errors
    /// `InvalidData` with the reason when the request's journal line is damaged.
    pub fn check_intact(&self) -> io::Result<()> {
        match &self.damage {
            None => Ok(()),
            Some(damage) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                damage.to_string(),
            )),
        }
    }
}

/// A request to make durable, and what else must be durable with it.
pub struct Accept {
    pub id: JobId,
    pub request: Vec<u8>,
    /// A line for the idempotency-key file, for a request that came with a key.
    pub key_record: Option<Vec<u8>>,
}

type AcceptThen = Box<dyn FnOnce(io::Result<StoredRequest>) + Send>;

/// The thread that writes and syncs accepted requests.
pub struct Journal {
    thread: BatchThread<(Accept, AcceptThen)>,
}

impl Journal {
    /// Starts the writer for segments in `dir`, refusing requests while the file
    /// system has less than `min_free_space` bytes free.
    ///
    /// # Errors
    /// When the directory cannot be opened or the thread cannot be spawned.
    pub fn start(dir: PathBuf, min_free_space: u64) -> io::Result<Journal> {
        let floor = FreeSpaceFloor {
            dir: File::open(&dir)?,
            bytes: min_free_space,
        };
        let thread = BatchThread::start("journal", move |batches| {
            write_batches(&dir, &floor, &batches);
        })?;
        Ok(Journal { thread })
    }

    /// Makes `accept.request` durable; `then` learns where it is stored.
    pub fn accept(
        &self,
        accept: Accept,
        then: impl FnOnce(io::Result<StoredRequest>) + Send + 'static,
    ) {
        if let Err((_, then)) = self.thread.send((accept, Box::new(then))) {
            then(Err(closed()));
        }
    }

    /// Writes and answers every request queued so far, then stops the thread.
    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

/// The free space a file system must keep for requests to be accepted on it. Segments
/// are made at full size before they take requests, so a full disk would not stop a
/// request from being journaled; but its job could not store its result.
pub struct FreeSpaceFloor {
    pub dir: File,
    pub bytes: u64,
}

impl FreeSpaceFloor {
    /// # Errors
    /// `StorageFull` when less than the floor is free, or whatever `fstatvfs` answers.
    pub fn check(&self) -> io::Result<()> {
        let stats = rustix::fs::fstatvfs(&self.dir)?;
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        if free < self.bytes {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the results file system has {free} bytes free, below the \
                     --min-free-space floor of {} bytes",
                    self.bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The segment taking requests now.
struct OpenSegment {
    journal: Arc<Segment>,
    file: File,
    opened: Instant,
    written: u64,
    capacity: u64,
}

impl OpenSegment {
    /// Creates a segment of `capacity` zero bytes, durable with its directory entry.
    fn create(dir: &Path, capacity: u64) -> io::Result<OpenSegment> {
        let journal = Arc::new(Segment::new(
            dir.join(format!("requests-{}.jsonl", JobId::generate())),
        ));
        // From here a failure drops `journal`, which removes the half-made file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(journal.path())?;
        let zeros = vec![0u8; 64 * 1024];
        let mut left = capacity;
        while left > 0 {
            let chunk = left.min(zeros.len() as u64);
            (&file).write_all(&zeros[..chunk as usize])?;
            left -= chunk;
        }
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(OpenSegment {
            journal,
            file,
            opened: Instant::now(),
            written: 0,
            capacity,
        })
    }

    fn has_room_for(&self, bytes: u64) -> bool {
        self.written + bytes <= self.capacity
    }

    /// The size for the segment after this one: room for what this one took in its
    /// time, with some to spare, and doubled when it filled up early.
    fn next_capacity(&self) -> u64 {
        let wanted = if self.opened.elapsed() < SEGMENT_MAX_AGE {
            self.capacity * 2
        } else {
            self.written + self.written / 2
        };
        wanted
            .next_power_of_two()
            .clamp(SEGMENT_MIN_BYTES, SEGMENT_MAX_BYTES)
    }
}

/// The lines of one batch bound for one segment, and who waits for them.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    accepts: Vec<(StoredRequest, AcceptThen)>,
}

fn write_batches(dir: &Path, floor: &FreeSpaceFloor, batches: &Batches<(Accept, AcceptThen)>) {
    let mut segment: Option<OpenSegment> = None;
    let mut next_capacity = SEGMENT_MIN_BYTES;
    loop {
        // An open segment is sealed when it is old enough, even with no request coming.
        let timeout = segment
            .as_ref()
            .map(|open| SEGMENT_MAX_AGE.saturating_sub(open.opened.elapsed()));
        match batches.next(timeout) {
            Ok(batch) => match floor.check() {
                Ok(()) => write_batch(dir, batch, &mut segment, &mut next_capacity),
                Err(error) => refuse_all(batch, &error),
            },
            Err(RecvTimeoutError::Timeout) => {
                if let Some(sealed) = segment.take() {
                    next_capacity = sealed.next_capacity();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Syncs the batch's key records, writes its requests into the open segment (and new
/// ones as it fills), syncs each segment written, and answers each request.
fn write_batch(
    dir: &Path,
    batch: Vec<(Accept, AcceptThen)>,
    segment: &mut Option<OpenSegment>,
    next_capacity: &mut u64,
) {
    if let Some(old) = segment.take_if(|open| open.opened.elapsed() >= SEGMENT_MAX_AGE) {
        *next_capacity = old.next_capacity();
    }
    // First, so that no request is acknowledged before its key is durable. A key whose
    // request never made it is dropped at the next start-up.
    let key_records: Vec<u8> = batch
        .iter()
        .filter_map(|(accept, _)| accept.key_record.as_deref())
        .flat_map(|record| record.iter().copied().chain([b'\n']))
        .collect();
    if let Err(error) = append_key_records(&dir.join(KEYS_FILE), &key_records) {
        refuse_all(batch, &error);
        return;
    }
    let mut lines = Lines::default();
    let mut cannot_create: Option<io::Error> = None;
    for (Accept { id, request, .. }, then) in batch {
        if let Some(error) = &cannot_create {
            then(Err(repeat(error)));
            continue;
        }
        let line_len = (REQUEST_OFFSET + request.len() + JOURNAL_SUFFIX.len()) as u64;
        if !segment
            .as_ref()
            .is_some_and(|open| open.has_room_for(line_len))
        {
            if let Some(full) = segment.take() {
                *next_capacity = full.next_capacity();
                sync_lines(&full, std::mem::take(&mut lines));
            }
            match OpenSegment::create(dir, (*next_capacity).max(line_len.next_power_of_two())) {
                Ok(open) => *segment = Some(open),
                Err(error) => {
                    // The rest of the batch would fail the same way.
                    then(Err(repeat(&error)));
                    cannot_create = Some(error);
                    continue;
                }
            }
        }
        let open = segment.as_mut().expect("a segment with room is open");
        lines.bytes.extend_from_slice(JOURNAL_PREFIX.as_bytes());
        lines.bytes.extend_from_slice(id.to_string().as_bytes());
        lines.bytes.extend_from_slice(JOURNAL_INFIX.as_bytes());
        lines.bytes.extend_from_slice(&request);
        lines.bytes.extend_from_slice(JOURNAL_SUFFIX);
        let stored = StoredRequest {
            journal: Arc::clone(&open.journal),
            offset: open.written + REQUEST_OFFSET as u64,
            len: request.len(),
            damage: None,
        };
        open.written += line_len;
        lines.accepts.push((stored, then));
    }
    if segment
        .as_ref()
        .is_some_and(|open| !sync_lines(open, lines))
    {
        // After a failed write or sync the file's state is unknown: start a new one.
        segment.take();
    }
}

fn refuse_all(batch: Vec<(Accept, AcceptThen)>, error: &io::Error) {
    for (_, then) in batch {
        then(Err(repeat(error)));
    }
}

/// Writes the lines that end at the segment's write position, syncs them, and answers
/// their requests; false when that failed.
fn sync_lines(segment: &OpenSegment, lines: Lines) -> bool {
    if lines.accepts.is_empty() {
        return true;
    }
    let offset = segment.written - lines.bytes.len() as u64;
    let synced = segment
        .file
        .write_all_at(&lines.bytes, offset)
        .and_then(|()| segment.file.sync_data())
        .and_then(|()| still_linked(&segment.file));
    let ok = synced.is_ok();
    for (stored, then) in lines.accepts {
        match &synced {
            Ok(()) => then(Ok(stored)),
            Err(error) => then(Err(repeat(error))),
        }
    }
    ok
}

/// Synced data in a file that was removed (say, with the whole results directory) is
/// not kept: no restart would find it.
fn still_linked(file: &File) -> io::Result<()> {
    if file.metadata()?.nlink() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the journal file was removed from the results directory",
        ));
    }
    Ok(())
}

/// Appends the batch's idempotency-key records and syncs them. A torn last line (a
/// crash mid-write) belongs to a request that was never acknowledged; recovery skips it.
fn append_key_records(keys: &Path, records: &[u8]) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    // Opened per batch, so that a start-up compaction may replace the file; never a
    // FIFO or a directory put in its place, which would block or fail every batch.
    let (mut file, created) = match open_regular(keys, OpenOptions::new().append(true)) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => (
            open_regular(keys, OpenOptions::new().append(true).create(true))?,
            true,
        ),
        opened => (opened?, false),
    };
    // Records start on a line of their own even after a write that failed half way
    // left a fragment behind (empty lines are skipped).
    file.write_all(b"\n")?;
    file.write_all(records)?;
    file.sync_data()?;
    match keys.parent() {
        // A new file's name must be durable too.
        Some(dir) if created => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
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
        if part.ends_line {
            if let Some(id) = parse_line(text) {
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

#[cfg(test)]
mod tests;
