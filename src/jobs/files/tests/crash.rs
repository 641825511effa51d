//! Tests of a crash at each step of storing a result (written under its name, synced,
//! its request let go of), of what a power cut may leave of a result never synced (a
//! restart finds no result and runs the job again, or finds a whole one), and of the
//! order that makes this hold: a job answered, and its request let go of, only after
//! its result's sync.

use std::fs;
use std::time::SystemTime;

use super::*;
use crate::jobs::files::journal::UNFINISHED_SEGMENT_PREFIX;

/// The step of a commit before which the process dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CrashBefore {
    /// The result is written, not synced.
    Sync,
    /// Everything is durable; the journal has not let go of the request yet.
    Release,
}

/// What a power cut left of a result written and never synced, the file system's
/// choice: all of it, or some of its blocks or its length.
#[derive(Clone, Copy, Debug)]
enum Left {
    Whole,
    CutShort,
    /// Its full length, its blocks never written: zeros.
    Zeros,
    /// A byte wrong, as where a block holds what the disk had there before.
    OneByteWrong,
}

fn open(dir: &std::path::Path) -> FileStore {
    FileStore::open(dir, options(TeamLogs::Inline)).unwrap()
}

/// The names in the results directory but for the lock and journals (those taking
/// requests, and the spare being made).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name != ".lock"
                && !name.starts_with("requests-")
                && !name.starts_with(UNFINISHED_SEGMENT_PREFIX)
        })
        .collect();
    found.sort();
    found
}

fn sync_all(dir: &std::path::Path) {
    rustix::fs::syncfs(File::open(dir).unwrap()).unwrap();
}

/// 2,000 profiles of 30 sections, one foot from done: a result past the size whose
/// checksum start-up always verifies.
fn large_outcome() -> Outcome {
    let wall = vec!["29 ".repeat(30); 2000].join("\n");
    let profiles = wall::parse_text(wall.as_bytes(), &Limits::default()).unwrap();
    wall::simulate(&WallConfig::try_new(profiles, None).unwrap())
}

fn assert_large(path: &std::path::Path) {
    let len = fs::metadata(path).unwrap().len();
    assert!(
        len > super::super::recovery::CHECKSUM_AT_START_UP_MAX,
        "{len} bytes"
    );
}

/// Commits a done job step by step as `commit` does, and dies before `crash`: nothing
/// else runs, and its journal stays on disk.
fn crash_while_committing(dir: &std::path::Path, crash: CrashBefore, outcome: &Outcome) -> JobId {
    let store = open(dir);
    let id = JobId::generate();
    let request = accept(&store, id);
    let written = store
        .write_pending(
            id,
            &Record::Done(outcome),
            SystemTime::now(),
            Some(&request_of(id)),
        )
        .unwrap();
    assert!(matches!(written, Written::Result(bytes) if bytes > HEADER_LEN));
    assert_eq!(
        entries(dir),
        [format!("{id}.result")],
        "written under its name"
    );
    if crash > CrashBefore::Sync {
        sync_all(dir);
    }
    request.journal.keep();
    drop(request);
    store.shutdown();
    drop(store);
    id
}

/// Recovers `dir` and checks that it finds `id` done and whole, with no warning.
fn assert_recovered_whole(dir: &std::path::Path, id: JobId, outcome: &Outcome, what: &str) {
    let store = open(dir);
    let mut warnings = Vec::new();
    let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
    assert!(warnings.is_empty(), "{what}: {warnings:?}");
    assert_eq!(recovered.len(), 1, "{what}");
    let job = &recovered[0];
    assert_eq!(job.id, id, "{what}");
    assert_eq!(
        (job.state.clone(), job.request.is_some()),
        (JobState::Done, false),
        "{what}"
    );
    assert_eq!(entries(dir), [format!("{id}.result")], "{what}");
    let profiles = outcome.summary.profiles.len();
    let summary = store.read_summary(id, 0, profiles).unwrap().0;
    assert!(summary == outcome.summary, "{what}: another summary");
    assert_same_answers(&store.open_work(id).unwrap(), &outcome.work);
    let mut log = Vec::new();
    outcome.log.write_to(&mut log).unwrap();
    assert!(
        read_log(&store, id).as_bytes() == log,
        "{what}: another log"
    );
}

#[test]
fn a_crash_at_each_step_of_a_commit_leaves_a_whole_result() {
    // A process that dies leaves its writes to the file system, which start-up syncs:
    // whatever step it died at, the result is whole.
    let outcome = example_outcome();
    for crash in [CrashBefore::Sync, CrashBefore::Release] {
        let dir = tempfile::tempdir().unwrap();
        let id = crash_while_committing(dir.path(), crash, &outcome);
        let what = format!("a crash before {crash:?}");
        assert_recovered_whole(dir.path(), id, &outcome, &what);
    }
}

#[test]
fn a_result_a_power_cut_left_unsynced_is_trusted_only_if_whole() {
    // Small and large: the large one's checksum is verified only as its job is journaled.
    for (large, outcome) in [(false, example_outcome()), (true, large_outcome())] {
        for left in [Left::Whole, Left::CutShort, Left::Zeros, Left::OneByteWrong] {
            power_cut_left(large, &outcome, left);
        }
    }
}

/// Commits a result of `outcome` (`large`: past the size always checksummed), dies
/// before its sync, leaves of it what a power cut may (`left`), and checks what a
/// restart makes of it.
fn power_cut_left(large: bool, outcome: &Outcome, left: Left) {
    let what = format!("a result (large: {large}) left {left:?}");
    let dir = tempfile::tempdir().unwrap();
    let id = crash_while_committing(dir.path(), CrashBefore::Sync, outcome);
    let path = dir.path().join(format!("{id}.result"));
    if large {
        assert_large(&path);
    }
    let mut bytes = fs::read(&path).unwrap();
    match left {
        Left::Whole => {}
        Left::CutShort => bytes.truncate(bytes.len() / 2),
        Left::Zeros => bytes.fill(0),
        Left::OneByteWrong => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
        }
    }
    fs::write(&path, &bytes).unwrap();
    if let Left::Whole = left {
        assert_recovered_whole(dir.path(), id, outcome, &what);
        return;
    }

    let store = open(dir.path());
    let mut warnings = Vec::new();
    let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
    assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
    assert!(
        warnings[0].contains("it will run again"),
        "{what}: {warnings:?}"
    );
    let job = &recovered[0];
    assert_eq!(
        (job.id, job.state.clone(), job.request.is_some()),
        (id, JobState::Queued, true),
        "{what}: it runs again from its journal"
    );
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "{what}: removed");
}

/// A large result with one byte wrong in its middle (its header, trailer and length as
/// they were): trusted while its job was not journaled, as such a result was synced
/// before its request was let go of; read whole and refused while it was, since a power
/// cut may have left it so, also when the job was buried meanwhile (a cancel whose
/// tombstone could not be taken back lets its job run).
#[test]
fn a_large_result_still_journaled_has_its_checksum_verified() {
    let outcome = large_outcome();
    for (journaled, buried) in [(false, false), (true, false), (true, true)] {
        let what = format!("journaled {journaled}, buried {buried}");
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let id = JobId::generate();
        let request = accept(&store, id);
        if journaled {
            request.journal.keep();
        }
        commit(&store, id, &Record::Done(&outcome), request);
        if buried {
            store.bury(id).unwrap();
        }
        store.shutdown();
        drop(store);
        let path = dir.path().join(format!("{id}.result"));
        assert_large(&path);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        fs::write(&path, &bytes).unwrap();

        let store = open(dir.path());
        let mut warnings = Vec::new();
        let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
        let job = &recovered[0];
        match (journaled, buried) {
            (false, _) => {
                assert_eq!(job.state, JobState::Done, "{what}");
                assert!(warnings.is_empty(), "{what}: {warnings:?}");
            }
            (true, false) => {
                assert_eq!(
                    (job.state.clone(), job.request.is_some()),
                    (JobState::Queued, true),
                    "{what}: it runs again"
                );
                assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
                assert!(warnings[0].contains("checksum"), "{what}: {warnings:?}");
            }
            (true, true) => match &job.state {
                // Buried: nothing to run it again from.
                JobState::Failed(reason) => assert!(reason.contains("checksum"), "{reason}"),
                other => panic!("{what}: {other:?}"),
            },
        }
    }
}

/// Holds the sync thread up in an answer of its own until the test sends on (or
/// drops) the sender returned: the syncs asked for meanwhile wait.
fn hold_sync_thread(store: &FileStore) -> mpsc::Sender<()> {
    let (held, holding) = mpsc::channel::<()>();
    let (go, wait) = mpsc::channel::<()>();
    store.inner.sync.sync(move |_| {
        held.send(()).unwrap();
        let _ = wait.recv();
    });
    holding.recv().unwrap();
    go
}

/// Commits the example's outcome for `id`; the answer, whether it was stored, comes
/// through the receiver.
fn commit_in_background(
    store: &FileStore,
    id: JobId,
    request: StoredRequest,
) -> mpsc::Receiver<bool> {
    let (sender, answered) = mpsc::channel();
    store.commit(
        id,
        &Record::Done(&example_outcome()),
        SystemTime::now(),
        request,
        Some(&request_of(id)),
        move |stored| sender.send(stored.is_ok()).unwrap(),
    );
    answered
}

/// The order a commit keeps: its job is answered, and its request and lock let go of,
/// only once the sync has made its result durable.
#[test]
fn a_commit_is_answered_only_after_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = JobId::generate();
    let request = accept(&store, id);
    let journal = Arc::downgrade(&request.journal);
    let go = hold_sync_thread(&store);
    let answered = commit_in_background(&store, id, request);
    assert_eq!(entries(dir.path()), [format!("{id}.result")], "written");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(answered.try_recv().is_err(), "answered before its sync");
    assert_eq!(
        store.inner.locks.held(),
        [id],
        "its lock let go of before its sync"
    );
    let segment = journal
        .upgrade()
        .expect("its request let go of before its sync");
    // The journal's writer may hold the open segment too: its count says whose it is.
    let holders = Arc::strong_count(&segment);
    drop(segment);
    go.send(()).unwrap();
    assert!(answered.recv().unwrap(), "stored");
    assert!(store.inner.locks.held().is_empty());
    assert!(
        journal
            .upgrade()
            .is_none_or(|segment| Arc::strong_count(&segment) < holders),
        "its request let go of after the sync"
    );
}

#[test]
fn a_job_run_again_replaces_its_damaged_result() {
    let outcome = example_outcome();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = accept_kept(&store);
    store.shutdown();
    drop(store);
    // A result cut short that a restart refuses: its job runs again.
    write_result(dir.path(), id, b"IWRESULT");

    let store = open(dir.path());
    let (mut recovered, _) = store.recover(|_| {}).unwrap();
    let request = recovered.remove(0).request.expect("it runs again");
    commit(&store, id, &Record::Done(&outcome), request);
    assert_eq!(store.read_summary(id, 0, 10).unwrap().0, outcome.summary);
    assert_eq!(entries(dir.path()), [format!("{id}.result")]);
}

/// With `--team-logs files`, no checksum covers the log: its result is written only
/// once a sync has made the log durable, and answered after a second one.
#[test]
fn a_result_with_a_log_file_is_written_only_after_the_logs_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
    let id = JobId::generate();
    let request = accept(&store, id);
    let go = hold_sync_thread(&store);
    let answered = commit_in_background(&store, id, request);
    assert_eq!(entries(dir.path()), [format!("{id}.log")], "the log alone");
    go.send(()).unwrap();
    assert!(answered.recv().unwrap(), "stored");
    assert_eq!(
        entries(dir.path()),
        [format!("{id}.log"), format!("{id}.result")]
    );
    let outcome = example_outcome();
    assert_eq!(store.read_summary(id, 0, 10).unwrap().0, outcome.summary);
    assert_eq!(read_log(&store, id).lines().count(), 18);
    // And through a shutdown that begins meanwhile, the thread's last syncs included.
    let id = JobId::generate();
    let request = accept(&store, id);
    let answered = commit_in_background(&store, id, request);
    store.shutdown();
    assert!(answered.recv().unwrap(), "stored before the thread stopped");
}

#[test]
fn a_result_whose_sync_failed_is_removed_and_its_job_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = JobId::generate();
    let request = accept(&store, id);
    let journal = Arc::downgrade(&request.journal);
    // The sync thread stopped: every sync is refused, as a failing disk's would be.
    store.inner.sync.shutdown();
    let answered = commit_in_background(&store, id, request);
    assert!(!answered.recv().unwrap(), "the commit failed");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "nothing to find");
    let journal = journal.upgrade().expect("held for the restart");
    assert!(journal.is_kept());
    assert!(store.inner.locks.held().is_empty(), "its lock let go of");
}
