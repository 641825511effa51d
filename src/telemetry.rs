//! The one place logging is wired: an asynchronous slog drain writing text or JSON
//! lines, with UTC RFC 3339 timestamps, to a size-rotated file or to stdout; and the
//! listening line that tells scripts and tests the port.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use parking_lot::Mutex;
use slog::{Drain, FnValue, Logger, PushFnValue, Record, info, o};

use slog_async::AsyncGuard;

mod text;

/// Lines queued for the log thread before new ones are dropped (and counted): the log
/// never blocks a request.
const LOG_QUEUE: usize = 16_384;

/// How long a log line may wait in the buffer before it is written out.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes buffered before they are written out without waiting for the flusher.
const BUFFER_BYTES: usize = 64 * 1024;

/// Bytes held back for the listening line at most: a start-up with more to say (a
/// recovery warning about each of many files) says it first rather than hold it all.
const HELD_BYTES: usize = 8 * 1024 * 1024;

/// How each log line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `<time> <LEVEL> <message>, key: value, ...`
    Text,
    /// One JSON object a line, with `ts`, `level`, `msg` and the event's keys.
    Json,
}

/// Where the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// `icewall.log` in the logs directory, rotated by size.
    File,
    /// Standard output, after the listening line (for containers and systemd).
    Stdout,
}

/// How and where to log.
pub struct LogOptions<'a> {
    pub format: LogFormat,
    pub target: LogTarget,
    /// For [`LogTarget::File`]: the directory of `icewall.log`, its size at which it is
    /// rotated, and how many rotated files are kept.
    pub dir: &'a Path,
    pub max_bytes: usize,
    pub keep: usize,
}

/// Keeps the log running; dropping it writes out every queued line, then flushes.
pub struct LogGuard {
    // Field order is drop order: drain the queue into the buffer, then flush it.
    _queue: AsyncGuard,
    flusher: Flusher,
    format: LogFormat,
    target: LogTarget,
}

/// A logger as `options` say. Keep the guard alive until exit, and call
/// [`LogGuard::announce_listening`] once the server listens.
///
/// # Errors
/// When the log directory cannot be created or the log file cannot be opened.
pub fn logger(options: &LogOptions) -> io::Result<(Logger, LogGuard)> {
    let output = match options.target {
        LogTarget::File => {
            std::fs::create_dir_all(options.dir)?;
            let path = options.dir.join("icewall.log");
            // FileRotate does not report an unusable path, so try it first.
            OpenOptions::new().create(true).append(true).open(&path)?;
            Output::File(FileRotate::new(
                path,
                AppendCount::new(options.keep),
                ContentLimit::BytesSurpassed(options.max_bytes),
                Compression::None,
                None,
            ))
        }
        LogTarget::Stdout => Output::Stdout(io::stdout()),
    };
    // On stdout, lines logged while starting wait for the listening line to go first.
    let held = options.target == LogTarget::Stdout;
    let buffer = SharedBuffer(Arc::new(Mutex::new(Sink {
        output,
        pending: Vec::with_capacity(BUFFER_BYTES),
        held,
    })));
    let flusher = Flusher::start(buffer.clone())?;
    let lines = match options.format {
        LogFormat::Text => text_lines(buffer),
        LogFormat::Json => json_lines(LineWriter {
            line: Vec::with_capacity(512),
            out: buffer,
        }),
    };
    let (drain, queue) = slog_async::Async::new(lines)
        .chan_size(LOG_QUEUE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("icewall-log".to_owned())
        .build_with_guard();
    let guard = LogGuard {
        _queue: queue,
        flusher,
        format: options.format,
        target: options.target,
    };
    Ok((Logger::root(drain.fuse(), o!()), guard))
}

/// The drain of [`LogFormat::Text`]: each line goes into the buffer whole.
fn text_lines(out: SharedBuffer) -> Box<dyn Drain<Ok = (), Err = slog::Never> + Send> {
    Box::new(text::TextLines::new(out).fuse())
}

/// The drain of [`LogFormat::Json`].
fn json_lines<W: Write + Send + 'static>(
    out: W,
) -> Box<dyn Drain<Ok = (), Err = slog::Never> + Send> {
    Box::new(
        slog_json::Json::new(out)
            .set_newlines(true)
            .add_key_value(o!(
                "ts" => FnValue(|_: &Record| timestamp().to_string()),
                "level" => FnValue(|record: &Record| record.level().as_str()),
                "msg" => PushFnValue(|record: &Record, out| out.emit(record.msg())),
            ))
            .build()
            .fuse(),
    )
}

fn timestamp() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_micros(SystemTime::now())
}

impl LogGuard {
    /// Prints `listening on http://<address>` as the first line on stdout, which
    /// scripts and tests wait for to learn the port: as a plain line, or, when the log
    /// is JSON on stdout, as a JSON record whose `msg` is that text. Then lets the lines
    /// logged while starting follow it.
    pub fn announce_listening(&self, address: SocketAddr) {
        let line = format!("listening on http://{address}");
        // Held while the line is written: no log line can go out before it.
        let mut sink = self.flusher.buffer.0.lock();
        if self.target == LogTarget::Stdout && self.format == LogFormat::Json {
            let first = Logger::root(std::sync::Mutex::new(json_lines(io::stdout())).fuse(), o!());
            info!(first, "{}", line; "address" => %address);
        } else {
            let _ = writeln!(io::stdout(), "{line}");
        }
        sink.held = false;
        sink.write_out();
    }
}

/// Milliseconds with microsecond precision, as every log line reports a duration
/// (`elapsed_ms`): three decimals at most, never binary noise like `0.14938300000000002`.
pub fn millis(duration: Duration) -> f64 {
    // An integer over 1000.0 is the double nearest that decimal, which prints as written.
    duration.as_micros() as f64 / 1000.0
}

/// `text` cut to `max_chars` characters (with `...` after), for logging what a client
/// sent without letting it fill the log.
pub fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    // No more bytes than that is no more characters either, without counting them.
    if text.len() <= max_chars {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
    }
}

enum Output {
    File(FileRotate<AppendCount>),
    Stdout(io::Stdout),
}

impl Output {
    fn as_write(&mut self) -> &mut dyn Write {
        match self {
            Output::File(file) => file,
            Output::Stdout(stdout) => stdout,
        }
    }
}

/// Formatted lines on their way out. `held` keeps them back (they are only buffered)
/// until the listening line has gone first.
struct Sink {
    output: Output,
    pending: Vec<u8>,
    held: bool,
}

impl Sink {
    fn write_out(&mut self) {
        if self.held {
            return;
        }
        let out = self.output.as_write();
        // A log that cannot be written (a full disk, a closed stdout) must not stop the
        // server: the lines are dropped.
        let _ = out.write_all(&self.pending);
        let _ = out.flush();
        self.pending.clear();
    }
}

/// The log's output behind a buffer. The JSON formatter flushes after every line; here
/// that flush is a no-op, and the flusher thread writes the buffer out instead, so a
/// busy server makes one write per 64 KiB or 100 ms rather than one per line.
#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<Sink>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut sink = self.0.lock();
        sink.pending.extend_from_slice(bytes);
        if sink.pending.len() >= HELD_BYTES {
            sink.held = false;
        }
        if sink.pending.len() >= BUFFER_BYTES {
            sink.write_out();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the JSON formatter writes into on the log thread: a line is put together here
/// and goes into the shared buffer whole, under one lock, rather than a lock for each of
/// the many pieces the formatter writes it in (the text lines come whole already).
struct LineWriter {
    line: Vec<u8>,
    out: SharedBuffer,
}

impl LineWriter {
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

struct Flusher {
    buffer: SharedBuffer,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    fn start(buffer: SharedBuffer) -> io::Result<Flusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let flushed = buffer.clone();
        let thread = thread::Builder::new()
            .name("icewall-log-flush".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(FLUSH_INTERVAL)
                {
                    flushed.0.lock().write_out();
                }
            })?;
        Ok(Flusher {
            buffer,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged by a server that never listened still go out.
        let mut sink = self.buffer.0.lock();
        sink.held = false;
        sink.write_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_written_in_pieces_reaches_the_buffer_whole() {
        let buffer = SharedBuffer(Arc::new(Mutex::new(Sink {
            output: Output::Stdout(io::stdout()),
            pending: Vec::new(),
            held: true,
        })));
        let mut lines = LineWriter {
            line: Vec::new(),
            out: buffer.clone(),
        };
        lines.write_all(b"first, ").unwrap();
        lines.write_all(b"key: value").unwrap();
        assert!(buffer.0.lock().pending.is_empty(), "half a line went out");
        lines.write_all(b"\n").unwrap();
        lines.write_all(b"second").unwrap();
        assert_eq!(buffer.0.lock().pending, b"first, key: value\n");
        lines.flush().unwrap();
        lines.write_all(b"third").unwrap();
        drop(lines);
        assert_eq!(
            buffer.0.lock().pending,
            b"first, key: value\nsecondthird",
            "a flush and the end pass on what was written"
        );
    }

    #[test]
    fn millis_have_at_most_three_decimals() {
        assert_eq!(millis(Duration::from_nanos(149_383)).to_string(), "0.149");
        assert_eq!(millis(Duration::from_micros(37_783)).to_string(), "37.783");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
    }

    #[test]
    fn truncate_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(truncate("/api/jobs", 256), "/api/jobs");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ééé", 2), "éé...");
    }
}
