//! The second pass over a JSON config: the one number the first pass could only see
//! as a float, found again and quoted as the client wrote it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::wall::Location;

/// The number the second pass looks for.
#[derive(Clone, Copy)]
pub(super) enum Wanted {
    /// The first height, among the first `within`, that is a number but no integer
    /// serde_json can hold: a fraction, an exponent, `-0.0`, or beyond 64 bits.
    Height {
        within: usize,
    },
    NumTeams,
}

/// A number as the client wrote it.
pub(super) enum Written {
    Height { at: Location, token: String },
    NumTeams { token: String },
}

/// Walks `input` again, borrowing each number's text (`RawValue`), and returns the one
/// `wanted`; `None` if there is none (every negative zero was written `-0`). The walk
/// stops there with an error of its own, which is dropped.
pub(super) fn written_number(input: &[u8], wanted: Wanted) -> Option<Written> {
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
