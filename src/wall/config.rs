//! Wall configs: validated heights and team counts, the limits a config must respect,
//! and the errors that name where a config breaks a rule; both forms (`text`, `json`)
//! parse into these.

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

    /// The bytes it holds on the heap: its list of profiles and each profile's heights,
    /// and for each of those allocations the allocator's own header and rounding.
    pub fn heap_bytes(&self) -> usize {
        const PER_ALLOCATION: usize = 16;
        let heights: usize = self.profiles.iter().map(Vec::capacity).sum();
        let allocations = 1 + self.profiles.len();
        self.profiles.capacity() * size_of::<Vec<Height>>()
            + heights * size_of::<Height>()
            + allocations * PER_ALLOCATION
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
    #[error("{at}: `{token}` is one section more than a profile may have (at most {limit})")]
    ProfileTooLong {
        at: Location,
        token: String,
        limit: usize,
    },
    #[error("{at}: `{token}` is one section more than the wall may have in all (at most {limit})")]
    WallTooLarge {
        at: Location,
        token: String,
        limit: usize,
    },
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

/// Keeps an error message one readable sentence even when the token is megabytes long.
pub fn truncate_for_message(token: &str) -> String {
    const MAX_CHARS: usize = 40;
    crate::telemetry::truncate(token, MAX_CHARS).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wall::{is_json_config, parse_config};

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

    proptest::proptest! {
        // A queued job's worker simulates the wall parsed at accept; the result keeps
        // the JSON, which a restart parses: both must be the same wall.
        #[test]
        fn a_wall_read_back_from_its_json_is_the_same_wall(
            profiles in proptest::collection::vec(
                proptest::collection::vec(0..=MAX_HEIGHT, 1..40),
                1..8,
            ),
            num_teams in proptest::option::of(1..=MAX_NUM_TEAMS),
        ) {
            let profiles = profiles.into_iter().map(|heights| heights.into_iter().map(Height).collect()).collect();
            let wall = WallConfig::try_new(profiles, num_teams.and_then(NonZeroU64::new)).unwrap();
            let json = serde_json::to_vec(&wall).unwrap();
            proptest::prop_assert_eq!(crate::wall::parse_json(&json, &Limits::engine_bounds()), Ok(wall));
        }
    }

    #[test]
    fn a_wall_counts_its_list_of_profiles_and_each_profile_s_heights() {
        let mut long = Vec::with_capacity(1000);
        long.push(Height(5));
        let wall = WallConfig::try_new(vec![vec![Height(1), Height(2)], long], None).unwrap();
        let list = 2 * size_of::<Vec<Height>>();
        let allocator = 3 * 16;
        assert_eq!(
            wall.heap_bytes(),
            list + 2 + 1000 + allocator,
            "capacity, not length"
        );
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
