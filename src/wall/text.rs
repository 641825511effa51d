//! The classic text form of a wall config: one profile per line, heights separated by
//! whitespace, read line by line with a quick pass for the plain lines of real walls.

use super::config::{ConfigError, Height, Limits, Location, truncate_for_message};

/// Parses the text form: one profile per line, heights separated by whitespace, blank
/// lines skipped. A UTF-8 byte order mark is accepted, and a line may end in LF, CRLF
/// or a bare CR (old Mac editors), so a CR is never taken for a space between heights.
///
/// # Errors
/// The first rule the text breaks, with its line and column.
pub fn parse_text(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Height>>, ConfigError> {
    let text = std::str::from_utf8(input).map_err(|error| ConfigError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut profiles = Vec::new();
    let mut total = 0usize;
    // One line's heights, gathered here and copied out at their exact size: growing a
    // vector per line would allocate (and touch) up to twice the memory, piece by piece.
    let mut heights = Vec::new();
    for (line_index, line) in lines(text).enumerate() {
        heights.clear();
        let is_plain = parse_plain_line(line.as_bytes(), &mut heights)
            && heights.len() <= limits.max_sections_per_profile
            && total + heights.len() <= limits.max_sections;
        if !is_plain {
            heights.clear();
            let at = Location {
                line: Some(line_index + 1),
                profile: profiles.len() + 1,
                section: 1,
            };
            parse_line(line, at, total, limits, &mut heights)?;
        }
        if !heights.is_empty() {
            total += heights.len();
            profiles.push(heights.as_slice().to_vec());
        }
    }
    if profiles.is_empty() {
        return Err(ConfigError::EmptyWall);
    }
    Ok(profiles)
}

/// The line of nearly every real wall, in one quick pass: heights of one or two digits
/// separated by spaces or tabs, appended to `heights`. `false` for anything else, which
/// [`parse_line`] then reads (and names, if it is an error).
fn parse_plain_line(line: &[u8], heights: &mut Vec<Height>) -> bool {
    let (mut feet, mut digits) = (0u8, 0);
    for &byte in line {
        match byte {
            b'0'..=b'9' if digits < 2 => {
                feet = feet * 10 + (byte - b'0');
                digits += 1;
            }
            b' ' | b'\t' | b'\x0c' => {
                if digits > 0 {
                    let Some(height) = Height::try_new(u64::from(feet)) else {
                        return false;
                    };
                    heights.push(height);
                    (feet, digits) = (0, 0);
                }
            }
            _ => return false,
        }
    }
    if digits > 0 {
        let Some(height) = Height::try_new(u64::from(feet)) else {
            return false;
        };
        heights.push(height);
    }
    true
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
                place: format!(
                    "line {} (profile {})",
                    at.line.unwrap_or_default(),
                    at.profile
                ),
                limit: limits.max_sections_per_profile,
            });
        }
        if total + heights.len() == limits.max_sections {
            return Err(ConfigError::WallTooLarge {
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
