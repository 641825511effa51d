//! The log's way out: whole lines gather in one buffer and a flusher thread writes them
//! to the file or stdout, so that no thread that logs ever waits for a write.

use std::io::{self, Write};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

/// How long a log line may wait in the buffer before it is written out.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes buffered before the flusher is woken to write them out.
const BUFFER_BYTES: usize = 64 * 1024;

/// Bytes held back for the listening line at most: a start-up with more to say (a
/// recovery warning about each of many files) says it first rather than hold it all.
const HELD_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of lines on their way out at most, those buffered and those the flusher is
/// writing together. An output that stalls (a full disk, a stdout nobody reads) costs
/// this much memory; lines past it are dropped and counted.
const PENDING_LIMIT: usize = 16 * 1024 * 1024;

/// The log file or stdout. A write that fails (a full disk, a closed stdout) must not
/// stop the server: its lines are lost, and counted. The log cannot be told of it while
/// it refuses lines, so stderr is, when it begins; the log is told the count once it
/// takes lines again, and stderr at exit if it never did.
pub(super) struct Output {
    out: Box<dyn Write + Send>,
    /// Lines refused since the count was last taken.
    lost_lines: u64,
    /// Why the last refused write was refused.
    last_error: String,
    /// The last write was refused: stderr has been told.
    refusing: bool,
    /// A refused write may have written part of its bytes (a disk that filled up
    /// midway), the last line cut short: the next line must not be written onto it.
    may_end_mid_line: bool,
    /// The output panicked: what it holds may be half changed, so it is not written to
    /// again, and every later line is refused (and counted).
    broken: bool,
}

/// Lines that never reached the output, for the log to say so.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lost {
    /// Past the limit of what waits for the output: it did not keep up.
    Dropped(u64),
    /// Refused by the output, which takes lines again.
    Refused { lines: u64, error: String },
}

impl Output {
    pub(super) fn new(out: impl Write + Send + 'static) -> Output {
        Output {
            out: Box::new(out),
            lost_lines: 0,
            last_error: String::new(),
            refusing: false,
            may_end_mid_line: false,
            broken: false,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.write_guarded(bytes) {
            Ok(()) => {
                self.refusing = false;
                self.may_end_mid_line = false;
            }
            Err(error) => {
                // A closed pipe takes nothing; anything else may have taken a part.
                self.may_end_mid_line |= error.kind() != io::ErrorKind::BrokenPipe;
                // Part of them may have gone out (a disk that filled up midway), the
                // last of those cut short: all are counted, as none can be trusted.
                self.lost_lines += bytes.iter().filter(|&&byte| byte == b'\n').count() as u64;
                self.last_error = error.to_string();
                if !self.refusing {
                    self.refusing = true;
                    let _ = writeln!(
                        io::stderr(),
                        "icewall: the log output refuses lines ({error}): they are lost \
                         until it takes them again, and the log then says how many"
                    );
                }
            }
        }
    }

    /// Writes `bytes` out unless the output has panicked, now or before. file-rotate
    /// asserts while rotating when the logs directory is gone (replaced by a file, say):
    /// unguarded, that ended the flusher thread, and no later line was written, dropped
    /// or reported.
    fn write_guarded(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "it failed while rotating its file, and takes no more lines until a restart",
            ));
        }
        let (out, end_line) = (&mut self.out, self.may_end_mid_line);
        panic::catch_unwind(AssertUnwindSafe(|| {
            if end_line {
                // A blank line at worst, where nothing of the refused write went out.
                out.write_all(b"\n")?;
            }
            out.write_all(bytes)?;
            out.flush()
        }))
        .unwrap_or_else(|_| {
            self.broken = true;
            Err(io::Error::other(
                "it failed while rotating its file (is the logs directory still there?), \
                 and takes no more lines until a restart",
            ))
        })
    }

    /// The lines refused since the last call, once the output takes lines again.
    fn take_refused(&mut self) -> Option<Lost> {
        if self.refusing || self.lost_lines == 0 {
            return None;
        }
        Some(Lost::Refused {
            lines: mem::take(&mut self.lost_lines),
            error: mem::take(&mut self.last_error),
        })
    }

    /// At exit, the lines refused that the log could not be told of go to stderr.
    fn report_refused_at_exit(&mut self) {
        if self.lost_lines > 0 {
            let _ = writeln!(
                io::stderr(),
                "icewall: {} log lines were lost: the log output refused them ({})",
                mem::take(&mut self.lost_lines),
                self.last_error
            );
        }
    }
}

/// Lines on their way out. `held` keeps them back (they are only buffered) until the
/// listening line has gone first.
struct Pending {
    bytes: Vec<u8>,
    held: bool,
    /// Bytes the flusher took out and has not written yet: they count to the limit.
    writing: usize,
    /// Lines dropped since the flusher last reported it, the buffer being full.
    dropped: u64,
    /// Asks the flusher to write out what is left and end.
    closing: bool,
    /// The flusher has ended: a line is written straight out by whoever logs it, so
    /// that what is logged last (the drop report, a line at exit) is not lost.
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the flusher: a full buffer, or the end.
    wake: Condvar,
    /// Taken before `pending` when both are held (the listening line's release, the
    /// last batch), and never while a writer of lines holds `pending`: so that no line
    /// waits for the output until the flusher has ended.
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
                writing: 0,
                dropped: 0,
                closing: false,
                closed: false,
            }),
            wake: Condvar::new(),
            output: Mutex::new(output),
        }))
    }

    /// Writes `first` out, then everything buffered, and lets later lines follow.
    /// Nothing else can go out in between; lines logged meanwhile are buffered, not
    /// kept waiting for the output.
    pub(super) fn release_after(&self, first: impl FnOnce()) {
        // The output first, so that no later batch can go out before these lines;
        // `pending` only for a moment inside it (the one order both are taken in).
        let mut output = self.0.output.lock();
        let held = {
            let mut pending = self.0.pending.lock();
            if pending.held {
                pending.held = false;
                let held = mem::take(&mut pending.bytes);
                pending.writing += held.len();
                held
            } else {
                // Let go already, the held lines having grown too many: they went out
                // first, and the flusher writes what followed.
                Vec::new()
            }
        };
        first();
        output.write_all(&held);
        drop(output);
        self.0.pending.lock().writing -= held.len();
    }

    /// Whether lines wait for the listening line.
    pub(super) fn is_held(&self) -> bool {
        self.0.pending.lock().held
    }

    /// Writes out what is left, held or not, and makes every later line go straight
    /// out; the lines dropped and not yet reported. Once more does nothing.
    fn close(&self, batch: &mut Vec<u8>) -> u64 {
        let mut output = self.0.output.lock();
        let dropped = {
            let mut pending = self.0.pending.lock();
            pending.held = false;
            pending.closed = true;
            Self::take(&mut pending, batch)
        };
        output.write_all(batch);
        output.report_refused_at_exit();
        batch.clear();
        dropped
    }

    /// Takes what is buffered, unless it is held; with the lines dropped meanwhile.
    fn take(pending: &mut MutexGuard<'_, Pending>, batch: &mut Vec<u8>) -> u64 {
        if pending.held {
            return 0;
        }
        mem::swap(&mut pending.bytes, batch);
        pending.writing = batch.len();
        mem::take(&mut pending.dropped)
    }
}

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = self.0.pending.lock();
        if pending.closed {
            drop(pending);
            self.0.output.lock().write_all(bytes);
        } else if pending.held {
            pending.bytes.extend_from_slice(bytes);
            if pending.bytes.len() >= HELD_BYTES {
                pending.held = false;
                self.0.wake.notify_one();
            }
        } else if pending.writing + pending.bytes.len() + bytes.len() > PENDING_LIMIT {
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
        // A record ends with its newline and a flush, so what is left is half a record,
        // from a panic while it was written: not a line to begin another one.
        if self.line.ends_with(b"\n") {
            let _ = self.pass_on();
        }
    }
}

/// The thread that writes the buffer out: every 64 KiB or 100 ms, so that a busy
/// server makes one write per 64 KiB rather than one per line. Dropping it writes out
/// what is left, held or not (lines of a server that never listened still go out), and
/// from then on each line is written out as it is logged.
pub(super) struct Flusher {
    buffer: SharedBuffer,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread; `report_lost` is called on it after a batch when lines were
    /// dropped or refused since the last, to log that.
    pub(super) fn start(
        buffer: SharedBuffer,
        report_lost: impl Fn(Lost) + Send + 'static,
    ) -> io::Result<Flusher> {
        let flushed = buffer.clone();
        let thread = thread::Builder::new()
            .name("icewall-log-flush".to_owned())
            .spawn(move || flush_until_closed(&flushed, report_lost))?;
        Ok(Flusher {
            buffer,
            thread: Some(thread),
        })
    }

    pub(super) fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }
}

fn flush_until_closed(buffer: &SharedBuffer, report_lost: impl Fn(Lost)) {
    let shared = &buffer.0;
    let mut batch = Vec::with_capacity(BUFFER_BYTES);
    loop {
        let mut pending = shared.pending.lock();
        if !pending.closing && (pending.held || pending.bytes.len() < BUFFER_BYTES) {
            shared.wake.wait_for(&mut pending, FLUSH_INTERVAL);
        }
        if pending.closing {
            drop(pending);
            let dropped = buffer.close(&mut batch);
            if dropped > 0 {
                report_lost(Lost::Dropped(dropped));
            }
            return;
        }
        let dropped = SharedBuffer::take(&mut pending, &mut batch);
        drop(pending);
        if !batch.is_empty() {
            let refused = {
                let mut output = shared.output.lock();
                output.write_all(&batch);
                output.take_refused()
            };
            if let Some(refused) = refused {
                report_lost(refused);
            }
            // A burst's worth of memory is given back, not kept for the next.
            if batch.capacity() > 2 * BUFFER_BYTES {
                batch = Vec::with_capacity(BUFFER_BYTES);
            } else {
                batch.clear();
            }
            shared.pending.lock().writing = 0;
        }
        if dropped > 0 {
            report_lost(Lost::Dropped(dropped));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.buffer.0.pending.lock().closing = true;
        self.buffer.0.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Done by the thread, unless it died: then here, without its report.
        self.buffer.close(&mut Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    use file_rotate::FileRotate;
    use file_rotate::suffix::AppendCount;

    use super::*;
    use crate::telemetry::tests::read_to_end_later;

    /// Longer than any write into memory takes; a line kept waiting for a stalled
    /// output waits for ever.
    const PROMPTLY: Duration = Duration::from_secs(10);

    fn held_buffer() -> SharedBuffer {
        SharedBuffer::new(Output::new(io::stdout()), true)
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
        lines.write_all(b"third\n").unwrap();
        lines.write_all(b"half a four").unwrap();
        drop(lines);
        assert_eq!(
            pending(&buffer),
            b"first, key: value\nsecondthird\n",
            "a flush passes on what was written, the end all but half a line"
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
        writer.write_all(b"still being written\n").unwrap();
        assert!(
            pending(&buffer).is_empty(),
            "a batch being written did not count"
        );
        // As the flusher does once it has written the batch out.
        buffer.0.pending.lock().writing = 0;
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
        let buffer = SharedBuffer::new(Output::new(file), true);
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

    /// Logs `meanwhile` on a thread of its own: whether that returned promptly, and the
    /// thread, which may still be waiting.
    fn log_meanwhile(buffer: &SharedBuffer) -> (bool, JoinHandle<()>) {
        let (logged, logged_seen) = mpsc::channel();
        let mut buffer = buffer.clone();
        let logging = thread::spawn(move || {
            buffer.write_all(b"meanwhile\n").unwrap();
            logged.send(()).unwrap();
        });
        (logged_seen.recv_timeout(PROMPTLY).is_ok(), logging)
    }

    #[test]
    fn a_line_logged_while_the_held_lines_go_out_to_a_stalled_output_is_not_kept_waiting() {
        let (reader, writer) = io::pipe().unwrap();
        let buffer = SharedBuffer::new(Output::new(writer), true);
        // More than a pipe takes before a write waits for its reader.
        buffer.clone().write_all(&vec![b'x'; 1024 * 1024]).unwrap();
        let (first_went, first_gone) = mpsc::channel();
        let releasing = {
            let buffer = buffer.clone();
            thread::spawn(move || buffer.release_after(|| first_went.send(()).unwrap()))
        };
        first_gone.recv().unwrap();
        let (prompt, logging) = log_meanwhile(&buffer);
        let output = read_to_end_later(reader);
        releasing.join().unwrap();
        logging.join().unwrap();
        assert!(prompt, "a line waited for the output");
        assert_eq!(pending(&buffer), b"meanwhile\n");
        drop(buffer);
        assert_eq!(output.join().unwrap().len(), 1024 * 1024);
    }

    #[test]
    fn the_release_waiting_for_a_stalled_output_keeps_no_line_waiting() {
        let (reader, writer) = io::pipe().unwrap();
        let buffer = SharedBuffer::new(Output::new(writer), true);
        let flusher = Flusher::start(buffer.clone(), |_| {}).unwrap();
        // A start-up that logs more than is held back: the flusher writes it out
        // before the listening line, into a pipe nobody reads yet.
        buffer.clone().write_all(&vec![b'x'; HELD_BYTES]).unwrap();
        while !pending(&buffer).is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        let releasing = {
            let buffer = buffer.clone();
            thread::spawn(move || buffer.release_after(|| {}))
        };
        // Time for the release to wait on the output (the test cannot see it wait:
        // without it, the line below may pass as before; it never fails wrongly).
        thread::sleep(Duration::from_millis(200));
        let (prompt, logging) = log_meanwhile(&buffer);
        let output = read_to_end_later(reader);
        releasing.join().unwrap();
        logging.join().unwrap();
        drop((flusher, buffer));
        assert!(prompt, "a line waited for the output");
        let output = output.join().unwrap();
        assert_eq!(output.len(), HELD_BYTES + b"meanwhile\n".len());
        assert!(output.ends_with(b"xmeanwhile\n"), "the lines out of order");
    }

    #[test]
    fn a_stalled_output_holds_the_limit_in_all_and_the_drop_is_reported_before_the_end() {
        let (reader, writer) = io::pipe().unwrap();
        let buffer = SharedBuffer::new(Output::new(writer), false);
        let reported = Arc::new(AtomicU64::new(0));
        let flusher = {
            let (reported, report) = (Arc::clone(&reported), buffer.clone());
            Flusher::start(buffer.clone(), move |lost| {
                let Lost::Dropped(lines) = lost else {
                    panic!("a pipe refused lines: {lost:?}")
                };
                reported.fetch_add(lines, Ordering::Relaxed);
                writeln!(report.clone(), "{lines} dropped").unwrap();
            })
            .unwrap()
        };
        let line = vec![b'x'; 1024 * 1024];
        let mut writer = buffer.clone();
        writer.write_all(&line).unwrap();
        // The flusher takes that line out and waits for the pipe's reader, and the
        // line still counts.
        while !pending(&buffer).is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..PENDING_LIMIT / line.len() {
            writer.write_all(&line).unwrap();
        }
        writer.write_all(b"one more\n").unwrap();
        let output = read_to_end_later(reader);
        drop(flusher);
        writer.write_all(b"after the end\n").unwrap();
        drop((writer, buffer));
        let output = output.join().unwrap();
        assert_eq!(
            reported.load(Ordering::Relaxed),
            2,
            "the 17th MiB and one more"
        );
        let tail = &output[PENDING_LIMIT..];
        assert_eq!(tail, b"2 dropped\nafter the end\n");
    }

    /// An output that refuses writes while `refusing` is set, as a full disk does: the
    /// first refused write takes two bytes first, as a disk that fills up midway.
    struct Refusing {
        refusing: Arc<std::sync::atomic::AtomicBool>,
        written: Arc<Mutex<Vec<u8>>>,
        filled_up: bool,
    }

    impl Write for Refusing {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.refusing.load(Ordering::Relaxed) {
                if !self.filled_up && bytes.len() > 2 {
                    self.filled_up = true;
                    self.written.lock().extend_from_slice(&bytes[..2]);
                    return Ok(2);
                }
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.written.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An output that panics at its first write, as file-rotate does when it cannot
    /// rotate, and counts the writes it is asked for.
    struct Panicking(Arc<std::sync::atomic::AtomicUsize>);

    impl Write for Panicking {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.0.fetch_add(1, Ordering::Relaxed);
            panic!("assertion failed: old_path.exists()");
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_output_that_panics_keeps_the_flusher_and_its_lines_are_counted_as_refused() {
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let buffer = SharedBuffer::new(Output::new(Panicking(Arc::clone(&writes))), false);
        let flusher = Flusher::start(buffer.clone(), |_| {}).unwrap();
        let mut writer = buffer.clone();
        let written_out = || {
            let deadline = std::time::Instant::now() + PROMPTLY;
            loop {
                {
                    let pending = buffer.0.pending.lock();
                    if pending.bytes.is_empty() && pending.writing == 0 {
                        return;
                    }
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the flusher stopped taking lines"
                );
                thread::sleep(Duration::from_millis(1));
            }
        };
        writer.write_all(b"one\ntwo\n").unwrap();
        written_out();
        // The flusher lives on: later lines are taken out of the buffer too.
        writer.write_all(b"three\n").unwrap();
        written_out();
        {
            // Counted, to be told on stderr at exit (the log itself takes no more).
            let output = buffer.0.output.lock();
            assert_eq!(output.lost_lines, 3, "every line counted lost");
            assert!(
                output.last_error.contains("rotating"),
                "{}",
                output.last_error
            );
        }
        drop(flusher);
        assert_eq!(
            writes.load(Ordering::Relaxed),
            1,
            "a panicked output is not written to again"
        );
    }

    #[test]
    fn lines_the_output_refuses_are_counted_and_reported_once_it_takes_lines_again() {
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let written = Arc::new(Mutex::new(Vec::new()));
        let output = Refusing {
            refusing: Arc::clone(&refusing),
            written: Arc::clone(&written),
            filled_up: false,
        };
        let buffer = SharedBuffer::new(Output::new(output), false);
        let (reports, reported) = mpsc::channel();
        let flusher =
            Flusher::start(buffer.clone(), move |lost| reports.send(lost).unwrap()).unwrap();
        let mut writer = buffer.clone();
        writer.write_all(b"one\ntwo\n").unwrap();
        writer.write_all(b"three\n").unwrap();
        let written_out = || {
            let pending = buffer.0.pending.lock();
            pending.bytes.is_empty() && pending.writing == 0
        };
        while !written_out() {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(
            reported.try_recv().is_err(),
            "reported while the output still refuses lines"
        );
        refusing.store(false, Ordering::Relaxed);
        writer.write_all(b"four\n").unwrap();
        let Ok(Lost::Refused { lines, error }) = reported.recv_timeout(PROMPTLY) else {
            panic!("the refused lines were not reported");
        };
        assert_eq!(lines, 3);
        assert_eq!(
            error,
            io::Error::from(io::ErrorKind::StorageFull).to_string()
        );
        drop(flusher);
        assert_eq!(
            *written.lock(),
            b"on\nfour\n",
            "the line cut short is ended before the next one"
        );
    }
}
