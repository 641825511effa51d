//! The layout of `<id>.result`, the file a finished job leaves: fixed-size binary
//! records that a question reads a few at a time (`pread` and binary search), so that
//! answering costs memory bounded by the answer, and a trailer written last, so that a
//! whole file is recognised as one. Files of the earlier, line-based layout are read by
//! `legacy_result`; the two are told apart by their first bytes.
//!
//! The layout (every number a little-endian `u64` unless said otherwise):
//!
//! | bytes | what |
//! | --- | --- |
//! | 96 | header: `IWRESULT`, version, kind (1 done, 2 failed), days, num_teams (0: unlimited), ice, cost, profiles `n`, steps of all profiles `s`, steps of the wall `w`, reason length `r`, team log file length (`u64::MAX`: the log is inline) |
//! | `r` | a failed job's reason, UTF-8 |
//! | 32 × `n` | per-profile summary rows: sections, days, ice, cost |
//! | 8 × (`n` + 1) | where each profile's steps begin (in steps), then `s` |
//! | 24 × (`s` + `w`) | steps (start day, active sections, feet before), each profile's then the wall's |
//! | rest | the team log inline, one event per line |
//! | `q` | version 2 only: the job's request as it was accepted (its wall config as JSON) |
//! | 8 | version 2 only: `q` |
//! | 24 | trailer: `IWRESEND`, version (`u32`), CRC-32 of every byte before the trailer (`u32`), the file's length |
//!
//! Version 2 is version 1 with the request kept after everything else, so that a
//! finished job's config can be shown once its journal segment is gone; its length is
//! found from the end of the file, where the trailer is read anyway. A result written
//! without its request (cluster mode keeps requests in its database) stays version 1,
//! byte for byte, so that nodes of the previous build read it.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::StoreError;
use crate::wall::{Outcome, ProfileSummary, Step, Summary, Table, TeamLog, find_step};

const HEAD_MAGIC: [u8; 8] = *b"IWRESULT";
const TAIL_MAGIC: [u8; 8] = *b"IWRESEND";
/// The layout without the request, and with it.
const VERSION_PLAIN: u32 = 1;
const VERSION_WITH_REQUEST: u32 = 2;
/// The length of the request, just before the trailer.
const REQUEST_LEN_LEN: u64 = 8;
pub const HEADER_LEN: u64 = 96;
pub const TRAILER_LEN: u64 = 24;
const ROW_LEN: u64 = 32;
const INDEX_ENTRY_LEN: u64 = 8;
const STEP_LEN: u64 = 24;
const KIND_DONE: u64 = 1;
const KIND_FAILED: u64 = 2;
/// The header's team log length when the log is inside the result file.
const LOG_INLINE: u64 = u64::MAX;

/// Tells a result in this layout from one in the line-based layout (which starts `{`).
pub fn is_this_layout(start: &[u8]) -> bool {
    start.starts_with(&HEAD_MAGIC)
}

/// Where a done job's team log goes.
pub enum LogPlace<'a> {
    Inline(&'a TeamLog),
    /// Kept apart from the result (in `<id>.log`, or a database's log chunks), this
    /// many bytes long.
    File {
        len: u64,
    },
}

/// Where a result's bytes are read from: its file, or the bytes themselves once a
/// database has handed them over (cluster mode).
pub trait ResultBytes {
    /// # Errors
    /// Whatever reading returns; `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;

    /// # Errors
    /// Whatever asking the length returns.
    fn byte_len(&self) -> io::Result<u64>;
}

impl ResultBytes for File {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }

    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ResultBytes for Arc<[u8]> {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let start = usize::try_from(at).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// The numbers of the header; the sections' sizes follow from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    version: u32,
    kind: u64,
    days: u64,
    num_teams: u64,
    ice: u64,
    cost: u64,
    profiles: u64,
    profile_steps: u64,
    wall_steps: u64,
    reason_len: u64,
    log_file_len: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut bytes = [0; HEADER_LEN as usize];
        bytes[..8].copy_from_slice(&HEAD_MAGIC);
        let fields = [
            u64::from(self.version),
            self.kind,
            self.days,
            self.num_teams,
            self.ice,
            self.cost,
            self.profiles,
            self.profile_steps,
            self.wall_steps,
            self.reason_len,
            self.log_file_len,
        ];
        for (chunk, field) in bytes[8..].chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8; HEADER_LEN as usize]) -> Result<Header, String> {
        let field = |i: usize| u64_at(bytes, 8 * i);
        if !is_this_layout(bytes) {
            return Err("its header is not a result header".to_owned());
        }
        let version = match field(1) {
            1 => VERSION_PLAIN,
            2 => VERSION_WITH_REQUEST,
            unknown => return Err(format!("its format version {unknown} is unknown")),
        };
        let header = Header {
            version,
            kind: field(2),
            days: field(3),
            num_teams: field(4),
            ice: field(5),
            cost: field(6),
            profiles: field(7),
            profile_steps: field(8),
            wall_steps: field(9),
            reason_len: field(10),
            log_file_len: field(11),
        };
        if header.kind != KIND_DONE && header.kind != KIND_FAILED {
            return Err(format!("its kind {} is unknown", header.kind));
        }
        Ok(header)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Where each section starts, in bytes from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub rows: u64,
    pub index: u64,
    pub steps: u64,
    pub log: u64,
    /// Where the kept request starts (version 2), or the trailer (version 1): the end
    /// of a failed job's reason or of an inline team log.
    pub request: u64,
    pub trailer: u64,
}

impl Layout {
    /// `None` when the sections cannot fit a file of `len` bytes as the header says,
    /// with a kept request of `request_len` bytes (version 2).
    fn of(header: &Header, len: u64, request_len: Option<u64>) -> Option<Layout> {
        let rows = HEADER_LEN.checked_add(header.reason_len)?;
        let index = rows.checked_add(header.profiles.checked_mul(ROW_LEN)?)?;
        let index_len = header
            .profiles
            .checked_add(1)?
            .checked_mul(INDEX_ENTRY_LEN)?;
        let steps = index.checked_add(index_len)?;
        let all_steps = header.profile_steps.checked_add(header.wall_steps)?;
        let log = steps.checked_add(all_steps.checked_mul(STEP_LEN)?)?;
        let trailer = len.checked_sub(TRAILER_LEN)?;
        let request = match request_len {
            None => trailer,
            Some(request_len) => trailer
                .checked_sub(REQUEST_LEN_LEN)?
                .checked_sub(request_len)?,
        };
        let fits = match header.kind {
            // A failed job has no summary, steps or log: its reason ends where the
            // request (or the trailer) begins.
            KIND_FAILED => rows == request,
            _ if header.log_file_len != LOG_INLINE => log == request,
            _ => log <= request,
        };
        fits.then_some(Layout {
            rows,
            index,
            steps,
            log,
            request,
            trailer,
        })
    }
}

/// Counts and checksums the bytes on their way to the file.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a done job's result to `file`, keeping its `request` when given (version 2);
/// returns its length.
///
/// # Errors
/// Whatever writing returns.
pub fn write_done(
    file: impl Write,
    outcome: &Outcome,
    log: LogPlace<'_>,
    request: Option<&[u8]>,
) -> io::Result<u64> {
    let Outcome { summary, work, .. } = outcome;
    let profile_steps: usize = work.profiles.iter().map(|work| work.steps().len()).sum();
    let header = Header {
        version: version_for(request),
        kind: KIND_DONE,
        days: summary.days,
        num_teams: summary.num_teams.unwrap_or(0),
        ice: summary.ice,
        cost: summary.cost,
        profiles: summary.profiles.len() as u64,
        profile_steps: profile_steps as u64,
        wall_steps: work.wall.steps().len() as u64,
        reason_len: 0,
        log_file_len: match log {
            LogPlace::Inline(_) => LOG_INLINE,
            LogPlace::File { len } => len,
        },
    };
    write_with_trailer(file, header.version, |out| {
        out.write_all(&header.encode())?;
        for row in &summary.profiles {
            for field in [row.sections as u64, row.days, row.ice, row.cost] {
                out.write_all(&field.to_le_bytes())?;
            }
        }
        let mut first_step = 0u64;
        out.write_all(&first_step.to_le_bytes())?;
        for profile in &work.profiles {
            first_step += profile.steps().len() as u64;
            out.write_all(&first_step.to_le_bytes())?;
        }
        for step in work
            .profiles
            .iter()
            .chain([&work.wall])
            .flat_map(|work| work.steps())
        {
            for field in [step.start, step.active, step.feet_before] {
                out.write_all(&field.to_le_bytes())?;
            }
        }
        match log {
            LogPlace::Inline(log) => log.write_to(out)?,
            LogPlace::File { .. } => {}
        }
        write_request(out, request)
    })
}

/// Writes a failed job's result to `file`, keeping its `request` when given (version
/// 2); returns its length.
///
/// # Errors
/// Whatever writing returns.
pub fn write_failed(file: impl Write, reason: &str, request: Option<&[u8]>) -> io::Result<u64> {
    let header = Header {
        version: version_for(request),
        kind: KIND_FAILED,
        days: 0,
        num_teams: 0,
        ice: 0,
        cost: 0,
        profiles: 0,
        profile_steps: 0,
        wall_steps: 0,
        reason_len: reason.len() as u64,
        log_file_len: LOG_INLINE,
    };
    write_with_trailer(file, header.version, |out| {
        out.write_all(&header.encode())?;
        out.write_all(reason.as_bytes())?;
        write_request(out, request)
    })
}

fn version_for(request: Option<&[u8]>) -> u32 {
    match request {
        None => VERSION_PLAIN,
        Some(_) => VERSION_WITH_REQUEST,
    }
}

/// The kept request and its length, last before the trailer; nothing without one.
fn write_request(out: &mut impl Write, request: Option<&[u8]>) -> io::Result<()> {
    if let Some(request) = request {
        out.write_all(request)?;
        out.write_all(&(request.len() as u64).to_le_bytes())?;
    }
    Ok(())
}

/// Runs `body`, buffered, then appends the trailer of `version` over everything it
/// wrote; returns the file's length.
fn write_with_trailer<W: Write>(
    file: W,
    version: u32,
    body: impl FnOnce(&mut BufWriter<Checksummed<W>>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut out = BufWriter::new(Checksummed {
        inner: file,
        crc: crc32fast::Hasher::new(),
        len: 0,
    });
    body(&mut out)?;
    let Checksummed {
        inner: mut file,
        crc,
        len,
    } = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    let mut trailer = [0; TRAILER_LEN as usize];
    trailer[..8].copy_from_slice(&TAIL_MAGIC);
    trailer[8..12].copy_from_slice(&version.to_le_bytes());
    trailer[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    trailer[16..].copy_from_slice(&(len + TRAILER_LEN).to_le_bytes());
    file.write_all(&trailer)?;
    Ok(len + TRAILER_LEN)
}

/// A result in this layout, open, its header and trailer checked.
pub struct ResultFile<B = File> {
    file: B,
    header: Header,
    layout: Layout,
}

fn damaged(problem: impl Into<String>) -> StoreError {
    StoreError::Damaged(problem.into())
}

impl<B: ResultBytes> ResultFile<B> {
    /// Checks the header read from the start of `file`, and the trailer against the
    /// file's length: two small reads, which refuse a file cut short anywhere.
    ///
    /// # Errors
    /// `Damaged` when they do not agree, `Io` when they cannot be read.
    pub fn open(file: B, head: &[u8; HEADER_LEN as usize]) -> Result<ResultFile<B>, StoreError> {
        let header = Header::decode(head).map_err(damaged)?;
        let len = file.byte_len()?;
        // The trailer, and in version 2 the request's length before it, in one read.
        let end_len = match header.version {
            VERSION_PLAIN => TRAILER_LEN,
            _ => REQUEST_LEN_LEN + TRAILER_LEN,
        };
        let end_at = len
            .checked_sub(end_len)
            .filter(|&at| at >= HEADER_LEN)
            .ok_or_else(|| damaged("its sections do not fit its length"))?;
        let mut end = [0; (REQUEST_LEN_LEN + TRAILER_LEN) as usize];
        let end = &mut end[..end_len as usize];
        file.read_exact_at(end, end_at)?;
        let (request_len, trailer) = end.split_at(end.len() - TRAILER_LEN as usize);
        if trailer[..8] != TAIL_MAGIC || trailer[8..12] != header.version.to_le_bytes() {
            return Err(damaged("its trailer is missing: it was cut short"));
        }
        let request_len = (!request_len.is_empty()).then(|| u64_at(request_len, 0));
        let layout = Layout::of(&header, len, request_len)
            .ok_or_else(|| damaged("its sections do not fit its length"))?;
        if u64_at(trailer, 16) != len {
            return Err(damaged("its length is not the one it was written with"));
        }
        Ok(ResultFile {
            file,
            header,
            layout,
        })
    }

    pub fn len(&self) -> u64 {
        self.layout.trailer + TRAILER_LEN
    }

    #[cfg(test)]
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Reads every byte before the trailer and compares their CRC-32 with the trailer's.
    ///
    /// # Errors
    /// `Damaged` when they differ, `Io` when the file cannot be read.
    pub fn verify_checksum(&self) -> Result<(), StoreError> {
        let mut trailer = [0; TRAILER_LEN as usize];
        self.file.read_exact_at(&mut trailer, self.layout.trailer)?;
        let mut crc = crc32fast::Hasher::new();
        let mut chunk = vec![0; 64 * 1024];
        let mut at = 0;
        while at < self.layout.trailer {
            let len = chunk.len().min((self.layout.trailer - at) as usize);
            self.file.read_exact_at(&mut chunk[..len], at)?;
            crc.update(&chunk[..len]);
            at += len as u64;
        }
        if crc.finalize().to_le_bytes() != trailer[12..16] {
            return Err(damaged("its checksum does not match its content"));
        }
        Ok(())
    }

    /// The request the job was run from, as it was accepted; `None` when the result was
    /// written without it (version 1). Read whole: it is as large as the accepted body.
    ///
    /// # Errors
    /// `Io` when it cannot be read.
    pub fn request(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.header.version == VERSION_PLAIN {
            return Ok(None);
        }
        let len = self.layout.trailer - REQUEST_LEN_LEN - self.layout.request;
        let mut request =
            vec![0; usize::try_from(len).map_err(|_| damaged("its request is too long"))?];
        self.file.read_exact_at(&mut request, self.layout.request)?;
        Ok(Some(request))
    }

    /// The reason of a failed job; `None` for a done one.
    ///
    /// # Errors
    /// `Damaged` when it is not UTF-8, `Io` when it cannot be read.
    pub fn failure(&self) -> Result<Option<String>, StoreError> {
        if self.header.kind != KIND_FAILED {
            return Ok(None);
        }
        let mut reason = vec![0; self.header.reason_len as usize];
        self.file.read_exact_at(&mut reason, HEADER_LEN)?;
        String::from_utf8(reason)
            .map(Some)
            .map_err(|_| damaged("its reason is not UTF-8"))
    }

    fn expect_done(&self) -> Result<(), StoreError> {
        match self.header.kind {
            KIND_DONE => Ok(()),
            _ => Err(damaged("it holds a failure, not a finished wall")),
        }
    }

    /// The summary with the rows of profiles `first + 1 ..= first + limit` (those that
    /// exist), read in one go: its size is bounded by `limit`, not by the wall.
    ///
    /// # Errors
    /// `Damaged` for a failed job's file, `Io` when it cannot be read.
    pub fn summary(&self, first: usize, limit: usize) -> Result<(Summary, usize), StoreError> {
        self.expect_done()?;
        let total = self.profile_count();
        let first = first.min(total);
        let count = limit.min(total - first);
        let mut rows = vec![0; count * ROW_LEN as usize];
        self.file
            .read_exact_at(&mut rows, self.layout.rows + first as u64 * ROW_LEN)?;
        let profiles = rows
            .chunks_exact(ROW_LEN as usize)
            .zip(first + 1..)
            .map(|(row, profile)| ProfileSummary {
                profile,
                sections: u64_at(row, 0) as usize,
                days: u64_at(row, 8),
                ice: u64_at(row, 16),
                cost: u64_at(row, 24),
            })
            .collect();
        let header = &self.header;
        let summary = Summary {
            days: header.days,
            num_teams: (header.num_teams != 0).then_some(header.num_teams),
            ice: header.ice,
            cost: header.cost,
            profiles,
        };
        Ok((summary, total))
    }

    pub fn profile_count(&self) -> usize {
        self.header.profiles as usize
    }

    /// A done job's teams as its header has them (`None`: unlimited crews), or
    /// `None` for a failed job.
    pub fn num_teams(&self) -> Option<Option<u64>> {
        (self.header.kind == KIND_DONE)
            .then_some((self.header.num_teams != 0).then_some(self.header.num_teams))
    }

    /// The sections of a done job's wall, summed over its summary rows (one read of
    /// 32 bytes a profile).
    ///
    /// # Errors
    /// `Damaged` for a failed job's file, `Io` when it cannot be read.
    pub fn section_count(&self) -> Result<u64, StoreError> {
        self.expect_done()?;
        let mut rows = vec![0; self.profile_count() * ROW_LEN as usize];
        self.file.read_exact_at(&mut rows, self.layout.rows)?;
        Ok(rows
            .chunks_exact(ROW_LEN as usize)
            .map(|row| u64_at(row, 0))
            .sum())
    }

    /// Where the inline team log is: its first byte and its length.
    ///
    /// # Errors
    /// `Damaged` for a failed job's result.
    pub fn inline_log_span(&self) -> Result<(u64, u64), StoreError> {
        self.expect_done()?;
        Ok((self.layout.log, self.layout.request - self.layout.log))
    }

    /// The length of the team log kept in `<id>.log`; `None` when it is inline.
    pub fn log_file_len(&self) -> Option<u64> {
        (self.header.log_file_len != LOG_INLINE).then_some(self.header.log_file_len)
    }

    /// The step of `table` in force on `day`: the table's bounds (one read for a
    /// profile), then a binary search reading one step at a time.
    ///
    /// # Errors
    /// `Damaged` when the index points outside the steps, `Io` when a read fails.
    pub fn step_on(&self, table: Table, day: u64) -> Result<Option<Step>, StoreError> {
        self.expect_done()?;
        let (first, end) = match table {
            Table::Profile(profile) => {
                debug_assert!((1..=self.profile_count()).contains(&profile));
                let mut bounds = [0; 2 * INDEX_ENTRY_LEN as usize];
                let at = self.layout.index + (profile as u64).saturating_sub(1) * INDEX_ENTRY_LEN;
                self.file.read_exact_at(&mut bounds, at)?;
                (u64_at(&bounds, 0), u64_at(&bounds, 8))
            }
            Table::Wall => (
                self.header.profile_steps,
                self.header.profile_steps + self.header.wall_steps,
            ),
        };
        if first > end || end > self.header.profile_steps + self.header.wall_steps {
            return Err(damaged("its step index points outside its steps"));
        }
        let mut bytes = [0; STEP_LEN as usize];
        find_step((end - first) as usize, day, |i| {
            let at = self.layout.steps + (first + i as u64) * STEP_LEN;
            self.file.read_exact_at(&mut bytes, at)?;
            Ok(Step {
                start: u64_at(&bytes, 0),
                active: u64_at(&bytes, 8),
                feet_before: u64_at(&bytes, 16),
            })
        })
    }
}

impl ResultFile<File> {
    /// The inline team log: the file positioned at its start, and its length.
    ///
    /// # Errors
    /// `Damaged` for a failed job's file, `Io` when the file cannot be positioned.
    pub fn into_inline_log(mut self) -> Result<(File, u64), StoreError> {
        let (start, length) = self.inline_log_span()?;
        self.file.seek(SeekFrom::Start(start))?;
        Ok((self.file, length))
    }
}

/// Reads up to `buf.len()` bytes from the start of `file`; fewer only at its end.
///
/// # Errors
/// Whatever reading returns.
pub fn read_start(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
