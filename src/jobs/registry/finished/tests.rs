//! Tests of the finished jobs' store: its entry size, packing, order, cursors,
//! tombstones and their compaction.

use std::num::NonZeroU32;
use std::sync::Weak;

use super::*;

fn done(finished_ms: u64) -> FinishedJob {
    FinishedJob {
        state: JobState::Done,
        started_ms: NonZeroU64::new(finished_ms - 5),
        finished_ms: NonZeroU64::new(finished_ms),
        shape: Some(WallShape {
            profiles: NonZeroU32::new(3).unwrap(),
            sections: NonZeroU32::new(40),
            num_teams: NonZeroU64::new(7),
        }),
        result_bytes: 300,
        replayed: false,
        deleting: false,
    }
}

/// `n` ids in creation order.
fn ids(n: usize) -> Vec<JobId> {
    (0..n).map(|_| JobId::generate()).collect()
}

fn store_of(ids: &[JobId]) -> FinishedJobs {
    let mut store = FinishedJobs::default();
    for &id in ids {
        store.insert(id, done(1_000), Weak::new());
    }
    store
}

fn oldest(store: &FinishedJobs, after: Option<JobId>) -> Vec<JobId> {
    store.done_ids(Order::Oldest, after).collect()
}

fn newest(store: &FinishedJobs, after: Option<JobId>) -> Vec<JobId> {
    store.done_ids(Order::Newest, after).collect()
}

#[test]
fn a_done_job_takes_56_bytes() {
    // A million finished jobs may be kept: each costs its id (16 bytes) and its packed
    // record, with no hash table's slack, no node of an index beside it.
    assert_eq!(size_of::<Packed>(), 40);
    assert_eq!(size_of::<(JobId, Packed)>(), 56);
}

#[test]
fn a_job_comes_back_as_it_was_stored_even_with_values_too_large_to_pack() {
    let mut unusual = Vec::new();
    let mut teams = done(1_000);
    teams.shape.as_mut().unwrap().num_teams = NonZeroU64::new(u64::MAX / 2);
    unusual.push(teams);
    let mut long_run = done(1 << 40);
    long_run.started_ms = NonZeroU64::new(1_000);
    unusual.push(long_run);
    let mut clock_set_back = done(1_000);
    clock_set_back.started_ms = NonZeroU64::new(2_000);
    unusual.push(clock_set_back);
    let mut start_only = done(1_000);
    start_only.finished_ms = None;
    unusual.push(start_only);
    let mut huge = done(1_000);
    huge.result_bytes = u64::MAX;
    unusual.push(huge);
    let mut usual = vec![done(1_000)];
    let mut flagged = done(1_000);
    flagged.replayed = true;
    flagged.deleting = true;
    usual.push(flagged);
    let mut no_start = done(1_000);
    no_start.started_ms = None;
    no_start.shape = None;
    usual.push(no_start);
    let mut same_ms = done(1_000);
    same_ms.started_ms = same_ms.finished_ms;
    usual.push(same_ms);
    let mut failed = done(1_000);
    failed.state = JobState::Failed("why".into());
    usual.push(failed);

    let mut store = FinishedJobs::default();
    let stored: Vec<(JobId, FinishedJob)> = unusual
        .iter()
        .chain(&usual)
        .map(|job| (JobId::generate(), job.clone()))
        .collect();
    for (id, job) in &stored {
        store.insert(*id, job.clone(), Weak::new());
    }
    assert_eq!(store.unusual.len(), unusual.len());
    for (id, job) in &stored {
        assert_eq!(store.get(*id).as_ref(), Some(job));
        assert_eq!(store.result_bytes(*id), Some(job.result_bytes));
        assert_eq!(store.get(*id).unwrap().finished_ms, job.finished_ms);
    }
    for (id, job) in &stored {
        assert_eq!(store.remove(*id).as_ref(), Some(job));
        assert_eq!(store.get(*id), None);
    }
    assert!(
        store.unusual.is_empty(),
        "the values too large go with their job"
    );
    assert_eq!((store.done_len(), store.failed_len()), (0, 0));
}

#[test]
fn done_jobs_are_kept_in_id_order_whatever_order_they_finish_in() {
    let ids = ids(6);
    let mut store = FinishedJobs::default();
    for at in [2, 0, 5, 1, 4, 3] {
        store.insert(ids[at], done(1_000), Weak::new());
    }
    assert_eq!(oldest(&store, None), ids);
    assert_eq!(oldest(&store, Some(ids[1])), ids[2..]);
    assert_eq!(
        newest(&store, Some(ids[4])),
        [ids[3], ids[2], ids[1], ids[0]]
    );
    // A cursor need not be an id of the store.
    let later = JobId::generate();
    assert_eq!(newest(&store, Some(later)).len(), 6);
    assert!(oldest(&store, Some(later)).is_empty());
    assert_eq!(store.done_len(), 6);
}

#[test]
fn a_job_removed_from_the_middle_leaves_a_tombstone_that_no_walk_shows() {
    let ids = ids(10);
    let mut store = store_of(&ids);
    assert!(store.remove(ids[4]).is_some());
    assert!(store.remove(ids[4]).is_none(), "removed once");
    assert_eq!((store.tombstones, store.done.len()), (1, 10));
    assert_eq!(store.done_len(), 9);
    assert_eq!(store.get(ids[4]), None);
    assert!(!store.mark_deleting(ids[4]));
    let mut live = ids.clone();
    live.remove(4);
    assert_eq!(oldest(&store, None), live);
    // A cursor on the tombstone pages on from its place.
    assert_eq!(oldest(&store, Some(ids[4])), ids[5..]);
    assert_eq!(
        newest(&store, Some(ids[4])),
        [ids[3], ids[2], ids[1], ids[0]]
    );
    // The same id finished again takes its tombstone's place.
    store.insert(ids[4], done(2_000), Weak::new());
    assert_eq!((store.tombstones, store.done.len()), (0, 10));
    assert_eq!(oldest(&store, None), ids);
    assert_eq!(
        store.get(ids[4]).unwrap().finished_ms,
        NonZeroU64::new(2_000)
    );
}

#[test]
fn removing_at_either_end_takes_the_tombstones_behind_it() {
    let ids = ids(20);
    let mut store = store_of(&ids);
    store.remove(ids[1]);
    store.remove(ids[18]);
    assert_eq!((store.tombstones, store.done.len()), (2, 20));
    store.remove(ids[0]);
    assert_eq!((store.tombstones, store.done.len()), (1, 18));
    store.remove(ids[19]);
    assert_eq!((store.tombstones, store.done.len()), (0, 16));
    assert_eq!(oldest(&store, None), ids[2..18]);
}

#[test]
fn tombstones_go_once_they_pass_a_quarter_of_the_entries() {
    let ids = ids(40);
    let mut store = store_of(&ids);
    // Ten tombstones of forty entries: a quarter, kept.
    for at in (1..21).step_by(2) {
        store.remove(ids[at]);
    }
    assert_eq!((store.tombstones, store.done.len()), (10, 40));
    // The eleventh passes it: one pass leaves only the live jobs, in order.
    store.remove(ids[21]);
    assert_eq!((store.tombstones, store.done.len()), (0, 29));
    let live: Vec<JobId> = ids
        .iter()
        .enumerate()
        .filter(|&(at, _)| !(at < 22 && at % 2 == 1))
        .map(|(_, &id)| id)
        .collect();
    assert_eq!(oldest(&store, None), live);
    for &id in &live {
        assert_eq!(store.get(id), Some(done(1_000)));
    }
}

#[test]
fn failed_jobs_keep_their_reason_and_their_own_order() {
    let ids = ids(4);
    let mut store = FinishedJobs::default();
    for (at, &id) in ids.iter().enumerate() {
        let mut job = done(1_000);
        if at % 2 == 1 {
            job.state = JobState::Failed(format!("reason {at}").into());
        }
        store.insert(id, job, Weak::new());
    }
    assert_eq!((store.done_len(), store.failed_len()), (2, 2));
    assert_eq!(oldest(&store, None), [ids[0], ids[2]]);
    let failed: Vec<JobId> = store.failed_ids(Order::Newest, None).collect();
    assert_eq!(failed, [ids[3], ids[1]]);
    let after: Vec<JobId> = store.failed_ids(Order::Oldest, Some(ids[1])).collect();
    assert_eq!(after, [ids[3]]);
    assert_eq!(
        store.get(ids[3]).unwrap().state,
        JobState::Failed("reason 3".into())
    );
}

#[test]
fn flags_change_in_place() {
    let ids = ids(2);
    let mut store = store_of(&ids);
    assert!(store.mark_deleting(ids[0]));
    assert!(!store.mark_deleting(ids[0]), "one delete at a time");
    assert!(store.get(ids[0]).unwrap().deleting);
    store.unmark_deleting(ids[0]);
    assert!(!store.get(ids[0]).unwrap().deleting);
    store.mark_replayed(ids[1]);
    let replayed = store.get(ids[1]).unwrap();
    assert!(replayed.replayed);
    assert_eq!(
        replayed.result_bytes, 300,
        "the flags leave the bytes alone"
    );
}

#[test]
fn jobs_finished_before_a_time_are_found_whatever_their_status() {
    let ids = ids(4);
    let mut store = FinishedJobs::default();
    store.insert(ids[0], done(100), Weak::new());
    store.insert(ids[1], done(300), Weak::new());
    let mut failed = done(100);
    failed.state = JobState::Failed("x".into());
    store.insert(ids[2], failed, Weak::new());
    let mut unknown = done(100);
    unknown.finished_ms = None;
    unknown.started_ms = None;
    store.insert(ids[3], unknown, Weak::new());
    for step in [1, 2, 100] {
        assert_eq!(
            finished_before(&store, 200, step),
            [ids[0], ids[2]],
            "{step}"
        );
    }
    store.remove(ids[0]);
    assert_eq!(finished_before(&store, 200, 1), [ids[2]]);
}

/// A whole scan, `step` entries at a time.
fn finished_before(store: &FinishedJobs, cutoff_ms: u64, step: usize) -> Vec<JobId> {
    let mut found = Vec::new();
    let mut from = Some(ScanFrom::Done(None));
    while let Some(at) = from {
        from = store.finished_before(cutoff_ms, at, step, &mut found);
    }
    found
}

#[test]
fn a_scan_in_steps_sees_every_job_once_while_jobs_come_and_go_between_steps() {
    let ids = ids(12);
    let mut store = FinishedJobs::default();
    for (at, &id) in ids[..10].iter().enumerate() {
        let mut job = done(100);
        if at % 3 == 0 {
            job.state = JobState::Failed("x".into());
        }
        store.insert(id, job, Weak::new());
    }
    let mut found = Vec::new();
    let mut from = Some(ScanFrom::Done(None));
    let mut steps = 0;
    while let Some(at) = from {
        from = store.finished_before(200, at, 2, &mut found);
        steps += 1;
        if steps == 2 {
            // Behind the scan, ahead of it, and a tombstone in the middle.
            store.remove(ids[1]);
            store.insert(ids[11], done(100), Weak::new());
            store.remove(ids[7]);
        }
    }
    let mut expected: Vec<JobId> = [2, 4, 5, 8, 11, 0, 3, 6, 9].map(|at| ids[at]).to_vec();
    expected[..5].sort();
    expected[5..].sort();
    assert_eq!(found[..1], [ids[1]], "seen before it went");
    assert_eq!(found[1..], expected);
    assert!(steps > 5, "{steps} steps");
}
