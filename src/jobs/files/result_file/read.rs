//! Reading a result in the layout (see the parent module) a few records at a time,
//! wherever its bytes are (`ResultBytes`): the header and the trailer checked on open,
//! then the summary rows, a step by binary search, the inline team log's span, or the
//! kept request, each read where it lies.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::{
    HEADER_LEN, Header, INDEX_ENTRY_LEN, KIND_DONE, KIND_FAILED, LOG_INLINE, Layout,
    REQUEST_LEN_LEN, ROW_LEN, ResultBytes, STEP_LEN, TAIL_MAGIC, TRAILER_LEN, VERSION_PLAIN,
    u64_at,
};
use crate::jobs::files::StoreError;
use crate::wall::{ProfileSummary, Step, Summary, Table, find_step};

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
