//! The domain: wall configs, the simulation engine and the questions asked of a
//! finished simulation. Pure computation: no I/O, no locks, no HTTP.

mod chart;
mod config;
mod engine;
mod json;
mod report;
mod text;
mod work;

pub use chart::{BadLogLine, Buckets, GanttBuilder, GanttRow, largest_profiles};
pub use config::{
    ConfigError, Height, Limits, Location, WallConfig, parse_num_teams, truncate_for_message,
};
pub use engine::{simulate, simulate_without_log};
pub use json::parse_json;
pub use report::{LogEvent, Outcome, ProfileSummary, Summary, TeamLog};
pub use text::{PlainText, parse_text};
pub use work::{DailyWork, InvalidWorkTable, Step, Table, WorkSource, WorkTables, find_step};

/// A section is done at this height, in feet.
pub const MAX_HEIGHT: u8 = 30;
/// Cubic yards of ice for one foot of one section.
pub const ICE_PER_FOOT: u64 = 195;
/// Gold Dragons per cubic yard of ice.
pub const COST_PER_CUBIC_YARD: u64 = 1900;
/// Gold Dragons per foot of one section.
pub const COST_PER_FOOT: u64 = ICE_PER_FOOT * COST_PER_CUBIC_YARD;

/// The example wall of WALL.md, which the server answers for when started without one.
pub const EXAMPLE_WALL: &str = "21 25 28\n17\n17 22 17 19 17\n";

/// Whether a config is in the JSON form: its first non-blank character (after a byte
/// order mark) is `{`.
pub fn is_json_config(input: &[u8]) -> bool {
    let input = input.strip_prefix("\u{feff}".as_bytes()).unwrap_or(input);
    input
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&byte| byte == b'{')
}

/// Parses a config in either form, telling them apart with [`is_json_config`].
///
/// # Errors
/// The first rule the config breaks.
pub fn parse_config(input: &[u8], limits: &Limits) -> Result<WallConfig, ConfigError> {
    if is_json_config(input) {
        parse_json(input, limits)
    } else {
        WallConfig::try_new(parse_text(input, limits)?, None)
    }
}
