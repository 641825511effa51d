//! Tests of the journal: batches, segments, key records, damaged lines and recovery reads.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use super::*;
use crate::jobs::JobId;
use crate::jobs::files::COMPACTION_FLOOR;

fn read_back(stored: &StoredRequest) -> Vec<u8> {
    let mut file = File::open(stored.journal.path()).unwrap();
    file.seek(SeekFrom::Start(stored.offset)).unwrap();
    let mut request = vec![0; stored.len];
    file.read_exact(&mut request).unwrap();
    request
}

/// Accepts each request (keyed when `key` says so) and returns where each went.
fn accept_all(
    writer: &Journal,
    requests: &[Vec<u8>],
    key: impl Fn(usize) -> bool,
) -> Vec<StoredRequest> {
    let (sender, receiver) = mpsc::channel();
    for (index, request) in requests.iter().enumerate() {
        let sender = sender.clone();
        let accept = Accept {
            id: JobId::generate(),
            request: request.clone(),
            key_record: key(index).then(|| format!("key {index}").into_bytes()),
        };
        writer.accept(accept, move |stored| {
            sender.send((index, stored.unwrap())).unwrap();
        });
    }
    drop(sender);
    let mut stored: Vec<(usize, StoredRequest)> = receiver.iter().collect();
    stored.sort_by_key(|(index, _)| *index);
    stored.into_iter().map(|(_, stored)| stored).collect()
}

/// Accepts one request (with a key record when given) and returns what its batch got.
fn accept_one(writer: &Journal, key_record: Option<&[u8]>) -> io::Result<StoredRequest> {
    let (sender, receiver) = mpsc::channel();
    let accept = Accept {
        id: JobId::generate(),
        request: b"{}".to_vec(),
        key_record: key_record.map(<[u8]>::to_vec),
    };
    writer.accept(accept, move |stored| sender.send(stored).unwrap());
    receiver.recv().unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| is_segment_name(&path.file_name().unwrap().to_string_lossy()))
        .collect();
    paths.sort();
    paths
}

fn sleep_until(deadline: Instant) {
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

/// Waits until the journal in `dir` has a spare besides the segment `open`, and
/// returns its path.
fn wait_for_spare(dir: &Path, open: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let made_ahead: Vec<PathBuf> = segments(dir)
            .into_iter()
            .filter(|path| path != open)
            .collect();
        if let [spare] = &made_ahead[..] {
            return spare.clone();
        }
        assert!(Instant::now() < deadline, "no segment made ahead");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn accepted_requests_are_journaled_synced_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let requests: Vec<Vec<u8>> = (0..50)
        .map(|index| format!(r#"{{"n":{index}}}"#).into_bytes())
        .collect();
    let stored = accept_all(&writer, &requests, |index| index % 2 == 0);
    for (request, location) in requests.iter().zip(&stored) {
        assert_eq!(&read_back(location), request);
    }
    let journal = stored[0].journal.path().to_owned();
    assert_eq!(
        fs::metadata(&journal).unwrap().len(),
        SEGMENT_MIN_BYTES,
        "a segment is made at its full size"
    );
    let text = fs::read(&journal).unwrap();
    let first_line = text.split(|&byte| byte == b'\n').next().unwrap();
    let first: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(first["request"]["n"], 0);
    let keys = fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap();
    // Each batch's records start on a line of their own: empty lines between them.
    assert_eq!(keys.lines().filter(|line| !line.is_empty()).count(), 25);
    writer.shutdown();
    assert!(journal.exists(), "kept while its jobs need it");
    drop(stored);
    assert!(!journal.exists(), "a journal nobody needs is removed");
}

#[test]
fn a_full_segment_is_sealed_and_the_next_one_is_larger() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    // Each line is a little over 10 KiB: six fit in the first 64 KiB segment.
    let requests: Vec<Vec<u8>> = (0..16)
        .map(|index| format!(r#"{{"n":{index},"pad":"{}"}}"#, "x".repeat(10_240)).into_bytes())
        .collect();
    let stored = accept_all(&writer, &requests, |_| false);
    let mut paths: Vec<PathBuf> = stored
        .iter()
        .map(|location| location.journal.path().to_owned())
        .collect();
    paths.dedup();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert_eq!(fs::metadata(&paths[0]).unwrap().len(), SEGMENT_MIN_BYTES);
    assert_eq!(
        fs::metadata(&paths[1]).unwrap().len(),
        2 * SEGMENT_MIN_BYTES
    );
    for (request, location) in requests.iter().zip(&stored) {
        assert_eq!(&read_back(location), request);
    }
    let mut warnings = Vec::new();
    let recovered: usize = paths
        .iter()
        .map(|path| {
            let journal = Arc::new(Segment::new(path.clone()));
            journal.keep();
            read_segment(&journal, &mut |warning| warnings.push(warning))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(recovered, 16);
    assert!(warnings.is_empty(), "{warnings:?}");
    writer.shutdown();
}

#[test]
fn a_request_larger_than_any_segment_gets_one_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(SEGMENT_MAX_BYTES as usize)).into_bytes();
    let stored = accept_all(&writer, &[b"{}".to_vec(), big.clone()], |_| false);
    assert_eq!(read_back(&stored[1]), big);
    assert_ne!(stored[0].journal.path(), stored[1].journal.path());
    assert_eq!(
        fs::metadata(stored[1].journal.path()).unwrap().len(),
        2 * SEGMENT_MAX_BYTES
    );
    writer.shutdown();
}

#[test]
fn a_segment_is_sealed_when_it_is_a_second_old() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let first = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    let path = first[0].journal.path().to_owned();
    drop(first);
    let deadline = Instant::now() + SEGMENT_MAX_AGE * 10;
    while path.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !path.exists(),
        "a sealed segment goes with its last job, without waiting for more requests"
    );
    let second = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    assert_ne!(second[0].journal.path(), path);
    writer.shutdown();
}

#[test]
fn the_next_segment_is_made_ahead_and_taken_when_the_open_one_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let opened = Instant::now();
    let first = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    // Renamed into a segment's name only once whole: twice the size of the one taken.
    let spare = wait_for_spare(dir.path(), first[0].journal.path());
    assert_eq!(fs::metadata(&spare).unwrap().len(), 2 * SEGMENT_MIN_BYTES);
    assert!(fs::read(&spare).unwrap().iter().all(|&byte| byte == 0));
    // A spare that a crash leaves behind holds nothing for start-up to run or report.
    let read_as_leftover = Arc::new(Segment::new(spare.clone()));
    read_as_leftover.keep();
    let (recovered, warnings) = read_all(&read_as_leftover);
    assert!(recovered.is_empty() && warnings.is_empty(), "{warnings:?}");
    // Past the first segment's second (it is sealed), well before the spare's (it is
    // let go a second after the seal).
    sleep_until(opened + SEGMENT_MAX_AGE + Duration::from_millis(100));
    let second = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    assert_eq!(
        second[0].journal.path(),
        spare,
        "the sealed segment is followed by the one made ahead"
    );
    drop(first);
    // The next spare is let go a second after the segment is sealed, when nothing came.
    let deadline = Instant::now() + SEGMENT_MAX_AGE * 10;
    while segments(dir.path()) != [spare.clone()] {
        assert!(Instant::now() < deadline, "{:?}", segments(dir.path()));
        thread::sleep(Duration::from_millis(20));
    }
    writer.shutdown();
    drop(second);
    assert_eq!(segments(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_spare_removed_or_left_in_a_directory_moved_aside_is_not_taken() {
    for moved_aside in [false, true] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("results");
        fs::create_dir(&dir).unwrap();
        let writer = Journal::start(dir.clone(), 0, COMPACTION_FLOOR).unwrap();
        let opened = Instant::now();
        let first = accept_all(&writer, &[b"{}".to_vec()], |_| false);
        let spare = wait_for_spare(&dir, first[0].journal.path());
        first[0].journal.keep();
        drop(first);
        if moved_aside {
            fs::rename(&dir, parent.path().join("results.old")).unwrap();
            fs::create_dir(&dir).unwrap();
        } else {
            fs::remove_file(&spare).unwrap();
        }
        sleep_until(opened + SEGMENT_MAX_AGE + Duration::from_millis(100));
        if moved_aside {
            let left_behind = parent
                .path()
                .join("results.old")
                .join(spare.file_name().unwrap());
            assert!(left_behind.exists(), "the spare still waits, to be refused");
        }
        let second = accept_all(&writer, &[b"{}".to_vec()], |_| false);
        assert!(
            second[0].journal.path().exists(),
            "accepted into a segment a restart would not find (moved aside: {moved_aside})"
        );
        assert_eq!(read_back(&second[0]), b"{}");
        writer.shutdown();
    }
}

#[test]
fn a_batch_for_a_segment_in_a_directory_moved_aside_fails_and_the_next_finds_a_new_one() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("results");
    fs::create_dir(&dir).unwrap();
    let writer = Journal::start(dir.clone(), 0, COMPACTION_FLOOR).unwrap();
    let first = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    fs::rename(&dir, parent.path().join("results.old")).unwrap();
    fs::create_dir(&dir).unwrap();
    let refused = accept_one(&writer, None).err().expect("not acknowledged");
    assert!(
        refused
            .to_string()
            .contains("no longer in the results directory"),
        "{refused}"
    );
    let second = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    assert!(second[0].journal.path().exists());
    assert_ne!(second[0].journal.path(), first[0].journal.path());
    first[0].journal.keep();
    writer.shutdown();
}

#[test]
fn a_spare_is_let_go_a_second_after_the_last_segment_even_while_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let first = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    wait_for_spare(dir.path(), first[0].journal.path());
    drop(first);
    // A directory where the keys file goes: every keyed batch is refused.
    fs::create_dir(dir.path().join(KEYS_FILE)).unwrap();
    let deadline = Instant::now() + SEGMENT_MAX_AGE * 6;
    while !segments(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", segments(dir.path()));
        let refused = accept_one(&writer, Some(b"key")).is_err();
        assert!(refused, "a keyed batch is refused");
        thread::sleep(Duration::from_millis(200));
    }
    writer.shutdown();
}

#[test]
fn a_spare_waiting_at_shutdown_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Journal::start(dir.path().to_owned(), 0, COMPACTION_FLOOR).unwrap();
    let stored = accept_all(&writer, &[b"{}".to_vec()], |_| false);
    wait_for_spare(dir.path(), stored[0].journal.path());
    writer.shutdown();
    assert_eq!(segments(dir.path()), [stored[0].journal.path().to_owned()]);
}

#[test]
fn reading_stops_at_the_zeros_and_skips_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests-x.jsonl");
    let id = JobId::generate();
    let mut bytes = format!("{JOURNAL_PREFIX}{id}{JOURNAL_INFIX}{{\"a\":1}}}}\n").into_bytes();
    bytes.extend_from_slice(format!("{JOURNAL_PREFIX}{id}{JOURNAL_INFIX}{{\"a\"").as_bytes());
    // The zeros of a segment as it was made, which no batch reached.
    bytes.resize(SEGMENT_MIN_BYTES as usize, 0);
    fs::write(&path, &bytes).unwrap();
    let journal = Arc::new(Segment::new(path));
    let mut warnings = Vec::new();
    let requests = read_segment(&journal, &mut |warning| warnings.push(warning)).unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, id);
    assert_eq!(read_back(&requests[0].1), br#"{"a":1}"#);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

fn line(id: JobId, request: &str) -> Vec<u8> {
    format!("{JOURNAL_PREFIX}{id}{JOURNAL_INFIX}{request}}}\n").into_bytes()
}

/// Writes `lines` into a segment file of `len` bytes (zeros after them, as made).
fn segment_of(dir: &Path, lines: &[Vec<u8>], len: usize) -> Arc<Segment> {
    let path = dir.join(format!("requests-{}.jsonl", JobId::generate()));
    let mut bytes = lines.concat();
    bytes.resize(len, 0);
    fs::write(&path, &bytes).unwrap();
    let journal = Arc::new(Segment::new(path));
    journal.keep();
    journal
}

fn read_all(journal: &Arc<Segment>) -> (Vec<(JobId, StoredRequest)>, Vec<String>) {
    let mut warnings = Vec::new();
    let requests = read_segment(journal, &mut |warning| warnings.push(warning)).unwrap();
    (requests, warnings)
}

#[test]
fn a_zero_byte_inside_a_line_costs_only_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<JobId> = (0..5).map(|_| JobId::generate()).collect();
    let mut lines: Vec<Vec<u8>> = ids
        .iter()
        .map(|&id| line(id, r#"{"profiles":[[1,2,3]]}"#))
        .collect();
    // Line 1: a zero inside its request; line 3: a zero inside its job id.
    lines[1][REQUEST_OFFSET + 5] = 0;
    lines[3][JOURNAL_PREFIX.len() + 3] = 0;
    let journal = segment_of(dir.path(), &lines, SEGMENT_MIN_BYTES as usize);
    let (requests, warnings) = read_all(&journal);
    let found: Vec<(JobId, bool)> = requests
        .iter()
        .map(|(id, stored)| (*id, stored.damage.is_none()))
        .collect();
    assert_eq!(
        found,
        [
            (ids[0], true),
            (ids[1], false),
            (ids[2], true),
            (ids[4], true)
        ]
    );
    for (_, stored) in requests
        .iter()
        .filter(|(_, stored)| stored.damage.is_none())
    {
        assert_eq!(read_back(stored), br#"{"profiles":[[1,2,3]]}"#);
    }
    let damaged = &requests[1].1;
    let damage = damaged.damage.as_deref().unwrap();
    assert!(damage.contains("damaged on disk"), "{damage}");
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&format!("job {}", ids[1]))
                && warning.contains("marked failed")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("job id cannot be read")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|warning| warning.contains("cut short")),
        "{warnings:?}"
    );
}

#[test]
fn zeros_before_a_whole_line_do_not_hide_it() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (JobId::generate(), JobId::generate());
    let mut hole = vec![0u8; 100];
    hole.extend_from_slice(&line(second, "{}"));
    let journal = segment_of(
        dir.path(),
        &[line(first, "{}"), hole],
        SEGMENT_MIN_BYTES as usize,
    );
    let (requests, warnings) = read_all(&journal);
    let ids: Vec<JobId> = requests.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [first, second]);
    assert!(requests.iter().all(|(_, stored)| stored.damage.is_none()));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(read_back(&requests[1].1), b"{}");
}

#[test]
fn a_segment_cut_short_is_reported_and_its_cut_line_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<JobId> = (0..3).map(|_| JobId::generate()).collect();
    let lines: Vec<Vec<u8>> = ids.iter().map(|&id| line(id, r#"{"n":1}"#)).collect();
    let cut = lines[0].len() + lines[1].len() + REQUEST_OFFSET + 3;
    let journal = segment_of(dir.path(), &lines, cut);
    let (requests, warnings) = read_all(&journal);
    let found: Vec<(JobId, bool)> = requests
        .iter()
        .map(|(id, stored)| (*id, stored.damage.is_none()))
        .collect();
    assert_eq!(found, [(ids[0], true), (ids[1], true), (ids[2], false)]);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&format!("{cut} bytes long"))
                && warning.contains("cut short")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&format!("job {}", ids[2]))),
        "{warnings:?}"
    );

    // Cut at a line end, the loss is still reported.
    let journal = segment_of(dir.path(), &lines[..2], lines[0].len() + lines[1].len());
    let (requests, warnings) = read_all(&journal);
    assert_eq!(requests.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cut short"), "{warnings:?}");
}

#[test]
fn a_torn_last_line_names_its_job_and_is_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, torn) = (JobId::generate(), JobId::generate());
    let mut torn_line = line(torn, r#"{"n":1}"#);
    torn_line.truncate(REQUEST_OFFSET + 2);
    let journal = segment_of(
        dir.path(),
        &[line(whole, "{}"), torn_line],
        SEGMENT_MIN_BYTES as usize,
    );
    let (requests, warnings) = read_all(&journal);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, whole);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("job {torn}"))
            && warnings[0].contains("before it was acknowledged"),
        "{warnings:?}"
    );
}

#[test]
fn a_segment_that_is_not_a_regular_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests-fifo.jsonl");
    crate::jobs::files::regular_file::make_fifo(&path);
    let journal = Arc::new(Segment::new(path));
    journal.keep();
    let error = read_segment(&journal, &mut |_| {}).err().unwrap();
    assert!(error.to_string().contains("a FIFO"), "{error}");
}
