//! The JSON form of a wall config, `{"profiles": [[..], ..], "num_teams": N}`, parsed
//! in one streaming pass that validates every height where it stands and enforces the
//! limits before anything oversized is held in memory.
//!
//! serde_json hands a visitor a number's value, not its text: `-0` arrives as the float
//! `-0.0` (as `-0.0` itself does), and `18446744073709551616` as `1.8446744073709552e19`.
//! So the fast pass notes where it met such a number, and only then a second pass finds
//! that number's text as the client wrote it (`written`), to accept `-0` and to quote
//! the token.

mod written;

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use self::written::{Wanted, Written, written_number};
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
                if heights.is_empty() {
                    // Refused where it ends: empty profiles count toward no limit, and
                    // a body of millions of them would otherwise all be built first.
                    return Err(de::Error::custom(ConfigError::EmptyProfile {
                        profile: self.profile,
                    }));
                }
                return Ok(heights);
            };
            if heights.len() == self.limits.max_sections_per_profile {
                return Err(de::Error::custom(ConfigError::ProfileTooLong {
                    at,
                    token: height.feet().to_string(),
                    limit: self.limits.max_sections_per_profile,
                }));
            }
            if *self.total == self.limits.max_sections {
                return Err(de::Error::custom(ConfigError::WallTooLarge {
                    at,
                    token: height.feet().to_string(),
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

#[cfg(test)]
mod tests;
