//! Tests of the registry: states, the per-status index, paging, retention queries and pins.

use std::num::NonZeroU32;
use std::sync::{Arc, Weak};

use super::*;

fn insert(registry: &Registry, id: JobId, state: JobState) {
    let finished_at = state.is_finished().then(SystemTime::now);
    registry.insert(
        id,
        NewRecord {
            state,
            finished_at,
            shape: None,
            result_bytes: 0,
            journal: Weak::new(),
        },
    );
}

#[test]
fn jobs_are_counted_by_status_until_they_are_removed() {
    let registry = Registry::default();
    let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
    insert(&registry, a, JobState::Failed("recovered".into()));
    insert(&registry, b, JobState::Queued);
    insert(&registry, c, JobState::Done);
    assert_eq!(registry.counts(), [1, 0, 1, 1]);
    registry.set_running(b);
    assert_eq!(registry.counts(), [0, 1, 1, 1]);
    registry.finish(
        b,
        JobState::Failed("boom".into()),
        SystemTime::now(),
        0,
        Weak::new(),
    );
    assert_eq!(registry.counts(), [0, 0, 1, 2]);
    assert!(registry.remove_finished(a));
    assert!(registry.remove_finished(c));
    assert_eq!(registry.counts(), [0, 0, 0, 1]);
}

#[test]
fn a_record_tells_when_its_job_started_and_finished_and_its_size() {
    let registry = Registry::default();
    let id = JobId::generate();
    let shape = WallShape {
        profiles: NonZeroU32::new(2).unwrap(),
        sections: NonZeroU32::new(5),
        num_teams: NonZeroU64::new(3),
    };
    registry.insert(
        id,
        NewRecord {
            state: JobState::Queued,
            finished_at: None,
            shape: Some(shape),
            result_bytes: 0,
            journal: Weak::new(),
        },
    );
    let queued = registry.info(id).unwrap();
    assert_eq!((queued.started_ms, queued.finished_ms), (None, None));
    assert_eq!(queued.shape, Some(shape));
    registry.set_running(id);
    let started = registry.info(id).unwrap().started_ms.unwrap();
    assert!(started >= id.created_ms().unwrap());
    registry.mark_replayed(id);
    registry.finish(
        id,
        JobState::Failed("why".into()),
        SystemTime::now(),
        0,
        Weak::new(),
    );
    let failed = registry.info(id).unwrap();
    assert_eq!(failed.state, JobState::Failed("why".into()));
    assert!(failed.finished_ms.unwrap() >= started);
    assert!(failed.replayed);
    // A job recovered from its journal learns its size when it runs.
    let recovered = JobId::generate();
    insert(&registry, recovered, JobState::Queued);
    assert_eq!(registry.info(recovered).unwrap().shape, None);
    registry.describe(recovered, shape);
    assert_eq!(registry.info(recovered).unwrap().shape, Some(shape));
}

#[test]
fn the_finished_count_never_goes_below_zero() {
    let registry = Registry::default();
    // In flight and finished are both counted by the index: a job in flight is never
    // taken for a finished one, nor makes the finished count negative.
    insert(&registry, JobId::generate(), JobState::Queued);
    assert_eq!(registry.finished(), 0);
    assert!(registry.finished_beyond(0).is_empty());
}

#[test]
fn in_flight_counts_queued_and_running_only() {
    let registry = Registry::default();
    let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
    insert(&registry, a, JobState::Queued);
    insert(&registry, b, JobState::Queued);
    insert(&registry, c, JobState::Done);
    assert_eq!(registry.in_flight(), 2);
    registry.set_running(a);
    assert_eq!(registry.in_flight(), 2);
    registry.finish(a, JobState::Done, SystemTime::now(), 0, Weak::new());
    registry.finish(a, JobState::Done, SystemTime::now(), 0, Weak::new());
    assert_eq!(registry.in_flight(), 1);
    registry.finish(
        b,
        JobState::Failed("no".into()),
        SystemTime::now(),
        0,
        Weak::new(),
    );
    assert_eq!(registry.in_flight(), 0);
}

#[test]
fn pages_run_oldest_first_after_a_cursor() {
    let registry = Registry::default();
    let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
    for &id in ids.iter().rev() {
        insert(&registry, id, JobState::Queued);
    }
    let first: Vec<JobId> = registry
        .page(&Status::ALL, Order::Oldest, None, 2)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(first, ids[..2]);
    let rest: Vec<JobId> = registry
        .page(&Status::ALL, Order::Oldest, Some(ids[1]), 10)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rest, ids[2..]);
}

fn ids_of(page: Vec<(JobId, JobInfo)>) -> Vec<JobId> {
    page.into_iter().map(|(id, _)| id).collect()
}

#[test]
fn pages_filter_by_status_and_run_either_way_from_a_cursor() {
    let registry = Registry::default();
    let ids: Vec<JobId> = (0..8).map(|_| JobId::generate()).collect();
    let states = [
        JobState::Done,
        JobState::Queued,
        JobState::Failed("x".into()),
        JobState::Done,
        JobState::Queued,
        JobState::Done,
        JobState::Queued,
        JobState::Failed("y".into()),
    ];
    for (&id, state) in ids.iter().zip(states.clone()) {
        insert(&registry, id, state);
    }
    registry.set_running(ids[4]);
    let page = |statuses: &[Status], order, after, limit| {
        ids_of(registry.page(statuses, order, after, limit))
    };
    let (oldest, newest) = (Order::Oldest, Order::Newest);
    let all: Vec<JobId> = ids.iter().rev().copied().collect();
    assert_eq!(page(&Status::ALL, newest, None, 100), all);
    assert_eq!(page(&Status::ALL, newest, Some(ids[5]), 3), all[3..6]);
    assert_eq!(page(&Status::ALL, oldest, Some(ids[5]), 3), ids[6..]);
    let done = [ids[0], ids[3], ids[5]];
    assert_eq!(page(&[Status::Done], oldest, None, 2), done[..2]);
    assert_eq!(page(&[Status::Done], oldest, Some(ids[3]), 2), done[2..]);
    assert_eq!(page(&[Status::Done], newest, None, 2), [ids[5], ids[3]]);
    // A cursor need not be of the status listed: strictly older than it.
    assert_eq!(
        page(&[Status::Done], newest, Some(ids[4]), 9),
        [ids[3], ids[0]]
    );
    assert_eq!(page(&[Status::Queued], oldest, None, 9), [ids[1], ids[6]]);
    assert_eq!(page(&[Status::Running], newest, None, 9), [ids[4]]);
    assert_eq!(page(&[Status::Failed], newest, None, 9), [ids[7], ids[2]]);
    let rows = registry.page(&[Status::Failed], oldest, None, 1);
    assert_eq!(rows[0].1.state, JobState::Failed("x".into()));
    // A status change moves the job between the lists at once.
    registry.finish(ids[4], JobState::Done, SystemTime::now(), 0, Weak::new());
    assert!(page(&[Status::Running], oldest, None, 9).is_empty());
    assert_eq!(page(&[Status::Done], newest, None, 1), [ids[5]]);
    assert_eq!(page(&[Status::Done], oldest, None, 9).len(), 4);
}

#[test]
fn a_filtered_page_walks_only_the_ids_of_its_status() {
    let registry = Registry::default();
    let mut failed = Vec::new();
    for n in 0..100_000 {
        let id = JobId::generate();
        if n % 25_000 == 0 {
            insert(&registry, id, JobState::Failed("x".into()));
            failed.push(id);
        } else {
            insert(&registry, id, JobState::Done);
        }
    }
    let index = registry.index.read();
    let visited: Vec<JobId> = index.walk(&[Status::Failed], Order::Newest, None).collect();
    // Four ids visited of 100,000: no done job is walked past.
    assert_eq!(visited, failed.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(
        index.walk(&[Status::Queued], Order::Oldest, None).count(),
        0
    );
    // The whole list visits as many ids as it lists, plus none.
    assert_eq!(
        index
            .walk(&Status::ALL, Order::Oldest, None)
            .take(10)
            .count(),
        10
    );
    drop(index);
    assert_eq!(
        ids_of(registry.page(&[Status::Failed], Order::Oldest, Some(failed[1]), 10)),
        failed[2..]
    );
}

#[test]
fn only_finished_jobs_are_removed_and_the_oldest_go_first() {
    let registry = Registry::default();
    let ids: Vec<JobId> = (0..4).map(|_| JobId::generate()).collect();
    insert(&registry, ids[0], JobState::Done);
    insert(&registry, ids[1], JobState::Running);
    insert(&registry, ids[2], JobState::Failed("x".into()));
    insert(&registry, ids[3], JobState::Done);
    assert_eq!(registry.finished_beyond(1), vec![ids[0], ids[2]]);
    assert_eq!(registry.finished_beyond(3), Vec::<JobId>::new());
    assert!(!registry.remove_finished(ids[1]));
    assert!(registry.remove_finished(ids[0]));
    assert_eq!(registry.state(ids[0]), None);
    assert_eq!(
        registry.page(&Status::ALL, Order::Oldest, None, 10).len(),
        3
    );
    let later = SystemTime::now() + std::time::Duration::from_secs(1);
    assert_eq!(registry.finished_before(later).len(), 2);
}

#[test]
fn the_oldest_finished_jobs_go_until_the_stored_bytes_fit() {
    let registry = Registry::default();
    let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
    for &id in &ids {
        insert(&registry, id, JobState::Queued);
    }
    registry.finish(ids[0], JobState::Done, SystemTime::now(), 100, Weak::new());
    registry.finish(
        ids[2],
        JobState::Failed("x".into()),
        SystemTime::now(),
        40,
        Weak::new(),
    );
    registry.finish(ids[3], JobState::Done, SystemTime::now(), 70, Weak::new());
    registry.finish(ids[3], JobState::Done, SystemTime::now(), 70, Weak::new());
    assert_eq!(registry.stored_bytes(), 210);
    assert!(registry.finished_over_bytes(210).is_empty());
    assert_eq!(registry.finished_over_bytes(200), [ids[0]]);
    assert_eq!(registry.finished_over_bytes(110), [ids[0]]);
    assert_eq!(registry.finished_over_bytes(109), [ids[0], ids[2]]);
    assert_eq!(registry.finished_over_bytes(0), [ids[0], ids[2], ids[3]]);
    assert!(registry.remove_finished(ids[0]));
    assert_eq!(registry.stored_bytes(), 110);
    // Recovered with their size.
    let recovered = JobId::generate();
    registry.insert(
        recovered,
        NewRecord {
            state: JobState::Done,
            finished_at: Some(SystemTime::now()),
            shape: None,
            result_bytes: 5,
            journal: Weak::new(),
        },
    );
    assert_eq!(registry.stored_bytes(), 115);
}

#[test]
fn a_job_being_deleted_answers_as_unknown_until_it_is_restored() {
    let registry = Registry::default();
    let (done, queued) = (JobId::generate(), JobId::generate());
    insert(&registry, done, JobState::Done);
    insert(&registry, queued, JobState::Queued);
    assert!(
        !registry.mark_deleting(queued),
        "only a finished job is deleted"
    );
    assert!(registry.mark_deleting(done));
    assert!(!registry.mark_deleting(done), "one delete at a time");
    assert_eq!(registry.state(done), None);
    assert_eq!(
        registry.page(&Status::ALL, Order::Oldest, None, 10).len(),
        1
    );
    registry.unmark_deleting(done);
    assert_eq!(registry.state(done), Some(JobState::Done));
    assert_eq!(
        registry.page(&Status::ALL, Order::Oldest, None, 10).len(),
        2
    );
}

#[test]
fn only_a_queued_job_is_removed_as_cancelled() {
    let registry = Registry::default();
    let (queued, running) = (JobId::generate(), JobId::generate());
    insert(&registry, queued, JobState::Queued);
    insert(&registry, running, JobState::Queued);
    registry.set_running(running);
    assert!(!registry.remove_queued(running));
    assert!(registry.remove_queued(queued));
    assert!(!registry.remove_queued(queued));
    assert_eq!(registry.in_flight(), 1);
    assert_eq!(
        registry.page(&Status::ALL, Order::Oldest, None, 10).len(),
        1
    );
}

#[test]
fn a_job_is_pinned_while_its_journal_lives() {
    let registry = Registry::default();
    let journal = Arc::new(crate::jobs::files::journal::Segment::new(
        std::path::PathBuf::from("/nonexistent/j"),
    ));
    journal.keep();
    let id = JobId::generate();
    registry.insert(
        id,
        NewRecord {
            state: JobState::Done,
            finished_at: Some(SystemTime::now()),
            shape: None,
            result_bytes: 0,
            journal: Arc::downgrade(&journal),
        },
    );
    assert!(registry.is_pinned(id));
    drop(journal);
    assert!(!registry.is_pinned(id));
}

#[test]
fn a_page_shows_each_job_once_while_jobs_move_to_the_finished_store() {
    let registry = Arc::new(Registry::default());
    let ids: Vec<JobId> = (0..3_000).map(|_| JobId::generate()).collect();
    for &id in &ids {
        insert(&registry, id, JobState::Queued);
    }
    let mover = {
        let registry = Arc::clone(&registry);
        let ids = ids.clone();
        std::thread::spawn(move || {
            for (n, &id) in ids.iter().enumerate() {
                registry.set_running(id);
                let outcome = if n % 3 == 0 {
                    JobState::Failed("x".into())
                } else {
                    JobState::Done
                };
                registry.finish(id, outcome, SystemTime::now(), 1, Weak::new());
            }
        })
    };
    let mut pages = 0;
    while !mover.is_finished() || pages == 0 {
        // Every job, once, whichever list it is in when the page is read.
        let listed = ids_of(registry.page(&Status::ALL, Order::Oldest, None, usize::MAX));
        assert!(
            listed == ids,
            "{} jobs listed of {}",
            listed.len(),
            ids.len()
        );
        // And a lookup, which reads the in-flight map and then the store without the
        // index lock between them, finds each job wherever it is.
        for &id in ids.iter().step_by(7) {
            assert!(registry.state(id).is_some(), "{id} lost on its way");
        }
        pages += 1;
    }
    mover.join().unwrap();
    assert_eq!(registry.counts(), [0, 0, 2_000, 1_000]);
    assert_eq!(registry.stored_bytes(), 3_000);
}

#[test]
fn a_state_comes_with_its_finish_time_once_finished() {
    let registry = Registry::default();
    let (queued, done) = (JobId::generate(), JobId::generate());
    insert(&registry, queued, JobState::Queued);
    assert_eq!(
        registry.state_and_finish(queued),
        Some((JobState::Queued, None))
    );
    insert(&registry, done, JobState::Done);
    let (state, finished_at) = registry.state_and_finish(done).unwrap();
    assert_eq!(state, JobState::Done);
    let finished_ms = registry.info(done).unwrap().finished_ms.unwrap();
    assert_eq!(finished_at, Some(finished_ms));
    assert!(registry.mark_deleting(done));
    assert_eq!(registry.state_and_finish(done), None, "being deleted");
    assert_eq!(registry.state_and_finish(JobId::generate()), None);
}

#[test]
fn the_jobs_over_the_limits_are_found_across_many_steps_of_the_scan() {
    let registry = Registry::default();
    let ids: Vec<JobId> = (0..3 * SCAN_STEP + 10).map(|_| JobId::generate()).collect();
    // Every third failed: the scan walks the done and the failed jobs together, in id
    // order, and its steps end on either.
    for (n, &id) in ids.iter().enumerate() {
        insert(&registry, id, JobState::Queued);
        let outcome = match n % 3 {
            2 => JobState::Failed("why".into()),
            _ => JobState::Done,
        };
        // What the retention limits are checked against, from the same lock.
        let finished = n + 1;
        assert_eq!(
            registry.finish(id, outcome, SystemTime::now(), 10, Weak::new()),
            (finished, 10 * finished as u64)
        );
    }
    // Exactly a step's worth kept, and none; and the bytes likewise.
    assert_eq!(
        registry.finished_beyond(SCAN_STEP),
        ids[..2 * SCAN_STEP + 10]
    );
    assert_eq!(registry.finished_beyond(0), ids);
    assert_eq!(registry.finished_beyond(ids.len()), []);
    let kept_bytes = 10 * SCAN_STEP as u64;
    assert_eq!(
        registry.finished_over_bytes(kept_bytes),
        ids[..2 * SCAN_STEP + 10]
    );
    assert_eq!(registry.finished_over_bytes(0), ids);
}
