//! The simulation engine: schedules every unfinished section (a start and an end day,
//! and the team that builds it) without walking day by day, and condenses the schedule
//! as it unfolds into the work tables and the team log, from which the summary follows.

use super::report::{LogEvent, Outcome, ProfileSummary, Summary, TeamLog};
use super::work::{DailyWorkBuilder, WorkTables};
use super::{COST_PER_FOOT, ICE_PER_FOOT, MAX_HEIGHT, WallConfig};

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
    let unfinished = unfinished_sections(config).count();
    match config.num_teams() {
        Some(teams) if teams.get() < unfinished as u64 => {
            schedule_teams(config, teams.get() as usize, unfinished, log)
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
fn unfinished_sections(config: &WallConfig) -> impl Iterator<Item = Section> + '_ {
    config
        .profiles()
        .iter()
        .enumerate()
        .flat_map(|(profile, heights)| {
            heights
                .iter()
                .enumerate()
                .filter(|(_, height)| height.remaining() > 0)
                // Limits::engine_bounds keeps both numbers within u32.
                .map(move |(index, height)| Section {
                    profile: profile as u32,
                    number: index as u32 + 1,
                    feet: height.remaining(),
                })
        })
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
            let mut profile: SectionsByFeet = [0; MAX_HEIGHT as usize + 1];
            for height in heights {
                profile[height.remaining() as usize] += 1;
            }
            profile[0] = 0;
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

/// Limited teams (`teams` < number of unfinished sections). Each day with finishes,
/// its teams, by number, finish and take the next sections in order. Each start and
/// finish goes straight into the tables (and the log, if kept): nothing per section is
/// stored.
fn schedule_teams(
    config: &WallConfig,
    teams: usize,
    unfinished: usize,
    mut log: Option<&mut Vec<LogEvent>>,
) -> WorkTables {
    if let Some(log) = log.as_mut() {
        log.reserve_exact(unfinished);
    }
    let mut queue = unfinished_sections(config);
    let mut plan = TeamPlan::new(config.profiles().len(), teams);
    let mut holding: Vec<Section> = (1..=teams as u32)
        .map(|team| {
            let section = queue.next().expect("fewer teams than unfinished sections");
            plan.begin(team, section);
            section
        })
        .collect();
    let mut finishing = Vec::new();
    while let Some(today) = plan.next_finishes(&mut finishing) {
        for &team in &finishing {
            let held = &mut holding[team as usize - 1];
            let next = queue.next();
            if let Some(log) = log.as_mut() {
                log.push(LogEvent {
                    day: today,
                    team,
                    profile: held.profile + 1,
                    section: held.number,
                    relieved: next.is_none(),
                });
            }
            plan.hand_over(team, *held, next, today);
            if let Some(section) = next {
                *held = section;
            }
        }
    }
    WorkTables {
        profiles: plan
            .profiles
            .into_iter()
            .map(DailyWorkBuilder::finish)
            .collect(),
        wall: plan.wall.finish(),
    }
}

/// The teams' days to come and the tables so far. Every pending finish lies within the
/// next 30 days, so a calendar of 32 day slots (a bit set marks the busy ones) finds
/// the next day with finishes in O(1). Each slot holds its teams as a bit set, which
/// gives them in team order without sorting: a day costs O(teams / 64) words, and the
/// whole schedule O(sections + teams).
struct TeamPlan {
    wall: DailyWorkBuilder,
    profiles: Vec<DailyWorkBuilder>,
    /// Bit `team - 1` of slot `day % SLOTS` is set when that team finishes on that day;
    /// the slot's bits are `calendar[slot * words_per_slot..][..words_per_slot]`.
    calendar: Vec<u64>,
    words_per_slot: usize,
    busy_slots: u32,
    today: u64,
}

const _: () = assert!(TeamPlan::SLOTS > MAX_HEIGHT as usize);

impl TeamPlan {
    const SLOTS: usize = 32;

    fn new(profiles: usize, teams: usize) -> TeamPlan {
        let words_per_slot = teams.div_ceil(64);
        TeamPlan {
            wall: DailyWorkBuilder::default(),
            profiles: vec![DailyWorkBuilder::default(); profiles],
            calendar: vec![0; Self::SLOTS * words_per_slot],
            words_per_slot,
            busy_slots: 0,
            today: 0,
        }
    }

    fn slot_of(day: u64) -> usize {
        (day % Self::SLOTS as u64) as usize
    }

    /// `team` builds `section` from day 1 on.
    fn begin(&mut self, team: u32, section: Section) {
        self.wall.start(1, 1);
        self.profiles[section.profile as usize].start(1, 1);
        self.mark_finish(team, u64::from(section.feet));
    }

    /// `team` finishes `done` at the end of `day` and takes `next`, if there is one, the
    /// day after. Only the tables whose number of growing sections changes are told: a
    /// hand-over within a profile changes none, and the wall's only when a team is
    /// relieved.
    fn hand_over(&mut self, team: u32, done: Section, next: Option<Section>, day: u64) {
        let from = day + 1;
        match next {
            Some(next) if next.profile == done.profile => {}
            Some(next) => {
                self.profiles[done.profile as usize].stop(from, 1);
                self.profiles[next.profile as usize].start(from, 1);
            }
            None => {
                self.wall.stop(from, 1);
                self.profiles[done.profile as usize].stop(from, 1);
            }
        }
        if let Some(next) = next {
            self.mark_finish(team, day + u64::from(next.feet));
        }
    }

    fn mark_finish(&mut self, team: u32, day: u64) {
        let slot = Self::slot_of(day);
        let bit = team as usize - 1;
        self.calendar[slot * self.words_per_slot + bit / 64] |= 1 << (bit % 64);
        self.busy_slots |= 1 << slot;
    }

    /// Moves to the next day on which teams finish, returns it and puts those teams,
    /// by number, in `teams`; `None` once no team is at work.
    fn next_finishes(&mut self, teams: &mut Vec<u32>) -> Option<u64> {
        if self.busy_slots == 0 {
            return None;
        }
        // Bit i of the rotated set is the day `today + 1 + i`.
        let ahead = self
            .busy_slots
            .rotate_right(Self::slot_of(self.today + 1) as u32)
            .trailing_zeros();
        self.today += 1 + u64::from(ahead);
        let slot = Self::slot_of(self.today);
        self.busy_slots &= !(1 << slot);
        teams.clear();
        let words = &mut self.calendar[slot * self.words_per_slot..][..self.words_per_slot];
        for (index, word) in words.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                teams.push((index * 64) as u32 + bits.trailing_zeros() + 1);
                bits &= bits - 1;
            }
        }
        Some(self.today)
    }
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
mod tests {
    use std::num::NonZeroU64;

    use super::*;
    use crate::wall::{EXAMPLE_WALL, Limits, parse_text};

    fn example(num_teams: Option<u64>) -> Outcome {
        let profiles = parse_text(EXAMPLE_WALL.as_bytes(), &Limits::default()).unwrap();
        let config = WallConfig::try_new(profiles, num_teams.and_then(NonZeroU64::new)).unwrap();
        simulate(&config)
    }

    fn daily_ice(outcome: &Outcome, profile: usize) -> Vec<u64> {
        (1..=outcome.summary.days)
            .map(|day| outcome.work.ice(profile, day).unwrap())
            .collect()
    }

    fn repeat(value: u64, times: usize) -> Vec<u64> {
        vec![value; times]
    }

    #[test]
    fn example_wall_with_unlimited_crews_matches_wall_md() {
        let outcome = example(None);
        assert_eq!(outcome.summary.days, 13);
        assert_eq!(outcome.summary.cost, 32_233_500);
        assert_eq!(outcome.summary.ice, 16_965);
        assert_eq!(outcome.work.ice(1, 1), Some(585));
        assert_eq!(outcome.work.ice(1, 2), Some(585));
        assert_eq!(outcome.work.ice(1, 3), Some(390));
        assert_eq!(outcome.work.profile_cost_through(1, 1), Some(1_111_500));
        assert_eq!(outcome.work.cost_through(1), 3_334_500);
        assert_eq!(outcome.work.total_cost(), 32_233_500);
        assert_eq!(
            daily_ice(&outcome, 1)[..9],
            [585, 585, 390, 390, 390, 195, 195, 195, 195]
        );
        assert_eq!(daily_ice(&outcome, 1)[9..], [0, 0, 0, 0]);
        assert_eq!(
            daily_ice(&outcome, 3),
            [repeat(975, 8), repeat(780, 3), repeat(585, 2)].concat()
        );
        let profile_one = &outcome.summary.profiles[0];
        assert_eq!(
            (
                profile_one.sections,
                profile_one.days,
                profile_one.ice,
                profile_one.cost
            ),
            (3, 9, 3120, 5_928_000)
        );
    }

    #[test]
    fn example_wall_with_three_teams_matches_wall_md() {
        let outcome = example(Some(3));
        assert_eq!(outcome.summary.days, 31);
        assert_eq!(outcome.summary.num_teams, Some(3));
        assert_eq!(outcome.work.total_cost(), 32_233_500);
        assert_eq!(
            daily_ice(&outcome, 2),
            [repeat(0, 2), repeat(195, 13), repeat(0, 16)].concat()
        );
        assert_eq!(
            daily_ice(&outcome, 3),
            [
                repeat(0, 5),
                repeat(195, 4),
                repeat(390, 6),
                repeat(585, 13),
                repeat(195, 3)
            ]
            .concat()
        );
        let log: Vec<String> = outcome.log.lines().collect();
        assert_eq!(
            log,
            [
                "day 2: team 3 finished section 3 of profile 1",
                "day 5: team 2 finished section 2 of profile 1",
                "day 9: team 1 finished section 1 of profile 1",
                "day 15: team 3 finished section 1 of profile 2",
                "day 17: team 1 finished section 2 of profile 3",
                "day 18: team 2 finished section 1 of profile 3",
                "day 28: team 1 finished section 4 of profile 3",
                "day 28: team 1 relieved",
                "day 28: team 3 finished section 3 of profile 3",
                "day 28: team 3 relieved",
                "day 31: team 2 finished section 5 of profile 3",
                "day 31: team 2 relieved",
            ]
        );
    }

    #[test]
    fn example_wall_with_one_and_two_teams_matches_wall_md() {
        assert_eq!(example(Some(1)).summary.days, 87);
        assert_eq!(example(Some(2)).summary.days, 48);
        assert_eq!(example(Some(1)).summary.cost, 32_233_500);
    }

    #[test]
    fn enough_teams_give_exactly_the_unlimited_result() {
        let unlimited = example(None);
        for teams in [9, 10, u64::MAX] {
            let limited = example(Some(teams));
            assert_eq!(limited.work, unlimited.work);
            assert_eq!(limited.log, unlimited.log);
        }
    }

    #[test]
    fn unlimited_crews_log_every_finish_and_relief_by_day_then_crew() {
        let log: Vec<String> = example(None).log.lines().take(4).collect();
        assert_eq!(
            log,
            [
                "day 2: team 3 finished section 3 of profile 1",
                "day 2: team 3 relieved",
                "day 5: team 2 finished section 2 of profile 1",
                "day 5: team 2 relieved",
            ]
        );
    }

    #[test]
    fn finished_wall_needs_no_days_and_no_gold() {
        let config = WallConfig::try_new(
            vec![vec![crate::wall::Height::try_new(30).unwrap(); 4]],
            None,
        )
        .unwrap();
        for teams in [None, NonZeroU64::new(2)] {
            let outcome = simulate(&config.clone().with_num_teams(teams));
            assert_eq!((outcome.summary.days, outcome.summary.cost), (0, 0));
            assert!(outcome.log.events().is_empty());
            assert_eq!(outcome.work.ice(1, 1), Some(0));
            assert_eq!(outcome.summary.profiles[0].days, 0);
        }
    }

    #[test]
    fn queries_past_the_end_and_out_of_range() {
        let outcome = example(Some(3));
        assert_eq!(outcome.work.ice(3, 1_000_000), Some(0));
        assert_eq!(
            outcome.work.profile_cost_through(3, u64::MAX),
            Some(outcome.summary.profiles[2].cost)
        );
        assert_eq!(outcome.work.cost_through(u64::MAX), 32_233_500);
        assert_eq!(outcome.work.ice(0, 1), None);
        assert_eq!(outcome.work.ice(4, 1), None);
    }
}
