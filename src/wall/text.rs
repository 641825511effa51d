//! The classic text form of a wall config: one profile per line, heights separated by
//! whitespace, read in one quick pass over the bytes when the text is plain (as real
//! walls are, and then a piece at a time if need be), and line by line otherwise.

use super::config::{ConfigError, Height, Limits, Location, truncate_for_message};

/// Parses the text form: one profile per line, heights separated by whitespace, blank
/// lines skipped. A UTF-8 byte order mark is accepted, and a line may end in LF, CRLF
/// or a bare CR (old Mac editors), so a CR is never taken for a space between heights.
///
/// # Errors
/// The first rule the text breaks, with its line and column.
pub fn parse_text(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Height>>, ConfigError> {
    let mut quick = PlainText::new(limits);
    match quick.read(input).then(|| quick.finish()).flatten() {
        Some(profiles) => Ok(profiles),
        None => parse_any_text(input, limits),
    }
}

/// The quick pass over the text of nearly every real wall: heights of one or two digits
/// separated by spaces or tabs, lines ended by LF or CR, within the limits. Anything
/// else goes whole to [`parse_text`], whose general pass reads it from the start (and
/// names the error, if it is one): so the quick pass never has to know an error's line
/// and column, and an invalid byte late in a file is still reported before a bad token
/// early in it. Only ASCII is accepted here, so the text needs no UTF-8 check.
///
/// The text may come a piece at a time, each ending at a line end, so that a large file
/// can be read through a small buffer rather than held whole.
pub struct PlainText {
    profiles: Vec<Vec<Height>>,
    /// One line's heights, gathered here and copied out at their exact size: growing a
    /// vector per line would allocate (and touch) up to twice the memory, piece by piece.
    heights: Vec<Height>,
    /// Sections in `profiles`.
    total: usize,
    limits: Limits,
    /// Whether a byte order mark can still come.
    at_start: bool,
}

impl PlainText {
    pub fn new(limits: &Limits) -> PlainText {
        PlainText {
            profiles: Vec::new(),
            heights: Vec::new(),
            total: 0,
            limits: *limits,
            at_start: true,
        }
    }

    /// Reads the next piece of the text, which ends at a line end or where the text
    /// ends. `false` when the text is not plain: it must then be parsed whole, with
    /// [`parse_text`] or `parse_config`, and no more pieces are read.
    /// An empty piece reads nothing, not even the start of the text (where a byte
    /// order mark may stand).
    pub fn read(&mut self, piece: &[u8]) -> bool {
        let piece = if self.at_start && !piece.is_empty() {
            self.at_start = false;
            piece.strip_prefix("\u{feff}".as_bytes()).unwrap_or(piece)
        } else {
            piece
        };
        self.read_lines(piece).is_some()
    }

    /// The profiles read; `None` when there are none, which [`parse_text`] then names.
    pub fn finish(self) -> Option<Vec<Vec<Height>>> {
        (!self.profiles.is_empty()).then_some(self.profiles)
    }

    fn read_lines(&mut self, text: &[u8]) -> Option<()> {
        let mut rest = text;
        loop {
            let (feet, after) = match rest {
                // One digit or two: chosen without a branch, since real walls mix both at
                // random and a mispredicted branch would cost more than the rest of a height.
                [tens @ b'0'..=b'9', next, ..] => {
                    let ones = next.wrapping_sub(b'0');
                    let has_two_digits = ones < 10;
                    let feet = if has_two_digits {
                        (tens - b'0') * 10 + ones
                    } else {
                        tens - b'0'
                    };
                    (feet, &rest[1 + usize::from(has_two_digits)..])
                }
                [ones @ b'0'..=b'9'] => (ones - b'0', &rest[1..]),
                [b' ' | b'\t' | b'\x0c', after @ ..] => {
                    rest = after;
                    continue;
                }
                [b'\n' | b'\r', after @ ..] => {
                    self.end_line()?;
                    rest = after;
                    continue;
                }
                [] => {
                    self.end_line()?;
                    return Some(());
                }
                _ => return None,
            };
            if self.heights.len() == self.limits.max_sections_per_profile {
                return None;
            }
            self.heights.push(Height::try_new(u64::from(feet))?);
            rest = match after {
                // The space between two heights, taken here rather than on the next turn.
                [b' ', after @ ..] => after,
                // A third digit (`007`, `100`) is for the general pass to read or refuse.
                [b'0'..=b'9', ..] => return None,
                _ => after,
            };
        }
    }

    /// Moves a line's heights, if any, into a profile of their own; `None` past the
    /// limit of the whole wall.
    fn end_line(&mut self) -> Option<()> {
        if !self.heights.is_empty() {
            self.total += self.heights.len();
            if self.total > self.limits.max_sections {
                return None;
            }
            self.profiles.push(self.heights.as_slice().to_vec());
            self.heights.clear();
        }
        Some(())
    }
}

/// Any text, line by line and token by token, with the line and column of the first
/// rule it breaks.
///
/// # Errors
/// The first rule the text breaks, with its line and column.
fn parse_any_text(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Height>>, ConfigError> {
    let text = std::str::from_utf8(input).map_err(|error| ConfigError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut profiles = Vec::new();
    let mut total = 0usize;
    for (line_index, line) in lines(text).enumerate() {
        let at = Location {
            line: Some(line_index + 1),
            profile: profiles.len() + 1,
            section: 1,
        };
        let mut heights = Vec::new();
        parse_line(line, at, total, limits, &mut heights)?;
        if !heights.is_empty() {
            total += heights.len();
            profiles.push(heights);
        }
    }
    if profiles.is_empty() {
        return Err(ConfigError::EmptyWall);
    }
    Ok(profiles)
}

/// Any line, token by token, appended to `heights`: `at` is the place of its first
/// token, `total` the sections of the lines before it.
///
/// # Errors
/// The first rule the line breaks, with its line and column.
fn parse_line(
    line: &str,
    at: Location,
    total: usize,
    limits: &Limits,
    heights: &mut Vec<Height>,
) -> Result<(), ConfigError> {
    for (column_index, token) in line.split_ascii_whitespace().enumerate() {
        let at = Location {
            section: column_index + 1,
            ..at
        };
        if heights.len() == limits.max_sections_per_profile {
            return Err(ConfigError::ProfileTooLong {
                at,
                token: truncate_for_message(token),
                limit: limits.max_sections_per_profile,
            });
        }
        if total + heights.len() == limits.max_sections {
            return Err(ConfigError::WallTooLarge {
                at,
                token: truncate_for_message(token),
                limit: limits.max_sections,
            });
        }
        heights.push(parse_height_token(token, at)?);
    }
    Ok(())
}

/// The lines of `text`, each ended by LF, CRLF or a bare CR (which `str::lines` would
/// leave inside a line).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

/// Only plain decimal digits make a height; a sign, a fraction or anything else is named
/// in the error as it was written.
fn parse_height_token(token: &str, at: Location) -> Result<Height, ConfigError> {
    let bytes = token.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ConfigError::NotAnInteger {
            at,
            token: truncate_for_message(token),
        });
    }
    let value = digits.iter().fold(0u64, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    });
    match Height::try_new(value).filter(|_| !negative || value == 0) {
        Some(height) => Ok(height),
        None => Err(ConfigError::HeightOutOfRange {
            at,
            token: truncate_for_message(token),
        }),
    }
}

#[cfg(test)]
mod tests;
