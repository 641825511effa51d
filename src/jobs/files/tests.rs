//! Tests of the file store: results written and read back in either layout, the
//! directory refused when unusable, and what recovery finds after a crash.

use std::sync::mpsc;
use std::time::SystemTime;

use super::journal::KEYS_FILE;
use super::journal::{JOURNAL_INFIX, JOURNAL_PREFIX, SEGMENT_MIN_BYTES};
use super::result_file::HEADER_LEN;
use super::results::StoredResult;
use super::*;
use crate::jobs::JobState;
use crate::jobs::storage::Storage;
use crate::wall::{self, EXAMPLE_WALL, Limits, Table, WallConfig, WorkSource, WorkTables};

mod crash;
mod recovery;

fn options(team_logs: TeamLogs) -> StoreOptions {
    StoreOptions {
        min_free_space: 0,
        team_logs,
        listening_on: None,
        compaction_floor: super::COMPACTION_FLOOR,
    }
}

fn example_outcome() -> Outcome {
    let profiles = wall::parse_text(EXAMPLE_WALL.as_bytes(), &Limits::default()).unwrap();
    wall::simulate(&WallConfig::try_new(profiles, None).unwrap())
}

/// The request `accept` journals for `id`.
fn request_of(id: JobId) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

fn accept(store: &FileStore, id: JobId) -> StoredRequest {
    let (sender, receiver) = mpsc::channel();
    store.accept(id, request_of(id), None, move |stored| {
        sender.send(stored.unwrap()).unwrap()
    });
    receiver.recv().unwrap()
}

fn commit(store: &FileStore, id: JobId, record: &Record<'_>, request: StoredRequest) {
    let (sender, receiver) = mpsc::channel();
    store.commit(
        id,
        record,
        SystemTime::now(),
        request,
        Some(&request_of(id)),
        move |outcome| sender.send(outcome.is_ok()).unwrap(),
    );
    assert!(receiver.recv().unwrap());
}

/// Commits a done job (of the example wall) and a failed one; their ids, and the outcome.
fn commit_done_and_failed(store: &FileStore) -> (JobId, JobId, Outcome) {
    let [done, failed] = [(); 2].map(|()| JobId::generate());
    let outcome = example_outcome();
    commit(store, done, &Record::Done(&outcome), accept(store, done));
    commit(
        store,
        failed,
        &Record::Failed("bad luck"),
        accept(store, failed),
    );
    (done, failed, outcome)
}

fn journals(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("requests-")
        })
        .count()
}

#[test]
fn a_cancelled_job_lets_go_of_its_lock_and_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let id = JobId::generate();
    let request = accept(&store, id);
    // In flight: its files go through its lock, which lives in the map until then.
    assert_eq!(store.inner.locks.held(), [id]);
    store.abandon(id, request);
    assert!(store.inner.locks.held().is_empty());
    store.shutdown();
    assert_eq!(journals(dir.path()), 0, "no job needs its segment any more");
}

#[test]
fn a_done_job_stores_status_work_and_log_and_releases_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let id = JobId::generate();
    let request = accept(&store, id);
    assert_eq!(
        store.read_request(&request).unwrap(),
        format!(r#"{{"id":"{id}"}}"#).as_bytes()
    );
    assert!(matches!(
        store.read_summary(id, 0, 10),
        Err(StoreError::Missing)
    ));
    let outcome = example_outcome();
    commit(&store, id, &Record::Done(&outcome), request);
    let (summary, profiles) = store.read_summary(id, 0, 10).unwrap();
    assert_eq!((summary.clone(), profiles), (outcome.summary.clone(), 3));
    assert_eq!(summary.cost, 32_233_500);
    assert_same_answers(&store.open_work(id).unwrap(), &outcome.work);
    let (mut file, length) = store.open_log(id).unwrap();
    let mut log = String::new();
    file.read_to_string(&mut log).unwrap();
    assert_eq!(log.len() as u64, length);
    assert!(log.starts_with("day 2: team 3"), "{log}");
    assert_eq!(log.lines().count(), 18);
    assert!(store.inner.locks.held().is_empty());
    store.shutdown();
    assert_eq!(
        journals(dir.path()),
        0,
        "the journal goes once its job is done"
    );
}

#[test]
fn a_finished_job_keeps_its_request_after_its_journal_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let (done, failed, outcome) = commit_done_and_failed(&store);
    let before = JobId::generate();
    // A result as the previous version (and cluster mode) writes it: no request.
    let mut plain = Vec::new();
    result_file::write_done(&mut plain, &outcome, LogPlace::Inline(&outcome.log), None).unwrap();
    assert_eq!(
        plain[8], 1,
        "written without a request, a result stays version 1"
    );
    write_result(dir.path(), before, &plain);
    store.shutdown();
    assert_eq!(journals(dir.path()), 0);

    let request = |id: JobId| format!(r#"{{"id":"{id}"}}"#).into_bytes();
    assert_eq!(store.read_kept_request(done).unwrap(), Some(request(done)));
    assert_eq!(
        store.read_kept_request(failed).unwrap(),
        Some(request(failed))
    );
    assert_eq!(store.read_kept_request(before).unwrap(), None);
    // Everything else reads as before, in either version.
    for id in [done, before] {
        assert_eq!(store.read_summary(id, 0, 10).unwrap().0, outcome.summary);
        assert_same_answers(&store.open_work(id).unwrap(), &outcome.work);
        assert_eq!(read_log(&store, id).lines().count(), 18);
    }
    let StoredResult::Indexed(result) = store.open_result(failed).unwrap() else {
        panic!("a new result is in the binary layout");
    };
    assert_eq!(result.failure().unwrap().as_deref(), Some("bad luck"));
    assert!(matches!(
        store.read_kept_request(JobId::generate()),
        Err(StoreError::Missing)
    ));
}

fn read_log(store: &FileStore, id: JobId) -> String {
    let (mut file, length) = store.open_log(id).unwrap();
    let mut log = String::new();
    file.read_to_string(&mut log).unwrap();
    assert_eq!(log.len() as u64, length);
    log
}

#[test]
fn team_log_files_sit_beside_results_and_either_layout_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let inline = JobId::generate();
    commit(
        &store,
        inline,
        &Record::Done(&example_outcome()),
        accept(&store, inline),
    );
    store.shutdown();
    drop(store);

    let store = FileStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
    store.recover(|warning| panic!("{warning}")).unwrap();
    let own = JobId::generate();
    commit(
        &store,
        own,
        &Record::Done(&example_outcome()),
        accept(&store, own),
    );
    let result = fs::read(dir.path().join(format!("{own}.result"))).unwrap();
    assert!(
        !result.windows(4).any(|bytes| bytes == b"day "),
        "status and work tables only"
    );
    let file = fs::read_to_string(dir.path().join(format!("{own}.log"))).unwrap();
    assert_eq!(read_log(&store, own), file);
    assert_eq!(file.lines().count(), 18);
    assert_eq!(
        read_log(&store, inline),
        file,
        "a log kept inline is still served"
    );
    assert!(!dir.path().join(format!("{inline}.log")).exists());

    fs::remove_file(dir.path().join(format!("{own}.log"))).unwrap();
    assert!(
        matches!(store.open_log(own), Err(StoreError::Damaged(_))),
        "a missing log is reported, never served empty"
    );
    store.remove_result(inline).unwrap();
    assert!(matches!(store.open_log(inline), Err(StoreError::Missing)));
}

/// The same step, for every table, on every day around the work and after it.
fn assert_same_answers(stored: &StoredWork, work: &WorkTables) {
    assert_eq!(stored.profile_count(), work.profile_count());
    let tables = (1..=work.profile_count())
        .map(Table::Profile)
        .chain([Table::Wall]);
    for table in tables {
        for day in (0..=work.days() + 2).chain([u64::MAX]) {
            let Ok(expected) = work.step_on(table, day);
            let found = stored.step_on(table, day).unwrap();
            assert_eq!(found, expected, "{table:?} on day {day}");
        }
    }
}

fn write_result(dir: &Path, id: JobId, bytes: &[u8]) {
    fs::write(dir.join(format!("{id}.result")), bytes).unwrap();
}

/// Where an earlier version wrote a job's result before renaming it into place.
fn earlier_temporary(dir: &Path, id: JobId) -> PathBuf {
    let temporary_dir = dir.join(TEMPORARY_DIR);
    fs::create_dir_all(&temporary_dir).unwrap();
    temporary_dir.join(format!("{id}.result.tmp"))
}

/// A job whose request stays in its journal, as after a crash.
fn accept_kept(store: &FileStore) -> JobId {
    let id = JobId::generate();
    accept(store, id).journal.keep();
    id
}

#[test]
fn results_of_the_line_based_layout_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = example_outcome();
    let mut legacy = serde_json::to_vec(&serde_json::json!({
        "status": "done",
        "data": outcome.summary,
    }))
    .unwrap();
    legacy.push(b'\n');
    serde_json::to_writer(&mut legacy, &outcome.work).unwrap();
    legacy.push(b'\n');
    outcome.log.write_to(&mut legacy).unwrap();
    let [done, failed, cut] = [(); 3].map(|()| JobId::generate());
    write_result(dir.path(), done, &legacy);
    write_result(
        dir.path(),
        failed,
        b"{\"status\":\"failed\",\"reason\":\"old\"}\n",
    );
    let status_line = legacy.iter().position(|&byte| byte == b'\n').unwrap() + 1;
    write_result(dir.path(), cut, &legacy[..status_line]);

    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
    let state = |id: JobId| {
        let job = recovered.iter().find(|job| job.id == id).unwrap();
        job.state.clone()
    };
    assert_eq!(state(done), JobState::Done);
    assert_eq!(state(failed), JobState::Failed("old".into()));
    assert_eq!(
        state(cut),
        JobState::Failed("the stored result is damaged: its result file is incomplete".into()),
        "a done job's status line alone is not a whole result"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (summary, profiles) = store.read_summary(done, 1, 1).unwrap();
    assert_eq!(profiles, 3);
    assert_eq!(summary.profiles, outcome.summary.profiles[1..2]);
    assert_same_answers(&store.open_work(done).unwrap(), &outcome.work);
    let mut text = Vec::new();
    outcome.log.write_to(&mut text).unwrap();
    assert_eq!(read_log(&store, done).as_bytes(), text);
}

#[test]
fn a_wall_that_needs_no_work_has_an_empty_log_in_either_layout() {
    let profiles = wall::parse_text(b"30 30\n30\n", &Limits::default()).unwrap();
    let outcome = wall::simulate(&WallConfig::try_new(profiles, None).unwrap());
    for team_logs in [TeamLogs::Inline, TeamLogs::Files] {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), options(team_logs)).unwrap();
        let id = JobId::generate();
        commit(&store, id, &Record::Done(&outcome), accept(&store, id));
        assert_eq!(read_log(&store, id), "", "{team_logs:?}");
        store.shutdown();
        drop(store); // a restart: the first server is gone, and with it its lock
        let store = FileStore::open(dir.path(), options(team_logs)).unwrap();
        let (recovered, _) = store.recover(|warning| panic!("{warning}")).unwrap();
        assert_eq!(recovered[0].state, JobState::Done, "{team_logs:?}");
    }
}

#[test]
fn an_unwritable_directory_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    assert!(matches!(
        FileStore::open(&file.join("results"), options(TeamLogs::Inline)),
        Err(StoreError::Unusable { .. })
    ));
}

#[test]
fn a_second_store_on_the_directory_is_refused_before_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let leftover = earlier_temporary(dir.path(), JobId::generate());
    fs::write(&leftover, b"half").unwrap();
    match FileStore::open(dir.path(), options(TeamLogs::Inline)) {
        Err(StoreError::InUse { holder, .. }) => {
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        Err(error) => panic!("{error}"),
        Ok(_) => panic!("two stores on one directory"),
    }
    assert!(leftover.exists());
    first.shutdown();
    drop(first);
    let second = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    second.recover(|warning| panic!("{warning}")).unwrap();
    assert!(!leftover.exists(), "the holder recovers");
}

#[test]
fn a_commit_given_the_request_keeps_it_without_reading_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let id = JobId::generate();
    let mut request = accept(&store, id);
    // Were the journal read back, this line would give no request to keep.
    request.damage = Some("damaged since the job ran".into());
    let bytes = format!(r#"{{"id":"{id}"}}"#).into_bytes();
    let (sender, receiver) = mpsc::channel();
    store.commit(
        id,
        &Record::Failed("bad luck"),
        SystemTime::now(),
        request,
        Some(&bytes),
        move |outcome| sender.send(outcome.is_ok()).unwrap(),
    );
    assert!(receiver.recv().unwrap());
    assert_eq!(store.read_kept_request(id).unwrap(), Some(bytes));
}

#[test]
fn a_cancel_the_disk_refused_does_not_bury_the_job_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    store.recover(|warning| panic!("{warning}")).unwrap();
    let id = JobId::generate();
    let request = accept(&store, id);
    // The tombstones file is new: its name's sync fails after its line is written.
    REFUSE_DIRECTORY_SYNCS.with(|refuse| refuse.set(true));
    let refused = store.bury(id);
    REFUSE_DIRECTORY_SYNCS.with(|refuse| refuse.set(false));
    assert!(
        refused.is_err(),
        "the cancel is refused: the job stays queued"
    );
    // A crash while it is still queued.
    request.journal.keep();
    store.shutdown();
    drop(store);
    drop(request);
    let restarted = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let (jobs, _) = restarted.recover(|_| {}).unwrap();
    assert!(
        jobs.iter().any(|job| job.id == id),
        "a job whose cancel was refused is gone after a restart"
    );
}
