//! The JSON form of a wall config, `{"profiles": [[..], ..], "num_teams": N}`, parsed
//! in one streaming pass that validates every height where it stands and enforces the
//! limits before anything oversized is held in memory.

use std::fmt;
use std::num::NonZeroU64;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::config::{ConfigError, Height, Limits, Location, MAX_NUM_TEAMS, WallConfig};

/// Parses a JSON wall config; trailing bytes other than whitespace are an error.
///
/// # Errors
/// `ConfigError::Json` with serde_json's position, or the first rule the config breaks.
pub fn parse_json(input: &[u8], limits: &Limits) -> Result<WallConfig, ConfigError> {
    // RFC 8259 lets a parser ignore a byte order mark; editors on Windows add one.
    let input = input.strip_prefix("\u{feff}".as_bytes()).unwrap_or(input);
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    ConfigSeed { limits }
        .deserialize(&mut deserializer)
        .and_then(|config| deserializer.end().map(|()| config))
        .map_err(|error| ConfigError::Json(error.to_string()))?
}

struct ConfigSeed<'a> {
    limits: &'a Limits,
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
                    })?);
                }
                "num_teams" if num_teams.is_some() => {
                    return Err(de::Error::duplicate_field("num_teams"));
                }
                "num_teams" => num_teams = Some(map.next_value_seed(NumTeamsSeed)?),
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        let profiles = profiles.ok_or_else(|| de::Error::missing_field("profiles"))?;
        Ok(WallConfig::try_new(profiles, num_teams.flatten()))
    }
}

struct ProfilesSeed<'a> {
    limits: &'a Limits,
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
            let Some(height) = seq.next_element_seed(HeightSeed { at })? else {
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

struct HeightSeed {
    at: Location,
}

impl<'de> DeserializeSeed<'de> for HeightSeed {
    type Value = Height;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Height, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeightSeed {
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

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Height, E> {
        Err(E::custom(ConfigError::NotAnInteger {
            at: self.at,
            token: format!("{value:?}"),
        }))
    }
}

struct NumTeamsSeed;

impl<'de> DeserializeSeed<'de> for NumTeamsSeed {
    type Value = Option<NonZeroU64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumTeamsSeed {
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
        Err(E::custom(ConfigError::InvalidNumTeams {
            token: format!("{value:?}"),
        }))
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
}
