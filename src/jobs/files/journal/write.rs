//! The journal's writer thread: accepted requests are written into preallocated
//! segments, synced once per batch, and each caller learns where its request is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

use super::keys::KeysFile;
use super::{
    JOURNAL_INFIX, JOURNAL_PREFIX, JOURNAL_SUFFIX, REQUEST_OFFSET, SEGMENT_MAX_AGE,
    SEGMENT_MAX_BYTES, SEGMENT_MIN_BYTES, Segment, StoredRequest, UNFINISHED_SEGMENT_PREFIX,
};
use crate::jobs::JobId;
use crate::jobs::files::batch_thread::{BatchThread, Batches, closed, repeat};
use crate::jobs::storage::LiveKeys;

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
    live_keys: Arc<OnceLock<LiveKeys>>,
}

impl Journal {
    /// Starts the writer for segments in `dir`, refusing requests while the file
    /// system has less than `min_free_space` bytes free; the key file is rewritten
    /// when it has grown past `compaction_floor` bytes (see `KeysFile`).
    ///
    /// # Errors
    /// When the directory cannot be opened or the thread cannot be spawned.
    pub fn start(dir: PathBuf, min_free_space: u64, compaction_floor: u64) -> io::Result<Journal> {
        let floor = FreeSpaceFloor {
            dir: File::open(&dir)?,
            bytes: min_free_space,
        };
        let spares = Spares::start(dir.clone())?;
        let live_keys = Arc::default();
        let mut keys = KeysFile::new(&dir, Arc::clone(&live_keys), compaction_floor);
        let thread = BatchThread::start("journal", move |batches| {
            write_batches(&dir, &mut keys, &floor, &spares, &batches);
        })?;
        Ok(Journal { thread, live_keys })
    }

    /// From now on the key file keeps, when it is rewritten, the records `live` gives.
    pub fn track_keys(&self, live: LiveKeys) {
        let _ = self.live_keys.set(live);
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
    /// Creates a segment of `capacity` zero bytes, durable with its directory entry. It
    /// is made under a name start-up removes without a word, and takes a segment's name
    /// once whole: a crash while it is filled leaves nothing that reads as a segment
    /// cut short.
    fn create(dir: &Path, capacity: u64) -> io::Result<OpenSegment> {
        let name = format!("requests-{}.jsonl", JobId::generate());
        let unfinished = dir.join(format!("{UNFINISHED_SEGMENT_PREFIX}{name}"));
        let made = fill_with_zeros(&unfinished, capacity)
            .and_then(|file| fs::rename(&unfinished, dir.join(&name)).map(|()| file));
        let file = made.inspect_err(|_| {
            let _ = fs::remove_file(&unfinished);
        })?;
        // From here a failure drops `journal`, which removes the file.
        let journal = Arc::new(Segment::new(dir.join(name)));
        File::open(dir)?.sync_all()?;
        Ok(OpenSegment {
            journal,
            file,
            opened: Instant::now(),
            written: 0,
            capacity,
        })
    }

    /// Checks that the file is still the one its name gives in the results directory:
    /// synced data in a file no restart would find (removed, say with the whole results
    /// directory, or in a directory moved aside) is not kept.
    fn check_in_place(&self) -> io::Result<()> {
        let open = self.file.metadata()?;
        let moved = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the journal file is no longer in the results directory (removed, or the \
                 directory moved)",
            )
        };
        match fs::metadata(self.journal.path()) {
            Ok(named) if named.dev() == open.dev() && named.ino() == open.ino() => Ok(()),
            Ok(_) => Err(moved()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(moved()),
            Err(error) => Err(error),
        }
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

/// Segments made ahead of need, on a thread of their own, so that a full or old segment
/// is replaced by a ready one: making one (up to 4 MiB of zeros, then two syncs: tens of
/// milliseconds on a busy disk) would hold up its batch and every accept behind it.
/// A spare is asked for each time a segment is taken, and let go after a second with no
/// segment open. The first is asked for when the first segment is made, after
/// start-up's recovery, which takes every segment it finds for a leftover.
struct Spares {
    /// At most one: a spare made while another waits replaces it (and removes its file).
    ready: Arc<Mutex<Option<OpenSegment>>>,
    /// The capacity of the next spare to make, or `None` to let go of the one waiting.
    maker: BatchThread<Option<u64>>,
}

impl Spares {
    fn start(dir: PathBuf) -> io::Result<Spares> {
        let ready: Arc<Mutex<Option<OpenSegment>>> = Arc::new(Mutex::new(None));
        let made = Arc::clone(&ready);
        let maker = BatchThread::start("journal-spare", move |wishes| {
            while let Ok(wishes) = wishes.next(None) {
                // Only the latest wish counts. A spare that cannot be made now is made by
                // the journal thread when needed, which reports why it failed.
                let spare = match wishes.last() {
                    Some(&Some(capacity)) => {
                        let waiting = made.lock().as_ref().map(|spare| spare.capacity);
                        if waiting.is_some_and(|waiting| waiting >= capacity) {
                            continue;
                        }
                        OpenSegment::create(&dir, capacity).ok()
                    }
                    _ => None,
                };
                // The one it replaces is removed outside the lock.
                let replaced = std::mem::replace(&mut *made.lock(), spare);
                drop(replaced);
            }
        })?;
        Ok(Spares { ready, maker })
    }

    /// A segment of `capacity` bytes to take requests from now on: the spare when it is
    /// at least that big and still in place, or one made now. The next spare is made
    /// twice as big (at most the largest usual size), as big as the segment after this
    /// one can want.
    fn take(&self, dir: &Path, capacity: u64) -> io::Result<OpenSegment> {
        let spare = self.ready.lock().take();
        let taken = match spare {
            Some(mut spare) if spare.capacity >= capacity && spare.check_in_place().is_ok() => {
                spare.opened = Instant::now();
                Ok(spare)
            }
            // A request larger than usual, or the spare is gone: made now.
            _ => OpenSegment::create(dir, capacity),
        };
        let _ = self
            .maker
            .send(Some(capacity.saturating_mul(2).min(SEGMENT_MAX_BYTES)));
        taken
    }

    /// Removes the spare: requests have stopped coming.
    fn let_go(&self) {
        let _ = self.maker.send(None);
    }
}

/// A new file at `path` of `len` zero bytes, synced.
fn fill_with_zeros(path: &Path, len: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let chunk = left.min(zeros.len() as u64);
        (&file).write_all(&zeros[..chunk as usize])?;
        left -= chunk;
    }
    file.sync_all()?;
    Ok(file)
}

/// The lines of one batch bound for one segment, and who waits for them.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    accepts: Vec<(StoredRequest, AcceptThen)>,
}

fn write_batches(
    dir: &Path,
    keys: &mut KeysFile,
    floor: &FreeSpaceFloor,
    spares: &Spares,
    batches: &Batches<(Accept, AcceptThen)>,
) {
    let mut segment: Option<OpenSegment> = None;
    let mut next_capacity = SEGMENT_MIN_BYTES;
    // Since when no segment has been open while a spare may wait: it is let go a
    // second later, whatever batches came meanwhile (refused ones open none).
    let mut spare_idle_since: Option<Instant> = None;
    loop {
        // An open segment is sealed when it is old enough, even with no request coming.
        let timeout = match (&segment, spare_idle_since) {
            (Some(open), _) => Some(open.opened),
            (None, since) => since,
        }
        .map(|since| SEGMENT_MAX_AGE.saturating_sub(since.elapsed()));
        match batches.next(timeout) {
            Ok(batch) => match floor.check() {
                Ok(()) => {
                    write_batch(dir, keys, spares, batch, &mut segment, &mut next_capacity);
                    // A batch may have asked for a spare and still left no segment open
                    // (a segment that could not be made or synced): the clock runs.
                    if segment.is_none() {
                        spare_idle_since.get_or_insert_with(Instant::now);
                    }
                }
                Err(error) => refuse_all(batch, &error),
            },
            Err(RecvTimeoutError::Timeout) => match segment.take() {
                Some(sealed) => {
                    next_capacity = sealed.next_capacity();
                    spare_idle_since = Some(Instant::now());
                    continue;
                }
                None => {
                    spares.let_go();
                    spare_idle_since = None;
                    continue;
                }
            },
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if segment.is_some() {
            spare_idle_since = Some(Instant::now());
        } else if spare_idle_since.is_some_and(|since| since.elapsed() >= SEGMENT_MAX_AGE) {
            spares.let_go();
            spare_idle_since = None;
        }
    }
    // Whatever spare is still wished for is not made only to be removed.
    spares.let_go();
}

/// Syncs the batch's key records, writes its requests into the open segment (and new
/// ones as it fills), syncs each segment written, and answers each request.
fn write_batch(
    dir: &Path,
    keys: &mut KeysFile,
    spares: &Spares,
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
    if let Err(error) = keys.append(&key_records) {
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
            let capacity = (*next_capacity).max(line_len.next_power_of_two());
            match spares.take(dir, capacity) {
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
    // After the batch is answered, so that no request of it waits for the rewrite. One
    // that failed left the file whole, and the file's next doubling tries again.
    let _ = keys.rewrite_if_grown();
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
        .and_then(|()| segment.check_in_place());
    let ok = synced.is_ok();
    for (stored, then) in lines.accepts {
        match &synced {
            Ok(()) => then(Ok(stored)),
            Err(error) => then(Err(repeat(error))),
        }
    }
    ok
}
