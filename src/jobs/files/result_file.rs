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

mod read;
mod write;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

pub use self::read::{ResultFile, read_start};
pub use self::write::{write_done, write_failed};
use crate::wall::TeamLog;

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
