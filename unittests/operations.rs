//! The operator's side: `/healthz`, `/readyz`, `/metrics` in the Prometheus text format
//! with counters that move as jobs flow, and request ids on responses and log lines.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde_json::Value;

use crate::common::{
    EXAMPLE_JSON, Gate, Server, a_done_job, a_done_job_in, one_worker_behind_a_gate,
};

/// Checks every line against the text exposition format; returns the samples by their
/// name and labels as written.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let kind = words.next().unwrap();
            let name = words.next().unwrap_or("");
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            assert!(valid_name(name), "bad metric name in: {line}");
            if kind == "TYPE" {
                let kind = words.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type: {line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in: {line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line}"
            );
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (label, value) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(valid_name(label), "bad label name: {line}");
                assert!(
                    !value.trim_end_matches('"').contains('"'),
                    "bad label value: {line}"
                );
            }
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn metrics(server: &Server) -> HashMap<String, f64> {
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("text/plain"));
    parse_exposition(&reply.body)
}

#[test]
fn queue_wait_is_measured_from_acceptance() {
    let (gate, server) = one_worker_behind_a_gate();
    let ids: Vec<String> = (0..2).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    // Both are accepted; the second waits in the queue behind the held first one for
    // at least this long, which its queue wait must show.
    std::thread::sleep(std::time::Duration::from_millis(300));
    gate.open();
    for id in &ids {
        server.wait_finished(id);
    }
    let after = metrics(&server);
    assert_eq!(after["icewall_job_queue_wait_seconds_count"], 2.0);
    // The second job waited for the first one's 300 ms.
    assert!(
        after["icewall_job_queue_wait_seconds_sum"] >= 0.25,
        "{}",
        after["icewall_job_queue_wait_seconds_sum"]
    );
}

#[test]
fn the_wait_for_a_durable_accept_is_measured_for_each_submission() {
    let server = Server::start(&[]);
    assert_eq!(metrics(&server)["icewall_accept_seconds_count"], 0.0);
    for _ in 0..3 {
        server.submit_json(EXAMPLE_JSON);
    }
    let after = metrics(&server);
    assert_eq!(after["icewall_accept_seconds_count"], 3.0);
    // Each waited for a write and an fdatasync at least.
    assert!(after["icewall_accept_seconds_sum"] > 0.0);
    let invalid = server.post("/api/simulate", "application/json", b"{\"profiles\": 3}");
    assert_eq!(invalid.status, 400);
    assert_eq!(metrics(&server)["icewall_accept_seconds_count"], 3.0);
}

#[test]
fn a_fresh_server_exports_every_job_and_rejection_series_at_zero() {
    let server = Server::start(&[]);
    let fresh = metrics(&server);
    let outcomes = ["accepted", "done", "failed", "cancelled"]
        .map(|outcome| format!("icewall_jobs_total{{outcome=\"{outcome}\"}}"));
    let reasons = [
        "invalid",
        "too_large",
        "unsupported_media_type",
        "timeout",
        "queue_full",
        "shutting_down",
        "storage",
        "idempotency",
    ]
    .map(|reason| format!("icewall_jobs_rejected_total{{reason=\"{reason}\"}}"));
    for series in outcomes.iter().chain(&reasons) {
        assert_eq!(fresh.get(series), Some(&0.0), "{series}");
    }
}

#[test]
fn counters_move_as_jobs_flow() {
    let server = Server::start(&["--workers", "2"]);
    let before = metrics(&server);
    assert_eq!(before["icewall_jobs_total{outcome=\"done\"}"], 0.0);
    assert_eq!(before["icewall_workers"], 2.0);
    assert!(before["process_resident_memory_bytes"] > 0.0);
    assert!(before["process_open_fds"] > 0.0);
    // CPU time as the kernel counts it, not in whole seconds (a fresh server's first
    // second read 0).
    let cpu = before["process_cpu_seconds_total"];
    assert!(cpu > 0.0 && cpu.fract() != 0.0, "{cpu}");

    let ids: Vec<String> = (0..5).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &ids {
        server.wait_finished(id);
    }
    assert_eq!(
        server
            .post("/api/simulate", "application/xml", b"<wall/>")
            .status,
        415
    );
    assert_eq!(
        server.post("/api/simulate", "text/plain", b"31\n").status,
        400
    );

    let after = metrics(&server);
    assert_eq!(after["icewall_jobs_total{outcome=\"accepted\"}"], 5.0);
    assert_eq!(after["icewall_jobs_total{outcome=\"done\"}"], 5.0);
    assert_eq!(
        after["icewall_jobs_rejected_total{reason=\"unsupported_media_type\"}"],
        1.0
    );
    assert_eq!(
        after["icewall_jobs_rejected_total{reason=\"invalid\"}"],
        1.0
    );
    assert_eq!(after["icewall_job_queue_wait_seconds_count"], 5.0);
    assert_eq!(
        after["icewall_job_run_seconds_count{outcome=\"done\"}"],
        5.0
    );
    assert_eq!(after["icewall_jobs_in_flight"], 0.0);
    assert_eq!(after["icewall_queue_depth"], 0.0);
    assert!(
        after["icewall_http_request_duration_seconds_count{route=\"/api/get_results/{id}\",status=\"200\"}"]
            >= 5.0
    );
    assert_eq!(
        after["icewall_http_request_duration_seconds_count{route=\"/api/simulate\",status=\"202\"}"],
        5.0
    );
}

#[test]
fn requests_are_timed_under_the_pattern_of_the_endpoint_that_answered() {
    let (server, id) = a_done_job(&[]);
    assert_eq!(server.get("/profiles/overview/").status, 200);
    assert_eq!(server.get("/profiles/2/days/3").status, 200);
    assert_eq!(
        server
            .get(&format!("/api/jobs/{id}/profiles/3/days/16"))
            .status,
        200
    );
    assert_eq!(server.get(&format!("/api/jobs/{id}")).status, 200);
    assert_eq!(
        server
            .post(&format!("/api/jobs/{id}/log"), "text/plain", b"")
            .status,
        405
    );
    assert_eq!(server.get("/api/jobs?colour=red").status, 400);
    assert_eq!(server.get("/api/no/such/thing").status, 404);
    assert_eq!(server.get("/profilesoverview").status, 404);

    let after = metrics(&server);
    let count = |route: &str, status: u16| {
        let series = format!(
            "icewall_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}}"
        );
        after
            .get(&series)
            .copied()
            .unwrap_or_else(|| panic!("no {series}"))
    };
    assert_eq!(count("/profiles/overview", 200), 1.0);
    assert_eq!(count("/profiles/{p}/days/{d}", 200), 1.0);
    assert_eq!(count("/api/jobs/{id}/profiles/{p}/days/{d}", 200), 1.0);
    assert_eq!(count("/api/jobs/{id}", 200), 1.0);
    assert_eq!(count("/api/jobs/{id}/log", 405), 1.0);
    assert_eq!(count("/api/jobs", 400), 1.0);
    assert_eq!(count("unmatched", 404), 2.0);
}

#[test]
fn health_and_readiness() {
    // The job submitted below is held, so the server is still draining when asked.
    let (_gate, server) = one_worker_behind_a_gate();
    assert_eq!(server.get("/healthz").json()["status"], "ok");
    assert_eq!(server.get("/readyz").json()["status"], "ready");

    std::fs::remove_dir_all(&server.results).unwrap();
    let unready = server.get("/readyz");
    assert_eq!(unready.status, 503);
    assert!(
        unready
            .reason()
            .contains("the result store cannot be written"),
        "{}",
        unready.reason()
    );
    assert_eq!(server.get("/healthz").status, 200);
    std::fs::create_dir(&server.results).unwrap();
    assert_eq!(server.get("/readyz").status, 200);

    server.submit_json(EXAMPLE_JSON);
    assert_eq!(
        server
            .post("/api/graceful_shutdown", "application/json", b"")
            .status,
        200
    );
    let draining = server.get("/readyz");
    assert_eq!(draining.status, 503);
    assert!(draining.reason().contains("shutting down"));
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn pipelined_requests_on_one_connection_are_logged_each_with_its_own_tag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let mut stream = server.connect();
    let post = format!(
        "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: first-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EXAMPLE_JSON}",
        EXAMPLE_JSON.len()
    );
    let rest = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: second-2\r\n\r\n\
                GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    stream
        .write_all(format!("{post}{rest}").as_bytes())
        .unwrap();
    let mut answers = String::new();
    stream.read_to_string(&mut answers).unwrap();
    assert_eq!(answers.matches("HTTP/1.1 ").count(), 3, "{answers}");
    assert!(answers.contains("x-request-id: second-2"), "{answers}");
    let series = |route: &str, status: u16| {
        format!(
            "icewall_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}}"
        )
    };
    let counted = metrics(&server);
    assert_eq!(counted[&series("/api/simulate", 202)], 1.0);
    assert_eq!(counted[&series("/healthz", 200)], 1.0);
    assert_eq!(counted[&series("unmatched", 404)], 1.0);
    assert!(server.shutdown().success());

    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    let line = |path: &str| {
        log.lines()
            .find(|line| line.contains(" INFO request, ") && line.contains(path))
            .unwrap_or_else(|| panic!("no request line for {path} in\n{log}"))
    };
    let (post, healthz, nowhere) = (
        line("path: /api/simulate"),
        line("path: /healthz"),
        line("path: /nowhere"),
    );
    assert!(
        post.contains("job_id: ") && post.contains("request_id: first-1"),
        "{post}"
    );
    assert!(
        !healthz.contains("job_id") && healthz.contains("request_id: second-2"),
        "{healthz}"
    );
    assert!(
        !nowhere.contains("job_id") && !nowhere.contains("second-2"),
        "{nowhere}"
    );
}

#[test]
fn request_ids_are_echoed_and_carried_to_the_job_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let reply = server.post_with(
        "/api/simulate",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "trace-4711"),
        ],
        EXAMPLE_JSON.as_bytes(),
    );
    assert_eq!(reply.request_id.as_deref(), Some("trace-4711"));
    let id = reply.json()["job_id"].as_str().unwrap().to_owned();
    server.wait_finished(&id);
    let made = server
        .get("/healthz")
        .request_id
        .expect("a request id is made up");
    assert_eq!(made.len(), 32, "{made}");
    let bad = server.post_with(
        "/api/simulate",
        &[
            ("Content-Type", "text/plain"),
            ("X-Request-Id", &"x".repeat(200)),
        ],
        b"1\n",
    );
    assert_ne!(bad.request_id.as_deref(), Some("x".repeat(200).as_str()));
    let replaced = bad.request_id.expect("an unusable request id is replaced");
    assert_eq!(replaced.len(), 32, "{replaced}");
    assert!(server.shutdown().success());

    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    let job_id = format!("job_id: {id}");
    assert!(
        log.lines()
            .any(|line| line.contains(" INFO request, method: POST")
                && line.contains(&job_id)
                && line.contains("request_id: trace-4711")),
        "no request line naming the job it made in\n{log}"
    );
    assert!(
        log.lines().any(|line| line.contains("path: /healthz")
            && line.ends_with(&format!("request_id: {made}"))),
        "no request line with the made-up id in\n{log}"
    );
    for event in ["request", "job accepted", "job started", "job finished"] {
        assert!(
            log.lines()
                .any(|line| line.contains(event) && line.contains("request_id: trace-4711")),
            "no `{event}` line with the request id in\n{log}"
        );
    }
}

/// Every line of a server's stdout after its listening line, once it has exited.
fn stdout_after_exit(mut server: Server) -> String {
    let mut stdout = server.take_stdout();
    assert!(server.shutdown().success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    rest
}

/// The JSON records of a JSON log, each checked for the keys every record has.
fn json_records(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
            for key in ["ts", "level", "msg"] {
                assert!(record[key].is_string(), "no {key} in {line}");
            }
            record
        })
        .collect()
}

/// A duration as logged: a number of milliseconds with at most three decimals.
fn is_clean_millis(text: &str) -> bool {
    text.parse::<f64>().is_ok()
        && text
            .split_once('.')
            .is_none_or(|(_, decimals)| decimals.len() <= 3)
}

/// A path with a whole job id and a typo after it, longer than 40 characters.
const TYPO_PATH: &str = "/api/get_results/0190a0b2-aaaa-7bbb-8ccc-0123456789ab-typo";

#[test]
fn json_logs_on_stdout_follow_a_json_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir.path(),
        &["--log-target", "stdout", "--log-format", "json"],
    );
    let first: Value = serde_json::from_str(&server.listening_line).unwrap();
    assert_eq!(first["msg"], format!("listening on {}", server.base));
    assert_eq!(first["level"], "INFO");
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    assert_eq!(server.get(TYPO_PATH).status, 404);
    let records = json_records(&stdout_after_exit(server));

    let finished = records
        .iter()
        .find(|record| record["msg"] == "job finished" && record["job_id"] == id.as_str())
        .expect("a `job finished` record");
    assert!(
        is_clean_millis(&finished["elapsed_ms"].to_string()),
        "{finished}"
    );
    let typo = records
        .iter()
        .find(|record| record["msg"] == "request" && record["status"] == 404)
        .expect("the 404's request record");
    assert_eq!(typo["path"], TYPO_PATH);
    assert!(is_clean_millis(&typo["elapsed_ms"].to_string()), "{typo}");
    assert!(records.iter().any(|record| record["msg"] == "stopped"));
    // All of it went to stdout: no log file was made.
    assert!(!dir.path().join("logs/icewall.log").exists());
}

#[test]
fn the_text_log_keeps_whole_paths_and_durations_without_float_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = a_done_job_in(dir.path(), &[]);
    for _ in 0..20 {
        assert_eq!(server.get(TYPO_PATH).status, 404);
    }
    assert!(server.shutdown().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains(&format!("path: {TYPO_PATH},"))),
        "{log}"
    );
    let durations: Vec<&str> = log
        .split("elapsed_ms: ")
        .skip(1)
        .map(|rest| rest.split([',', '\n']).next().unwrap())
        .collect();
    assert!(durations.len() >= 23, "{log}");
    for duration in durations {
        assert!(
            is_clean_millis(duration),
            "elapsed_ms: {duration} in\n{log}"
        );
    }
}

#[test]
fn the_repositorys_gitkeep_is_not_an_unknown_file_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join(".gitkeep"), "").unwrap();
    std::fs::write(results.join("notes.txt"), "mine").unwrap();
    let server = Server::start_in(dir.path(), &[]);
    assert!(server.shutdown().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    let unknown: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("unknown file"))
        .collect();
    // Another stray file is still reported, so the log is the one that would say it.
    assert_eq!(unknown.len(), 1, "{log}");
    assert!(unknown[0].contains("notes.txt"), "{log}");
}

#[test]
fn a_recovered_job_logs_no_empty_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let crashed = Server::start_in(dir.path(), &gate.one_worker(&[]));
    let id = crashed.submit_json(EXAMPLE_JSON);
    crashed.kill9();
    let server = Server::start_in(
        dir.path(),
        &["--log-target", "stdout", "--log-format", "json"],
    );
    assert_eq!(server.wait_finished(&id)["status"], "done");
    let records = json_records(&stdout_after_exit(server));
    let of_the_job: Vec<&Value> = records
        .iter()
        .filter(|record| record["job_id"] == id.as_str())
        .collect();
    assert!(
        of_the_job
            .iter()
            .any(|record| record["msg"] == "job started")
            && of_the_job
                .iter()
                .any(|record| record["msg"] == "job finished"),
        "{of_the_job:?}"
    );
    for record in of_the_job {
        assert!(record.get("request_id").is_none(), "{record}");
    }
}

#[test]
fn a_stdout_nobody_reads_keeps_no_request_waiting_and_loses_no_line_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--log-target", "stdout"]);
    // Nobody reads the server's stdout from here on: its pipe is full after 64 KiB,
    // some 400 request lines. Every request is still answered (the client gives up
    // after its timeout, failing the test, if one waits for the log).
    const REQUESTS: usize = 1_000;
    for _ in 0..REQUESTS {
        assert_eq!(server.get("/profiles/overview/").status, 200);
    }
    let mut stdout = server.take_stdout();
    let reading = std::thread::spawn(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    assert!(server.shutdown().success());
    let log = reading.join().unwrap();
    let answered = log
        .lines()
        .filter(|line| {
            line.contains(" request, method: GET, path: /profiles/overview/, status: 200")
        })
        .count();
    assert_eq!(
        answered, REQUESTS,
        "every request's line, in far less than the bound"
    );
    assert!(!log.contains("log lines dropped"));
}

#[test]
fn a_log_output_that_refuses_lines_is_reported_on_stderr_with_the_count_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let mut server = crate::common::KilledOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_icewall"))
            .args(["serve", "--bind", "127.0.0.1:0", "--log-target", "stdout"])
            .arg("--results-dir")
            .arg(&results)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The listening line is lost with the rest: the lock file names the address.
    let mut address = String::new();
    crate::common::wait_until("the server listens", || {
        let lock = std::fs::read_to_string(results.join(".lock")).unwrap_or_default();
        match lock.split_once("listening on ") {
            Some((_, listening)) => {
                address = listening.trim().to_owned();
                true
            }
            None => false,
        }
    });
    let get = |path: &str| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    // Past its start (its lock names the address before it has recovered its jobs).
    crate::common::wait_until("the server is ready", || {
        get("/readyz").starts_with("HTTP/1.1 200")
    });
    for _ in 0..3 {
        let answer = get("/healthz");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert!(server.0.wait().unwrap().success());
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // Once, when it began to refuse (not once a batch), and the count at exit, when the
    // log itself could not be told: at least the start-up lines and the three requests.
    assert_eq!(
        stderr
            .matches("icewall: the log output refuses lines (No space left on device")
            .count(),
        1,
        "{stderr}"
    );
    let count = stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("icewall: ")?
                .strip_suffix(" log lines were lost: the log output refused them (No space left on device (os error 28))")?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of lost lines at exit: {stderr}"));
    assert!(count >= 5, "{stderr}");
}

#[test]
fn a_jobs_events_are_logged_in_the_order_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let ids: Vec<String> = (0..100).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &ids {
        server.wait_finished(id);
    }
    assert!(server.shutdown().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    for id in &ids {
        let events: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(&format!("job_id: {id}")) && !line.contains(" request,"))
            .map(|line| {
                ["job accepted", "job started", "job finished"]
                    .into_iter()
                    .find(|event| line.contains(event))
                    .unwrap_or(line)
            })
            .collect();
        assert_eq!(
            events,
            ["job accepted", "job started", "job finished"],
            "{id}"
        );
    }
}
