//! Wall configs: validated heights and team counts, the limits a config must respect,
//! and the parser of the classic text form (one profile per line).

use std::fmt;
use std::num::NonZeroU64;

use serde::Serialize;

use super::MAX_HEIGHT;

/// Height of a section in feet, always in `0..=30`: a bad height cannot exist past a parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Height(u8);

impl Height {
    /// The height, if `feet` is in `0..=30`.
    pub fn try_new(feet: u64) -> Option<Height> {
        u8::try_from(feet)
            .ok()
            .filter(|&feet| feet <= MAX_HEIGHT)
            .map(Height)
    }

    pub fn feet(self) -> u8 {
        self.0
    }

    /// Feet still to build, which is also the number of days a crew works on it.
    pub fn remaining(self) -> u8 {
        MAX_HEIGHT - self.0
    }
}

/// Bounds on the size of a wall, checked while parsing so that an oversized config is
/// refused before it is held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The problem states at most 2000 sections per profile.
    pub max_sections_per_profile: usize,
    /// Bounds memory and run time of one simulation.
    pub max_sections: usize,
}

impl Limits {
    pub const DEFAULT_MAX_SECTIONS_PER_PROFILE: usize = 2000;
    pub const DEFAULT_MAX_SECTIONS: usize = 1_000_000;

    /// No bound beyond what the engine can index (u32 section numbers).
    pub fn engine_bounds() -> Limits {
        Limits {
            max_sections_per_profile: u32::MAX as usize,
            max_sections: u32::MAX as usize,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sections_per_profile: Self::DEFAULT_MAX_SECTIONS_PER_PROFILE,
            max_sections: Self::DEFAULT_MAX_SECTIONS,
        }
    }
}

/// A validated wall: at least one profile, each of at least one section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WallConfig {
    profiles: Vec<Vec<Height>>,
    /// `None` means unlimited crews.
    num_teams: Option<NonZeroU64>,
}

impl WallConfig {
    /// # Errors
    /// `EmptyWall` or `EmptyProfile` when there is nothing to describe a wall.
    pub fn try_new(
        profiles: Vec<Vec<Height>>,
        num_teams: Option<NonZeroU64>,
    ) -> Result<WallConfig, ConfigError> {
        if profiles.is_empty() {
            return Err(ConfigError::EmptyWall);
        }
        if let Some(index) = profiles.iter().position(Vec::is_empty) {
            return Err(ConfigError::EmptyProfile { profile: index + 1 });
        }
        Ok(WallConfig {
            profiles,
            num_teams,
        })
    }

    pub fn profiles(&self) -> &[Vec<Height>] {
        &self.profiles
    }

    pub fn num_teams(&self) -> Option<NonZeroU64> {
        self.num_teams
    }

    pub fn with_num_teams(self, num_teams: Option<NonZeroU64>) -> WallConfig {
        WallConfig { num_teams, ..self }
    }

    pub fn section_count(&self) -> usize {
        self.profiles.iter().map(Vec::len).sum()
    }
}

/// Where in a config an error is: a JSON config has no lines, a text one has both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: Option<usize>,
    pub profile: usize,
    pub section: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "line {line} (profile {}), column {}",
                self.profile, self.section
            ),
            None => write!(f, "profile {}, section {}", self.profile, self.section),
        }
    }
}

/// Why a config was rejected; each message is one sentence naming the place and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the wall has no profiles")]
    EmptyWall,
    #[error("profile {profile} has no sections")]
    EmptyProfile { profile: usize },
    #[error("{at}: height `{token}` is outside 0..=30")]
    HeightOutOfRange { at: Location, token: String },
    #[error("{at}: `{token}` is not an integer height in 0..=30")]
    NotAnInteger { at: Location, token: String },
    #[error("{place} has more than {limit} sections")]
    ProfileTooLong { place: String, limit: usize },
    #[error("the wall has more than {limit} sections in all")]
    WallTooLarge { limit: usize },
    #[error("num_teams must be an integer from 1 to 9223372036854775807, got `{token}`")]
    InvalidNumTeams { token: String },
    #[error("the config is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("invalid JSON config: {0}")]
    Json(String),
}

/// The most teams a config may ask for: the int64 range of the API's schema, far
/// beyond any wall (more teams than sections give the unlimited result anyway).
pub const MAX_NUM_TEAMS: u64 = i64::MAX as u64;

/// Parses a `num_teams` given as text (a query string or a command-line flag).
///
/// # Errors
/// `InvalidNumTeams` unless `token` is a decimal integer in `1..=u64::MAX`.
pub fn parse_num_teams(token: &str) -> Result<NonZeroU64, ConfigError> {
    token
        .parse::<NonZeroU64>()
        .ok()
        .filter(|teams| teams.get() <= MAX_NUM_TEAMS)
        .filter(|_| token.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ConfigError::InvalidNumTeams {
            token: truncate_for_message(token),
        })
}

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

/// Keeps an error message one readable sentence even when the token is megabytes long.
pub fn truncate_for_message(token: &str) -> String {
    const MAX_CHARS: usize = 40;
    if token.chars().count() <= MAX_CHARS {
        token.to_owned()
    } else {
        let head: String = token.chars().take(MAX_CHARS).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wall::{is_json_config, parse_config};

    fn feet(profiles: &[Vec<Height>]) -> Vec<Vec<u8>> {
        profiles
            .iter()
            .map(|profile| profile.iter().map(|height| height.feet()).collect())
            .collect()
    }

    #[test]
    fn example_wall_parses() {
        let parsed = parse_text(b"21 25 28\n17\n17 22 17 19 17\n", &Limits::default()).unwrap();
        assert_eq!(
            feet(&parsed),
            vec![vec![21, 25, 28], vec![17], vec![17, 22, 17, 19, 17]]
        );
    }

    #[test]
    fn bom_crlf_tabs_blank_lines_and_trailing_spaces_are_accepted() {
        let parsed = parse_text(
            "\u{feff}21\t25 28  \r\n\r\n   \n17\r\n".as_bytes(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(feet(&parsed), vec![vec![21, 25, 28], vec![17]]);
    }

    #[test]
    fn a_bare_cr_ends_a_line_and_line_numbers_count_it() {
        let parsed = parse_text(b"21 25 28\r17\r17 22 17 19 17\r", &Limits::default()).unwrap();
        assert_eq!(
            feet(&parsed),
            vec![vec![21, 25, 28], vec![17], vec![17, 22, 17, 19, 17]]
        );
        // Mixed ends: CR, CRLF, LF, and a CR before a CRLF (a blank line).
        let parsed = parse_text(b"1\r2\r\n3\n4\r\r\n5", &Limits::default()).unwrap();
        assert_eq!(
            feet(&parsed),
            vec![vec![1], vec![2], vec![3], vec![4], vec![5]]
        );
        let error = parse_text(b"1\r2\r\n\r3 31\r", &Limits::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 4 (profile 3), column 2: height `31` is outside 0..=30"
        );
    }

    #[test]
    fn plain_lines_take_the_quick_pass() {
        let cases: [(&str, Option<Vec<u8>>); 8] = [
            ("21 25 28", Some(vec![21, 25, 28])),
            ("\t0  30\t7 ", Some(vec![0, 30, 7])),
            ("", Some(vec![])),
            ("31", None),
            ("007", None),
            ("-0", None),
            ("5,6", None),
            ("1 2 x", None),
        ];
        for (line, expected) in cases {
            let mut heights = Vec::new();
            let is_plain = parse_plain_line(line.as_bytes(), &mut heights);
            let parsed = is_plain.then(|| heights.iter().map(|height| height.feet()).collect());
            assert_eq!(parsed, expected, "line {line:?}");
        }
    }

    proptest::proptest! {
        /// The quick pass accepts only what the general one reads the same way.
        #[test]
        fn the_quick_pass_agrees_with_the_general_one(line in "[0-9 \t+x.-]{0,12}") {
            let mut quick = Vec::new();
            if parse_plain_line(line.as_bytes(), &mut quick) {
                let at = Location { line: Some(1), profile: 1, section: 1 };
                let mut general = Vec::new();
                parse_line(&line, at, 0, &Limits::default(), &mut general).unwrap();
                proptest::prop_assert_eq!(quick, general);
            }
        }
    }

    #[test]
    fn limits_are_enforced_on_plain_lines_at_the_exact_token() {
        let limits = Limits {
            max_sections_per_profile: 3,
            max_sections: 5,
        };
        assert_eq!(
            parse_text(b"1 2 3 4\n", &limits).unwrap_err().to_string(),
            "line 1 (profile 1) has more than 3 sections"
        );
        assert_eq!(
            parse_text(b"1 2 3\n\n4 5 6\n", &limits),
            Err(ConfigError::WallTooLarge { limit: 5 })
        );
    }

    #[test]
    fn bad_heights_name_line_column_token_and_rule() {
        let limits = Limits::default();
        let cases = [
            (
                "1 2\n\n3 31\n",
                "line 3 (profile 2), column 2: height `31` is outside 0..=30",
            ),
            (
                "-1\n",
                "line 1 (profile 1), column 1: height `-1` is outside 0..=30",
            ),
            (
                "5 abc\n",
                "line 1 (profile 1), column 2: `abc` is not an integer height in 0..=30",
            ),
            (
                "5.0\n",
                "line 1 (profile 1), column 1: `5.0` is not an integer height in 0..=30",
            ),
            (
                "+5\n",
                "line 1 (profile 1), column 1: `+5` is not an integer height in 0..=30",
            ),
            (
                "99999999999999999999999\n",
                "line 1 (profile 1), column 1: height `99999999999999999999999` is outside 0..=30",
            ),
        ];
        for (input, message) in cases {
            let error = parse_text(input.as_bytes(), &limits).unwrap_err();
            assert_eq!(error.to_string(), message, "input {input:?}");
        }
    }

    #[test]
    fn negative_zero_and_leading_zeros_are_integers() {
        let parsed = parse_text(b"-0 007 30\n", &Limits::default()).unwrap();
        assert_eq!(feet(&parsed), vec![vec![0, 7, 30]]);
    }

    #[test]
    fn empty_and_blank_configs_are_an_empty_wall() {
        for input in ["", "\n\n", "  \r\n\t\n"] {
            assert_eq!(
                parse_text(input.as_bytes(), &Limits::default()),
                Err(ConfigError::EmptyWall)
            );
        }
    }

    #[test]
    fn profile_of_2001_sections_is_refused() {
        let line = vec!["1"; 2001].join(" ");
        let error = parse_text(line.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1 (profile 1) has more than 2000 sections"
        );
        let line = vec!["1"; 2000].join(" ");
        assert!(parse_text(line.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn total_section_limit_is_enforced() {
        let limits = Limits {
            max_sections_per_profile: 2000,
            max_sections: 5,
        };
        assert!(parse_text(b"1 2 3\n4 5\n", &limits).is_ok());
        assert_eq!(
            parse_text(b"1 2 3\n4 5 6\n", &limits),
            Err(ConfigError::WallTooLarge { limit: 5 })
        );
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_offset() {
        assert_eq!(
            parse_text(b"1 2\xff\n", &Limits::default()),
            Err(ConfigError::NotUtf8 { offset: 3 })
        );
    }

    #[test]
    fn num_teams_must_be_a_positive_integer() {
        assert_eq!(parse_num_teams("3").unwrap().get(), 3);
        assert_eq!(
            parse_num_teams("9223372036854775807").unwrap().get(),
            MAX_NUM_TEAMS
        );
        for token in [
            "0",
            "-1",
            "x",
            "",
            "+3",
            "1.0",
            "18446744073709551616",
            "9223372036854775808",
        ] {
            assert!(parse_num_teams(token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn long_tokens_are_truncated_in_messages() {
        let token = "x".repeat(10_000);
        let error = parse_text(token.as_bytes(), &Limits::default()).unwrap_err();
        assert!(error.to_string().len() < 200);
    }

    #[test]
    fn either_form_is_recognised() {
        let json = br#"{"profiles": [[21, 25, 28]], "num_teams": 2}"#;
        for input in [
            &json[..],
            b"  \n{\"profiles\": [[21, 25, 28]], \"num_teams\": 2}",
            "\u{feff}{\"profiles\": [[21, 25, 28]], \"num_teams\": 2}".as_bytes(),
        ] {
            assert!(is_json_config(input));
            let config = parse_config(input, &Limits::default()).unwrap();
            assert_eq!(config.num_teams().map(NonZeroU64::get), Some(2));
        }
        assert!(!is_json_config(b"21 25 28\n"));
        let config = parse_config("\u{feff}21 25 28\n".as_bytes(), &Limits::default()).unwrap();
        assert_eq!((config.section_count(), config.num_teams()), (3, None));
    }

    #[test]
    fn wall_config_requires_profiles_with_sections() {
        assert_eq!(
            WallConfig::try_new(vec![], None),
            Err(ConfigError::EmptyWall)
        );
        assert_eq!(
            WallConfig::try_new(vec![vec![Height(1)], vec![]], None),
            Err(ConfigError::EmptyProfile { profile: 2 })
        );
    }
}
