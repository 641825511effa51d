//! Writing a result in the layout (see the parent module): a done job's summary, work
//! tables and team log, or a failed job's reason, then the kept request, checksummed
//! on the way to the file and sealed by the trailer.

use std::io::{self, BufWriter, Write};

use super::{
    Header, KIND_DONE, KIND_FAILED, LOG_INLINE, LogPlace, TAIL_MAGIC, TRAILER_LEN, VERSION_PLAIN,
    VERSION_WITH_REQUEST,
};
use crate::wall::Outcome;

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

/// Bytes buffered before a write: a result up to this size (nearly all) reaches the
/// file in one `write`, its trailer with it. Each `write` to a new file costs a file
/// system like ext4 a metadata update of its own, besides the copy.
const WRITE_BUFFER: usize = 64 * 1024;

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
    let capacity = WRITE_BUFFER + TRAILER_LEN as usize;
    let mut out = BufWriter::with_capacity(
        capacity,
        Checksummed {
            inner: file,
            crc: crc32fast::Hasher::new(),
            len: 0,
        },
    );
    body(&mut out)?;
    // What the file has, and what waits in the buffer: the bytes the trailer covers.
    let mut crc = out.get_ref().crc.clone();
    crc.update(out.buffer());
    let len = out.get_ref().len + out.buffer().len() as u64 + TRAILER_LEN;
    let mut trailer = [0; TRAILER_LEN as usize];
    trailer[..8].copy_from_slice(&TAIL_MAGIC);
    trailer[8..12].copy_from_slice(&version.to_le_bytes());
    trailer[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    trailer[16..].copy_from_slice(&len.to_le_bytes());
    out.write_all(&trailer)?;
    out.flush()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::super::HEADER_LEN;
    use super::*;

    /// Keeps what it is given, at most `most_per_write` bytes a call, and counts calls.
    struct CountedWrites {
        bytes: Vec<u8>,
        writes: usize,
        most_per_write: usize,
    }

    impl CountedWrites {
        fn new(most_per_write: usize) -> CountedWrites {
            CountedWrites {
                bytes: Vec::new(),
                writes: 0,
                most_per_write,
            }
        }
    }

    impl Write for CountedWrites {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            let taken = buf.len().min(self.most_per_write);
            self.bytes.extend_from_slice(&buf[..taken]);
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn assert_sealed(bytes: &[u8], len: u64) {
        assert_eq!(len, bytes.len() as u64);
        let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN as usize);
        assert_eq!(trailer[..8], TAIL_MAGIC);
        assert_eq!(trailer[12..16], crc32fast::hash(body).to_le_bytes());
        assert_eq!(trailer[16..], len.to_le_bytes());
    }

    #[test]
    fn a_result_that_fits_the_buffer_reaches_the_file_in_one_write() {
        let mut out = CountedWrites::new(usize::MAX);
        let len = write_failed(&mut out, "a reason", Some(b"{}")).unwrap();
        assert_eq!(out.writes, 1, "the trailer goes with the rest");
        assert_sealed(&out.bytes, len);
    }

    #[test]
    fn results_about_the_buffer_s_size_are_sealed_in_as_few_writes_as_fit() {
        // A failed result without a request: the header, then the reason.
        let body_of = |reason_len: usize| HEADER_LEN as usize + reason_len;
        for (body, writes) in [
            (WRITE_BUFFER - 1, 1),
            (WRITE_BUFFER, 1),
            (WRITE_BUFFER + 1, 2),
        ] {
            let reason = "x".repeat(body - body_of(0));
            let mut out = CountedWrites::new(usize::MAX);
            let len = write_failed(&mut out, &reason, None).unwrap();
            assert_eq!(
                out.bytes.len(),
                body_of(reason.len()) + TRAILER_LEN as usize
            );
            assert_eq!(out.writes, writes, "a body of {body} bytes");
            assert_sealed(&out.bytes, len);
        }
    }

    #[test]
    fn a_result_larger_than_the_buffer_is_checksummed_whole_through_short_writes() {
        let reason = "x".repeat(3 * WRITE_BUFFER + 17);
        let request = vec![b'r'; WRITE_BUFFER - 5];
        for most_per_write in [usize::MAX, 1000] {
            let mut out = CountedWrites::new(most_per_write);
            let len = write_failed(&mut out, &reason, Some(&request)).unwrap();
            assert!(out.writes > 1);
            assert_sealed(&out.bytes, len);
            assert_eq!(
                &out.bytes[HEADER_LEN as usize..][..reason.len()],
                reason.as_bytes()
            );
        }
    }
}
