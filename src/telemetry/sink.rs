//! The log's way out: whole lines gather in one buffer and a flusher thread writes them
//! to the file or stdout, so that no thread that logs ever waits for a write.

use std::io::{self, Write};
use std::mem;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use file_rotate::FileRotate;
use file_rotate::suffix::AppendCount;
use parking_lot::{Condvar, Mutex, MutexGuard};

/// How long a log line may wait in the buffer before it is written out.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes buffered before the flusher is woken to write them out.
const BUFFER_BYTES: usize = 64 * 1024;

/// Bytes held back for the listening line at most: a start-up with more to say (a
/// recovery warning about each of many files) says it first rather than hold it all.
const HELD_BYTES: usize = 8 * 1024 * 1024;

/// Bytes waiting for the flusher at most. An output that stalls (a full disk, a
/// stdout nobody reads) costs this much memory; lines past it are dropped and counted.
const PENDING_LIMIT: usize = 16 * 1024 * 1024;

pub(super) enum Output {
    File(FileRotate<AppendCount>),
    Stdout(io::Stdout),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) {
        let out: &mut dyn Write = match self {
            Output::File(file) => file,
            Output::Stdout(stdout) => stdout,
        };
        // A log that cannot be written (a full disk, a closed stdout) must not stop the
        // server: the lines are dropped.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

/// Lines on their way out. `held` keeps them back (they are only buffered) until the
/// listening line has gone first.
struct Pending {
    bytes: Vec<u8>,
    held: bool,
    /// Lines dropped since the flusher last reported it, the buffer being full.
    dropped: u64,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the flusher: a full buffer, or the end.
    wake: Condvar,
    /// Taken after `pending` when both are: by the flusher to write a batch it took out,
    /// and by the listening line to go before everything.
    output: Mutex<Output>,
}

/// Where formatted lines go, one `write` a whole line (the text drain writes a line
/// whole, the JSON one through a [`LineWriter`]). Writing copies into memory under a
/// short lock, nothing more: the flusher writes out, outside that lock.
#[derive(Clone)]
pub(super) struct SharedBuffer(Arc<Shared>);

impl SharedBuffer {
    /// A buffer for `output`; `held` when the lines must wait for the listening line.
    pub(super) fn new(output: Output, held: bool) -> SharedBuffer {
        SharedBuffer(Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(BUFFER_BYTES),
                held,
                dropped: 0,
                closing: false,
            }),
            wake: Condvar::new(),
            output: Mutex::new(output),
        }))
    }

    /// Writes `first` out, then everything buffered, and lets later lines follow.
    /// Nothing else can go out in between.
    pub(super) fn release_after(&self, first: impl FnOnce()) {
        let mut pending = self.0.pending.lock();
        let mut output = self.0.output.lock();
        first();
        pending.held = false;
        output.write_all(&pending.bytes);
        pending.bytes.clear();
    }

    /// Takes what is buffered, unless it is held; with the lines dropped meanwhile.
    fn take(pending: &mut MutexGuard<'_, Pending>, batch: &mut Vec<u8>) -> u64 {
        if pending.held {
            return 0;
        }
        mem::swap(&mut pending.bytes, batch);
        mem::take(&mut pending.dropped)
    }
}

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = self.0.pending.lock();
        if pending.held {
            pending.bytes.extend_from_slice(bytes);
            if pending.bytes.len() >= HELD_BYTES {
                pending.held = false;
                self.0.wake.notify_one();
            }
        } else if pending.bytes.len() + bytes.len() > PENDING_LIMIT {
            pending.dropped += 1;
        } else {
            let was_short = pending.bytes.len() < BUFFER_BYTES;
            pending.bytes.extend_from_slice(bytes);
            if was_short && pending.bytes.len() >= BUFFER_BYTES {
                self.0.wake.notify_one();
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the JSON formatter writes into: a line is put together here and goes into the
/// shared buffer whole, under one lock, rather than a lock for each of the many pieces
/// the formatter writes it in (the text lines come whole already).
pub(super) struct LineWriter {
    line: Vec<u8>,
    out: SharedBuffer,
}

impl LineWriter {
    pub(super) fn new(out: SharedBuffer) -> LineWriter {
        LineWriter {
            line: Vec::with_capacity(512),
            out,
        }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.out.write_all(&self.line)?;
            self.line.clear();
        }
        Ok(())
    }
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        if bytes.ends_with(b"\n") {
            self.pass_on()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let _ = self.pass_on();
    }
}

/// The thread that writes the buffer out: every 64 KiB or 100 ms, so that a busy
/// server makes one write per 64 KiB rather than one per line. Dropping it writes out
/// what is left, held or not (lines of a server that never listened still go out).
pub(super) struct Flusher {
    buffer: SharedBuffer,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread; `report_dropped(n)` is called on it after a batch when `n`
    /// lines were dropped since the last, to log that.
    pub(super) fn start(
        buffer: SharedBuffer,
        report_dropped: impl Fn(u64) + Send + 'static,
    ) -> io::Result<Flusher> {
        let shared = Arc::clone(&buffer.0);
        let thread = thread::Builder::new()
            .name("icewall-log-flush".to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BUFFER_BYTES);
                loop {
                    let (dropped, closing) = {
                        let mut pending = shared.pending.lock();
                        if !pending.closing && (pending.held || pending.bytes.len() < BUFFER_BYTES)
                        {
                            shared.wake.wait_for(&mut pending, FLUSH_INTERVAL);
                        }
                        (
                            SharedBuffer::take(&mut pending, &mut batch),
                            pending.closing,
                        )
                    };
                    if !batch.is_empty() {
                        shared.output.lock().write_all(&batch);
                        batch.clear();
                    }
                    if dropped > 0 {
                        report_dropped(dropped);
                    }
                    if closing {
                        return;
                    }
                }
            })?;
        Ok(Flusher {
            buffer,
            thread: Some(thread),
        })
    }

    pub(super) fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.buffer.0.pending.lock().closing = true;
        self.buffer.0.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.buffer.release_after(|| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_buffer() -> SharedBuffer {
        SharedBuffer::new(Output::Stdout(io::stdout()), true)
    }

    fn pending(buffer: &SharedBuffer) -> Vec<u8> {
        buffer.0.pending.lock().bytes.clone()
    }

    #[test]
    fn a_line_written_in_pieces_reaches_the_buffer_whole() {
        let buffer = held_buffer();
        let mut lines = LineWriter::new(buffer.clone());
        lines.write_all(b"first, ").unwrap();
        lines.write_all(b"key: value").unwrap();
        assert!(pending(&buffer).is_empty(), "half a line went out");
        lines.write_all(b"\n").unwrap();
        lines.write_all(b"second").unwrap();
        assert_eq!(pending(&buffer), b"first, key: value\n");
        lines.flush().unwrap();
        lines.write_all(b"third").unwrap();
        drop(lines);
        assert_eq!(
            pending(&buffer),
            b"first, key: value\nsecondthird",
            "a flush and the end pass on what was written"
        );
    }

    #[test]
    fn lines_past_the_limit_are_dropped_and_counted_never_written_by_the_writer() {
        let buffer = held_buffer();
        buffer.0.pending.lock().held = false;
        let line = vec![b'x'; 1024 * 1024];
        let mut writer = buffer.clone();
        for _ in 0..PENDING_LIMIT / line.len() {
            writer.write_all(&line).unwrap();
        }
        assert_eq!(pending(&buffer).len(), PENDING_LIMIT, "nothing went out");
        writer.write_all(b"one more\n").unwrap();
        writer.write_all(b"and another\n").unwrap();
        let mut batch = Vec::new();
        let dropped = SharedBuffer::take(&mut buffer.0.pending.lock(), &mut batch);
        assert_eq!((batch.len(), dropped), (PENDING_LIMIT, 2));
        writer.write_all(b"room again\n").unwrap();
        assert_eq!(pending(&buffer), b"room again\n");
    }

    #[test]
    fn held_lines_go_out_after_the_first_line_and_the_rest_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icewall.log");
        let file = FileRotate::new(
            &path,
            AppendCount::new(1),
            file_rotate::ContentLimit::None,
            file_rotate::compression::Compression::None,
            None,
        );
        let buffer = SharedBuffer::new(Output::File(file), true);
        let flusher = Flusher::start(buffer.clone(), |_| {}).unwrap();
        buffer.clone().write_all(b"early\n").unwrap();
        let mut batch = Vec::new();
        SharedBuffer::take(&mut buffer.0.pending.lock(), &mut batch);
        assert!(batch.is_empty(), "a held line was taken");
        // As the listening line goes to stdout beside the output: a handle of its own.
        buffer.release_after(|| {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            file.write_all(b"listening\n").unwrap();
        });
        buffer.clone().write_all(b"late\n").unwrap();
        drop(flusher);
        assert_eq!(std::fs::read(&path).unwrap(), b"listening\nearly\nlate\n");
    }
}
