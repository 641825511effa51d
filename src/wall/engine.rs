//! The simulation engine: schedules every unfinished section (a start and an end day,
//! and the team that builds it) without walking day by day, and condenses the schedule
//! as it unfolds into the work tables and the team log, from which the summary follows.
//! Unlimited crews are scheduled here, limited teams in `teams`.

mod teams;

use self::teams::schedule_teams;
use super::report::{LogEvent, Outcome, ProfileSummary, Summary, TeamLog};
use super::work::{DailyWorkBuilder, WorkTables};
use super::{COST_PER_FOOT, Height, ICE_PER_FOOT, MAX_HEIGHT, WallConfig};

/// Simulates the building of `config`'s wall, with unlimited crews or its `num_teams`.
///
/// Runs in O(sections) time and memory, whatever the number of days or teams (with as
/// many teams as unfinished sections or more, they work as crews); the same config
/// always gives the same outcome.
pub fn simulate(config: &WallConfig) -> Outcome {
    let mut events = Vec::new();
    let work = schedule(config, Some(&mut events));
    Outcome {
        summary: summarize(config, &work),
        work,
        log: TeamLog::new(events),
    }
}

/// The summary and the work tables of [`simulate`], without the team log: the log is
/// the one part as large as the wall, and a caller that prints only the others (as
/// `icewall simulate` does unless asked for the log) need not build it.
pub fn simulate_without_log(config: &WallConfig) -> (Summary, WorkTables) {
    let work = schedule(config, None);
    (summarize(config, &work), work)
}

/// The work tables, and the team log written to `log` if one is asked for.
fn schedule(config: &WallConfig, log: Option<&mut Vec<LogEvent>>) -> WorkTables {
    // Counted profile by profile, a loop the compiler vectorises.
    let unfinished = config
        .profiles()
        .iter()
        .map(|heights| {
            heights
                .iter()
                .filter(|height| height.remaining() > 0)
                .count()
        })
        .sum();
    match config.num_teams() {
        Some(teams) if teams.get() < unfinished as u64 => {
            let teams = teams.get() as usize;
            // The loop is compiled once for each: without a log, it carries nothing of it.
            match log {
                Some(log) => {
                    log.reserve_exact(unfinished);
                    schedule_teams(config, teams, |event| log.push(event))
                }
                None => schedule_teams(config, teams, |_| {}),
            }
        }
        _ => {
            if let Some(log) = log {
                *log = crew_log(config, unfinished);
            }
            crew_work(config)
        }
    }
}

/// A section that needs work, as the engine schedules it.
#[derive(Clone, Copy, Debug)]
struct Section {
    /// Index into the config's profiles (from 0).
    profile: u32,
    /// Position in its profile, numbered from 1 as in the log.
    number: u32,
    /// Feet to build, 1..=30, which is also the number of days of work.
    feet: u8,
}

/// The sections that need work, in the order teams take them: profile by profile, left
/// to right. Read from the config as needed, so that no copy of the wall is made.
fn unfinished_sections(config: &WallConfig) -> UnfinishedSections<'_> {
    let mut later = config.profiles().iter();
    UnfinishedSections {
        heights: later.next().map_or(&[], Vec::as_slice),
        later,
        profile: 0,
        index: 0,
    }
}

/// The iterator of [`unfinished_sections`]: a place in the wall, which the teams' loop
/// advances once per section, with less work per step than the chain of `flat_map`
/// and `filter` it replaces.
struct UnfinishedSections<'a> {
    /// The heights of the profile at hand, and the profiles after it.
    heights: &'a [Height],
    later: std::slice::Iter<'a, Vec<Height>>,
    /// The place of the next section to look at.
    profile: u32,
    index: usize,
}

impl Iterator for UnfinishedSections<'_> {
    type Item = Section;

    fn next(&mut self) -> Option<Section> {
        loop {
            while let Some(height) = self.heights.get(self.index) {
                self.index += 1;
                if height.remaining() > 0 {
                    // Limits::engine_bounds keeps both numbers within u32.
                    return Some(Section {
                        profile: self.profile,
                        number: self.index as u32,
                        feet: height.remaining(),
                    });
                }
            }
            self.heights = self.later.next()?;
            self.profile += 1;
            self.index = 0;
        }
    }
}

/// How many sections need each number of feet (index 1..=30; index 0, the finished
/// ones, stays 0).
type SectionsByFeet = [u64; MAX_HEIGHT as usize + 1];

/// Unlimited crews: every unfinished section is built from day 1, one foot a day, so
/// each table follows from how many sections need each number of feet.
fn crew_work(config: &WallConfig) -> WorkTables {
    let mut wall = [0; MAX_HEIGHT as usize + 1];
    let profiles = config
        .profiles()
        .iter()
        .map(|heights| {
            // A height is at most 30: masked to five bits it needs no bounds check, and
            // the counts, made anew for each profile, take 256 bytes.
            const _: () = assert!(MAX_HEIGHT < 32);
            let mut by_height = [0u64; 32];
            for height in heights {
                by_height[usize::from(height.feet() & 31)] += 1;
            }
            let mut profile: SectionsByFeet = [0; MAX_HEIGHT as usize + 1];
            for feet in 1..=MAX_HEIGHT {
                profile[usize::from(feet)] = by_height[usize::from(MAX_HEIGHT - feet)];
            }
            for (total, count) in wall.iter_mut().zip(profile) {
                *total += count;
            }
            crew_daily_work(&profile)
        })
        .collect();
    WorkTables {
        profiles,
        wall: crew_daily_work(&wall),
    }
}

fn crew_daily_work(sections: &SectionsByFeet) -> super::DailyWork {
    let mut work = DailyWorkBuilder::default();
    work.start(1, sections.iter().sum());
    for (feet, &count) in sections.iter().enumerate().skip(1) {
        work.stop(feet as u64 + 1, count);
    }
    work.finish()
}

/// Unlimited crews' log: crew k builds the k-th unfinished section, finishes on the day
/// its last foot is built, and is relieved. A counting sort by days of work puts the
/// events in log order (by day, then crew) straight into their places.
fn crew_log(config: &WallConfig, unfinished: usize) -> Vec<LogEvent> {
    let mut first_of_length = [0usize; MAX_HEIGHT as usize + 2];
    for section in unfinished_sections(config) {
        first_of_length[section.feet as usize + 1] += 1;
    }
    for length in 1..first_of_length.len() {
        first_of_length[length] += first_of_length[length - 1];
    }
    // Every place is written once below; this value is only what the vector starts with.
    let unwritten = LogEvent {
        day: 0,
        team: 0,
        profile: 0,
        section: 0,
        relieved: false,
    };
    let mut log = vec![unwritten; unfinished];
    for (crew, section) in unfinished_sections(config).enumerate() {
        let place = &mut first_of_length[section.feet as usize];
        log[*place] = LogEvent {
            day: u64::from(section.feet),
            team: crew as u32 + 1,
            profile: section.profile + 1,
            section: section.number,
            relieved: true,
        };
        *place += 1;
    }
    log
}

fn summarize(config: &WallConfig, work: &WorkTables) -> Summary {
    let profiles = config
        .profiles()
        .iter()
        .zip(&work.profiles)
        .enumerate()
        .map(|(index, (heights, daily))| ProfileSummary {
            profile: index + 1,
            sections: heights.len(),
            days: daily.last_day(),
            ice: daily.total_feet() * ICE_PER_FOOT,
            cost: daily.total_feet() * COST_PER_FOOT,
        })
        .collect();
    Summary {
        days: work.wall.last_day(),
        num_teams: config.num_teams().map(|teams| teams.get()),
        ice: work.wall.total_feet() * ICE_PER_FOOT,
        cost: work.wall.total_feet() * COST_PER_FOOT,
        profiles,
    }
}

#[cfg(test)]
mod tests;
