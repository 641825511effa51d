//! The bad-input catalogue: hostile requests, each with the status it must get and a
//! phrase its reason must contain. Afterwards the server still runs a job correctly.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{
    EXAMPLE_JSON, EXAMPLE_TEXT, Gate, Server, a_done_job, read_until_closed, wait_until,
};

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain");

struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// A phrase of the reason; empty for a success.
    reason: &'static str,
}

fn post(
    path: &str,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    reason: &'static str,
) -> Case {
    Case {
        method: "POST",
        path: path.to_owned(),
        content_type,
        body: body.into(),
        status,
        reason,
    }
}

fn json(body: impl Into<Vec<u8>>, status: u16, reason: &'static str) -> Case {
    post("/api/simulate", JSON, body, status, reason)
}

fn text(body: impl Into<Vec<u8>>, status: u16, reason: &'static str) -> Case {
    post("/api/simulate", TEXT, body, status, reason)
}

fn get(path: String, status: u16, reason: &'static str) -> Case {
    Case {
        method: "GET",
        path,
        content_type: None,
        body: Vec::new(),
        status,
        reason,
    }
}

fn with_height(height: &str) -> String {
    format!(r#"{{"profiles": [[1, {height}]]}}"#)
}

fn with_teams(teams: &str) -> String {
    format!(r#"{{"profiles": [[1, 2]], "num_teams": {teams}}}"#)
}

/// Limits of the server under test: `--max-body 100000 --max-sections 3000`.
fn catalogue(done: &str) -> Vec<Case> {
    let deep = format!(
        r#"{{"profiles": {}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut cases = vec![
        // Malformed JSON.
        json("{", 400, "EOF while parsing"),
        json(r#"{"profiles": [[1, 2]"#, 400, "EOF while parsing"),
        json(
            r#"{"profiles": [[1]]} trailing"#,
            400,
            "trailing characters",
        ),
        json(
            r#"{"profiles": [[1]]}{"profiles": [[1]]}"#,
            400,
            "trailing characters",
        ),
        json(deep, 400, "invalid type: sequence"),
        json("[".repeat(10_000), 400, "invalid type: sequence"),
        json("", 400, "EOF while parsing"),
        json("null", 400, "invalid type: null"),
        json(r#""profiles""#, 400, "invalid type: string"),
        json(r#"{"profiles": {"a": [1]}}"#, 400, "invalid type: map"),
        json(r#"{"profiles": [[1]], }"#, 400, "trailing comma"),
        json(
            b"{\"profiles\": [[1]], \"\xff\": 1}".to_vec(),
            400,
            "invalid unicode",
        ),
        // Wrong types and values as heights.
        json(
            with_height("true"),
            400,
            "invalid type: boolean `true`, expected an integer height in 0..=30 at profile 1, section 2",
        ),
        json(with_height("false"), 400, "profile 1, section 2"),
        json(with_height("null"), 400, "invalid type: null"),
        json(with_height("5.0"), 400, "`5.0` is not an integer height"),
        json(with_height("\"5\""), 400, "invalid type: string \"5\""),
        json(with_height("1e309"), 400, "number out of range"),
        json(
            with_height("18446744073709551616"),
            400,
            "not an integer height",
        ),
        json(with_height("-1"), 400, "height `-1` is outside 0..=30"),
        json(with_height("31"), 400, "height `31` is outside 0..=30"),
        json(with_height("[5]"), 400, "invalid type: sequence"),
        json(with_height("{}"), 400, "invalid type: map"),
        // Wrong types and values as num_teams.
        json(with_teams("true"), 400, "num_teams"),
        json(
            with_teams("5.0"),
            400,
            "num_teams must be an integer from 1 to 9223372036854775807, got `5.0`",
        ),
        json(with_teams("\"5\""), 400, "num_teams"),
        json(with_teams("1e309"), 400, "number out of range"),
        json(
            with_teams("18446744073709551616"),
            400,
            "num_teams must be an integer from 1",
        ),
        json(with_teams("0"), 400, "got `0`"),
        json(with_teams("-1"), 400, "got `-1`"),
        json(with_teams("[]"), 400, "num_teams"),
        // Empty or oversized walls, and fields.
        json(r#"{"profiles": []}"#, 400, "the wall has no profiles"),
        json(
            r#"{"profiles": [[1], []]}"#,
            400,
            "profile 2 has no sections",
        ),
        json(
            format!(r#"{{"profiles": [[{}]]}}"#, vec!["1"; 2001].join(",")),
            400,
            "profile 1, section 2001: `1` is one section more than a profile may have (at most 2000)",
        ),
        json(
            format!(
                r#"{{"profiles": [[{0}], [{0}]]}}"#,
                vec!["1"; 2000].join(",")
            ),
            400,
            "profile 2, section 1001: `1` is one section more than the wall may have in all (at most 3000)",
        ),
        json(
            r#"{"profiles": [[1]], "num_team": 3}"#,
            400,
            "unknown field `num_team`",
        ),
        json(
            r#"{"profiles": [[1]], "profiles": [[2]]}"#,
            400,
            "duplicate field `profiles`",
        ),
        json(r#"{"num_teams": 3}"#, 400, "missing field `profiles`"),
        // Text configs.
        text(
            "abc\n",
            400,
            "line 1 (profile 1), column 1: `abc` is not an integer height",
        ),
        text("1 2 31\n", 400, "column 3: height `31` is outside 0..=30"),
        text("1\n-5\n", 400, "line 2 (profile 2), column 1: height `-5`"),
        text("1.5\n", 400, "`1.5` is not an integer height"),
        text("", 400, "the wall has no profiles"),
        text(" \r\n\t\n", 400, "the wall has no profiles"),
        text(b"1 2\n3 \xff\xfe\n".to_vec(), 400, "not valid UTF-8"),
        text("1 2\0 3\n", 400, "is not an integer height"),
        text(
            "99999999999999999999\n",
            400,
            "height `99999999999999999999` is outside",
        ),
        text(
            format!("{}\n", vec!["1"; 2001].join(" ")),
            400,
            "line 1 (profile 1), column 2001: `1` is one section more than a profile may have",
        ),
        text(
            format!("{0}\n{0}\n", vec!["1"; 2000].join(" ")),
            400,
            "line 2 (profile 2), column 1001: `1` is one section more than the wall may have in all",
        ),
        // num_teams in the query string.
        post(
            "/api/simulate?num_teams=0",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "got `0`",
        ),
        post(
            "/api/simulate?num_teams=-1",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "got `-1`",
        ),
        post(
            "/api/simulate?num_teams=x",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "got `x`",
        ),
        post(
            "/api/simulate?num_teams=1.5",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "got `1.5`",
        ),
        post(
            "/api/simulate?num_teams=99999999999999999999",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "num_teams",
        ),
        post(
            "/api/simulate?num_teams=",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "got ``",
        ),
        post(
            "/api/simulate?num_teams=3&num_teams=4",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "the query parameter `num_teams` is given more than once; give it once",
        ),
        get(
            format!("/api/get_results/{done}?wait=1&wait=0"),
            400,
            "the query parameter `wait` is given more than once",
        ),
        get(
            "/api/jobs?status=done&limit=5&status=failed".to_owned(),
            400,
            "the query parameter `status` is given more than once",
        ),
        post(
            "/api/simulate?num_teams=%ZZ",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "num_teams",
        ),
        // Unknown query parameters, misspelt or not, are named, never ignored.
        post(
            "/api/simulate?num_team=3",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "unknown query parameter `num_team`; this endpoint takes `num_teams`",
        ),
        post(
            "/api/simulate?NUM_TEAMS=3",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "unknown query parameter `NUM_TEAMS`",
        ),
        post(
            "/api/simulate?num_teams=3&numteams=3",
            TEXT,
            EXAMPLE_TEXT,
            400,
            "unknown query parameter `numteams`",
        ),
        get(
            "/healthz?verbose=1".to_owned(),
            400,
            "unknown query parameter `verbose`; this endpoint takes none",
        ),
        get(
            "/api/jobs?limt=5".to_owned(),
            400,
            "unknown query parameter `limt`; this endpoint takes `limit`, `after`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/1/days/1?day=2"),
            400,
            "unknown query parameter `day`",
        ),
        get(
            "/profiles/overview/?x".to_owned(),
            400,
            "unknown query parameter `x`",
        ),
        // Body size and content types.
        text(
            vec![b'1'; 100_001],
            413,
            "larger than the limit of 100000 bytes",
        ),
        post(
            "/api/simulate",
            None,
            EXAMPLE_TEXT,
            415,
            "Content-Type must be application/json or text/plain, got none",
        ),
        post(
            "/api/simulate",
            Some("application/xml"),
            EXAMPLE_JSON,
            415,
            "got `application/xml`",
        ),
        post(
            "/api/simulate",
            Some("text/html"),
            EXAMPLE_TEXT,
            415,
            "got `text/html`",
        ),
        post(
            "/api/simulate",
            Some("multipart/form-data; boundary=x"),
            EXAMPLE_TEXT,
            415,
            "multipart/form-data",
        ),
        post(
            "/api/simulate",
            Some("json"),
            EXAMPLE_JSON,
            415,
            "Content-Type must be",
        ),
        post(
            "/api/simulate",
            Some("text/"),
            EXAMPLE_TEXT,
            415,
            "an unreadable Content-Type",
        ),
        post(
            "/api/simulate",
            Some("text/pl ain"),
            EXAMPLE_TEXT,
            415,
            "an unreadable Content-Type",
        ),
        // Whitespace before a parameter, an empty parameter, another case: all readable.
        post(
            "/api/simulate",
            Some("application/json ; charset=utf-8"),
            EXAMPLE_JSON,
            202,
            "",
        ),
        post("/api/simulate", Some("text/plain;;"), EXAMPLE_TEXT, 202, ""),
        post("/api/simulate", Some("Text/Plain"), EXAMPLE_TEXT, 202, ""),
        // Job ids that are not ids, or not known.
        get("/api/get_results/nope".to_owned(), 404, "Invalid job_id"),
        get(
            "/api/get_results/..%2F..%2Fetc%2Fpasswd".to_owned(),
            404,
            "Invalid job_id",
        ),
        // Dot segments are resolved before routing: this is `GET /api`.
        get(
            "/api/get_results/%2e%2e".to_owned(),
            404,
            "no such endpoint",
        ),
        get(
            format!("/api/get_results/{}%00", &done[..35]),
            404,
            "Invalid job_id",
        ),
        get(
            format!("/api/get_results/{}", "a".repeat(10_000)),
            404,
            "Invalid job_id",
        ),
        get(
            "/api/get_results/0192f0c5-7b7e-4c3a-9d1e-2f3b4c5d6e7f".to_owned(),
            404,
            "Invalid job_id",
        ),
        get(
            format!("/api/get_results/{{{done}}}"),
            404,
            "Invalid job_id",
        ),
        get(
            format!("/api/get_results/{}", done.replace('-', "")),
            404,
            "Invalid job_id",
        ),
        get(
            format!("/api/jobs/{}/log", "x".repeat(37)),
            404,
            "Invalid job_id",
        ),
        get(
            "/api/jobs/..%2Fresults/profiles/overview".to_owned(),
            404,
            "Invalid job_id",
        ),
        // Unknown routes and wrong methods.
        get(
            "/index.php".to_owned(),
            404,
            "no such endpoint: GET /index.php",
        ),
        get("/results/".to_owned(), 404, "no such endpoint"),
        get("/logs/icewall.log".to_owned(), 404, "no such endpoint"),
        get(
            "/api/simulate".to_owned(),
            405,
            "method GET is not allowed here",
        ),
        post(
            "/profiles/overview",
            JSON,
            "{}",
            405,
            "method POST is not allowed here",
        ),
        post(
            &format!("/api/get_results/{done}"),
            JSON,
            "{}",
            405,
            "method POST",
        ),
        // Day and profile numbers.
        get(
            format!("/api/jobs/{done}/profiles/1/days/0"),
            400,
            "day must be a positive integer of at most 9223372036854775807, got `0`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/1/days/-1"),
            400,
            "got `-1`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/1/days/x"),
            400,
            "got `x`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/1/days/99999999999999999999"),
            400,
            "day must be a positive integer",
        ),
        get(
            format!("/api/jobs/{done}/profiles/0/overview/1"),
            400,
            "profile must be a positive integer of at most 9223372036854775807, got `0`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/-1/overview/1"),
            400,
            "got `-1`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/x/days/1"),
            400,
            "got `x`",
        ),
        get(
            format!("/api/jobs/{done}/profiles/99999999999999999999/days/1"),
            400,
            "profile must be",
        ),
        get(
            format!("/api/jobs/{done}/profiles/overview/0"),
            400,
            "day must be",
        ),
        get(
            format!("/api/jobs/{done}/profiles/4/days/1"),
            404,
            "profile 4 does not exist",
        ),
        get("/profiles/0/days/1".to_owned(), 400, "profile must be"),
        get("/profiles/1/days/0/".to_owned(), 400, "day must be"),
        get("/profiles/overview/x/".to_owned(), 400, "day must be"),
        get(
            "/profiles/4/overview/1".to_owned(),
            404,
            "profile 4 does not exist",
        ),
        // Listing.
        get("/api/jobs?limit=0".to_owned(), 400, "limit must be"),
        get("/api/jobs?limit=-1".to_owned(), 400, "limit must be"),
        // `%2B5` is `+5`, which Rust's integer parsing takes as 5.
        get("/api/jobs?limit=%2B5".to_owned(), 400, "limit must be"),
        get(
            "/api/jobs?after=../../etc".to_owned(),
            400,
            "after must be a job id",
        ),
        get(
            "/api/jobs?after=not-a-uuid".to_owned(),
            400,
            "after must be a job id",
        ),
    ];
    // Inputs a careful user expects to work.
    for accepted in [
        text("21 25 28\r\n17\r\n17 22 17 19 17\r\n", 202, ""),
        text("21\t25\t28\n17\n17\t22 17 19 17\n", 202, ""),
        text("\u{feff}21 25 28\n17\n17 22 17 19 17\n", 202, ""),
        text("21 25 28   \n17  \n17 22 17 19 17 \n\n\n", 202, ""),
        json(format!("\u{feff}{EXAMPLE_JSON}"), 202, ""),
        json(with_teams("null"), 202, ""),
        post(
            "/api/simulate",
            Some("application/json; charset=utf-8"),
            EXAMPLE_JSON,
            202,
            "",
        ),
        get(format!("/api/get_results/{}", done.to_uppercase()), 200, ""),
        get(format!("/api/jobs/{done}/profiles/1/days/1000000"), 200, ""),
        post("/api/simulate?num_teams=2", TEXT, EXAMPLE_TEXT, 202, ""),
        get(
            "/api/jobs?limit=5&after=0192f0c5-7b7e-4c3a-9d1e-2f3b4c5d6e7f".to_owned(),
            200,
            "",
        ),
    ] {
        cases.push(accepted);
    }
    cases
}

#[test]
fn every_hostile_request_gets_its_status_and_reason() {
    let (server, done) = a_done_job(&["--max-body", "100000", "--max-sections", "3000"]);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let cases = catalogue(&done);
    assert!(cases.len() >= 60, "the catalogue has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut request = agent.request(case.method, &server.url(&case.path));
        if let Some(content_type) = case.content_type {
            request = request.set("Content-Type", content_type);
        }
        let (status, body) = match request.send_bytes(&case.body) {
            Ok(response) => (response.status(), response.into_string().unwrap()),
            Err(ureq::Error::Status(status, response)) => (status, response.into_string().unwrap()),
            Err(error) => (0, error.to_string()),
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&body).ok();
        let reason = parsed
            .as_ref()
            .and_then(|body| body["reason"].as_str().map(str::to_owned));
        // Every error answers API.md's shape: {"status": "error", "reason": ...}.
        let error_shaped = parsed
            .as_ref()
            .is_some_and(|body| body["status"] == "error");
        let ok = status == case.status
            && (status < 400 || error_shaped)
            && match (case.reason, &reason) {
                ("", _) => status < 400,
                (phrase, Some(reason)) => reason.contains(phrase),
                (_, None) => false,
            };
        if !ok {
            let shown: String = case.path.chars().take(80).collect();
            failures.push(format!(
                "{} {shown} ({} body bytes): expected {} `{}`, got {status} {}",
                case.method,
                case.body.len(),
                case.status,
                case.reason,
                body.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The server is unharmed: a normal job runs and answers correctly.
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    assert!(server.shutdown().success());
}

#[test]
fn an_oversized_declared_body_is_refused_before_it_is_sent() {
    let server = Server::start(&["--max-body", "1000"]);
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n")
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = stream
        .read(&mut answer)
        .expect("an answer before any body byte is sent");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1000 bytes"),
        "{answer}"
    );
}

#[test]
fn a_chunked_body_over_the_limit_is_refused() {
    let server = Server::start(&["--max-body", "1000"]);
    let body = vec![b'1'; 5000];
    let reply = ureq::post(&server.url("/api/simulate"))
        .set("Content-Type", "text/plain")
        .send(&body[..]);
    let status = match reply {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(status, 413);
}

#[test]
fn a_body_just_over_the_limit_always_gets_its_413() {
    let server = Server::start(&["--max-body", "1000"]);
    let body = vec![b'1'; 60_000];
    let mut lost = 0;
    for _ in 0..200 {
        let reply = ureq::post(&server.url("/api/simulate"))
            .set("Content-Type", "text/plain")
            .send_bytes(&body);
        match reply {
            Err(ureq::Error::Status(413, _)) => {}
            Err(ureq::Error::Status(status, _)) => panic!("status {status}"),
            Ok(response) => panic!("status {}", response.status()),
            // The server closed with unread bytes and the reset ate the answer.
            Err(ureq::Error::Transport(_)) => lost += 1,
        }
    }
    assert_eq!(lost, 0, "{lost} of 200 clients never saw the 413");
}

#[test]
fn refusals_before_the_body_is_read_always_arrive() {
    let server = Server::start(&[]);
    let body = vec![b'1'; 60_000];
    let mut lost = 0;
    for round in 0..200 {
        let request = ureq::post(&server.url("/api/simulate?num_teams=0"));
        let request = match round % 3 {
            0 => request.set("Content-Type", "application/xml"),
            1 => request
                .set("Content-Type", "text/plain")
                .set("Idempotency-Key", "with space"),
            _ => request.set("Content-Type", "text/plain"),
        };
        match request.send_bytes(&body) {
            Err(ureq::Error::Status(400 | 415, _)) => {}
            Err(ureq::Error::Transport(_)) => lost += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(lost, 0, "{lost} of 200 clients never saw their answer");
}

#[test]
fn a_request_hidden_behind_ambiguous_framing_never_runs() {
    let server = Server::start(&[]);
    // A proxy framing by Content-Length sees one POST; framed by chunks, a shutdown
    // request follows the empty last chunk.
    let hidden = "GET /api/graceful_shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let body = format!("0\r\n\r\n{hidden}");
    for (version, framing) in [
        (
            "1.1",
            "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n",
        ),
        (
            "1.0",
            "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let framing = framing.replace("{n}", &body.len().to_string());
        let answer = server.exchange(&format!(
            "POST /api/simulate HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n{framing}\r\n{body}"
        ));
        assert!(
            answer.starts_with(&format!("HTTP/{version} 400")),
            "{answer}"
        );
        assert!(
            answer.contains("must not have both Content-Length and Transfer-Encoding"),
            "{answer}"
        );
        assert!(!answer.contains("shutting_down"), "{answer}");
    }
    // The hidden shutdown never ran: the server still takes jobs.
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
}

#[test]
fn a_submission_with_two_keys_or_two_content_types_is_refused() {
    let server = Server::start(&[]);
    for (headers, names) in [
        (
            "Content-Type: text/plain\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n",
            "Idempotency-Key",
        ),
        // Read as text the body is a wall; read as JSON it is not one.
        (
            "Content-Type: text/plain\r\nContent-Type: application/json\r\n",
            "Content-Type",
        ),
        (
            "Content-Type: application/json\r\nContent-Type: text/plain\r\n",
            "Content-Type",
        ),
    ] {
        let answer = server.exchange(&format!(
            "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 1\r\nConnection: close\r\n\r\n1"
        ));
        assert!(answer.starts_with("HTTP/1.1 400"), "{headers}: {answer}");
        assert!(
            answer.contains(&format!("the request has more than one {names} header")),
            "{answer}"
        );
    }
    assert_eq!(server.listed_jobs(), 0);
}

#[test]
fn the_headers_of_every_request_on_a_connection_are_timed() {
    let server = Server::start(&["--request-timeout", "1", "--keep-alive", "60"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains(r#"{"status":"ok"}"#) {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "closed before the first answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    // The next request's headers, one byte every half second, for at most 30 s; each
    // wait is a read, so a close or an answer ends it at once.
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter();
    let padding = std::iter::repeat(&b'a');
    let started = Instant::now();
    let mut answer = Vec::new();
    for byte in trickle.chain(padding) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the trickled headers were never cut off"
        );
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                break;
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    answer.extend(read_until_closed(&mut stream).bytes());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""reason":"the request headers were not received within 1s""#),
        "{answer}"
    );
}

const HEALTHZ_TEXT: &str = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const HEALTHZ: &[u8] = HEALTHZ_TEXT.as_bytes();

/// Sends `HEALTHZ` on a new connection and reads its whole answer.
fn answered_connection(server: &Server) -> TcpStream {
    let mut stream = server.connect();
    stream.write_all(HEALTHZ).unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stream
}

/// What `stream` sends until the server closes it, which must happen `within` this long
/// after `since`.
fn read_until_closed_within(
    stream: &mut TcpStream,
    since: Instant,
    within: std::ops::Range<Duration>,
) -> String {
    let rest = read_until_closed(stream);
    let waited = since.elapsed();
    assert!(within.contains(&waited), "closed after {waited:?}: {rest}");
    rest
}

#[test]
fn an_idle_keep_alive_connection_is_closed_silently_after_keep_alive() {
    let server = Server::start(&["--request-timeout", "20", "--keep-alive", "1"]);
    let mut stream = answered_connection(&server);
    let answered = Instant::now();
    let within = Duration::from_millis(900)..Duration::from_secs(10);
    let rest = read_until_closed_within(&mut stream, answered, within);
    assert_eq!(rest, "", "an idle connection is closed without an answer");
}

#[test]
fn a_request_begun_on_an_idle_connection_has_until_the_request_timeout() {
    let server = Server::start(&["--request-timeout", "3", "--keep-alive", "1"]);
    let mut stream = answered_connection(&server);
    let answered = Instant::now();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let within = Duration::from_millis(2900)..Duration::from_secs(15);
    let answer = read_until_closed_within(&mut stream, answered, within);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn a_keep_alive_of_zero_closes_each_connection_after_its_answer() {
    let server = Server::start(&["--keep-alive", "0"]);
    let mut stream = server.connect();
    let started = Instant::now();
    stream.write_all(HEALTHZ).unwrap();
    let within = Duration::ZERO..Duration::from_secs(5);
    let answer = read_until_closed_within(&mut stream, started, within);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn requests_keep_a_connection_open_past_a_short_keep_alive() {
    let server = Server::start(&["--request-timeout", "20", "--keep-alive", "1"]);
    let mut stream = answered_connection(&server);
    ask_every_400_ms(&mut stream, 4);
}

/// Asks for `/healthz` `times` times on `stream`, 400 ms apart, each answered 200.
fn ask_every_400_ms(stream: &mut TcpStream, times: usize) {
    for _ in 0..times {
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(HEALTHZ).unwrap();
        let answer = read_answer(stream);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[test]
fn an_answer_longer_than_the_keep_alive_is_whole_and_the_idle_clock_starts_after_it() {
    // A job held running, so that a read with `?wait=2` takes two seconds.
    let gate = Gate::closed();
    let server = Server::start(&gate.one_worker(&["--keep-alive", "1", "--request-timeout", "20"]));
    let id = server.submit_json(EXAMPLE_JSON);
    let mut stream = answered_connection(&server);
    let asked = Instant::now();
    stream
        .write_all(
            format!("GET /api/get_results/{id}?wait=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"running""#), "{answer}");
    let answered = Instant::now();
    assert!(
        answered - asked >= Duration::from_millis(1900),
        "{:?}",
        answered - asked
    );
    let within = Duration::from_millis(900)..Duration::from_secs(10);
    assert_eq!(read_until_closed_within(&mut stream, answered, within), "");
}

#[test]
fn an_idle_connection_is_timed_by_the_request_timeout_when_it_is_shorter() {
    let server = Server::start(&["--request-timeout", "1", "--keep-alive", "60"]);
    let mut stream = answered_connection(&server);
    let answered = Instant::now();
    let within = Duration::ZERO..Duration::from_secs(10);
    let answer = read_until_closed_within(&mut stream, answered, within);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Keep-alive answers go on as long as requests keep coming within the timeouts.
    let mut stream = answered_connection(&server);
    ask_every_400_ms(&mut stream, 3);
}

/// One answer on a keep-alive connection: its head and the body its Content-Length
/// announces, or what came before the server closed the connection (or a read failed).
fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer);
        let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            head.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, length)| length.trim().parse::<usize>().ok())
                .is_some_and(|length| body.len() >= length)
        });
        if whole {
            return text.into_owned();
        }
        match stream.read(&mut buffer) {
            Ok(read) if read > 0 => answer.extend_from_slice(&buffer[..read]),
            _ => return String::from_utf8_lossy(&answer).into_owned(),
        }
    }
}

#[test]
fn a_connection_busy_for_longer_than_the_request_timeout_is_never_cut_off() {
    // Nine requests 0.3 s apart (2.4 s at least), each sent whole: every one is
    // answered, though the connection's first deadline (and the timer set for it)
    // passed long ago.
    let server = Server::start(&["--request-timeout", "1", "--keep-alive", "60"]);
    for _ in 0..3 {
        if keep_busy(&server, Duration::from_secs(1)) {
            return;
        }
    }
    panic!("on every connection the client was itself held up for longer than the timeout");
}

/// Sends nine requests 0.3 s apart on one connection and asserts that each is answered
/// with a 200. False when a request went unanswered after the client itself took longer
/// than `timeout` to send it (a loaded machine): the server was right to time it out.
fn keep_busy(server: &Server, timeout: Duration) -> bool {
    // A request's headers are timed from the answer before (the first's from the
    // connection's start), which the server sends only once it has the request before:
    // so it has waited no longer than since the client began to send that request.
    let mut clock_started_after = Instant::now();
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for answered in 0..9 {
        let sending = Instant::now();
        let sent = stream.write_all(HEALTHZ);
        let waited_at_most = clock_started_after.elapsed();
        clock_started_after = sending;
        let answer = match sent {
            Ok(()) => read_answer(&mut stream),
            Err(error) => error.to_string(),
        };
        if !answer.starts_with("HTTP/1.1 200 ") {
            assert!(
                waited_at_most >= timeout,
                "cut off after {answered} answers, though sent within {waited_at_most:?}: {answer:?}"
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    true
}

/// Whether every thread of the process is in `state` (its letter in `/proc`).
fn all_threads_are(pid: u32, state: char) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|thread| {
        std::fs::read_to_string(thread.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, fields)| fields.starts_with(state))
        })
    })
}

#[test]
fn headers_that_wait_for_a_stalled_server_are_answered_when_it_resumes() {
    // A loaded machine at its worst: the server does not run from before a whole
    // request arrives, promptly, until after that request's header deadline. The
    // headers were in on time, so the server answers them once it runs again; it does
    // not time the client out for its own lateness.
    let timeout = Duration::from_secs(2);
    let server = Server::start(&["--request-timeout", "2", "--keep-alive", "60"]);
    let pid = server.pid();
    let signal = |signal| assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    for _ in 0..3 {
        let mut stream = server.connect();
        let sending = Instant::now();
        stream.write_all(HEALTHZ).unwrap();
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        // The next headers' clock started after the request above was sent. Stopped
        // while it waits for events, as an idle server does.
        wait_until("the server is idle", || all_threads_are(pid, 'S'));
        signal(libc::SIGSTOP);
        wait_until("the server is stopped", || all_threads_are(pid, 'T'));
        if sending.elapsed() >= timeout {
            // The client took so long that the deadline may have passed before the
            // stop: this round proves nothing.
            signal(libc::SIGCONT);
            continue;
        }
        stream.write_all(HEALTHZ).unwrap();
        let deadline_passed = sending + timeout + Duration::from_millis(500);
        std::thread::sleep(deadline_passed.saturating_duration_since(Instant::now()));
        signal(libc::SIGCONT);
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        // And the connection goes on.
        stream.write_all(HEALTHZ).unwrap();
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        return;
    }
    panic!("the client was itself held up for longer than the timeout on every connection");
}

#[test]
fn a_request_target_that_is_not_a_path_is_no_endpoint() {
    let server = Server::start(&[]);
    // The authority form (meant for CONNECT) and the asterisk form (for OPTIONS) name
    // no path, so no endpoint: not even the page at `/`.
    for target in ["localhost", "127.0.0.1:80", "*"] {
        for method in ["GET", "OPTIONS", "CONNECT"] {
            let answer = server.exchange(&format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            ));
            assert!(
                answer.starts_with("HTTP/1.1 404"),
                "{method} {target}: {answer}"
            );
            assert!(
                answer.contains("no such endpoint"),
                "{method} {target}: {answer}"
            );
        }
    }
}

#[test]
fn unfinished_first_headers_get_a_json_408() {
    // Under a second, so that the reason must not round the time-out down to 0 s.
    let server = Server::start(&["--request-timeout", "700ms"]);
    let answer = server.exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""status":"error""#), "{answer}");
    assert!(
        answer.contains("the request headers were not received within 700ms"),
        "{answer}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn the_largest_max_body_the_flag_takes_is_no_limit_at_all() {
    let server = Server::start(&["--max-body", &u64::MAX.to_string()]);
    let gzipped = server.post_with(
        "/api/simulate",
        &[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
        &gzip(EXAMPLE_TEXT.as_bytes()),
    );
    assert_eq!(gzipped.status, 202, "{}", gzipped.body);
    // Over a MiB of plain text: 375 profiles of 2,000 sections.
    let profile = vec!["1"; 2000].join(" ");
    let wall: String = (0..375).map(|_| format!("{profile}\n")).collect();
    assert!(wall.len() > 1 << 20);
    let large = server.post("/api/simulate", "text/plain", wall.as_bytes());
    assert_eq!(large.status, 202, "{}", large.body);
}

#[test]
fn gzip_bodies_are_decoded_within_the_limit_and_other_encodings_refused() {
    let server = Server::start(&["--max-body", "100000"]);
    let submit = |encoding: &str, body: &[u8]| {
        server.post_with(
            "/api/simulate",
            &[
                ("Content-Type", "text/plain"),
                ("Content-Encoding", encoding),
            ],
            body,
        )
    };
    for encoding in ["gzip", "GZIP", "x-gzip", "identity, gzip"] {
        let reply = submit(encoding, &gzip(EXAMPLE_TEXT.as_bytes()));
        assert_eq!(reply.status, 202, "{encoding}: {}", reply.body);
        let id = reply.json()["job_id"].as_str().unwrap().to_owned();
        assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    }
    let json = server.post_with(
        "/api/simulate",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(EXAMPLE_JSON.as_bytes()),
    );
    assert_eq!(json.status, 202, "{}", json.body);
    assert_eq!(submit("identity", EXAMPLE_TEXT.as_bytes()).status, 202);

    // A plain body labelled gzip is not taken as plain.
    let plain = submit("gzip", b"21 25 28\n17\n17 22 17 19 17\n");
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert!(plain.reason().contains("the body is not valid gzip"));
    // The limit holds for the decoded bytes: a small body that inflates past it.
    let bomb = gzip(&vec![b'1'; 1_000_000]);
    assert!(bomb.len() < 100_000);
    let reply = submit("gzip", &bomb);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply
            .reason()
            .contains("larger than the limit of 100000 bytes")
    );
    // ...and for the compressed ones.
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let reply = submit("gzip", &gzip(&noise));
    assert_eq!(reply.status, 413, "{}", reply.body);

    for (encoding, named) in [
        ("br", "`br`"),
        ("deflate", "`deflate`"),
        ("gzip, gzip", "more than one"),
    ] {
        let reply = submit(encoding, &gzip(EXAMPLE_TEXT.as_bytes()));
        assert_eq!(reply.status, 415, "{encoding}: {}", reply.body);
        let reason = reply.reason();
        assert!(
            reason.contains("Content-Encoding") && reason.contains(named),
            "{reason}"
        );
    }
}

#[test]
fn a_request_head_over_128_kib_or_with_too_many_fields_gets_431() {
    let server = Server::start(&[]);
    let with_header = |bytes: usize| {
        server.exchange(&format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "x".repeat(bytes)
        ))
    };
    let answer = with_header(120 * 1024);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..40.min(answer.len())]
    );
    let answer = with_header(130 * 1024);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..40.min(answer.len())]
    );
    let fields: String = (0..97).map(|n| format!("X-{n}: 1\r\n")).collect();
    let answer = server.exchange(&format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{fields}Connection: close\r\n\r\n"
    ));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn an_answer_before_the_body_is_in_keeps_the_connection_or_says_it_closes_it() {
    let server = Server::start(&["--max-body", "1000"]);
    let body = "1 2 3\n";
    // Each is answered from its head alone: an unknown parameter, an unknown path, a
    // method the path does not take.
    for path in [
        "/api/simulate?NUM_TEAMS=3",
        "/api/nothing",
        "/profiles/overview",
    ] {
        let length = body.len();
        let mut stream = server.connect();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The body comes late, as it may behind a client's or a proxy's second write.
        std::thread::sleep(Duration::from_millis(200));
        stream
            .write_all(&body.as_bytes().repeat(length / body.len()))
            .unwrap();
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 4"), "{path}: {answer}");
        assert!(!answer.contains("connection: close"), "{path}: {answer}");
        // The connection takes the next request, as a client that was not told
        // otherwise sends it.
        stream.write_all(HEALTHZ).unwrap();
        let next = read_answer(&mut stream);
        assert!(next.starts_with("HTTP/1.1 200 "), "{path}: {next:?}");
    }
    // A body declared far over the limit is not read: the answer says the connection
    // ends, so no client sends another request on it.
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /api/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n\r\n",
        )
        .unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[test]
fn a_stalled_body_gets_its_408_at_the_request_timeout() {
    let server = Server::start(&["--request-timeout", "2", "--keep-alive", "60"]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
              Content-Length: 100\r\n\r\n1 2 3\n",
        )
        .unwrap();
    let sent = Instant::now();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Not a second timeout spent reading the rest of a body that is not coming.
    assert!(
        sent.elapsed() < Duration::from_millis(3500),
        "the 408 took {:?}",
        sent.elapsed()
    );
}

#[test]
fn a_chunked_body_over_the_limit_is_read_no_further_than_the_limit_and_a_mebibyte() {
    let server = Server::start(&["--max-body", "1000"]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    let chunk = vec![b'1'; 64 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    // 28 chunks: 1.75 MiB, past the limit and the mebibyte read to reach a body's end.
    let mut sent = 0;
    for _ in 0..28 {
        if stream.write_all(&framed).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    let _ = stream.write_all(HEALTHZ);
    let next = read_answer(&mut stream);
    assert!(
        !next.starts_with("HTTP/1.1 200"),
        "{sent} bytes read and the connection kept"
    );
}

/// How a client stops sending a body: `Some(pause)` half-closes `pause` after its last
/// bytes (it still reads the answer), `None` closes the connection at once.
type BodyEnd = Option<Duration>;

/// Sends a POST of `wall` framed as `chunked` (one chunk) or by Content-Length, and stops
/// after `sent` bytes of the framed body (all of it: `usize::MAX`), ending as `end` says;
/// the answer, if the client waits for one.
fn post_broken_off(
    server: &Server,
    wall: &[u8],
    chunked: bool,
    sent: usize,
    end: BodyEnd,
) -> String {
    let (framing, body) = if chunked {
        let mut body = format!("{:x}\r\n", wall.len()).into_bytes();
        body.extend_from_slice(wall);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        ("Transfer-Encoding: chunked".to_owned(), body)
    } else {
        (format!("Content-Length: {}", wall.len()), wall.to_vec())
    };
    let mut stream = server.connect();
    let head = format!(
        "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         {framing}\r\n\r\n"
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body[..sent.min(body.len())]);
    stream.write_all(&request).unwrap();
    match end {
        Some(pause) => {
            std::thread::sleep(pause);
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            read_until_closed(&mut stream)
        }
        None => String::new(),
    }
}

#[test]
fn a_body_broken_off_before_its_end_makes_no_job() {
    let server = Server::start(&[]);
    let wall = EXAMPLE_TEXT.as_bytes();
    // 300,000 bytes: 150,000 sections on 1,000 lines.
    let long_wall = "7 ".repeat(150).trim_end().to_owned() + "\n";
    let long_wall = long_wall.repeat(1000).into_bytes();
    let no_pause = Duration::ZERO;
    let mut expected_jobs = 0;
    for chunked in [false, true] {
        // A whole body followed by the client's end of the stream is a job: at once, or
        // after a pause in which the server has read it.
        for pause in [Duration::ZERO, Duration::from_millis(200)] {
            let answer = post_broken_off(&server, wall, chunked, usize::MAX, Some(pause));
            assert!(
                answer.starts_with("HTTP/1.1 202"),
                "chunked {chunked}, pause {pause:?}: {answer}"
            );
            expected_jobs += 1;
        }
        // Cut inside the wall ("17" of its second line becomes "1"), inside a chunk's
        // size line, and (chunked) before the last chunk: each refused, none a job.
        let cuts: &[usize] = if chunked { &[14, 2, 34] } else { &[10, 1] };
        for &cut in cuts {
            for pause in [Duration::ZERO, Duration::from_millis(200)] {
                let answer = post_broken_off(&server, wall, chunked, cut, Some(pause));
                assert!(
                    answer.starts_with("HTTP/1.1 400"),
                    "chunked {chunked}, cut at {cut}, pause {pause:?}: {answer}"
                );
                assert!(
                    answer.contains("the request body ended before it was complete"),
                    "{answer}"
                );
                // The answer says the connection ends, as it does.
                assert!(answer.contains("connection: close"), "{answer}");
            }
            // A client gone altogether gets no answer, and no job either.
            post_broken_off(&server, wall, chunked, cut, None);
        }
        // A body of many reads (more than actix-http buffers at once), whole and then
        // cut in its middle, both sent with the end of the stream at once.
        let answer = post_broken_off(&server, &long_wall, chunked, usize::MAX, Some(no_pause));
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        expected_jobs += 1;
        let answer = post_broken_off(&server, &long_wall, chunked, 150_000, Some(no_pause));
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // Every refused body is settled by now: the last was sent before the answers above.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.listed_jobs(), expected_jobs);
}

#[test]
fn a_chunked_body_behind_a_request_still_answered_is_refused_when_the_stream_ends() {
    // The first request waits for a job the closed gate holds; the submission behind it
    // is read only once that is answered, and its client has ended the stream by then.
    let (gate, server) = crate::common::one_worker_behind_a_gate();
    let held = server.submit_json(EXAMPLE_JSON);
    let before = server.listed_jobs();
    let mut stream = server.connect();
    let wall = EXAMPLE_TEXT.as_bytes();
    let request = format!(
        "GET /api/get_results/{held}?wait=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
         POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{}",
        wall.len(),
        // Cut inside the wall: "17" of its second line becomes "1".
        &EXAMPLE_TEXT[..10]
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let answers = read_until_closed(&mut stream);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answers}");
    assert!(
        answers.contains("the request body ended before it was complete"),
        "{answers}"
    );
    gate.open();
    server.wait_finished(&held);
    assert_eq!(server.listed_jobs(), before);
}

#[test]
fn nothing_pipelined_after_a_request_that_closes_the_connection_is_run() {
    let server = Server::start(&[]);
    let wall = EXAMPLE_TEXT;
    let submission = format!(
        "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{wall}",
        wall.len()
    );
    for closing in [
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        // HTTP/1.0 closes unless it asks to keep the connection.
        "GET /profiles/overview/ HTTP/1.0\r\n\r\n",
    ] {
        let answers = server.exchange(&format!("{HEALTHZ_TEXT}{closing}{submission}"));
        let statuses: Vec<&str> = answers
            .match_indices("HTTP/1.")
            .map(|(at, _)| &answers[at + 9..at + 12])
            .collect();
        // Whatever follows the closing request's answer is no acceptance.
        assert_eq!(&statuses[..2], ["200", "200"], "{answers}");
        assert!(
            statuses[2..].iter().all(|status| *status == "400"),
            "{answers}"
        );
    }
    assert_eq!(server.listed_jobs(), 0);
    // A keep-alive connection runs all it is sent.
    let answers = server.exchange(&format!(
        "{HEALTHZ_TEXT}{submission}GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(answers.matches("HTTP/1.1 202").count(), 1, "{answers}");
    assert_eq!(server.listed_jobs(), 1);
}
