//! The JSON form of a wall config, `{"profiles": [[..], ..], "num_teams": N}`, parsed
//! in one streaming pass that validates every height where it stands and enforces the
//! limits before anything oversized is held in memory.
//!
//! serde_json hands a visitor a number's value, not its text: `-0` arrives as the float
//! `-0.0` (as `-0.0` itself does), and `18446744073709551616` as `1.8446744073709552e19`.
//! So the fast pass notes where it met such a number, and only then a second pass finds
//! that number's text as the client wrote it, to accept `-0` and to quote the token.

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::config::{
    ConfigError, Height, Limits, Location, MAX_NUM_TEAMS, WallConfig, truncate_for_message,
};

/// Parses a JSON wall config; trailing bytes other than whitespace are an error.
///
/// # Errors
/// `ConfigError::Json` with serde_json's position, or the first rule the config breaks.
pub fn parse_json(input: &[u8], limits: &Limits) -> Result<WallConfig, ConfigError> {
    // RFC 8259 lets a parser ignore a byte order mark; editors on Windows add one.
    let input = input.strip_prefix("\u{feff}".as_bytes()).unwrap_or(input);
    let notes = NumberNotes::default();
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let parsed = ConfigSeed {
        limits,
        notes: &notes,
    }
    .deserialize(&mut deserializer)
    .and_then(|config| deserializer.end().map(|()| config))
    .map_err(|error| ConfigError::Json(error.to_string()));
    let wanted = match notes.stopped_at.get() {
        Some(NumberSite::NumTeams) => Some(Wanted::NumTeams),
        Some(NumberSite::Height) => Some(Wanted::Height {
            within: notes.heights.get(),
        }),
        None if notes.negative_zero.get() => Some(Wanted::Height {
            within: notes.heights.get(),
        }),
        None => None,
    };
    match wanted.and_then(|wanted| written_number(input, wanted)) {
        Some(Written::Height { at, token }) => Err(ConfigError::NotAnInteger {
            at,
            token: truncate_for_message(&token),
        }),
        Some(Written::NumTeams { token }) => Err(ConfigError::InvalidNumTeams {
            token: truncate_for_message(&token),
        }),
        None => parsed?,
    }
}

/// What the fast pass leaves for the second one: it costs a few counter updates.
#[derive(Default)]
struct NumberNotes {
    /// Heights met so far (the one being read included).
    heights: Cell<usize>,
    /// A height came as negative zero: `-0` is a height, `-0.0` is not, and only its
    /// text tells them apart. Taken as 0 for now.
    negative_zero: Cell<bool>,
    /// The parse stopped at a number serde_json could only give as a float.
    stopped_at: Cell<Option<NumberSite>>,
}

#[derive(Clone, Copy)]
enum NumberSite {
    Height,
    NumTeams,
}

struct ConfigSeed<'a> {
    limits: &'a Limits,
    notes: &'a NumberNotes,
}

/// The outer `Result` carries JSON errors; the inner one rules that are only known once
/// the whole object is read (an empty wall), so they keep their own message.
type ParsedConfig = Result<WallConfig, ConfigError>;

impl<'de> DeserializeSeed<'de> for ConfigSeed<'_> {
    type Value = ParsedConfig;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ParsedConfig, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConfigSeed<'_> {
    type Value = ParsedConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object {"profiles": [[heights..], ..], "num_teams": N}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedConfig, A::Error> {
        const FIELDS: &[&str] = &["profiles", "num_teams"];
        let mut profiles = None;
        let mut num_teams = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "profiles" if profiles.is_some() => {
                    return Err(de::Error::duplicate_field("profiles"));
                }
                "profiles" => {
                    profiles = Some(map.next_value_seed(ProfilesSeed {
                        limits: self.limits,
                        notes: self.notes,
                    })?);
                }
                "num_teams" if num_teams.is_some() => {
                    return Err(de::Error::duplicate_field("num_teams"));
                }
                "num_teams" => {
                    num_teams = Some(map.next_value_seed(NumTeamsSeed { notes: self.notes })?);
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        let profiles = profiles.ok_or_else(|| de::Error::missing_field("profiles"))?;
        Ok(WallConfig::try_new(profiles, num_teams.flatten()))
    }
}

struct ProfilesSeed<'a> {
    limits: &'a Limits,
    notes: &'a NumberNotes,
}

impl<'de> DeserializeSeed<'de> for ProfilesSeed<'_> {
    type Value = Vec<Vec<Height>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ProfilesSeed<'_> {
    type Value = Vec<Vec<Height>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of profiles, each a list of heights")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut profiles = Vec::new();
        let mut total = 0usize;
        loop {
            let seed = ProfileSeed {
                limits: self.limits,
                notes: self.notes,
                profile: profiles.len() + 1,
                total: &mut total,
            };
            match seq.next_element_seed(seed)? {
                Some(profile) => profiles.push(profile),
                None => return Ok(profiles),
            }
        }
    }
}

struct ProfileSeed<'a> {
    limits: &'a Limits,
    notes: &'a NumberNotes,
    profile: usize,
    /// Sections seen so far in earlier profiles, for the whole-wall limit.
    total: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for ProfileSeed<'_> {
    type Value = Vec<Height>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ProfileSeed<'_> {
    type Value = Vec<Height>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "profile {} as a list of heights", self.profile)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut heights = Vec::new();
        loop {
            let at = Location {
                line: None,
                profile: self.profile,
                section: heights.len() + 1,
            };
            let seed = HeightSeed {
                at,
                notes: self.notes,
            };
            let Some(height) = seq.next_element_seed(seed)? else {
                return Ok(heights);
            };
            if heights.len() == self.limits.max_sections_per_profile {
                return Err(de::Error::custom(ConfigError::ProfileTooLong {
                    place: format!("profile {}", self.profile),
                    limit: self.limits.max_sections_per_profile,
                }));
            }
            if *self.total == self.limits.max_sections {
                return Err(de::Error::custom(ConfigError::WallTooLarge {
                    limit: self.limits.max_sections,
                }));
            }
            heights.push(height);
            *self.total += 1;
        }
    }
}

struct HeightSeed<'a> {
    at: Location,
    notes: &'a NumberNotes,
}

impl<'de> DeserializeSeed<'de> for HeightSeed<'_> {
    type Value = Height;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Height, D::Error> {
        self.notes.heights.set(self.notes.heights.get() + 1);
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeightSeed<'_> {
    type Value = Height;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer height in 0..=30 at {}", self.at)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Height, E> {
        Height::try_new(value).ok_or_else(|| {
            E::custom(ConfigError::HeightOutOfRange {
                at: self.at,
                token: value.to_string(),
            })
        })
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Height, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(E::custom(ConfigError::HeightOutOfRange {
                at: self.at,
                token: value.to_string(),
            })),
        }
    }

    /// Only `-0` of the integers comes as a float, and it is 0; any other float is no
    /// height, and its message waits for the token as written (see `parse_json`).
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Height, E> {
        if value == 0.0 && value.is_sign_negative() {
            self.notes.negative_zero.set(true);
            return Ok(Height::try_new(0).expect("0 is a height"));
        }
        self.notes.stopped_at.set(Some(NumberSite::Height));
        Err(E::custom(ConfigError::NotAnInteger {
            at: self.at,
            token: format!("{value:?}"),
        }))
    }
}

struct NumTeamsSeed<'a> {
    notes: &'a NumberNotes,
}

impl<'de> DeserializeSeed<'de> for NumTeamsSeed<'_> {
    type Value = Option<NonZeroU64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumTeamsSeed<'_> {
    type Value = Option<NonZeroU64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("num_teams as an integer from 1 to 9223372036854775807, or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        NonZeroU64::new(value)
            .filter(|teams| teams.get() <= MAX_NUM_TEAMS)
            .map(Some)
            .ok_or_else(|| {
                E::custom(ConfigError::InvalidNumTeams {
                    token: value.to_string(),
                })
            })
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Err(E::custom(ConfigError::InvalidNumTeams {
            token: value.to_string(),
        }))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.notes.stopped_at.set(Some(NumberSite::NumTeams));
        Err(E::custom(ConfigError::InvalidNumTeams {
            token: format!("{value:?}"),
        }))
    }
}

/// The number the second pass looks for.
#[derive(Clone, Copy)]
enum Wanted {
    /// The first height, among the first `within`, that is a number but no integer
    /// serde_json can hold: a fraction, an exponent, `-0.0`, or beyond 64 bits.
    Height {
        within: usize,
    },
    NumTeams,
}

/// A number as the client wrote it.
enum Written {
    Height { at: Location, token: String },
    NumTeams { token: String },
}

/// Walks `input` again, borrowing each number's text (`RawValue`), and returns the one
/// `wanted`; `None` if there is none (every negative zero was written `-0`). The walk
/// stops there with an error of its own, which is dropped.
fn written_number(input: &[u8], wanted: Wanted) -> Option<Written> {
    let mut finder = NumberFinder {
        wanted,
        found: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let _ = deserializer.deserialize_map(&mut finder);
    finder.found
}

/// Whether `token`, a JSON value, is a number serde_json cannot give as an integer.
fn is_non_integer_number(token: &str) -> bool {
    let is_number = token.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let is_integer = if token.starts_with('-') {
        token.parse::<i64>().is_ok()
    } else {
        token.parse::<u64>().is_ok()
    };
    is_number && !(is_integer || token == "-0")
}

struct NumberFinder {
    wanted: Wanted,
    found: Option<Written>,
}

fn stop<E: de::Error>() -> E {
    E::custom("the number was found")
}

impl<'de> Visitor<'de> for &mut NumberFinder {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a wall config")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), self.wanted) {
                ("num_teams", Wanted::NumTeams) => {
                    let token: &RawValue = map.next_value()?;
                    self.found = Some(Written::NumTeams {
                        token: token.get().to_owned(),
                    });
                    return Err(stop());
                }
                ("profiles", Wanted::Height { within }) => {
                    map.next_value_seed(RawProfiles {
                        found: &mut self.found,
                        left: within,
                    })?;
                    return Err(stop());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct RawProfiles<'a> {
    found: &'a mut Option<Written>,
    /// Heights still to look at: the fast pass read no further.
    left: usize,
}

impl<'de> DeserializeSeed<'de> for RawProfiles<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RawProfiles<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of profiles")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut profiles: A) -> Result<(), A::Error> {
        for profile in 1.. {
            let seed = RawProfile {
                walk: &mut self,
                profile,
            };
            if profiles.next_element_seed(seed)?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

struct RawProfile<'a, 'b> {
    walk: &'a mut RawProfiles<'b>,
    profile: usize,
}

impl<'de> DeserializeSeed<'de> for RawProfile<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RawProfile<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of heights")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut heights: A) -> Result<(), A::Error> {
        for section in 1.. {
            if self.walk.left == 0 {
                return Err(stop());
            }
            let Some(token) = heights.next_element::<&RawValue>()? else {
                break;
            };
            self.walk.left -= 1;
            if is_non_integer_number(token.get()) {
                *self.walk.found = Some(Written::Height {
                    at: Location {
                        line: None,
                        profile: self.profile,
                        section,
                    },
                    token: token.get().to_owned(),
                });
                return Err(stop());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<WallConfig, ConfigError> {
        parse_json(input.as_bytes(), &Limits::default())
    }

    fn reason(input: &str) -> String {
        parse(input).unwrap_err().to_string()
    }

    #[test]
    fn example_wall_parses_with_and_without_teams() {
        let config =
            parse(r#"{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}"#).unwrap();
        assert_eq!(config.profiles().len(), 3);
        assert_eq!(config.section_count(), 9);
        assert_eq!(config.num_teams().map(NonZeroU64::get), Some(3));
        let config = parse(r#"{"profiles": [[0]]}"#).unwrap();
        assert_eq!(config.num_teams(), None);
        let config = parse(r#" {"num_teams": null, "profiles": [[30]]} "#).unwrap();
        assert_eq!(config.num_teams(), None);
        let config = parse("\u{feff}{\"profiles\": [[30]]}").unwrap();
        assert_eq!(config.section_count(), 1);
    }

    #[test]
    fn wrong_types_name_profile_and_section() {
        let cases = [
            (r#"{"profiles": [[1, true]]}"#, "profile 1, section 2"),
            (r#"{"profiles": [[1], [null]]}"#, "profile 2, section 1"),
            (r#"{"profiles": [[5.0]]}"#, "`5.0` is not an integer height"),
            (r#"{"profiles": [["5"]]}"#, "profile 1, section 1"),
            (
                r#"{"profiles": [[31]]}"#,
                "profile 1, section 1: height `31` is outside 0..=30",
            ),
            (r#"{"profiles": [[-1]]}"#, "height `-1` is outside 0..=30"),
            (
                r#"{"profiles": [[18446744073709551616]]}"#,
                "not an integer height",
            ),
            (r#"{"profiles": [[1e309]]}"#, "number out of range"),
            (
                r#"{"profiles": [[1]], "num_teams": 0}"#,
                "num_teams must be an integer from 1 to 9223372036854775807, got `0`",
            ),
            (r#"{"profiles": [[1]], "num_teams": -2}"#, "got `-2`"),
            (r#"{"profiles": [[1]], "num_teams": true}"#, "num_teams"),
            (r#"{"profiles": [[1]], "num_teams": "3"}"#, "num_teams"),
        ];
        for (input, expected) in cases {
            let message = reason(input);
            assert!(message.contains(expected), "{input}: {message}");
        }
    }

    #[test]
    fn structural_errors_are_refused() {
        let cases = [
            ("", "EOF"),
            (r#"{"profiles": [[1]]"#, "EOF"),
            (r#"{"profiles": [[1]]} x"#, "trailing characters"),
            (r#"{"profiles": []}"#, "the wall has no profiles"),
            (r#"{"profiles": [[1], []]}"#, "profile 2 has no sections"),
            (r#"{}"#, "missing field `profiles`"),
            (
                r#"{"profiles": [[1]], "num_team": 3}"#,
                "unknown field `num_team`",
            ),
            (
                r#"{"profiles": [[1]], "profiles": [[1]]}"#,
                "duplicate field `profiles`",
            ),
            (r#"[[1]]"#, "invalid type"),
            (r#"{"profiles": [1]}"#, "profile 1 as a list of heights"),
        ];
        for (input, expected) in cases {
            let message = reason(input);
            assert!(message.contains(expected), "{input}: {message}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let input = format!(
            r#"{{"profiles": {}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let message = reason(&input);
        assert!(
            message.contains("invalid type: sequence, expected an integer height in 0..=30 at profile 1, section 1"),
            "{message}"
        );
        let input = format!(
            r#"{{"profiles": [[1]], "num_teams": {}"#,
            "[".repeat(10_000)
        );
        assert!(reason(&input).contains("num_teams"));
    }

    #[test]
    fn limits_are_enforced_while_parsing() {
        let long = format!(r#"{{"profiles": [[{}]]}}"#, vec!["1"; 2001].join(","));
        assert!(reason(&long).contains("profile 1 has more than 2000 sections"));
        let limits = Limits {
            max_sections_per_profile: 10,
            max_sections: 3,
        };
        let error = parse_json(br#"{"profiles": [[1,2],[3,4]]}"#, &limits).unwrap_err();
        assert!(error.to_string().contains("more than 3 sections in all"));
    }

    fn feet(config: &WallConfig) -> Vec<Vec<u8>> {
        config
            .profiles()
            .iter()
            .map(|profile| profile.iter().map(|height| height.feet()).collect())
            .collect()
    }

    #[test]
    fn negative_zero_is_the_height_zero_as_in_the_text_form() {
        let config = parse(r#"{"profiles": [[-0, 5, -0], [-0]]}"#).unwrap();
        assert_eq!(feet(&config), vec![vec![0, 5, 0], vec![0]]);
    }

    #[test]
    fn number_errors_quote_the_token_as_written() {
        let cases = [
            (
                "-0.0",
                "profile 1, section 2: `-0.0` is not an integer height in 0..=30",
            ),
            (
                "-0e0",
                "profile 1, section 2: `-0e0` is not an integer height in 0..=30",
            ),
            (
                "1e1",
                "profile 1, section 2: `1e1` is not an integer height in 0..=30",
            ),
            (
                "1E+1",
                "profile 1, section 2: `1E+1` is not an integer height in 0..=30",
            ),
            (
                "30.0",
                "profile 1, section 2: `30.0` is not an integer height in 0..=30",
            ),
            (
                "0.5e-3",
                "profile 1, section 2: `0.5e-3` is not an integer height in 0..=30",
            ),
            (
                "18446744073709551616",
                "profile 1, section 2: `18446744073709551616` is not an integer height in 0..=30",
            ),
            (
                "-9223372036854775809",
                "profile 1, section 2: `-9223372036854775809` is not an integer height in 0..=30",
            ),
            ("-1", "profile 1, section 2: height `-1` is outside 0..=30"),
            ("31", "profile 1, section 2: height `31` is outside 0..=30"),
            (
                "18446744073709551615",
                "profile 1, section 2: height `18446744073709551615` is outside 0..=30",
            ),
        ];
        for (token, expected) in cases {
            let input = format!(r#"{{"profiles": [[-0, {token}, 1]], "num_teams": 2}}"#);
            let message = reason(&input);
            assert!(message.contains(expected), "{token}: {message}");
            assert!(!message.contains("e19"), "{token}: {message}");
        }
        let long = format!("1.{}", "0".repeat(10_000));
        let message = reason(&format!(r#"{{"profiles": [[{long}]]}}"#));
        assert!(message.contains("`1.000000000"), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn the_first_bad_number_is_named_even_after_a_negative_zero_was_taken() {
        // The fast pass takes `-0.0` for `-0` until it sees the text.
        let message = reason(r#"{"profiles": [[1, -0.0], [31]]}"#);
        assert!(
            message.contains("profile 1, section 2: `-0.0` is not an integer height"),
            "{message}"
        );
        let message = reason(r#"{"profiles": [[-0.0], [1, true]]}"#);
        assert!(message.contains("`-0.0`"), "{message}");
        // A negative zero written `-0`, then another error: that error stands.
        let message = reason(r#"{"profiles": [[-0], [1, true]]}"#);
        assert!(message.contains("profile 2, section 2"), "{message}");
        let message = reason(r#"{"profiles": [[-0], [1.5]]}"#);
        assert!(message.contains("profile 2, section 1: `1.5`"), "{message}");
        // A limit met before a bad number is the error.
        let limits = Limits {
            max_sections_per_profile: 2,
            max_sections: 100,
        };
        let error = parse_json(br#"{"profiles": [[-0, 1, 2, 2.5]]}"#, &limits).unwrap_err();
        assert!(
            error.to_string().contains("more than 2 sections"),
            "{error}"
        );
    }

    #[test]
    fn num_teams_errors_quote_the_token_as_written() {
        for token in ["3.0", "1e1", "-0", "18446744073709551616", "-0.0"] {
            let message = reason(&format!(r#"{{"num_teams": {token}, "profiles": [[1]]}}"#));
            assert_eq!(
                message,
                format!(
                    "num_teams must be an integer from 1 to 9223372036854775807, got `{token}`"
                ),
            );
            let message = reason(&format!(r#"{{"profiles": [[-0]], "num_teams": {token}}}"#));
            assert!(message.contains(&format!("got `{token}`")), "{message}");
        }
        assert!(
            reason(r#"{"profiles": [[1]], "num_teams": 1e309}"#).contains("number out of range")
        );
    }
}
