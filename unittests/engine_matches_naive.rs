//! Property tests: the fast engine against a naive day-by-day, foot-by-foot simulation
//! written straight from the rules of WALL.md, on random walls and team counts.

use std::num::NonZeroU64;

use icewall::wall::{self, Height, WallConfig};
use proptest::prelude::*;

const ICE_PER_FOOT: u64 = 195;
const COST_PER_FOOT: u64 = 195 * 1900;

/// What the naive simulation saw: feet built per profile per day (index 0 is day 1), and
/// the log lines.
struct Naive {
    daily_feet: Vec<Vec<u64>>,
    log: Vec<String>,
}

/// Walks day by day. Teams (or crews, one per unfinished section) hold a section each;
/// at the end of a day, in ascending team order, finishers log and take the next section.
fn naive(profiles: &[Vec<u8>], num_teams: Option<u64>) -> Naive {
    let mut sections: Vec<(usize, usize, u8)> = Vec::new();
    for (p, profile) in profiles.iter().enumerate() {
        for (s, &height) in profile.iter().enumerate() {
            if height < 30 {
                sections.push((p, s, height));
            }
        }
    }
    let teams = match num_teams {
        Some(teams) => (teams.min(sections.len() as u64)) as usize,
        None => sections.len(),
    };
    let mut holding: Vec<Option<usize>> = (0..teams).map(Some).collect();
    let mut next = teams;
    let mut daily_feet = vec![Vec::new(); profiles.len()];
    let mut log = Vec::new();
    let mut day = 0u64;
    while holding.iter().any(Option::is_some) {
        day += 1;
        for feet in &mut daily_feet {
            feet.push(0);
        }
        for &section in holding.iter().flatten() {
            sections[section].2 += 1;
            daily_feet[sections[section].0][day as usize - 1] += 1;
        }
        for (team, held) in holding.iter_mut().enumerate() {
            let Some(section) = *held else { continue };
            let (p, s, height) = sections[section];
            if height == 30 {
                log.push(format!(
                    "day {day}: team {} finished section {} of profile {}",
                    team + 1,
                    s + 1,
                    p + 1
                ));
                if next < sections.len() {
                    *held = Some(next);
                    next += 1;
                } else {
                    *held = None;
                    log.push(format!("day {day}: team {} relieved", team + 1));
                }
            }
        }
    }
    Naive { daily_feet, log }
}

fn config(profiles: &[Vec<u8>], num_teams: Option<u64>) -> WallConfig {
    let heights = profiles
        .iter()
        .map(|profile| {
            profile
                .iter()
                .map(|&feet| Height::try_new(u64::from(feet)).unwrap())
                .collect()
        })
        .collect();
    WallConfig::try_new(heights, num_teams.and_then(NonZeroU64::new)).unwrap()
}

fn height() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(30u8), 1 => 25u8..=30, 3 => 0u8..=30]
}

fn wall() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(height(), 1..8), 1..6)
}

fn check(profiles: &[Vec<u8>], num_teams: Option<u64>) -> Result<(), TestCaseError> {
    let expected = naive(profiles, num_teams);
    let outcome = wall::simulate(&config(profiles, num_teams));
    let (summary, work) = wall::simulate_without_log(&config(profiles, num_teams));
    prop_assert_eq!(&summary, &outcome.summary);
    prop_assert_eq!(&work, &outcome.work);
    let days = expected.daily_feet[0].len() as u64;
    prop_assert_eq!(outcome.summary.days, days);
    prop_assert_eq!(outcome.work.days(), days);
    let mut wall_cost = 0;
    for day in 1..=days + 2 {
        for (p, feet) in expected.daily_feet.iter().enumerate() {
            let on_day = feet.get(day as usize - 1).copied().unwrap_or(0);
            prop_assert_eq!(outcome.work.ice(p + 1, day), Some(on_day * ICE_PER_FOOT));
            let through: u64 = feet.iter().take(day as usize).sum();
            prop_assert_eq!(
                outcome.work.profile_cost_through(p + 1, day),
                Some(through * COST_PER_FOOT)
            );
            wall_cost += on_day * COST_PER_FOOT;
        }
        prop_assert_eq!(outcome.work.cost_through(day), wall_cost);
    }
    prop_assert_eq!(outcome.work.total_cost(), wall_cost);
    prop_assert_eq!(outcome.summary.cost, wall_cost);
    for (p, feet) in expected.daily_feet.iter().enumerate() {
        let profile = &outcome.summary.profiles[p];
        let last_day = feet
            .iter()
            .rposition(|&f| f > 0)
            .map_or(0, |i| i as u64 + 1);
        prop_assert_eq!(profile.days, last_day);
        prop_assert_eq!(profile.sections, profiles[p].len());
        prop_assert_eq!(profile.ice, feet.iter().sum::<u64>() * ICE_PER_FOOT);
    }
    let log: Vec<String> = outcome.log.lines().collect();
    prop_assert_eq!(log, expected.log);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn engine_matches_naive_with_unlimited_crews(profiles in wall()) {
        check(&profiles, None)?;
    }

    #[test]
    fn engine_matches_naive_with_teams(profiles in wall(), teams in 1u64..12) {
        check(&profiles, Some(teams))?;
    }
}

/// Walls of a few hundred sections, for team counts past one word of the calendar.
fn larger_wall() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(height(), 40..60), 3..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// More than 64 teams and fewer than the sections: each day's teams are spread over
    /// several words of the calendar, and most hand-overs cross into another profile.
    #[test]
    fn engine_matches_naive_with_many_teams(profiles in larger_wall(), teams in 65u64..140) {
        check(&profiles, Some(teams))?;
    }
}

#[test]
fn naive_reference_reproduces_the_worked_example() {
    let example = vec![vec![21, 25, 28], vec![17], vec![17, 22, 17, 19, 17]];
    assert_eq!(naive(&example, None).daily_feet[0].len(), 13);
    assert_eq!(naive(&example, Some(3)).daily_feet[0].len(), 31);
    assert_eq!(naive(&example, Some(3)).log.len(), 12);
    assert_eq!(naive(&example, Some(1)).daily_feet[0].len(), 87);
    assert_eq!(naive(&example, Some(2)).daily_feet[0].len(), 48);
}

#[test]
fn edge_cases_match_naive() {
    let cases: &[(&[&[u8]], Option<u64>)] = &[
        (&[&[30, 30], &[30]], None),
        (&[&[30, 30], &[30]], Some(2)),
        (&[&[0]], None),
        (&[&[0]], Some(1)),
        (&[&[0, 0, 0], &[0]], Some(1)),
        (&[&[29]], Some(5)),
        (&[&[5, 30, 7], &[30], &[1, 2]], Some(100)),
        (&[&[5, 30, 7], &[30], &[1, 2]], Some(1)),
        (&[&[10, 10, 10, 10]], Some(2)),
    ];
    for (walls, teams) in cases {
        let profiles: Vec<Vec<u8>> = walls.iter().map(|p| p.to_vec()).collect();
        check(&profiles, *teams).unwrap();
    }
}
