//! Tests of the job service's logic, on a real file store in a temporary directory:
//! submit and finish, idempotent replays, refusals at shutdown, cancel and delete.

use std::time::Duration;

use super::*;
use crate::jobs::{COMPACTION_FLOOR, IdempotencyKey, StoreOptions, TeamLogs};
use crate::wall::{EXAMPLE_WALL, Limits, WallConfig, parse_text};

struct Service {
    jobs: LocalJobs,
    shutdown: Shutdown,
    gate: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A service with one worker whose jobs wait until `open_gate`.
fn start() -> Service {
    start_with_ttl(Duration::from_secs(3600))
}

/// As `start`, keeping finished jobs for `ttl`.
fn start_with_ttl(ttl: Duration) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let settings = JobsSettings {
        results_dir: dir.path().join("results"),
        workers: 1,
        max_queue: 100,
        max_queue_bytes: 1 << 20,
        store: StoreOptions {
            min_free_space: 0,
            team_logs: TeamLogs::Inline,
            listening_on: None,
            compaction_floor: COMPACTION_FLOOR,
        },
        retention: Retention {
            ttl,
            max_results: 1000,
            max_bytes: u64::MAX,
        },
        debug: DebugHooks {
            job_gate: Some(gate.clone()),
            ..DebugHooks::default()
        },
    };
    let shutdown = Shutdown::new();
    let logger = Logger::root(slog::Discard, slog::o!());
    let jobs = LocalJobs::start(
        &settings,
        shutdown.clone(),
        logger,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    Service {
        jobs,
        shutdown,
        gate,
        _dir: dir,
    }
}

impl Service {
    fn open_gate(&self) {
        std::fs::write(&self.gate, b"").unwrap();
    }
}

fn submission(num_teams: u64, key: Option<&str>) -> Submission {
    let profiles = parse_text(EXAMPLE_WALL.as_bytes(), &Limits::default()).unwrap();
    Submission {
        config: WallConfig::try_new(profiles, std::num::NonZeroU64::new(num_teams)).unwrap(),
        key: key.map(|key| IdempotencyKey::parse(key).unwrap()),
        request_id: None,
    }
}

async fn finished(jobs: &LocalJobs, id: JobId) -> JobState {
    jobs.wait(id, Duration::from_secs(30), std::future::pending())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_submitted_job_runs_and_its_summary_is_read_back() {
    let service = start();
    let Submitted { id, replayed } = service.jobs.submit(submission(3, None)).await.unwrap();
    assert!(!replayed);
    // Held at the gate: accepted, not finished.
    assert!(matches!(
        service.jobs.state(id),
        Some(JobState::Queued | JobState::Running)
    ));
    service.open_gate();
    assert_eq!(finished(&service.jobs, id).await, JobState::Done);
    let (summary, profiles) = service.jobs.summary(id, 0, 10).unwrap();
    assert_eq!((summary.cost, profiles), (32_233_500, 3));
    assert_eq!(service.jobs.in_flight(), 0);
    service.jobs.drain();
}

#[tokio::test]
async fn a_key_replays_its_job_and_refuses_another_request() {
    let service = start();
    let first = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    let again = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    assert_eq!((again.id, again.replayed), (first.id, true));
    let other = service.jobs.submit(submission(2, Some("order-1"))).await;
    assert!(matches!(other, Err(SubmitError::KeyReused)));
    assert_eq!(service.jobs.known(), 1);
    service.open_gate();
    service.jobs.drain();
}

#[tokio::test]
async fn a_key_whose_job_is_past_its_ttl_makes_a_new_job() {
    let service = start_with_ttl(Duration::from_millis(200));
    service.open_gate();
    let first = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    assert_eq!(finished(&service.jobs, first.id).await, JobState::Done);
    // Past its TTL it answers as unknown; the sweeper leaves it in the registry for
    // now, as its journal segment (open for a second) pins it.
    while service.jobs.state(first.id).is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retry = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    assert!(
        !retry.replayed && retry.id != first.id,
        "the key replayed a job that answers 404"
    );
    assert_eq!(finished(&service.jobs, retry.id).await, JobState::Done);
    service.jobs.drain();
}

#[tokio::test]
async fn after_the_shutdown_trigger_nothing_is_accepted() {
    let service = start();
    service.shutdown.trigger();
    assert!(!service.jobs.is_accepting());
    let refused = service.jobs.submit(submission(3, None)).await;
    assert!(matches!(refused, Err(SubmitError::ShuttingDown)));
    assert_eq!(service.jobs.known(), 0);
    service.jobs.drain();
}

#[tokio::test]
async fn a_queued_job_is_cancelled_a_running_one_refused_a_finished_one_deleted() {
    let service = start();
    // One worker, held at the gate: the first job runs, the second waits behind it.
    let running = service.jobs.submit(submission(3, None)).await.unwrap().id;
    let queued = service.jobs.submit(submission(2, None)).await.unwrap().id;
    while service.jobs.state(running) != Some(JobState::Running) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        service.jobs.delete(running),
        Err(DeleteError::InFlight("running"))
    ));
    assert_eq!(service.jobs.delete(queued).unwrap(), Removed::Cancelled);
    assert_eq!(service.jobs.state(queued), None);
    service.open_gate();
    assert_eq!(finished(&service.jobs, running).await, JobState::Done);
    assert_eq!(service.jobs.delete(running).unwrap(), Removed::Deleted);
    assert_eq!(service.jobs.state(running), None);
    assert!(matches!(
        service.jobs.delete(running),
        Err(DeleteError::Unknown)
    ));
    assert_eq!(service.jobs.known(), 0);
    service.jobs.drain();
}

#[tokio::test]
async fn a_delete_whose_removal_cannot_be_made_durable_says_so_and_leaves_no_job_without_its_result()
 {
    let service = start();
    service.open_gate();
    let ids = [
        service.jobs.submit(submission(3, None)).await.unwrap().id,
        service.jobs.submit(submission(3, None)).await.unwrap().id,
    ];
    for &id in &ids {
        assert_eq!(finished(&service.jobs, id).await, JobState::Done);
    }
    // The tombstones file made (and its name synced) by a first delete.
    assert_eq!(service.jobs.delete(ids[0]).unwrap(), Removed::Deleted);
    crate::jobs::files::REFUSE_DIRECTORY_SYNCS.with(|refuse| refuse.set(true));
    let refused = service.jobs.delete(ids[1]);
    crate::jobs::files::REFUSE_DIRECTORY_SYNCS.with(|refuse| refuse.set(false));
    match refused {
        Err(DeleteError::Storage(reason)) => {
            assert!(reason.contains("removed, but"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Its result went with the unlink: not shown again as a done job without it.
    assert_eq!(service.jobs.state(ids[1]), None);
    assert!(matches!(
        service.jobs.delete(ids[1]),
        Err(DeleteError::Unknown)
    ));
    service.jobs.drain();
}

#[tokio::test]
async fn a_sweep_during_a_delete_keeps_the_jobs_key_for_when_the_delete_fails() {
    let service = start();
    service.open_gate();
    let first = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    assert_eq!(finished(&service.jobs, first.id).await, JobState::Done);
    // A delete under way: the job answers as unknown until it is gone or back.
    let registry = &service.jobs.inner.registry;
    assert!(registry.mark_deleting(first.id));
    service.jobs.sweep();
    // The delete failed: the job is as it was, and so is its key.
    registry.unmark_deleting(first.id);
    let again = service
        .jobs
        .submit(submission(3, Some("order-1")))
        .await
        .unwrap();
    assert_eq!((again.id, again.replayed), (first.id, true));
    service.jobs.drain();
}
