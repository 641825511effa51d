//! The one place logging is wired: slog drains writing text or JSON lines, with UTC RFC
//! 3339 timestamps, to a size-rotated file or to stdout (through `sink`); and the
//! listening line that tells scripts and tests the port.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use slog::{Drain, FnValue, Logger, OwnedKVList, PushFnValue, Record, info, o, warn};

use slog_async::AsyncGuard;
use thread_local::ThreadLocal;

mod line_time;
mod sink;
mod text;

pub use line_time::stamped_at;

use sink::{Flusher, LineWriter, Lost, Output, SharedBuffer};

/// Lines queued for the log thread before new ones are dropped (and counted): the log
/// never blocks a request.
const LOG_QUEUE: usize = 16_384;

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
    /// The node's id in cluster mode, which every line then names.
    pub node_id: Option<String>,
}

/// Keeps the log running; dropping it writes out every queued line, then flushes.
pub struct LogGuard {
    // Field order is drop order: drain the queue into the buffer, then flush it.
    _queue: AsyncGuard,
    flusher: Flusher,
    request_lines: RequestLines,
    target: LogTarget,
    made: MadeForTheLog,
}

/// What opening the log file made on disk, so that a start refused before anything was
/// logged can leave the disk as it found it.
#[derive(Default)]
struct MadeForTheLog {
    /// `icewall.log`, when it did not exist.
    file: Option<PathBuf>,
    /// The directories made for it, the deepest first.
    dirs: Vec<PathBuf>,
}

impl MadeForTheLog {
    /// Makes `dir` and the directories above it that are missing, and notes them.
    fn make_dirs(&mut self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(path) = at.filter(|path| !path.as_os_str().is_empty()) {
            if path.exists() {
                break;
            }
            missing.push(path.to_path_buf());
            at = path.parent();
        }
        std::fs::create_dir_all(dir)?;
        self.dirs = missing;
        Ok(())
    }

    /// Removes the file if it is still empty, then each directory made if it is empty:
    /// anything logged meanwhile, or put there by another process, stays.
    fn remove_if_unused(&self) {
        if let Some(file) = &self.file
            && std::fs::metadata(file).is_ok_and(|metadata| metadata.len() == 0)
        {
            let _ = std::fs::remove_file(file);
        }
        for dir in &self.dirs {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// A logger as `options` say, for the server's events: its lines are formatted on a
/// thread of their own (slog-async). Keep the guard alive until exit, and call
/// [`LogGuard::announce_listening`] once the server listens.
///
/// # Errors
/// When the log directory cannot be created or the log file cannot be opened.
pub fn logger(options: &LogOptions) -> io::Result<(Logger, LogGuard)> {
    let mut made = MadeForTheLog::default();
    let output = match options.target {
        LogTarget::File => {
            made.make_dirs(options.dir)?;
            let path = options.dir.join("icewall.log");
            // FileRotate does not report an unusable path, so try it first.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(|_| made.file = Some(path.clone()))
                .or_else(|error| match error.kind() {
                    io::ErrorKind::AlreadyExists => {
                        OpenOptions::new().append(true).open(&path).map(drop)
                    }
                    _ => Err(error),
                })
                .inspect_err(|_| made.remove_if_unused())?;
            Output::new(FileRotate::new(
                path,
                AppendCount::new(options.keep),
                ContentLimit::BytesSurpassed(options.max_bytes),
                Compression::None,
                None,
            ))
        }
        LogTarget::Stdout => Output::new(io::stdout()),
    };
    let (logger, mut guard) = logger_into(
        output,
        options.format,
        options.target,
        options.node_id.clone(),
    )?;
    guard.made = made;
    Ok((logger, guard))
}

/// [`logger`] writing into `output`.
fn logger_into(
    output: Output,
    format: LogFormat,
    target: LogTarget,
    node_id: Option<String>,
) -> io::Result<(Logger, LogGuard)> {
    // On stdout, lines logged while starting wait for the listening line to go first.
    let buffer = SharedBuffer::new(output, target == LogTarget::Stdout);
    let request_lines = RequestLines {
        format,
        buffer: buffer.clone(),
        node_id: node_id.clone(),
    };
    let reporter = request_lines.logger();
    let flusher = Flusher::start(buffer.clone(), move |lost| match lost {
        Lost::Dropped(lines) => {
            warn!(reporter, "log lines dropped: the log output did not keep up"; "lines" => lines);
        }
        Lost::Refused { lines, error } => {
            warn!(reporter, "log lines lost: the log output refused them"; "lines" => lines, "error" => error);
        }
    })?;
    let events = lines_into(format, buffer.clone(), text::Values::Any);
    let events: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = match target {
        LogTarget::Stdout => Box::new(WarningsWhileHeld {
            events,
            buffer,
            stderr: text::TextLines::new(io::stderr(), text::Values::Any),
        }),
        LogTarget::File => events,
    };
    let (drain, queue) = slog_async::Async::new(events)
        .chan_size(LOG_QUEUE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("icewall-log".to_owned())
        .build_with_guard();
    let guard = LogGuard {
        _queue: queue,
        flusher,
        request_lines,
        target,
        made: MadeForTheLog::default(),
    };
    Ok((named(Logger::root(drain.fuse(), o!()), &node_id), guard))
}

/// Makes loggers that format each line on the thread that logs it, straight into the
/// log's buffer: for the request lines, one logger per HTTP worker. A line of every
/// request through slog-async's queue cost that request more than formatting it where
/// it is (an allocation for the logger of its fields, the record's copy into the queue
/// and the wake-up of the log thread, each line crossing between cores). The buffer
/// never waits for the output (see `sink`), so neither does a request.
#[derive(Clone)]
pub struct RequestLines {
    format: LogFormat,
    buffer: SharedBuffer,
    node_id: Option<String>,
}

impl RequestLines {
    /// A logger of its own: each thread that logs through it formats its lines in a
    /// drain of its own, with no lock (see `PerThread`).
    pub fn logger(&self) -> Logger {
        let (format, buffer) = (self.format, self.buffer.clone());
        // A request line's values are the method, the path (which the HTTP parser takes
        // without a control character), numbers and the request id (visible ASCII):
        // nothing to escape, and a look for it would cost every request.
        let lines = PerThread::new(move || {
            lines_into(format, buffer.clone(), text::Values::FreeOfControls)
        });
        named(Logger::root(lines.fuse(), o!()), &self.node_id)
    }
}

/// The events' drain on stdout, where lines wait for the listening line: a warning
/// logged meanwhile (a cluster node that cannot reach its database yet, for up to
/// `--database-start-timeout`; a damaged file met by recovery) also goes to stderr at
/// once, as text, so that whoever watches the start sees it while it matters.
struct WarningsWhileHeld<D> {
    events: D,
    buffer: SharedBuffer,
    stderr: text::TextLines<io::Stderr>,
}

impl<D: Drain<Ok = (), Err = slog::Never>> Drain for WarningsWhileHeld<D> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        if record.level().is_at_least(slog::Level::Warning) && self.buffer.is_held() {
            // Best effort: stdout has the line anyway.
            let _ = self.stderr.log(record, values);
        }
        self.events.log(record, values)
    }
}

/// A drain of its own for each thread that logs through it: a request logger is used by
/// one HTTP worker, and a lock around one drain would cost two atomic read-modify-writes
/// a line, each a full barrier. A panic while logging (a value that cannot be formatted)
/// leaves the thread's drain in the middle of a line (half a JSON object), so the next
/// line gets a new one.
struct PerThread<D: Send> {
    // Unwind safe: a drain that a panic interrupted is made anew before its next line,
    // and `make` holds a format and a handle on the buffer, nothing a panic can leave
    // half done.
    drains: AssertUnwindSafe<ThreadLocal<ThreadsDrain<D>>>,
    make: AssertUnwindSafe<Box<dyn Fn() -> D + Send + Sync>>,
}

struct ThreadsDrain<D> {
    drain: RefCell<D>,
    /// A line began and has not ended: a panic left it.
    mid_line: Cell<bool>,
}

impl<D: Send> PerThread<D> {
    fn new(make: impl Fn() -> D + Send + Sync + 'static) -> PerThread<D> {
        PerThread {
            drains: AssertUnwindSafe(ThreadLocal::new()),
            make: AssertUnwindSafe(Box::new(make)),
        }
    }
}

impl<D: Drain + Send> Drain for PerThread<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<D::Ok, D::Err> {
        let threads = self.drains.get_or(|| ThreadsDrain {
            drain: RefCell::new((self.make.0)()),
            mid_line: Cell::new(false),
        });
        let Ok(mut drain) = threads.drain.try_borrow_mut() else {
            // A line logged while formatting another on this thread (from inside a
            // value): a drain of its own.
            return (self.make.0)().log(record, values);
        };
        if threads.mid_line.replace(true) {
            *drain = (self.make.0)();
        }
        let logged = drain.log(record, values);
        threads.mid_line.set(false);
        logged
    }
}

/// `logger` naming the node, in cluster mode.
fn named(logger: Logger, node_id: &Option<String>) -> Logger {
    match node_id {
        Some(node_id) => logger.new(o!("node_id" => node_id.clone())),
        None => logger,
    }
}

/// The drain of `format`, writing into `buffer`.
fn lines_into(
    format: LogFormat,
    buffer: SharedBuffer,
    values: text::Values,
) -> Box<dyn Drain<Ok = (), Err = slog::Never> + Send> {
    match format {
        LogFormat::Text => Box::new(text::TextLines::new(buffer, values).fuse()),
        LogFormat::Json => json_lines(LineWriter::new(buffer)),
    }
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
    humantime::format_rfc3339_micros(UNIX_EPOCH + line_time::now())
}

impl LogGuard {
    /// Prints `listening on http://<address>` as the first line on stdout, which
    /// scripts and tests wait for to learn the port: as a plain line, or, when the log
    /// is JSON on stdout, as a JSON record whose `msg` is that text. Then lets the lines
    /// logged while starting follow it.
    pub fn announce_listening(&self, address: SocketAddr) {
        let line = format!("listening on http://{address}");
        self.flusher.buffer().release_after(|| {
            if self.target == LogTarget::Stdout && self.request_lines.format == LogFormat::Json {
                let first = Logger::root(PerThread::new(|| json_lines(io::stdout())).fuse(), o!());
                info!(first, "{}", line; "address" => %address);
            } else {
                let _ = writeln!(io::stdout(), "{line}");
            }
        });
    }

    /// Ends the log of a server that never started: every line is written out, then
    /// the log file and the directories made for it are removed if nothing was logged,
    /// so that a refused start leaves nothing behind (its reason goes to stderr).
    pub fn end_unused(mut self) {
        let made = std::mem::take(&mut self.made);
        // Written out first: a line logged is a reason to keep the file.
        drop(self);
        made.remove_if_unused();
    }

    /// The loggers of request lines, writing into this log.
    pub fn request_lines(&self) -> RequestLines {
        self.request_lines.clone()
    }
}

/// Milliseconds with microsecond precision, as every log line reports a duration
/// (`elapsed_ms`): three decimals at most, never binary noise like `0.14938300000000002`.
pub fn millis(duration: Duration) -> f64 {
    // An integer over 1000.0 is the double nearest that decimal, which prints as written.
    // In a u64 (saturating past 584,000 years): `as_micros` is a u128, whose conversion
    // to a double is a call of its own, on every request's line.
    let micros = duration
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(duration.subsec_micros()));
    micros as f64 / 1000.0
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

#[cfg(test)]
mod tests {
    use std::thread::JoinHandle;

    use super::*;

    #[test]
    fn millis_have_at_most_three_decimals() {
        assert_eq!(millis(Duration::from_nanos(149_383)).to_string(), "0.149");
        assert_eq!(millis(Duration::from_micros(37_783)).to_string(), "37.783");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
        // The microseconds' double, as `as_micros` would give it, up to a u64 of them.
        for (seconds, nanos) in [(0, 999), (59, 999_999_999), (1 << 40, 123_456_789)] {
            let duration = Duration::new(seconds, nanos);
            assert_eq!(millis(duration), duration.as_micros() as f64 / 1000.0);
        }
        assert_eq!(millis(Duration::MAX), u64::MAX as f64 / 1000.0);
    }

    #[test]
    fn truncate_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(truncate("/api/jobs", 256), "/api/jobs");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ééé", 2), "éé...");
    }

    /// A JSON log of node `node-7` into a pipe, and the pipe's other end.
    fn node_log() -> (Logger, LogGuard, io::PipeReader) {
        let (reader, writer) = io::pipe().unwrap();
        let node = Some("node-7".to_owned());
        let (events, guard) =
            logger_into(Output::new(writer), LogFormat::Json, LogTarget::File, node).unwrap();
        (events, guard, reader)
    }

    /// All that comes through `reader`, read from now until every writer is gone.
    pub(super) fn read_to_end_later(mut reader: io::PipeReader) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
            bytes
        })
    }

    /// The JSON lines of a log's `output`.
    fn json_lines_of(output: &[u8]) -> Vec<serde_json::Value> {
        (output.split(|&byte| byte == b'\n'))
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).unwrap())
            .collect()
    }

    #[test]
    fn in_cluster_mode_events_and_request_lines_name_the_node() {
        let (events, guard, reader) = node_log();
        let output = read_to_end_later(reader);
        info!(events, "an event");
        info!(guard.request_lines().logger(), "a request");
        drop((events, guard));
        let lines = json_lines_of(&output.join().unwrap());
        // Events pass through the log thread, request lines do not: in either order.
        let mut messages: Vec<_> = lines.iter().map(|line| line["msg"].to_string()).collect();
        messages.sort();
        assert_eq!(messages, [r#""a request""#, r#""an event""#]);
        assert!(lines.iter().all(|line| line["node_id"] == "node-7"));
    }

    #[test]
    fn the_report_of_lines_dropped_names_the_node_and_counts_every_line_not_written() {
        let (events, guard, reader) = node_log();
        let requests = guard.request_lines().logger();
        // Nobody reads the pipe yet: more lines than the log holds back, so some drop.
        for request in 0..200_000 {
            info!(requests, "request"; "request" => request);
        }
        let output = read_to_end_later(reader);
        drop((events, requests, guard));
        let lines = json_lines_of(&output.join().unwrap());
        let (reports, requests): (Vec<_>, Vec<_>) = lines
            .iter()
            .partition(|line| line["msg"] == "log lines dropped: the log output did not keep up");
        assert!(!reports.is_empty(), "the drop is reported");
        assert!(reports.iter().all(|report| report["node_id"] == "node-7"));
        let dropped: u64 = reports
            .iter()
            .map(|report| report["lines"].as_u64().unwrap())
            .sum();
        assert!(requests.len() < 200_000, "nothing was dropped");
        assert_eq!(dropped, 200_000 - requests.len() as u64);
    }

    #[test]
    fn a_panic_while_logging_leaves_the_logger_usable_and_no_half_line_behind() {
        struct Unformattable;
        impl slog::Value for Unformattable {
            fn serialize(
                &self,
                _: &Record,
                _: slog::Key,
                _: &mut dyn slog::Serializer,
            ) -> slog::Result {
                panic!("a value that cannot be formatted")
            }
        }
        let (events, guard, reader) = node_log();
        let output = read_to_end_later(reader);
        let requests = guard.request_lines().logger();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            info!(requests, "cut short"; "fine" => 1, "broken" => Unformattable);
        }));
        assert!(panicked.is_err());
        info!(requests, "the next line");
        drop((events, requests, guard));
        let lines = json_lines_of(&output.join().unwrap());
        let messages: Vec<_> = lines.iter().map(|line| line["msg"].clone()).collect();
        assert_eq!(messages, ["the next line"]);
    }
}
