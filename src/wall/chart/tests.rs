//! Tests of the charts: buckets, the largest profiles, and the Gantt rows.

use super::*;
use crate::wall::{DailyWork, Limits, parse_config, simulate};

#[test]
fn buckets_are_at_most_the_asked_number_and_cover_every_day() {
    for days in [0, 1, 2, 13, 31, 1000, 1001, 15_000_000] {
        for max in [1, 2, 7, 31, 640, 1000] {
            let buckets = Buckets::new(days, max);
            assert!(buckets.len() <= max, "{days} days in {max}");
            if days > 0 {
                assert_eq!(buckets.first_day(0), 1);
                assert_eq!(buckets.last_day(buckets.len() - 1), days);
                for bucket in 1..buckets.len() {
                    assert_eq!(buckets.first_day(bucket), buckets.last_day(bucket - 1) + 1);
                }
            }
        }
    }
    assert_eq!(Buckets::new(31, 1000).width(), 1);
    assert_eq!(Buckets::new(31, 1000).len(), 31);
}

/// The work of sections growing from `starts[i]` through `last_days[i]`.
fn work_of_intervals(starts: &[u64], last_days: &[u64]) -> DailyWork {
    let mut changes: Vec<(u64, bool)> = starts.iter().map(|&day| (day, true)).collect();
    changes.extend(last_days.iter().map(|&day| (day + 1, false)));
    changes.sort_unstable();
    let mut builder = crate::wall::work::DailyWorkBuilder::default();
    for (day, starts) in changes {
        if starts {
            builder.start(day, 1);
        } else {
            builder.stop(day, 1);
        }
    }
    builder.finish()
}

#[test]
fn bucket_integration_equals_the_day_by_day_sum() {
    let work = work_of_intervals(&[1, 2, 5, 9, 9], &[2, 6, 30, 40, 77]);
    let days = work.last_day();
    for max in [1, 3, 10, 77, 100] {
        let buckets = Buckets::new(days, max);
        let Ok(feet) =
            buckets.integrate(|day| Ok::<_, std::convert::Infallible>(work.feet_through(day)));
        assert!(feet.len() <= max);
        assert_eq!(feet.iter().sum::<u64>(), work.total_feet());
        for (bucket, &built) in feet.iter().enumerate() {
            let by_day: u64 = (buckets.first_day(bucket)..=buckets.last_day(bucket))
                .map(|day| work.feet_on(day))
                .sum();
            assert_eq!(built, by_day, "bucket {bucket} of {max}");
        }
    }
}

#[test]
fn a_fifteen_million_day_wall_is_integrated_exactly_in_a_thousand_buckets() {
    let work = work_of_intervals(&[1], &[15_000_000]);
    let buckets = Buckets::new(15_000_000, 1000);
    let Ok(feet) =
        buckets.integrate(|day| Ok::<_, std::convert::Infallible>(work.feet_through(day)));
    assert_eq!(feet.len(), 1000);
    assert!(feet.iter().all(|&built| built == 15_000));
    let Ok(cumulative) =
        buckets.sample(|day| Ok::<_, std::convert::Infallible>(work.feet_through(day)));
    assert_eq!(cumulative.last(), Some(&15_000_000));
}

fn row(profile: usize, ice: u64) -> ProfileSummary {
    ProfileSummary {
        profile,
        sections: 1,
        days: 1,
        ice,
        cost: 0,
    }
}

#[test]
fn the_largest_profiles_are_picked_ties_to_the_lower_number() {
    let rows = [row(1, 5), row(2, 9), row(3, 5), row(4, 1), row(5, 9)];
    assert_eq!(largest_profiles(rows.clone(), 3), vec![1, 2, 5]);
    assert_eq!(largest_profiles(rows.clone(), 10), vec![1, 2, 3, 4, 5]);
    assert_eq!(largest_profiles(rows, 0), Vec::<usize>::new());
}

fn gantt_of(text: &str, teams: u64, max: usize) -> (Buckets, Vec<GanttRow>) {
    let config = parse_config(text.as_bytes(), &Limits::engine_bounds())
        .unwrap()
        .with_num_teams(std::num::NonZeroU64::new(teams));
    let outcome = simulate(&config);
    let buckets = Buckets::new(outcome.summary.days, max);
    let mut gantt = GanttBuilder::new(buckets, teams as usize);
    for line in outcome.log.lines() {
        gantt.line(line.as_bytes()).unwrap();
    }
    (buckets, gantt.finish())
}

#[test]
fn the_gantt_of_the_example_wall_shows_each_team_on_its_sections() {
    let (buckets, rows) = gantt_of("21 25 28\n17\n17 22 17 19 17\n", 3, 1000);
    assert_eq!(buckets.len(), 31);
    // WALL.md: team 3 finished section 3 of profile 1 on day 2, then section 1 of
    // profile 2 on day 15, then section 3 of profile 3 on day 28.
    let team3 = &rows[2];
    assert_eq!(team3.profile[..2], [1, 1]);
    assert!(team3.profile[2..15].iter().all(|&p| p == 2));
    assert!(team3.profile[15..28].iter().all(|&p| p == 3));
    assert!(team3.profile[28..].iter().all(|&p| p == 0));
    assert_eq!(team3.finished.iter().sum::<u32>(), 3);
    assert_eq!(team3.finished[1], 1);
    // Team 2 works to the last day, 31.
    assert_eq!(rows[1].profile[30], 3);
    let sections: u32 = rows
        .iter()
        .map(|row| row.finished.iter().sum::<u32>())
        .sum();
    assert_eq!(sections, 9);
}

#[test]
fn a_long_log_folds_into_at_most_the_asked_buckets() {
    let wall = "30 ".repeat(10) + "\n" + &"10 ".repeat(50);
    let (buckets, rows) = gantt_of(&wall, 1, 7);
    assert!(buckets.len() <= 7);
    assert_eq!(rows[0].profile.len(), buckets.len());
    assert_eq!(rows[0].finished.iter().sum::<u32>(), 50);
    assert!(rows[0].profile.iter().all(|&p| p == 2));
}

#[test]
fn lines_not_in_the_logged_form_are_refused() {
    let mut gantt = GanttBuilder::new(Buckets::new(5, 5), 1);
    for line in [
        "day x: team 1 relieved",
        "day 2 team 1 relieved",
        "hello",
        "",
        "day 2: team 1 finished section 1 of wall 3",
        "day 2: team 1 finished section 1 of profile 3 and more",
        "day 2: team 1 relieved today",
        "day 99999999999999999999: team 1 relieved",
    ] {
        assert!(gantt.line(line.as_bytes()).is_err(), "{line}");
    }
    for line in [
        "day 2: team 9 finished section 1 of profile 1",
        "day 3: team 1 relieved",
    ] {
        assert!(gantt.line(line.as_bytes()).is_ok(), "{line}");
    }
}
