//! The simulation engine: schedules every unfinished section (a start and an end day,
//! and the team that builds it) without walking day by day, then condenses the schedule
//! into the summary, the work tables and the team log.

use super::report::{LogEvent, Outcome, ProfileSummary, Summary, TeamLog};
use super::work::{DailyWork, WorkTables};
use super::{COST_PER_FOOT, ICE_PER_FOOT, WallConfig};

/// Simulates the building of `config`'s wall, with unlimited crews or its `num_teams`.
///
/// Runs in O(sections x log teams) time and O(sections) memory, whatever the number of
/// days; the same config always gives the same outcome.
pub fn simulate(config: &WallConfig) -> Outcome {
    let sections = UnfinishedSections::of(config);
    let schedule = match config.num_teams() {
        Some(teams) if teams.get() < sections.len() as u64 => {
            schedule_teams(&sections.remaining, teams.get() as usize)
        }
        _ => schedule_crews(&sections.remaining),
    };
    let work = work_tables(&sections, &schedule);
    let summary = summarize(config, &work);
    let log = TeamLog::new(
        schedule
            .finish_order
            .iter()
            .map(|finish| {
                let (profile, section) = sections.location[finish.section as usize];
                LogEvent {
                    day: schedule.end[finish.section as usize],
                    team: finish.team,
                    profile,
                    section,
                    relieved: finish.relieved,
                }
            })
            .collect(),
    );
    Outcome { summary, work, log }
}

/// The sections that need work, in the order teams take them (profile by profile, left
/// to right). Indices into these vectors are "unfinished section numbers".
struct UnfinishedSections {
    /// Feet to build, 1..=30.
    remaining: Vec<u8>,
    /// (profile, section), both numbered from 1 as in the config.
    location: Vec<(u32, u32)>,
    /// Profile p's unfinished sections are `offsets[p - 1]..offsets[p]`.
    offsets: Vec<usize>,
}

impl UnfinishedSections {
    fn of(config: &WallConfig) -> UnfinishedSections {
        let mut sections = UnfinishedSections {
            remaining: Vec::with_capacity(config.section_count()),
            location: Vec::with_capacity(config.section_count()),
            offsets: Vec::with_capacity(config.profiles().len() + 1),
        };
        sections.offsets.push(0);
        for (profile_index, profile) in config.profiles().iter().enumerate() {
            for (section_index, height) in profile.iter().enumerate() {
                if height.remaining() > 0 {
                    sections.remaining.push(height.remaining());
                    // Limits::engine_bounds keeps both numbers within u32.
                    sections
                        .location
                        .push((profile_index as u32 + 1, section_index as u32 + 1));
                }
            }
            sections.offsets.push(sections.remaining.len());
        }
        sections
    }

    fn len(&self) -> usize {
        self.remaining.len()
    }
}

/// A section reaching 30: which one, by whom, and whether that team is then relieved.
struct Finish {
    section: u32,
    team: u32,
    relieved: bool,
}

/// Who builds which unfinished section when.
struct Schedule {
    /// First day of work on each unfinished section; non-decreasing, because sections
    /// are taken in order and a team only takes one the day after another finishes.
    start: Vec<u64>,
    /// The day each unfinished section reaches 30.
    end: Vec<u64>,
    /// Finishes in log order: by day, then by team number.
    finish_order: Vec<Finish>,
}

/// Unlimited crews: crew k builds unfinished section k from day 1, one foot a day, and is
/// relieved when it is done. A counting sort by days of work gives the log order.
fn schedule_crews(remaining: &[u8]) -> Schedule {
    let mut first_of_length = [0usize; super::MAX_HEIGHT as usize + 2];
    for &feet in remaining {
        first_of_length[feet as usize + 1] += 1;
    }
    for length in 1..first_of_length.len() {
        first_of_length[length] += first_of_length[length - 1];
    }
    let mut order: Vec<u32> = vec![0; remaining.len()];
    for (section, &feet) in remaining.iter().enumerate() {
        let slot = &mut first_of_length[feet as usize];
        order[*slot] = section as u32;
        *slot += 1;
    }
    Schedule {
        start: vec![1; remaining.len()],
        end: remaining.iter().map(|&feet| u64::from(feet)).collect(),
        finish_order: order
            .into_iter()
            .map(|section| Finish {
                section,
                team: section + 1,
                relieved: true,
            })
            .collect(),
    }
}

/// Limited teams (`teams` < number of unfinished sections). Every pending finish lies
/// within the next 30 days, so a calendar of 32 day slots (a bit set marks the busy
/// ones) finds the next day with finishes in O(1); that day's teams are sorted by
/// number, finish, and take the next sections in order.
fn schedule_teams(remaining: &[u8], teams: usize) -> Schedule {
    const SLOTS: u64 = 32;
    const _: () = assert!(SLOTS > super::MAX_HEIGHT as u64);
    let slot_of = |day: u64| (day % SLOTS) as usize;
    let mut start = vec![0u64; remaining.len()];
    let mut end = vec![0u64; remaining.len()];
    let mut finish_order = Vec::with_capacity(remaining.len());
    let mut holding: Vec<u32> = (0..teams as u32).collect();
    let mut calendar: [Vec<u32>; SLOTS as usize] = Default::default();
    let mut busy_slots = 0u32;
    for section in 0..teams {
        start[section] = 1;
        end[section] = u64::from(remaining[section]);
        calendar[slot_of(end[section])].push(section as u32 + 1);
        busy_slots |= 1 << slot_of(end[section]);
    }
    let mut next = teams;
    let mut today = 0u64;
    while busy_slots != 0 {
        // Bit i of the rotated set is the day `today + 1 + i`.
        let ahead = busy_slots
            .rotate_right(slot_of(today + 1) as u32)
            .trailing_zeros();
        today += 1 + u64::from(ahead);
        let mut finishing = std::mem::take(&mut calendar[slot_of(today)]);
        busy_slots &= !(1 << slot_of(today));
        finishing.sort_unstable();
        for &team in &finishing {
            let relieved = next == remaining.len();
            finish_order.push(Finish {
                section: holding[team as usize - 1],
                team,
                relieved,
            });
            if !relieved {
                start[next] = today + 1;
                end[next] = today + u64::from(remaining[next]);
                holding[team as usize - 1] = next as u32;
                calendar[slot_of(end[next])].push(team);
                busy_slots |= 1 << slot_of(end[next]);
                next += 1;
            }
        }
        // Keep the slot's allocation: it is reused 32 days from now.
        finishing.clear();
        calendar[slot_of(today)] = finishing;
    }
    Schedule {
        start,
        end,
        finish_order,
    }
}

/// Per-profile and whole-wall daily work. Starts are already sorted; ends come sorted in
/// finish order, and a stable distribution by profile keeps each profile's sorted.
fn work_tables(sections: &UnfinishedSections, schedule: &Schedule) -> WorkTables {
    let wall_ends: Vec<u64> = schedule
        .finish_order
        .iter()
        .map(|finish| schedule.end[finish.section as usize])
        .collect();
    let mut ends_by_profile = vec![0u64; sections.len()];
    let mut cursor = sections.offsets.clone();
    for finish in &schedule.finish_order {
        let profile_index = sections.location[finish.section as usize].0 as usize - 1;
        ends_by_profile[cursor[profile_index]] = schedule.end[finish.section as usize];
        cursor[profile_index] += 1;
    }
    let profiles = sections
        .offsets
        .windows(2)
        .map(|bounds| {
            let range = bounds[0]..bounds[1];
            DailyWork::from_sorted_intervals(
                &schedule.start[range.clone()],
                &ends_by_profile[range],
            )
        })
        .collect();
    WorkTables {
        profiles,
        wall: DailyWork::from_sorted_intervals(&schedule.start, &wall_ends),
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
