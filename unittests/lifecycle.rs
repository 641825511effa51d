//! The server's life: graceful shutdown by endpoint and by signal drains every job,
//! `kill -9` loses no accepted job, a restart answers from disk, damaged files are
//! skipped, and an unusable results directory stops start-up with a clear error.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    EXAMPLE_JSON, Gate, Server, a_done_job_in, count_files, one_worker_behind_a_gate, wait_until,
};

/// The trailer that ends a result file: `IWRESEND`, version, CRC-32, length.
const RESULT_TRAILER_LEN: usize = 24;

fn result_files(results: &std::path::Path) -> usize {
    count_files(results, |name| name.ends_with(".result"))
}

#[test]
fn graceful_shutdown_drains_every_queued_job_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The jobs are held until the server has been asked during its drain.
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    let ids: Vec<String> = (0..10).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "shutting_down");
    assert!(
        reply.json()["pending"].as_u64().unwrap() >= 8,
        "{}",
        reply.body
    );

    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503);
    assert!(refused.retry_after.is_some());
    assert!(refused.reason().contains("shutting down"));
    let again = server.get("/api/graceful_shutdown");
    assert_eq!(again.json()["status"], "shutting_down");
    // Polls are still answered during the drain.
    assert_eq!(
        server.get(&format!("/api/get_results/{}", ids[0])).status,
        200
    );
    gate.open();

    let results = server.results.clone();
    let mut server = server;
    assert!(server.wait_exit().success());
    assert_eq!(result_files(&results), 10);
    assert_eq!(
        count_files(&results, |name| name.starts_with("requests-")),
        0,
        "every result is in place and synced, so no journal is left for a restart"
    );

    let restarted = Server::start_in(dir.path(), &[]);
    for id in &ids {
        let result = restarted.get(&format!("/api/get_results/{id}")).json();
        assert_eq!(result["data"]["cost"], 32233500, "{id}");
        assert_eq!(
            restarted
                .get(&format!("/api/jobs/{id}/log"))
                .body
                .lines()
                .count(),
            12
        );
    }
    assert_eq!(restarted.listed_jobs(), 10);
    assert!(restarted.shutdown().success());
}

#[test]
fn a_request_or_send_timeout_of_zero_is_refused_at_start() {
    for flag in ["--request-timeout", "--send-timeout"] {
        let stderr = refused_at_start(&[flag, "0"]);
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn a_result_ttl_of_zero_is_refused_at_start() {
    // Taken, it would remove every result as it is stored: no client could read one.
    for zero in ["0", "0s"] {
        let stderr = refused_at_start(&["--result-ttl", zero]);
        assert!(
            stderr.contains("--result-ttl") && stderr.contains("above zero"),
            "{stderr}"
        );
    }
}

#[test]
fn sizes_and_durations_with_units_are_taken_by_every_flag() {
    let server = Server::start(&[
        "--max-body",
        "1KiB",
        "--request-timeout",
        "2s",
        "--keep-alive",
        "1500ms",
        "--shutdown-timeout",
        "2s",
        "--min-free-space",
        "1MiB",
        "--log-max-bytes",
        "1MiB",
        "--result-ttl",
        "1h",
    ]);
    let too_large = server.post("/api/simulate", "text/plain", &[b'1'; 1025]);
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert!(
        too_large.reason().contains("1024 bytes"),
        "{}",
        too_large.body
    );
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    assert!(server.shutdown().success());
}

#[test]
fn a_size_or_duration_with_a_bad_unit_is_a_usage_error_naming_the_flag() {
    // The message names the flag and the value, and shows the units that would do.
    const SIZE: &str = "(B, KiB, MiB, GiB, KB, MB, GB)";
    const DURATION: &str = "(a bare number is seconds)";
    for (flag, value, hint) in [
        ("--max-body", "16XB", SIZE),
        ("--min-free-space", "64 parsecs", SIZE),
        ("--log-max-bytes", "1.5MiB", SIZE),
        ("--request-timeout", "30 fortnights", DURATION),
        ("--keep-alive", "5x", DURATION),
        ("--shutdown-timeout", "soon", DURATION),
        ("--result-ttl", "7dayz", DURATION),
    ] {
        let stderr = refused_at_start(&[flag, value]);
        assert!(
            stderr.contains(flag) && stderr.contains(value) && stderr.contains(hint),
            "{flag} {value}: {stderr}"
        );
    }
}

/// Runs `icewall serve` with `args`, which must make it refuse to start with a usage
/// error (exit 2); returns what it printed on stderr.
fn refused_at_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that took the flag would run on: give it a moment, then stop it.
    let mut exited = None;
    for _ in 0..100 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if exited.is_none() {
        child.kill().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "the server started with {args:?}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sigterm_and_sigint_take_the_same_drain_path() {
    for signal in ["TERM", "INT"] {
        // The jobs are held until the signal has started the drain: it must run them all.
        let (gate, mut server) = one_worker_behind_a_gate();
        let ids: Vec<String> = (0..5).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
        server.signal(signal);
        wait_until("the drain starts", || server.get("/readyz").status == 503);
        gate.open();
        assert!(server.wait_exit().success(), "{signal}");
        assert_eq!(result_files(&server.results), ids.len(), "{signal}");
    }
}

#[test]
fn a_signal_the_moment_the_server_says_it_listens_drains_it() {
    // Sent without a process in between: the server has taken the signal before it
    // says it listens, or the signal kills it, never drained (one start in six did).
    for _ in 0..20 {
        let mut server = Server::start(&[]);
        let pid = rustix::process::Pid::from_raw(server.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = server.wait_exit();
        assert!(status.success(), "{status}");
    }
}

/// Submits jobs from two threads until told to stop, recording every id that got a 202.
fn submit_until_stopped(server: &Server, stop: &AtomicBool, accepted: &Mutex<Vec<String>>) {
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                while !stop.load(Ordering::SeqCst) {
                    let reply = agent
                        .post(&server.url("/api/simulate"))
                        .set("Content-Type", "application/json")
                        .send_string(EXAMPLE_JSON);
                    // A connection cut by the kill is fine: that job was never acknowledged.
                    if let Ok(response) = reply
                        && response.status() == 202
                    {
                        let body: serde_json::Value = response.into_json().unwrap();
                        accepted
                            .lock()
                            .unwrap()
                            .push(body["job_id"].as_str().unwrap().to_owned());
                    }
                }
            });
        }
    });
}

#[test]
fn kill_9_under_load_loses_no_accepted_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_accepted: Vec<String> = Vec::new();
    for round in 0..5u64 {
        let server = Server::start_in(dir.path(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            scope.spawn(|| submit_until_stopped(&server, &stop, &accepted));
            wait_until("the first accepts", || accepted.lock().unwrap().len() >= 5);
            // A different moment of the load each round.
            std::thread::sleep(Duration::from_millis(20 + 60 * round));
            server.signal("9");
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::SeqCst);
        });
        server.kill9();
        let accepted = accepted.into_inner().unwrap();
        assert!(
            !accepted.is_empty(),
            "round {round}: nothing was accepted before the kill"
        );
        all_accepted.extend(accepted);
    }
    let unique: HashSet<&String> = all_accepted.iter().collect();
    assert_eq!(unique.len(), all_accepted.len(), "a job id was given twice");

    let server = Server::start_in(dir.path(), &[]);
    for id in &all_accepted {
        let result = server.wait_finished(id);
        assert_eq!(result["status"], "done", "{id}: {result}");
        assert_eq!(result["data"]["cost"], 32233500);
        assert_eq!(result["data"]["days"], 31);
    }
    let results = server.results.clone();
    assert!(server.shutdown().success());
    // No result file is torn: each is a done job's, whole to its trailer, its log
    // inline, then its request and the request's length (result format version 2).
    // (A torn journal line is expected after a kill: never acknowledged.)
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|extension| extension == "result")
        {
            let bytes = std::fs::read(&path).unwrap();
            let (body, trailer) = bytes.split_at(bytes.len() - RESULT_TRAILER_LEN);
            assert!(bytes.starts_with(b"IWRESULT"), "{}", path.display());
            assert_eq!(bytes[16], 1, "a done job: {}", path.display());
            assert!(trailer.starts_with(b"IWRESEND"), "{}", path.display());
            let length = u64::from_le_bytes(trailer[16..].try_into().unwrap());
            assert_eq!(length, bytes.len() as u64, "{}", path.display());
            assert_eq!(
                bytes[8],
                2,
                "a result keeping its request: {}",
                path.display()
            );
            let (body, request_len) = body.split_at(body.len() - 8);
            let request_len = u64::from_le_bytes(request_len.try_into().unwrap()) as usize;
            let (body, request) = body.split_at(body.len() - request_len);
            let request: serde_json::Value = serde_json::from_slice(request).unwrap();
            assert_eq!(request["num_teams"], 3, "{}", path.display());
            assert!(body.ends_with(b"relieved\n"), "{}", path.display());
        }
    }
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(!log.contains("the stored result is damaged"), "{log}");
}

#[test]
fn damaged_files_in_results_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let done = server.submit_json(EXAMPLE_JSON);
    let torn = server.submit_json(EXAMPLE_JSON);
    for id in [&done, &torn] {
        server.wait_finished(id);
    }
    let results = server.results.clone();
    assert!(server.shutdown().success());

    std::fs::write(results.join(format!("{torn}.result")), b"{\"status\": \"do").unwrap();
    // A journal as a crash leaves it: one job never run, one whose request is garbage,
    // and a torn last line that was never acknowledged.
    let (unrun, garbage) = (
        "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e70",
        "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e71",
    );
    let journal = format!(
        "{{\"job_id\":\"{unrun}\",\"request\":{EXAMPLE_JSON}}}\n\
         {{\"job_id\":\"{garbage}\",\"request\":{{\"profiles\": \"x\"}}}}\n\
         {{\"job_id\":\"0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e72\",\"request\":{{\"prof"
    );
    // At the size segments are made at: the zeros no write reached follow the tear.
    let mut journal = journal.into_bytes();
    journal.resize(64 * 1024, 0);
    std::fs::write(results.join(format!("requests-{unrun}.jsonl")), journal).unwrap();
    std::fs::write(results.join("garbage.bin"), b"\xff\xfe").unwrap();
    // Another spelling of a job's name is not the server's: never a second job.
    let shouted = format!("{}.result", done.to_uppercase());
    std::fs::copy(
        results.join(format!("{done}.result")),
        results.join(&shouted),
    )
    .unwrap();
    // What an earlier version's crash mid-write left (it wrote results in `tmp/`).
    std::fs::create_dir_all(results.join("tmp")).unwrap();
    std::fs::write(results.join(format!("tmp/{unrun}.result.tmp")), b"half").unwrap();

    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(server.wait_finished(&done)["data"]["cost"], 32233500);
    let damaged = server.wait_finished(&torn);
    assert_eq!(damaged["status"], "failed");
    assert!(
        damaged["reason"]
            .as_str()
            .unwrap()
            .contains("stored result is damaged"),
        "{damaged}"
    );
    assert_eq!(server.wait_finished(unrun)["data"]["cost"], 32233500);
    let failed = server.wait_finished(garbage);
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("stored request is damaged"),
        "{failed}"
    );
    // Its config is the failure too, as for every other read of it, not a server error.
    for id in [garbage, torn.as_str()] {
        let config = server.get(&format!("/api/jobs/{id}/config"));
        assert_eq!(config.status, 409, "{}", config.body);
        assert!(
            config.reason().contains("the job failed: "),
            "{}",
            config.body
        );
    }
    assert_eq!(server.listed_jobs(), 4);
    assert!(server.shutdown().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.contains("skipping an unknown file: garbage.bin"),
        "{log}"
    );
    assert!(
        log.contains(&format!("skipping an unknown file: {shouted}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("job {torn}: the stored result is damaged")),
        "{log}"
    );
    assert!(log.contains("skipping a damaged line"), "{log}");
    // Every job has its result now, so the journal is gone.
    let journals = count_files(&results, |name| name.starts_with("requests-"));
    assert_eq!(journals, 0);
}

#[test]
fn a_result_cut_short_is_refused_at_start_up_and_its_job_answers_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, whole) = a_done_job_in(dir.path(), &[]);
    let results = server.results.clone();
    let bytes = std::fs::read(results.join(format!("{whole}.result"))).unwrap();
    let after_line = |n: usize| {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .nth(n)
            .map_or(1, |(at, _)| at + 1)
    };
    // A few bytes in, the header, the line ends a line-based reader would stop at,
    // halfway, the trailer's start, and one byte short.
    let len = bytes.len();
    let cuts = [
        1,
        8,
        96,
        after_line(0),
        after_line(1),
        len / 2,
        len - 24,
        len - 1,
    ];
    let cut_jobs: Vec<(String, usize)> = cuts
        .iter()
        .map(|&cut| (server.submit_json(EXAMPLE_JSON), cut))
        .collect();
    for (id, _) in &cut_jobs {
        server.wait_finished(id);
    }
    assert!(server.shutdown().success());
    for (id, cut) in &cut_jobs {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(results.join(format!("{id}.result")))
            .unwrap();
        file.set_len(*cut as u64).unwrap();
    }

    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(server.wait_finished(&whole)["data"]["cost"], 32233500);
    for (id, cut) in &cut_jobs {
        let result = server.get(&format!("/api/get_results/{id}")).json();
        assert_eq!(
            result["status"], "failed",
            "cut at {cut} of {len}: {result}"
        );
        let reason = result["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("the stored result is damaged"),
            "{reason}"
        );
        for path in [
            "/profiles/1/days/1",
            "/profiles/overview",
            "/log",
            "/profiles",
        ] {
            let reply = server.get(&format!("/api/jobs/{id}{path}"));
            assert_eq!(reply.status, 409, "cut at {cut}, {path}: {}", reply.body);
        }
    }
    assert!(server.shutdown().success());
}

#[test]
fn an_unusable_results_directory_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(["serve", "--bind", "127.0.0.1:0", "--logs-dir"])
        .arg(dir.path().join("logs"))
        .arg("--results-dir")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the results directory") && stderr.contains("not usable"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_up_the_exit() {
    use std::io::{Read, Write};
    let mut server = Server::start(&["--keep-alive", "60", "--shutdown-timeout", "60"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /api/num_jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 512];
    assert!(idle.read(&mut answer).unwrap() > 0);

    let started = std::time::Instant::now();
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    assert!(server.wait_exit().success());
    // Without the fix the server waits out the 60 s keep-alive of the idle connection.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exit took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_shutdown_answer_always_reaches_the_client() {
    for round in 0..30 {
        let mut server = Server::start(&[]);
        let reply = ureq::post(&server.url("/api/graceful_shutdown")).call();
        assert!(reply.is_ok(), "round {round}: {reply:?}");
        assert!(server.wait_exit().success());
    }
}

#[test]
fn a_second_signal_stops_a_drain_at_once_and_its_jobs_run_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let mut server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    let ids: Vec<String> = (0..3).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    server.signal("TERM");
    wait_until("the drain starts", || server.get("/readyz").status == 503);
    // The drain waits at the gate; the operator does not.
    server.signal("TERM");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.contains("a second signal: stopping without finishing the queue"),
        "{log}"
    );
    assert_eq!(result_files(&server.results), 0);
    // Nothing accepted is lost: the next start runs every job.
    gate.open();
    let server = Server::start_in(dir.path(), &[]);
    for id in &ids {
        assert_eq!(server.wait_finished(id)["status"], "done", "{id}");
    }
}

#[test]
fn a_signal_after_a_shutdown_asked_over_http_still_waits_for_the_drain() {
    let (gate, mut server) = one_worker_behind_a_gate();
    let ids: Vec<String> = (0..3).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    // What `docker stop` sends after a preStop hook asked for the shutdown.
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    gate.open();
    assert!(server.wait_exit().success());
    assert_eq!(result_files(&server.results), ids.len());
}
