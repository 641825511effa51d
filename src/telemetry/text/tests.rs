//! Tests of the text log line: the same lines as slog-term, numbers as `Display` writes
//! them, the time as RFC 3339 with microseconds.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use slog::{Logger, info, o, warn};

use super::*;

/// What a drain wrote, shared with the test that reads it.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Write for Written {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Written {
    /// The lines without their timestamps, which differ between two drains.
    fn lines_after_time(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|line| line.split_once(' ').expect("a time first").1.to_owned())
            .collect()
    }
}

/// A logger writing text lines, any values escaped, into `out`.
fn text_logger(out: impl Write + Send + 'static) -> Logger {
    Logger::root(Mutex::new(TextLines::new(out, Values::Any)).fuse(), o!())
}

/// The same events through slog-term's `FullFormat` and through `TextLines`.
fn both(log: impl Fn(&Logger)) -> (Vec<String>, Vec<String>) {
    let term = Written::default();
    let format = slog_term::FullFormat::new(slog_term::PlainDecorator::new(term.clone()))
        .use_custom_timestamp(|out: &mut dyn Write| write!(out, "time"))
        .build();
    log(&Logger::root(Mutex::new(format).fuse(), o!()));
    let ours = Written::default();
    log(&text_logger(ours.clone()));
    (term.lines_after_time(), ours.lines_after_time())
}

#[test]
fn lines_are_the_ones_slog_term_writes() {
    let (term, ours) = both(|logger| {
        info!(logger, "started");
        info!(logger, "job {} of {}", 3, 4; "id" => "abc");
        warn!(logger, ""; "only" => "fields", "n" => 7u64);
        let job = logger.new(o!("job_id" => "j-1", "teams" => 3usize));
        let step = job.new(o!("step" => 2u8));
        info!(step, "request, with a comma"; "status" => 200u16, "ok" => true);
        info!(
            job,
            "every kind";
            "i8" => -8i8, "i16" => -16i16, "i32" => -32i32, "i64" => i64::MIN,
            "isize" => -1isize, "u32" => u32::MAX, "u64" => u64::MAX,
            "f32" => 1.5f32, "char" => 'x', "unit" => (), "none" => None::<u8>,
            "some" => Some(5u8), "false" => false, "display" => %"shown", "debug" => ?"quoted",
        );
    });
    assert_eq!(ours, term);
    assert_eq!(ours.len(), 5);
}

#[test]
fn numbers_with_a_fraction_are_written_as_display_writes_them() {
    // Durations in milliseconds (what the log mostly holds), then the edges where Ryu
    // and `Display` spell the same value differently, then a spread of bit patterns.
    let mut values: Vec<f64> = (0..5000u64)
        .map(|micros| (micros * 7919 % 10_000_000) as f64 / 1000.0)
        .chain((0..200_000u64).map(|micros| micros as f64 / 1000.0))
        .chain(
            [999_999_999_999u64, 1_000_000_000_000, 123_456_789_012]
                .map(|micros| micros as f64 / 1000.0),
        )
        .collect();
    values.extend([
        0.0,
        -0.0,
        2000.0,
        0.0005,
        1.0005,
        999_999_999.999,
        1e9,
        0.1,
        0.3,
        1e15,
        1e16,
        1e17,
        1e21,
        1e-5,
        1e-6,
        1e-7,
        0.1 + 0.2,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -123.456,
    ]);
    let mut bits = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..5000 {
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        values.push(f64::from_bits(bits));
    }
    for value in values {
        let mut line = Vec::new();
        Fields {
            line: &mut line,
            comma_needed: false,
        }
        .emit_f64("v", value)
        .unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), format!("v: {value}"));
    }
}

#[test]
fn every_u16_is_written_as_display_writes_it() {
    for value in 0..=u16::MAX {
        let mut line = Vec::new();
        Fields {
            line: &mut line,
            comma_needed: true,
        }
        .emit_u16("status", value)
        .unwrap();
        assert_eq!(line, format!(", status: {value}").into_bytes());
    }
}

#[test]
fn the_time_is_rfc_3339_utc_with_microseconds_across_seconds() {
    let mut clock = SecondsCache::default();
    let start = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    for offset_micros in [
        0,
        1,
        999_999,
        1_000_000,
        1_000_017,
        1_123_456,
        1_010_101,
        1_999_999,
        86_400_000_000,
    ] {
        let at = start + Duration::from_micros(offset_micros);
        let mut line = Vec::new();
        clock.write(at.duration_since(UNIX_EPOCH).unwrap(), &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            humantime::format_rfc3339_micros(at).to_string()
        );
    }
}

/// Counts the writes it is given.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Writes {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().push(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_line_goes_out_whole_in_one_write() {
    let writes = Writes::default();
    let logger = text_logger(writes.clone());
    let job = logger.new(o!("job_id" => "j-1"));
    info!(job, "request"; "status" => 200u16, "elapsed_ms" => 1.5f64);
    warn!(logger, "second {}", 2);
    let writes = writes.0.lock().unwrap();
    assert_eq!(writes.len(), 2, "{writes:?}");
    for line in writes.iter() {
        assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
    }
    // A record's own fields come last first, as slog hands them to every drain.
    let first = String::from_utf8_lossy(&writes[0]);
    assert!(
        first.ends_with(" INFO request, elapsed_ms: 1.5, status: 200, job_id: j-1\n"),
        "{first}"
    );
}

#[test]
fn a_value_cannot_end_its_line_and_write_another() {
    let written = Written::default();
    let logger = text_logger(written.clone());
    let forged = "x\n2026-12-02T00:00:00.000000Z INFO request, path: FAKE\r\u{1b}[2J\u{7f}";
    warn!(logger, "skipping an unknown file: {}", forged; "name" => forged, "tab" => "a\tb");
    let lines = written.lines_after_time();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let escaped = r"x\n2026-12-02T00:00:00.000000Z INFO request, path: FAKE\r\u{1b}[2J\u{7f}";
    assert_eq!(
        lines[0],
        format!("WARN skipping an unknown file: {escaped}, tab: a\tb, name: {escaped}")
    );
}

#[test]
fn a_line_logged_stamped_has_its_stamp_for_its_time() {
    let written = Written::default();
    let logger = text_logger(written.clone());
    let ago = Duration::from_secs(90);
    let before = SystemTime::now() - ago;
    super::super::stamped_at(crate::moment::Moment::now().before(ago), || {
        info!(logger, "request");
    });
    info!(logger, "after");
    let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
    let times: Vec<SystemTime> = text
        .lines()
        .map(|line| humantime::parse_rfc3339(line.split_once(' ').unwrap().0).unwrap())
        .collect();
    let slack = Duration::from_millis(50);
    assert!(
        before - slack <= times[0] && times[0] <= before + slack,
        "{text}"
    );
    assert!(times[1] >= before + ago - slack, "{text}");
}
