//! What a finished simulation reports: the summary of API.md, and the team log in the
//! exact text form of WALL.md.

use std::fmt;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::work::WorkTables;

/// Everything a simulation produced, each part O(sections) or smaller.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub work: WorkTables,
    pub log: TeamLog,
}

/// The summary object of API.md: O(profiles) in size, whatever the number of days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub days: u64,
    /// As requested; `None` for unlimited crews.
    pub num_teams: Option<u64>,
    pub ice: u64,
    pub cost: u64,
    pub profiles: Vec<ProfileSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileSummary {
    pub profile: usize,
    pub sections: usize,
    /// The last day anyone works on this profile.
    pub days: u64,
    pub ice: u64,
    pub cost: u64,
}

/// One finished section, and whether its team was then relieved (which WALL.md logs as
/// a second line right after it). Numbers are 1-based as in the log text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub day: u64,
    pub team: u32,
    pub profile: u32,
    pub section: u32,
    pub relieved: bool,
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "day {}: team {} finished section {} of profile {}",
            self.day, self.team, self.section, self.profile
        )?;
        if self.relieved {
            write!(f, "\nday {}: team {} relieved", self.day, self.team)?;
        }
        Ok(())
    }
}

/// The team log, ordered by day, then team number, as the engine produced it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamLog {
    events: Vec<LogEvent>,
}

impl TeamLog {
    pub(crate) fn new(events: Vec<LogEvent>) -> TeamLog {
        TeamLog { events }
    }

    pub fn events(&self) -> &[LogEvent] {
        &self.events
    }

    /// The log's text lines, one per event.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.events.iter().flat_map(|event| {
            event
                .to_string()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    }

    /// Writes the log as text, each line ended by `\n`.
    ///
    /// # Errors
    /// Whatever `out` returns.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for event in &self.events {
            writeln!(out, "{event}")?;
        }
        Ok(())
    }
}
