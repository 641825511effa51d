//! Faults: slow clients, a pathological wall, the results directory removed under the
//! server, and a full disk. The server keeps answering, refuses what it cannot keep,
//! and recovers when the fault goes away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    EXAMPLE_JSON, Gate, Server, a_done_job, a_done_job_in, a_job_with_a_long_team_log,
    read_until_closed, wait_until,
};

#[test]
fn slow_clients_are_cut_off_without_starving_others() {
    let server = Server::start(&["--request-timeout", "1", "--keep-alive", "1"]);
    // Headers trickled and never finished, by many connections at once.
    let mut trickling: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET /profiles/overview HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Others are served meanwhile.
    let started = Instant::now();
    assert_eq!(server.get("/profiles/overview").json()["cost"], 32233500);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "others waited {:?}",
        started.elapsed()
    );
    for stream in &mut trickling {
        let answer = read_until_closed(stream);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }

    // A body trickled and never finished gets a JSON 408.
    let answer = server.exchange(
        "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n1 2 3",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body was not received in time"),
        "{answer}"
    );

    // An idle keep-alive connection is closed after --keep-alive.
    let answer = server.exchange("GET /api/num_jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Asks for `id`'s team log on a raw connection, with `pauses` of not reading along
/// the way (half a MiB read between them); how many bytes came before the server
/// closed the connection, headers included.
fn read_log_with_pauses(server: &Server, id: &str, pauses: &[Duration]) -> usize {
    let mut stream = server.connect();
    let request =
        format!("GET /api/jobs/{id}/log HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut read = 0;
    let mut buffer = vec![0; 64 * 1024];
    for pause in pauses {
        std::thread::sleep(*pause);
        // Enough to open the window again on loopback, whose segments are 64 KiB.
        let mut taken = 0;
        while taken < 512 * 1024 {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return read + taken,
                Ok(more) => taken += more,
            }
        }
        read += taken;
    }
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return read,
            Ok(more) => read += more,
        }
    }
}

#[test]
fn a_client_that_stops_reading_its_answer_is_cut_off_after_the_send_timeout() {
    let server = Server::start(&["--send-timeout", "1s"]);
    let id = a_job_with_a_long_team_log(&server);
    // Read at once, headers and all (their sizes do not change from one answer to the
    // next).
    let whole = read_log_with_pauses(&server, &id, &[]);
    assert!(whole > 10_000_000, "{whole}");
    // Pauses shorter than the timeout, each followed by a read: the log comes whole.
    let pauses = [Duration::from_millis(700); 4];
    assert_eq!(read_log_with_pauses(&server, &id, &pauses), whole);
    // One pause longer than it: the connection is closed with most of the log unsent.
    let read = read_log_with_pauses(&server, &id, &[Duration::from_secs(3)]);
    assert!(read < whole, "{read} bytes of a {whole}-byte answer");
    // The server goes on answering.
    assert_eq!(server.get("/profiles/overview").json()["cost"], 32233500);
}

#[test]
fn a_pathological_wall_runs_while_other_jobs_keep_flowing() {
    let server = Server::start(&["--workers", "2"]);
    let profile = vec!["0"; 2000].join(" ");
    let wall: String = (0..500).map(|_| format!("{profile}\n")).collect();
    let reply = server.post("/api/simulate?num_teams=1", "text/plain", wall.as_bytes());
    assert_eq!(reply.status, 202, "{}", reply.body);
    let huge = reply.json()["job_id"].as_str().unwrap().to_owned();
    let small: Vec<String> = (0..20).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &small {
        assert_eq!(server.wait_finished(id)["data"]["cost"], 32233500);
    }
    let result = server.wait_finished(&huge);
    assert_eq!(result["status"], "done", "{result}");
    assert_eq!(result["data"]["days"], 30_000_000);
    assert_eq!(result["data"]["cost"], 1_000_000u64 * 30 * 370_500);
    let ask = |path: &str| server.get(&format!("/api/jobs/{huge}{path}")).json();
    assert_eq!(
        ask("/profiles/1/days/60000"),
        serde_json::json!({"day": 60000, "ice_amount": 195})
    );
    assert_eq!(
        ask("/profiles/1/days/60001"),
        serde_json::json!({"day": 60001, "ice_amount": 0})
    );
    assert_eq!(
        ask("/profiles/overview/15000000")["cost"],
        15_000_000u64 * 370_500
    );
    // Some 45 MB: read as a stream, past the client's in-memory limit.
    let mut log = String::new();
    let response = ureq::get(&server.url(&format!("/api/jobs/{huge}/log")))
        .call()
        .unwrap();
    let declared: usize = response.header("content-length").unwrap().parse().unwrap();
    response.into_reader().read_to_string(&mut log).unwrap();
    assert_eq!(declared, log.len());
    assert_eq!(log.lines().count(), 1_000_001);
    assert_eq!(log.lines().last(), Some("day 30000000: team 1 relieved"));
    assert!(server.shutdown().success());
}

#[test]
fn a_removed_results_directory_gives_clear_failures_until_it_is_back() {
    let (server, done) = a_done_job(&[]);
    // Read once, so that the answers are kept in memory too.
    let day = format!("/api/jobs/{done}/profiles/1/days/1");
    assert_eq!(server.get(&day).status, 200);
    assert_eq!(server.get(&format!("/api/get_results/{done}")).status, 200);
    std::fs::remove_dir_all(&server.results).unwrap();
    // The answers kept in memory go on for at most 100 ms (how long a look at the
    // directory stands), then fail like the others.
    let removed = Instant::now();
    wait_until("a read of a kept answer failing", || {
        server.get(&day).status == 500
    });
    assert!(
        removed.elapsed() < Duration::from_secs(2),
        "{:?}",
        removed.elapsed()
    );

    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503);
    assert!(refused.retry_after.is_some());
    assert!(
        refused.reason().contains("could not be stored on disk"),
        "{}",
        refused.reason()
    );
    let unreadable = server.get(&format!("/api/get_results/{done}"));
    assert_eq!(unreadable.status, 500);
    assert!(
        unreadable.reason().contains("cannot be read"),
        "{}",
        unreadable.reason()
    );
    assert_eq!(server.get("/profiles/overview").status, 200);
    assert_eq!(server.get(&format!("/api/get_results/{done}")).status, 500);

    std::fs::create_dir(&server.results).unwrap();
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    assert!(server.shutdown().success());
}

#[test]
fn below_the_free_space_floor_submissions_are_refused_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, done) = a_done_job_in(dir.path(), &[]);
    assert!(server.shutdown().success());

    // No file system has an exabyte free.
    let server = Server::start_in(dir.path(), &["--min-free-space", "1000000000000000000"]);
    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.retry_after.is_some());
    assert!(
        refused
            .reason()
            .contains("below the --min-free-space floor"),
        "{}",
        refused.reason()
    );
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 503);
    assert!(
        ready.reason().contains("--min-free-space"),
        "{}",
        ready.body
    );
    assert_eq!(
        server.get(&format!("/api/get_results/{done}")).json()["data"]["cost"],
        32233500
    );
    assert_eq!(server.get("/api/num_jobs").json()["num_jobs"], 0);
    assert!(server.shutdown().success());
}

/// A tmpfs of `size` mounted at `path` for the test's life (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
    path
}

#[test]
fn a_full_disk_refuses_accepts_fails_unstorable_jobs_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let Some(_tmpfs) = Tmpfs::mount(&results, "2m") else {
        // Mounting needs root, which CI has; elsewhere this fault cannot be staged.
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let gate = Gate::closed();
    let server = Server::start_in(
        dir.path(),
        &gate.one_worker(&["--min-free-space", "262144"]),
    );
    gate.open();
    let done = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&done);
    // Held at the gate until the disk is full.
    gate.close();
    let running = server.submit_json(EXAMPLE_JSON);
    let ballast = fill(&results);

    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.reason().contains("could not be stored on disk")
            && refused.reason().contains("--min-free-space"),
        "{}",
        refused.reason()
    );
    assert_eq!(server.get("/readyz").status, 503);
    gate.open();
    let failed = server.wait_finished(&running);
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not be stored on disk") && reason.contains("No space left"),
        "{reason}"
    );
    // Reads go on.
    assert_eq!(
        server.get(&format!("/api/get_results/{done}")).json()["data"]["cost"],
        32233500
    );
    assert_eq!(
        server
            .get(&format!("/api/jobs/{done}/log"))
            .body
            .lines()
            .count(),
        12
    );

    std::fs::remove_file(ballast).unwrap();
    assert_eq!(server.get("/readyz").status, 200);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    assert!(server.shutdown().success());
    // The job that could not be stored is run again after a restart: its request was kept.
    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(restarted.wait_finished(&running)["data"]["cost"], 32233500);
    assert!(restarted.shutdown().success());
}

#[test]
fn a_job_whose_request_cannot_be_read_for_now_runs_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let gate = Gate::closed();
    let held = gate.one_worker(&[]);
    // Two jobs journaled and never run: after the kill, both are read from the journal.
    let server = Server::start_in(dir.path(), &held);
    let (first, second) = (
        server.submit_json(EXAMPLE_JSON),
        server.submit_json(EXAMPLE_JSON),
    );
    server.kill9();
    let segments: Vec<PathBuf> = std::fs::read_dir(&results)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().ends_with(".jsonl"))
        .collect();

    let server = Server::start_in(dir.path(), &held);
    let result_of = |id: &str| server.get(&format!("/api/get_results/{id}")).json();
    wait_until("the first job at the gate", || {
        result_of(&first)["status"] == "running"
    });
    // The second job's journal is gone when its turn comes: a disk error, not damage.
    let aside = dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    // The start-up removed the spare segment; the one holding the requests stays.
    let segments: Vec<PathBuf> = segments.into_iter().filter(|path| path.exists()).collect();
    assert!(!segments.is_empty());
    for segment in &segments {
        std::fs::rename(segment, aside.join(segment.file_name().unwrap())).unwrap();
    }
    gate.open();
    assert_eq!(server.wait_finished(&first)["data"]["cost"], 32233500);
    let failed = server.wait_finished(&second);
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("its request could not be read from disk")
            && reason.contains("runs again after a restart"),
        "{reason}"
    );
    for segment in &segments {
        std::fs::rename(aside.join(segment.file_name().unwrap()), segment).unwrap();
    }
    assert!(server.shutdown().success());

    // Failed for now only: the restart runs it from its kept request.
    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(restarted.wait_finished(&second)["data"]["cost"], 32233500);
    assert_eq!(restarted.wait_finished(&first)["data"]["cost"], 32233500);
    assert!(restarted.shutdown().success());
}

#[test]
fn a_server_starts_on_a_full_disk_answers_reads_and_takes_jobs_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let Some(_tmpfs) = Tmpfs::mount(&results, "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let flags = ["--min-free-space", "262144", "--max-results", "2"];
    let server = Server::start_in(dir.path(), &flags);
    let keyed = |key: &str| {
        let reply = server.post_with(
            "/api/simulate",
            &[
                ("Idempotency-Key", key),
                ("Content-Type", "application/json"),
            ],
            EXAMPLE_JSON.as_bytes(),
        );
        let id = reply.json()["job_id"].as_str().unwrap().to_owned();
        server.wait_finished(&id);
        id
    };
    // The oldest of three goes by retention, its key's record left in the key file: the
    // start-up would rewrite the file without it, and the live record needs room.
    let gone = keyed("gone");
    let done = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&done);
    let kept = keyed("kept");
    wait_until("retention of the oldest", || {
        server.get(&format!("/api/get_results/{gone}")).status == 404
    });
    assert!(server.shutdown().success());
    let ballast = fill(&results);

    // Started on the full disk: the job is read back, submissions wait for room.
    let server = Server::start_in(dir.path(), &flags);
    assert_eq!(
        server.get(&format!("/api/get_results/{done}")).json()["data"]["cost"],
        32233500
    );
    assert_eq!(server.get("/readyz").status, 503);
    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503, "{}", refused.body);
    std::fs::remove_file(ballast).unwrap();
    assert_eq!(server.get("/readyz").status, 200);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    assert!(server.shutdown().success());
    // The full disk at start-up did not send results the long way (a temporary name
    // and a rename) for the rest of the run.
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(!log.contains("renamed into place"), "{log}");
    assert!(
        log.contains("idempotency-keys.jsonl is left as it is"),
        "{log}"
    );
    // The key of the retired job is free, the kept one's replays, as before.
    let fresh = Server::start_in(dir.path(), &flags);
    let replayed = fresh.post_with(
        "/api/simulate",
        &[
            ("Idempotency-Key", "kept"),
            ("Content-Type", "application/json"),
        ],
        EXAMPLE_JSON.as_bytes(),
    );
    assert_eq!(replayed.json()["job_id"], kept.as_str());
    let again = fresh.post_with(
        "/api/simulate",
        &[
            ("Idempotency-Key", "gone"),
            ("Content-Type", "application/json"),
        ],
        EXAMPLE_JSON.as_bytes(),
    );
    assert_ne!(again.json()["job_id"], gone.as_str());
    assert!(fresh.shutdown().success());
}
