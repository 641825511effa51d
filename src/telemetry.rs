//! The one place logging is wired: an asynchronous slog drain writing to a size-rotated
//! file with UTC RFC 3339 timestamps.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use parking_lot::Mutex;
use slog::{Drain, Logger, o};

use slog_async::AsyncGuard;

/// Lines queued for the log thread before new ones are dropped (and counted): the log
/// never blocks a request.
const LOG_QUEUE: usize = 16_384;

/// How long a log line may wait in the buffer before it reaches the file.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Keeps the log running; dropping it writes out every queued line, then flushes.
pub struct LogGuard {
    // Field order is drop order: drain the queue into the buffer, then flush it.
    _queue: AsyncGuard,
    _flusher: Flusher,
}

/// A logger writing to `dir/icewall.log`, rotated at `max_bytes`, keeping `keep` old
/// files. Keep the guard alive until exit.
///
/// # Errors
/// When the directory cannot be created or the log file cannot be opened.
pub fn file_logger(dir: &Path, max_bytes: usize, keep: usize) -> io::Result<(Logger, LogGuard)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("icewall.log");
    // FileRotate does not report an unusable path, so try it first.
    OpenOptions::new().create(true).append(true).open(&path)?;
    let file = FileRotate::new(
        path,
        AppendCount::new(keep),
        ContentLimit::BytesSurpassed(max_bytes),
        Compression::None,
        None,
    );
    let buffer = SharedBuffer(Arc::new(Mutex::new(BufWriter::with_capacity(
        64 * 1024,
        file,
    ))));
    let flusher = Flusher::start(buffer.clone())?;
    let decorator = slog_term::PlainDecorator::new(buffer);
    let format = slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(|out: &mut dyn io::Write| {
            write!(
                out,
                "{}",
                humantime::format_rfc3339_micros(SystemTime::now())
            )
        })
        .build()
        .fuse();
    let (drain, queue) = slog_async::Async::new(format)
        .chan_size(LOG_QUEUE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("icewall-log".to_owned())
        .build_with_guard();
    let guard = LogGuard {
        _queue: queue,
        _flusher: flusher,
    };
    Ok((Logger::root(drain.fuse(), o!()), guard))
}

/// The log file behind a buffer. The formatter flushes after every line; here that
/// flush is a no-op, and the flusher thread writes the buffer out instead, so a busy
/// server makes one write per 64 KiB or 100 ms rather than one per line.
#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<BufWriter<FileRotate<AppendCount>>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
                    let _ = flushed.0.lock().flush();
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
        let _ = self.buffer.0.lock().flush();
    }
}
