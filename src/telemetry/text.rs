//! The text log line, `<time> <LEVEL> <message>, key: value, ...`, written straight
//! into bytes: the line slog-term's `FullFormat` writes, without its formatting
//! machinery, as every request logs one (it was most of the log thread's time).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use slog::{Drain, KV, Key, OwnedKVList, Record, Serializer};

/// A drain writing each record as one text line, with one `write_all` of the whole line.
pub struct TextLines<W: Write> {
    state: RefCell<LineState<W>>,
    values: Values,
}

/// What the values of a drain's lines may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Anything: control characters are escaped.
    Any,
    /// Nothing that needs escaping, as every value is checked where it comes from.
    FreeOfControls,
}

struct LineState<W> {
    out: W,
    /// The line being put together, kept to reuse its allocation.
    line: Vec<u8>,
    clock: SecondsCache,
}

impl<W: Write> TextLines<W> {
    pub fn new(out: W, values: Values) -> TextLines<W> {
        TextLines {
            state: RefCell::new(LineState {
                out,
                line: Vec::with_capacity(512),
                clock: SecondsCache::default(),
            }),
            values,
        }
    }
}

impl<W: Write> Drain for TextLines<W> {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record, values: &OwnedKVList) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let LineState { out, line, clock } = &mut *state;
        line.clear();
        clock.write(super::line_time::now(), line);
        line.push(b' ');
        line.extend_from_slice(record.level().as_short_str().as_bytes());
        line.push(b' ');
        let message_start = line.len();
        write_arguments(line, record.msg())?;
        let mut fields = Fields {
            comma_needed: line.len() > message_start,
            line,
        };
        record.kv().serialize(record, &mut fields)?;
        values.serialize(record, &mut fields)?;
        if self.values == Values::Any {
            escape_controls(line, message_start);
        }
        line.push(b'\n');
        out.write_all(line)
    }
}

/// Escapes the control characters of `line` from `start` on (as `\n`, `\u{1b}`; a tab
/// is left), so that no value (a file name met at start-up, say) can end the line and
/// write one of its own, or reach a terminal that shows the log.
fn escape_controls(line: &mut Vec<u8>, start: usize) {
    let is_control = |byte: u8| (byte < 0x20) & (byte != b'\t') | (byte == 0x7f);
    // Every line is looked at, and nearly none has one: a look without branches, which
    // the compiler does 16 bytes at a time, then a second one to find it.
    if !line[start..]
        .iter()
        .fold(false, |found, &byte| found | is_control(byte))
    {
        return;
    }
    let Some(first) = line[start..].iter().position(|&byte| is_control(byte)) else {
        return;
    };
    let rest = line.split_off(start + first);
    for byte in rest {
        match byte {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            byte if is_control(byte) => {
                let _ = write!(line, "\\u{{{byte:x}}}");
            }
            byte => line.push(byte),
        }
    }
}

/// Formatted arguments, copied as they are when they are only a literal.
fn write_arguments(line: &mut Vec<u8>, arguments: &fmt::Arguments) -> io::Result<()> {
    match arguments.as_str() {
        Some(text) => {
            line.extend_from_slice(text.as_bytes());
            Ok(())
        }
        None => line.write_fmt(*arguments),
    }
}

/// UTC RFC 3339 time with microseconds. The part up to the seconds changes once a
/// second, so it is formatted then and only the microseconds are written for each line
/// in between, in place, after it: one copy of the whole time into the line.
#[derive(Default)]
struct SecondsCache {
    second: Option<u64>,
    /// `2026-11-30T23:43:54.`, then the last line's `123456Z`.
    stamp: Vec<u8>,
}

/// `00` to `99`, two digits a lookup.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The last two digits of `value`.
fn digit_pair(value: usize) -> &'static [u8] {
    &DIGIT_PAIRS[value % 100 * 2..][..2]
}

impl SecondsCache {
    /// Writes the time `since_epoch` the Unix epoch.
    fn write(&mut self, since_epoch: Duration, line: &mut Vec<u8>) {
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            // `2026-11-30T23:43:54Z`: everything but the `Z`, then the decimal point.
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            self.stamp.clear();
            self.stamp
                .extend_from_slice(text.trim_end_matches('Z').as_bytes());
            self.stamp.extend_from_slice(b".000000Z");
            self.second = Some(second);
        }
        // Always six digits and the `Z` (the stamp ends with them).
        let micros = since_epoch.subsec_micros() as usize;
        let fraction = self.stamp.len() - 7;
        let digits = &mut self.stamp[fraction..fraction + 6];
        digits[..2].copy_from_slice(digit_pair(micros / 10_000));
        digits[2..4].copy_from_slice(digit_pair(micros / 100));
        digits[4..].copy_from_slice(digit_pair(micros));
        line.extend_from_slice(&self.stamp);
    }
}

/// Writes `, key: value` for each field, as slog-term does: values as `Display` shows
/// them, the first without the comma when the message is empty.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    comma_needed: bool,
}

impl Fields<'_> {
    fn key(&mut self, key: Key) {
        if self.comma_needed {
            self.line.extend_from_slice(b", ");
        }
        self.comma_needed = true;
        self.line.extend_from_slice(key.as_bytes());
        self.line.extend_from_slice(b": ");
    }

    fn integer(&mut self, key: Key, value: impl itoa::Integer) -> slog::Result {
        self.key(key);
        self.line
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        Ok(())
    }
}

impl Serializer for Fields<'_> {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        self.key(key);
        write_arguments(self.line, value)?;
        Ok(())
    }

    fn emit_str(&mut self, key: Key, value: &str) -> slog::Result {
        self.key(key);
        self.line.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn emit_bool(&mut self, key: Key, value: bool) -> slog::Result {
        self.emit_str(key, if value { "true" } else { "false" })
    }

    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.emit_str(key, "None")
    }

    fn emit_unit(&mut self, key: Key) -> slog::Result {
        self.emit_str(key, "()")
    }

    // Each integer type of its own, so that it is written by `itoa`: slog's default
    // goes through `emit_arguments`, a `format_args!` each.
    fn emit_usize(&mut self, key: Key, value: usize) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_isize(&mut self, key: Key, value: isize) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_u8(&mut self, key: Key, value: u8) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_i8(&mut self, key: Key, value: i8) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_u16(&mut self, key: Key, value: u16) -> slog::Result {
        // Every request's status: three digits, one and a pair, without `itoa`'s buffer.
        if (100..1000).contains(&value) {
            self.key(key);
            let value = usize::from(value);
            let pair = digit_pair(value);
            self.line
                .extend_from_slice(&[b'0' + (value / 100) as u8, pair[0], pair[1]]);
            return Ok(());
        }
        self.integer(key, value)
    }

    fn emit_i16(&mut self, key: Key, value: i16) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_u32(&mut self, key: Key, value: u32) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_i32(&mut self, key: Key, value: i32) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_u64(&mut self, key: Key, value: u64) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_i64(&mut self, key: Key, value: i64) -> slog::Result {
        self.integer(key, value)
    }

    fn emit_f64(&mut self, key: Key, value: f64) -> slog::Result {
        self.key(key);
        if let Some(thousandths) = whole_thousandths(value) {
            write_thousandths(self.line, thousandths);
            return Ok(());
        }
        // Ryu and `Display` both give the shortest digits that read back as the value;
        // they differ in spelling only: Ryu adds `.0` to a whole number and writes
        // exponents, which `Display` never does (those go through `Display` itself).
        let mut shortest = ryu::Buffer::new();
        match value.is_finite().then(|| shortest.format_finite(value)) {
            Some(digits) if !digits.contains('e') => {
                let digits = digits.strip_suffix(".0").unwrap_or(digits);
                self.line.extend_from_slice(digits.as_bytes());
            }
            _ => write!(self.line, "{value}")?,
        }
        Ok(())
    }
}

/// `value` in thousandths when it is a whole number of them under a billion, as
/// `telemetry::millis` makes of a duration (most of the log's numbers). Its shortest
/// digits are then those thousandths with the point put back: no other decimal that
/// short is within a rounding step of it, so Ryu's search (a fifth of a request's line)
/// is not needed.
fn whole_thousandths(value: f64) -> Option<u64> {
    // NaN fails the comparison; -0.0 is written `-0`.
    if !(value.is_sign_positive() && value < 1e9) {
        return None;
    }
    // Rounded by adding a half and cutting (the value is positive): `round` is a call
    // into libm on this target. Whatever it gives, the check says whether it is exact.
    let thousandths = (value * 1000.0 + 0.5) as u64;
    (thousandths as f64 / 1000.0 == value).then_some(thousandths)
}

/// `thousandths` as a decimal, without trailing zeros (nor a point for a whole number),
/// as `Display` writes it.
fn write_thousandths(line: &mut Vec<u8>, thousandths: u64) {
    line.extend_from_slice(itoa::Buffer::new().format(thousandths / 1000).as_bytes());
    let fraction = thousandths % 1000;
    if fraction > 0 {
        let digit = |value: u64| b'0' + (value % 10) as u8;
        let written = [
            b'.',
            digit(fraction / 100),
            digit(fraction / 10),
            digit(fraction),
        ];
        let zeros = written
            .iter()
            .rev()
            .take_while(|&&byte| byte == b'0')
            .count();
        line.extend_from_slice(&written[..written.len() - zeros]);
    }
}

#[cfg(test)]
mod tests;
