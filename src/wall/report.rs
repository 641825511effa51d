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

/// Bytes of the longest event's text: both lines, each number at its widest.
const LONGEST_EVENT_TEXT: usize = 160;

/// Bytes of log lines gathered before they are handed to the writer.
const WRITE_CHUNK: usize = 8 * 1024;

impl LogEvent {
    /// Appends the event's text (two lines when its team is relieved, with no newline
    /// at the end), as `Display` shows it. The numbers are written by `itoa`: a log has
    /// a line for each section built, and through the formatting machinery its lines
    /// were most of the time it took to write a result with a large log.
    fn append_text(&self, text: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        text.extend_from_slice(b"day ");
        text.extend_from_slice(number.format(self.day).as_bytes());
        text.extend_from_slice(b": team ");
        text.extend_from_slice(number.format(self.team).as_bytes());
        text.extend_from_slice(b" finished section ");
        text.extend_from_slice(number.format(self.section).as_bytes());
        text.extend_from_slice(b" of profile ");
        text.extend_from_slice(number.format(self.profile).as_bytes());
        if self.relieved {
            text.extend_from_slice(b"\nday ");
            text.extend_from_slice(number.format(self.day).as_bytes());
            text.extend_from_slice(b": team ");
            text.extend_from_slice(number.format(self.team).as_bytes());
            text.extend_from_slice(b" relieved");
        }
    }
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(LONGEST_EVENT_TEXT);
        self.append_text(&mut text);
        f.write_str(std::str::from_utf8(&text).expect("digits, spaces and words are ASCII"))
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
        let mut lines = Vec::with_capacity(WRITE_CHUNK + LONGEST_EVENT_TEXT);
        for event in &self.events {
            event.append_text(&mut lines);
            lines.push(b'\n');
            if lines.len() >= WRITE_CHUNK {
                out.write_all(&lines)?;
                lines.clear();
            }
        }
        out.write_all(&lines)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The text of WALL.md's log lines, as the formatting machinery writes it.
    fn expected_text(events: &[LogEvent]) -> String {
        let mut text = String::new();
        for event in events {
            text += &format!(
                "day {}: team {} finished section {} of profile {}\n",
                event.day, event.team, event.section, event.profile
            );
            if event.relieved {
                text += &format!("day {}: team {} relieved\n", event.day, event.team);
            }
        }
        text
    }

    fn any_event() -> impl Strategy<Value = LogEvent> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(day, team, profile, section, relieved)| LogEvent {
                day,
                team,
                profile,
                section,
                relieved,
            })
    }

    proptest! {
        #[test]
        fn the_log_is_written_as_wall_md_gives_its_lines(
            events in proptest::collection::vec(any_event(), 0..2000),
        ) {
            let log = TeamLog::new(events.clone());
            let mut written = Vec::new();
            log.write_to(&mut written).unwrap();
            prop_assert_eq!(String::from_utf8(written).unwrap(), expected_text(&events));
            let shown: String = events.iter().map(|event| format!("{event}\n")).collect();
            prop_assert_eq!(shown, expected_text(&events));
        }
    }

    #[test]
    fn the_longest_event_fits_its_bound() {
        let widest = LogEvent {
            day: u64::MAX,
            team: u32::MAX,
            profile: u32::MAX,
            section: u32::MAX,
            relieved: true,
        };
        assert!(widest.to_string().len() <= LONGEST_EVENT_TEXT);
    }
}
