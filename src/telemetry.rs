//! The one place logging is wired: an asynchronous slog drain writing to a size-rotated
//! file with UTC RFC 3339 timestamps, or a discarding logger for tests.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use slog::{Drain, Logger, o};

pub use slog_async::AsyncGuard;

/// Lines queued for the log thread before new ones are dropped (and counted): the log
/// never blocks a request.
const LOG_QUEUE: usize = 16_384;

/// A logger writing to `dir/icewall.log`, rotated at `max_bytes`, keeping `keep` old
/// files. Keep the guard alive until exit: dropping it flushes the queue.
///
/// # Errors
/// When the directory cannot be created or the log file cannot be opened.
pub fn file_logger(dir: &Path, max_bytes: usize, keep: usize) -> io::Result<(Logger, AsyncGuard)> {
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
    let decorator = slog_term::PlainDecorator::new(file);
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
    let (drain, guard) = slog_async::Async::new(format)
        .chan_size(LOG_QUEUE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("icewall-log".to_owned())
        .build_with_guard();
    Ok((Logger::root(drain.fuse(), o!()), guard))
}

/// A logger that drops everything, for tests.
pub fn discard_logger() -> Logger {
    Logger::root(slog::Discard, o!())
}
