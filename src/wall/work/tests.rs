//! Tests of the daily work: steps built from intervals, merged where they meet, and
//! stored tables checked on load.

use super::*;

/// The daily work of sections built over `[start, end]` (inclusive), the changes
/// given to the builder in day order as the engine gives them.
fn from_intervals(intervals: &[(u64, u64)]) -> DailyWork {
    let mut changes: Vec<(u64, bool)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, true), (end + 1, false)])
        .collect();
    changes.sort_unstable();
    let mut builder = DailyWorkBuilder::default();
    for (day, is_start) in changes {
        if is_start {
            builder.start(day, 1);
        } else {
            builder.stop(day, 1);
        }
    }
    builder.finish()
}

#[test]
fn intervals_become_steps() {
    // [1,3] and [2,2] and [5,6]: 1,2,1,0,1,1 feet on days 1..6.
    let work = from_intervals(&[(1, 2), (2, 3), (5, 6)]);
    let daily: Vec<u64> = (0..=8).map(|day| work.feet_on(day)).collect();
    assert_eq!(daily, vec![0, 1, 2, 1, 0, 1, 1, 0, 0]);
    let cumulative: Vec<u64> = (0..=8).map(|day| work.feet_through(day)).collect();
    assert_eq!(cumulative, vec![0, 1, 3, 4, 4, 5, 6, 6, 6]);
    assert_eq!(work.total_feet(), 6);
    assert_eq!(work.last_day(), 6);
}

#[test]
fn back_to_back_intervals_merge_into_one_step() {
    let work = from_intervals(&[(1, 3), (4, 9)]);
    assert_eq!(work.steps.starts, vec![1, 10]);
    assert_eq!(work.steps.active, vec![1, 0]);
}

#[test]
fn no_intervals_means_no_work() {
    let work = from_intervals(&[]);
    assert_eq!(
        (work.feet_on(1), work.feet_through(100), work.last_day()),
        (0, 0, 0)
    );
}

#[test]
fn changes_on_one_day_that_cancel_out_make_no_step() {
    // A section ends on day 3 as another starts on day 4, and the builder is told
    // of the start before the stop: still one step from day 1 to day 6.
    let mut builder = DailyWorkBuilder::default();
    builder.start(1, 2);
    builder.start(4, 1);
    builder.stop(4, 1);
    builder.stop(7, 2);
    let work = builder.finish();
    assert_eq!(work.steps.starts, vec![1, 7]);
    assert_eq!(work.steps.feet_before, vec![0, 12]);
}

#[test]
fn changes_of_no_sections_make_no_step() {
    let mut builder = DailyWorkBuilder::default();
    builder.start(1, 0);
    builder.stop(31, 0);
    assert_eq!(builder.finish(), DailyWork::default());
}

#[test]
fn stored_tables_are_checked_on_load() {
    let good = from_intervals(&[(1, 3), (2, 3)]);
    let json = serde_json::to_string(&good).unwrap();
    assert_eq!(serde_json::from_str::<DailyWork>(&json).unwrap(), good);
    let bad = [
        r#"{"starts":[1],"active":[],"feet_before":[0]}"#,
        r#"{"starts":[1],"active":[2],"feet_before":[0]}"#,
        r#"{"starts":[1,4],"active":[2,0],"feet_before":[0,5]}"#,
        r#"{"starts":[4,1],"active":[2,0],"feet_before":[0,0]}"#,
        r#"{"starts":[0,1],"active":[1,0],"feet_before":[0,1]}"#,
        r#"{"starts":[1,18446744073709551615],"active":[18446744073709551615,0],"feet_before":[0,1]}"#,
    ];
    for json in bad {
        assert!(serde_json::from_str::<DailyWork>(json).is_err(), "{json}");
    }
}
