//! Tests of start-up recovery: what a restart finds after a crash, damaged results,
//! and entries of the results directory the server never makes.

use std::fs;

use super::regular_file::make_fifo;
use super::tombstones::{TOMBSTONES_FILE, TOMBSTONES_TEMPORARY};
use super::*;
use crate::jobs::idempotency::KeyRecord;

#[test]
fn recovery_finds_done_failed_and_pending_jobs_and_reruns_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let ids: Vec<JobId> = (0..4).map(|_| JobId::generate()).collect();
    let mut requests: Vec<StoredRequest> = ids.iter().map(|&id| accept(&store, id)).collect();
    let pending = requests.split_off(2);
    commit(
        &store,
        ids[0],
        &Record::Done(&example_outcome()),
        requests.remove(0),
    );
    commit(
        &store,
        ids[1],
        &Record::Failed("bad luck"),
        requests.remove(0),
    );
    fs::write(
        dir.path().join(format!("{}.result", ids[3])),
        b"{\"status\":\"do",
    )
    .unwrap();
    fs::write(earlier_temporary(dir.path(), ids[2]), b"half").unwrap();
    // A log written before a crash, its result not.
    fs::write(dir.path().join(format!("{}.log", ids[2])), b"day 1").unwrap();
    fs::write(dir.path().join("notes.txt"), b"?").unwrap();
    // A crash: the pending jobs' journals stay.
    pending.iter().for_each(|request| request.journal.keep());
    drop(pending);
    store.shutdown();
    // The process ends: its lock on the directory goes with it.
    drop(store);
    let torn = dir
        .path()
        .join(format!("requests-{}.jsonl", JobId::generate()));
    let mut torn_segment = format!(
        "{JOURNAL_PREFIX}{}{JOURNAL_INFIX}{{\"prof",
        JobId::generate()
    )
    .into_bytes();
    // A segment is made at its full size: the zeros no write reached follow the tear.
    torn_segment.resize(SEGMENT_MIN_BYTES as usize, 0);
    fs::write(&torn, torn_segment).unwrap();

    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    let (recovered, keys) = store.recover(|warning| warnings.push(warning)).unwrap();
    assert!(keys.is_empty());
    let states: Vec<(JobId, JobState, bool)> = recovered
        .iter()
        .map(|job| (job.id, job.state.clone(), job.request.is_some()))
        .collect();
    assert_eq!(
        states,
        vec![
            (ids[0], JobState::Done, false),
            (ids[1], JobState::Failed("bad luck".into()), false),
            (ids[2], JobState::Queued, true),
            (ids[3], JobState::Queued, true),
        ]
    );
    let request = recovered[2].request.as_ref().unwrap();
    assert_eq!(
        store.read_request(request).unwrap(),
        format!(r#"{{"id":"{}"}}"#, ids[2]).as_bytes()
    );
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let locked = store.inner.locks.held();
    assert_eq!(locked, [ids[2], ids[3]], "jobs to run again are in flight");
    assert!(
        !dir.path().join(TEMPORARY_DIR).exists(),
        "no version uses tmp/ now"
    );
    assert!(!dir.path().join(format!("{}.log", ids[2])).exists());
    drop(recovered);
    assert_eq!(journals(dir.path()), 0);
}

#[test]
fn a_segment_a_crash_left_half_made_is_removed_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let half_made = [(4096, "a"), (0, "b")].map(|(len, tag)| {
        let path = dir.path().join(format!(
            ".requests-0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e7{tag}.jsonl"
        ));
        fs::write(&path, vec![0; len]).unwrap();
        path
    });
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
    assert!(recovered.is_empty());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(half_made.iter().all(|path| !path.exists()));
    store.shutdown();
}

#[test]
fn recovery_leaves_the_new_writer_able_to_accept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    // Time for the writer to run: were it to make a segment before its first
    // request, the recovery below would take it for one left over, and remove it.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (recovered, _) = store.recover(|warning| panic!("{warning}")).unwrap();
    assert!(recovered.is_empty());
    let id = JobId::generate();
    let request = accept(&store, id);
    commit(&store, id, &Record::Failed("checked"), request);
}

#[test]
fn a_result_cut_short_anywhere_is_refused_and_its_job_reruns_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let id = JobId::generate();
    commit(
        &store,
        id,
        &Record::Done(&example_outcome()),
        accept(&store, id),
    );
    let whole = fs::read(dir.path().join(format!("{id}.result"))).unwrap();
    let StoredResult::Indexed(result) = store.open_result(id).unwrap() else {
        panic!("a new result is in the binary layout");
    };
    let layout = result.layout();
    // The request is kept last (version 2), and its length after it.
    assert_eq!(
        result.request().unwrap().unwrap(),
        format!(r#"{{"id":"{id}"}}"#).into_bytes()
    );
    let len = whole.len() as u64;
    let mut cuts = vec![
        0,
        1,
        5,
        8,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 3,
        layout.rows,
        layout.index,
        layout.index + 4,
        layout.steps,
        layout.steps + 10,
        layout.log,
        layout.log + 7,
        layout.request,
        layout.request + 3,
        layout.trailer - 8,
        layout.trailer - 3,
        layout.trailer,
        layout.trailer + 12,
        len - 1,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let mut flipped = whole.clone();
    flipped[layout.steps as usize + 5] ^= 1;
    let mut request_flipped = whole.clone();
    request_flipped[layout.request as usize + 2] ^= 1;
    let mut request_moved = whole.clone();
    request_moved[layout.trailer as usize - 8] += 1;
    let mut longer = whole.clone();
    longer.push(b'\n');
    let mut damaged: Vec<Vec<u8>> = cuts
        .iter()
        .map(|&cut| whole[..cut as usize].to_vec())
        .collect();
    damaged.extend([flipped, request_flipped, request_moved, longer]);

    // Each damaged file three times: with its request kept (it runs again),
    // without (it answers failed), and in tmp/, as a crash of an earlier version
    // before its rename left it.
    let with_request: Vec<JobId> = damaged.iter().map(|_| accept_kept(&store)).collect();
    let crashed: Vec<JobId> = damaged.iter().map(|_| accept_kept(&store)).collect();
    let without_request: Vec<JobId> = damaged.iter().map(|_| JobId::generate()).collect();
    store.shutdown();
    for (i, bytes) in damaged.iter().enumerate() {
        write_result(dir.path(), with_request[i], bytes);
        write_result(dir.path(), without_request[i], bytes);
        fs::write(earlier_temporary(dir.path(), crashed[i]), bytes).unwrap();
    }

    drop(store); // a restart: the first server is gone, and with it its lock
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    let (recovered, _) = store.recover(|warning| warnings.push(warning)).unwrap();
    let state = |id: JobId| {
        let job = recovered.iter().find(|job| job.id == id).unwrap();
        (job.state.clone(), job.request.is_some())
    };
    assert_eq!(state(id), (JobState::Done, false), "the whole one is done");
    for (i, bytes) in damaged.iter().enumerate() {
        let what = format!("a result of {} bytes of {len}", bytes.len());
        assert_eq!(state(with_request[i]), (JobState::Queued, true), "{what}");
        assert_eq!(state(crashed[i]), (JobState::Queued, true), "{what}");
        match state(without_request[i]) {
            (JobState::Failed(reason), false) => assert!(
                reason.starts_with("the stored result is damaged: "),
                "{what}: {reason}"
            ),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(warnings.len(), 2 * damaged.len(), "{warnings:#?}");
}

#[test]
fn a_team_log_file_lost_before_a_restart_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
    let [whole, lost, cut] = [(); 3].map(|()| JobId::generate());
    for id in [whole, lost, cut] {
        commit(
            &store,
            id,
            &Record::Done(&example_outcome()),
            accept(&store, id),
        );
    }
    store.shutdown();
    fs::remove_file(dir.path().join(format!("{lost}.log"))).unwrap();
    let log = dir.path().join(format!("{cut}.log"));
    let text = fs::read(&log).unwrap();
    fs::write(&log, &text[..text.len() / 2]).unwrap();

    drop(store); // a restart: the first server is gone, and with it its lock
    let store = FileStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
    let (recovered, _) = store.recover(|_| {}).unwrap();
    let states: Vec<(JobId, bool)> = recovered
        .iter()
        .map(|job| (job.id, job.state == JobState::Done))
        .collect();
    let mut expected = vec![(whole, true), (lost, false), (cut, false)];
    expected.sort();
    assert_eq!(states, expected);
}

#[test]
fn entries_that_are_not_regular_files_are_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let segment_dir = dir
        .path()
        .join(format!("requests-{}.jsonl", JobId::generate()));
    fs::create_dir(&segment_dir).unwrap();
    let keys_dir = dir.path().join(KEYS_FILE);
    fs::create_dir(&keys_dir).unwrap();
    let segment_fifo = dir
        .path()
        .join(format!("requests-{}.jsonl", JobId::generate()));
    let result_fifo = dir.path().join(format!("{}.result", JobId::generate()));
    for fifo in [&segment_fifo, &result_fifo] {
        make_fifo(fifo);
    }
    let link = dir
        .path()
        .join(format!("requests-{}.jsonl", JobId::generate()));
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    let (recovered, keys) = store.recover(|warning| warnings.push(warning)).unwrap();
    assert!(recovered.is_empty() && keys.is_empty());
    for (path, kind) in [
        (&segment_dir, "a directory"),
        (&keys_dir, "a directory"),
        (&segment_fifo, "a FIFO"),
        (&result_fifo, "a FIFO"),
        (&link, "a symbolic link"),
    ] {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains(&*name) && warning.contains(kind)),
            "{name}: {warnings:?}"
        );
        assert!(fs::symlink_metadata(path).is_ok(), "{name} is left alone");
    }
    // Keyed requests are refused while the keys file is a directory, not stuck.
    let (sender, receiver) = mpsc::channel();
    let key = KeyRecord {
        key: "k".to_owned(),
        job_id: JobId::generate().to_string(),
        fingerprint: "f".to_owned(),
    };
    store.accept(
        JobId::generate(),
        b"{}".to_vec(),
        Some(&key),
        move |stored| {
            sender.send(stored.is_err()).unwrap();
        },
    );
    assert!(receiver.recv().unwrap());
}

#[test]
fn a_fifo_named_like_the_keys_file_neither_blocks_recovery_nor_keyed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let keys_fifo = dir.path().join(KEYS_FILE);
    make_fifo(&keys_fifo);
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let mut warnings = Vec::new();
    store.recover(|warning| warnings.push(warning)).unwrap();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(KEYS_FILE) && warning.contains("a FIFO")),
        "{warnings:?}"
    );
    let (sender, receiver) = mpsc::channel();
    let key = KeyRecord {
        key: "k".to_owned(),
        job_id: JobId::generate().to_string(),
        fingerprint: "f".to_owned(),
    };
    store.accept(
        JobId::generate(),
        b"{}".to_vec(),
        Some(&key),
        move |stored| {
            sender.send(stored.is_err()).unwrap();
        },
    );
    assert!(
        receiver.recv().unwrap(),
        "a keyed request is refused, not stuck"
    );
}

#[test]
fn a_cancelled_rerun_of_a_damaged_result_stays_cancelled_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    // A damaged result on disk, its request still journaled (as after a crash).
    let id = accept_kept(&store);
    write_result(dir.path(), id, b"{\"status\":\"do");
    store.shutdown();
    drop(store);

    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let (mut recovered, _) = store.recover(|_| {}).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].state, JobState::Queued, "it runs again");
    assert!(
        !dir.path().join(format!("{id}.result")).exists(),
        "the damaged result is removed before the rerun"
    );
    // Cancelled while queued, as the service cancels: buried, then let go of.
    let request = recovered.remove(0).request.unwrap();
    store.bury(id).unwrap();
    store.abandon(id, request);
    store.shutdown();
    drop(store);

    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let (recovered, _) = store.recover(|_| {}).unwrap();
    let back: Vec<_> = recovered
        .iter()
        .map(|job| (job.id, job.state.clone()))
        .collect();
    assert!(back.is_empty(), "a cancelled job came back: {back:?}");
}

#[test]
fn files_rewritten_at_start_up_have_their_new_names_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    // A tombstone and a key of jobs no segment holds: both files are rewritten without
    // them at the next start-up.
    store.inner.tombstones.bury(JobId::generate()).unwrap();
    let key = KeyRecord {
        key: "k".to_owned(),
        job_id: JobId::generate().to_string(),
        fingerprint: "f".to_owned(),
    };
    fs::write(
        dir.path().join(KEYS_FILE),
        format!("{}\n", serde_json::to_string(&key).unwrap()),
    )
    .unwrap();
    store.shutdown();
    drop(store);

    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    DIRECTORY_SYNCS.with(|syncs| syncs.set(0));
    let (recovered, keys) = store.recover(|_| {}).unwrap();
    assert!(recovered.is_empty() && keys.is_empty());
    // A later append (a cancel's tombstone, a new key) goes to the new file: were its
    // rename not durable, a power cut would bring the old file back without it.
    assert_eq!(DIRECTORY_SYNCS.with(std::cell::Cell::get), 2);
    DIRECTORY_SYNCS.with(|syncs| syncs.set(0));
    drop(store.recover(|_| {}).unwrap());
    assert_eq!(
        DIRECTORY_SYNCS.with(std::cell::Cell::get),
        0,
        "nothing was rewritten"
    );
}

/// What a start-up compaction writes goes into the results directory, never through a
/// symlink put where its temporary file goes (found by a review: it truncated the file
/// the link pointed to, then renamed the link over the real file).
#[test]
fn start_up_compactions_never_write_through_a_symlink() {
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    for temporary in [TOMBSTONES_TEMPORARY.to_owned(), format!("{KEYS_FILE}.tmp")] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(&victim, b"precious data\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(&temporary)).unwrap();
        // A tombstone and a key no job needs: the next start-up compacts both files.
        let gone = JobId::generate();
        let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        store.bury(gone).unwrap();
        store.shutdown();
        drop(store);
        let key = KeyRecord {
            key: "k".to_owned(),
            job_id: gone.to_string(),
            fingerprint: "f".to_owned(),
        };
        fs::write(
            dir.path().join(KEYS_FILE),
            format!("{}\n", serde_json::to_string(&key).unwrap()),
        )
        .unwrap();

        let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        store.recover(|_| {}).unwrap();
        assert_eq!(
            fs::read(&victim).unwrap(),
            b"precious data\n",
            "{temporary}"
        );
        for file in [TOMBSTONES_FILE, KEYS_FILE] {
            let kind = fs::symlink_metadata(dir.path().join(file))
                .unwrap()
                .file_type();
            assert!(
                kind.is_file(),
                "{file} after compacting through {temporary}"
            );
        }
        // And the files work on: a cancel, a restart.
        store.bury(JobId::generate()).unwrap();
        store.shutdown();
        drop(store);
        let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
        store.recover(|_| {}).unwrap();
    }
}

/// A tombstones file that is not a regular file stops start-up, saying why: without it a
/// restart would run cancelled and deleted jobs again.
#[test]
fn a_tombstones_file_that_is_not_a_regular_file_stops_start_up_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(TOMBSTONES_FILE)).unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    let refused = store.recover(|_| {}).map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("is a directory"), "{refused}");
    assert!(
        refused.contains("must never run again") && refused.contains("does not start"),
        "{refused}"
    );
}

/// A first cancel that made the tombstones file and then failed leaves the file empty,
/// its name never synced: the next cancel syncs it (found by a review; a power cut could
/// otherwise take the file, and the cancel with it).
#[test]
fn a_cancel_after_a_failed_first_one_syncs_the_tombstones_files_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Inline)).unwrap();
    fs::write(dir.path().join(TOMBSTONES_FILE), b"").unwrap();
    DIRECTORY_SYNCS.with(|syncs| syncs.set(0));
    store.bury(JobId::generate()).unwrap();
    assert_eq!(DIRECTORY_SYNCS.with(std::cell::Cell::get), 1);
    // Once it holds a line, its name was synced: no more directory syncs.
    store.bury(JobId::generate()).unwrap();
    assert_eq!(DIRECTORY_SYNCS.with(std::cell::Cell::get), 1);
    store.shutdown();
}

/// A job's files are made anew, never written through a symlink left at their name
/// (found by a review: `<id>.log`, and the fallback's temporary result, followed one).
#[test]
fn a_jobs_log_file_is_never_written_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    fs::write(&victim, b"precious data\n").unwrap();
    let store = FileStore::open(dir.path(), options(TeamLogs::Files)).unwrap();
    let id = JobId::generate();
    let request = accept(&store, id);
    std::os::unix::fs::symlink(&victim, dir.path().join(format!("{id}.log"))).unwrap();
    commit(&store, id, &Record::Done(&example_outcome()), request);
    assert_eq!(fs::read(&victim).unwrap(), b"precious data\n");
    let log = dir.path().join(format!("{id}.log"));
    assert!(fs::symlink_metadata(&log).unwrap().file_type().is_file());
    assert!(!fs::read(&log).unwrap().is_empty());
    store.shutdown();
}
