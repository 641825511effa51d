//! Tests of a crash at each step of putting a result in place, on both paths (an
//! unnamed file linked into place, and the named temporary in `tmp/` renamed, where
//! unnamed files are refused): a restart finds no result and runs the job again, or
//! finds a whole one.

use std::fs;
use std::time::SystemTime;

use super::*;
use crate::jobs::files::journal::UNFINISHED_SEGMENT_PREFIX;

/// Which way results go to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Unnamed,
    /// A store forced onto the fallback, as on a file system that refuses `O_TMPFILE`.
    Named,
}

/// The step of a commit before which the process dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CrashBefore {
    /// The result is written, not synced.
    Sync,
    /// The result is synced, has no name yet.
    Link,
    /// The result has its name, which no sync has made durable yet.
    DirectorySync,
    /// Everything is durable; the journal has not let go of the request yet.
    Release,
}

fn open(dir: &std::path::Path, path: Path) -> FileStore {
    let store = FileStore::open(dir, options(TeamLogs::Inline)).unwrap();
    assert!(
        store.inner.unnamed_refused.is_none(),
        "the test's file system takes unnamed files"
    );
    if path == Path::Named {
        store.inner.unnamed.refuse();
    }
    store
}

/// The names in the results directory and in `tmp/`, but for the lock and journals
/// (those taking requests, and the spare being made).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let names = |dir: &std::path::Path| -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let mut found: Vec<String> = names(dir)
        .into_iter()
        .filter(|name| {
            name != ".lock"
                && name != TEMPORARY_DIR
                && !name.starts_with("requests-")
                && !name.starts_with(UNFINISHED_SEGMENT_PREFIX)
        })
        .chain(
            names(&dir.join(TEMPORARY_DIR))
                .into_iter()
                .map(|name| format!("{TEMPORARY_DIR}/{name}")),
        )
        .collect();
    found.sort();
    found
}

fn sync_all(dir: &std::path::Path) {
    rustix::fs::syncfs(File::open(dir).unwrap()).unwrap();
}

/// Commits a done job step by step as `commit` does, and dies before `crash`: its
/// descriptors close, nothing else runs, and its journal stays on disk.
fn crash_while_committing(dir: &std::path::Path, path: Path, crash: CrashBefore) -> JobId {
    let store = open(dir, path);
    let id = JobId::generate();
    let request = accept(&store, id);
    let outcome = example_outcome();
    let (bytes, written) = store
        .write_pending(
            id,
            &Record::Done(&outcome),
            SystemTime::now(),
            Some(&request_of(id)),
        )
        .unwrap();
    assert!(bytes > HEADER_LEN);
    let tmp_name = format!("{TEMPORARY_DIR}/{id}.result.tmp");
    match (path, &written) {
        (Path::Unnamed, WrittenResult::Unnamed(_)) => assert_eq!(
            entries(dir),
            Vec::<String>::new(),
            "an unnamed result has no name anywhere before its link"
        ),
        (Path::Named, WrittenResult::Named) => assert_eq!(entries(dir), [tmp_name]),
        _ => panic!("{path:?} took the other path"),
    }
    if crash > CrashBefore::Sync {
        sync_all(dir);
    }
    if crash > CrashBefore::Link {
        store.put_in_place(id, written).unwrap();
        assert_eq!(entries(dir), [format!("{id}.result")]);
    } else {
        drop(written);
    }
    if crash > CrashBefore::DirectorySync {
        sync_all(dir);
    }
    request.journal.keep();
    drop(request);
    store.shutdown();
    drop(store);
    id
}

#[test]
fn a_crash_at_each_step_of_a_commit_leaves_no_result_or_a_whole_one() {
    let outcome = example_outcome();
    for path in [Path::Unnamed, Path::Named] {
        for crash in [
            CrashBefore::Sync,
            CrashBefore::Link,
            CrashBefore::DirectorySync,
            CrashBefore::Release,
        ] {
            let what = format!("{path:?}, a crash before {crash:?}");
            let dir = tempfile::tempdir().unwrap();
            let id = crash_while_committing(dir.path(), path, crash);

            let store = open(dir.path(), path);
            let mut warnings = Vec::new();
            let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
            assert!(warnings.is_empty(), "{what}: {warnings:?}");
            assert_eq!(recovered.len(), 1, "{what}");
            let job = &recovered[0];
            assert_eq!(job.id, id, "{what}");
            if crash <= CrashBefore::Link {
                // Nothing of the result is left: the job runs again from its journal.
                assert_eq!(
                    (job.state.clone(), job.request.is_some()),
                    (JobState::Queued, true),
                    "{what}"
                );
                assert_eq!(entries(dir.path()), Vec::<String>::new(), "{what}");
                assert!(matches!(
                    store.read_summary(id, 0, 10),
                    Err(StoreError::Missing)
                ));
            } else {
                // Whether the name survived a power cut here is the file system's
                // choice: without it the disk is as after a crash before the link
                // (above); with it, the result is whole.
                assert_eq!(
                    (job.state.clone(), job.request.is_some()),
                    (JobState::Done, false),
                    "{what}"
                );
                assert_eq!(entries(dir.path()), [format!("{id}.result")], "{what}");
                assert_eq!(store.read_summary(id, 0, 10).unwrap().0, outcome.summary);
                assert_same_answers(&store.open_work(id).unwrap(), &outcome.work);
                assert_eq!(read_log(&store, id).lines().count(), 18, "{what}");
            }
        }
    }
}

#[test]
fn a_store_forced_onto_named_temporaries_stores_and_recovers_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Path::Named);
    let (done, failed, outcome) = commit_done_and_failed(&store);
    let mut expected = vec![format!("{done}.result"), format!("{failed}.result")];
    expected.sort();
    assert_eq!(entries(dir.path()), expected, "tmp/ is empty again");
    assert_eq!(store.read_summary(done, 0, 10).unwrap().0, outcome.summary);
    store.shutdown();
    drop(store);

    let store = open(dir.path(), Path::Named);
    let (recovered, _) = store.recover(|warning| panic!("{warning}")).unwrap();
    let states: Vec<(JobId, JobState)> = recovered
        .iter()
        .map(|job| (job.id, job.state.clone()))
        .collect();
    let mut expected = vec![
        (done, JobState::Done),
        (failed, JobState::Failed("bad luck".into())),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(states, expected);
    assert_eq!(journals(dir.path()), 0);
}

#[test]
fn a_job_run_again_replaces_its_damaged_result_on_either_path() {
    let outcome = example_outcome();
    for path in [Path::Unnamed, Path::Named] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), path);
        let id = accept_kept(&store);
        store.shutdown();
        drop(store);
        // A result cut short that a restart refuses: its job runs again.
        write_result(dir.path(), id, b"IWRESULT");

        let store = open(dir.path(), path);
        let (mut recovered, _) = store.recover(|_| {}).unwrap();
        let request = recovered.remove(0).request.expect("it runs again");
        commit(&store, id, &Record::Done(&outcome), request);
        assert_eq!(
            store.read_summary(id, 0, 10).unwrap().0,
            outcome.summary,
            "{path:?}"
        );
        assert_eq!(entries(dir.path()), [format!("{id}.result")], "{path:?}");
    }
}

#[test]
fn a_store_whose_probe_failed_says_so_once_and_stores_results_on_the_named_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    // A probe that fails, as on a file system without `O_TMPFILE`.
    let (refusing, reason) = UnnamedResults::probe(&dir.path().join("missing"));
    let reason = reason.expect("a failed probe gives its reason");
    let inner = Arc::get_mut(&mut store.inner).expect("no other handle on the store yet");
    inner.unnamed = refusing;
    inner.unnamed_refused = Some(reason.clone());
    let mut warnings = Vec::new();
    store.recover(|warning| warnings.push(warning)).unwrap();
    assert_eq!(warnings, [reason]);

    let id = JobId::generate();
    let request = accept(&store, id);
    let outcome = example_outcome();
    let (_, written) = store
        .write_pending(
            id,
            &Record::Done(&outcome),
            SystemTime::now(),
            Some(&request_of(id)),
        )
        .unwrap();
    assert!(matches!(written, WrittenResult::Named));
    drop(written);
    commit(&store, id, &Record::Done(&outcome), request);
    assert_eq!(store.read_summary(id, 0, 10).unwrap().0, outcome.summary);
    assert_eq!(entries(dir.path()), [format!("{id}.result")]);
}
