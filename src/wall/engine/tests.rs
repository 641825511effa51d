//! Tests of the engine against the examples of WALL.md, with unlimited crews and with
//! teams, and the queries past the end.

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
