//! The client against fake servers on loopback that misbehave as no icewall server
//! does (a redirect, a stall, an endless or garbled answer), as a proxy, a wrong
//! `--server` or a hostile host may.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use super::{icewall, spawn_icewall, stderr};

const ID: &str = "01a22fb2-0a75-714d-8ce2-6e75ec9a9742";

/// The client's message, once it is known to have exited with `code`.
fn exited_with(args: &impl std::fmt::Debug, output: &std::process::Output, code: i32) -> String {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {message}");
    message
}

/// Runs the client with `args` against `base`, which must end it within 5 s (for the
/// 2 s waits and timeouts these tests give it) with exit `code`; its output and its
/// stderr.
fn ended_in_time(base: &str, args: &[&str], code: i32) -> (std::process::Output, String) {
    let started = Instant::now();
    let mut output = run_all_within(base, &[args.to_vec()], Duration::from_secs(8));
    let output = output.remove(0);
    let message = exited_with(&args, &output, code);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{args:?}: ended after {:?}",
        started.elapsed()
    );
    (output, message)
}

/// Reads one request from `stream`: its head is returned, its body (by Content-Length)
/// read and dropped; `None` once the client closes.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    std::io::copy(&mut stream.take(length), &mut std::io::sink()).ok()?;
    Some(head)
}

/// A fake server: `answer` is given each request's head and the connection, and says
/// whether to read another request on it (keep-alive) or close it. Each connection
/// has a thread, so that one held silent does not hold the others.
fn fake_server(answer: impl Fn(&str, &mut TcpStream) -> bool + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                while let Some(head) = read_request(&mut stream) {
                    if !answer(&head, &mut stream) {
                        return;
                    }
                }
            });
        }
    });
    base
}

/// Writes a whole answer, keeping the connection open for another request.
fn respond(stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

fn wall_file(dir: &tempfile::TempDir) -> String {
    let wall = dir.path().join("wall.txt");
    std::fs::write(&wall, crate::common::EXAMPLE_TEXT).unwrap();
    wall.to_str().unwrap().to_owned()
}

#[test]
fn a_redirect_is_an_error_naming_its_location_and_is_not_followed() {
    let followed = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&followed);
    // What the other host would answer, were it asked: enough for every subcommand.
    let elsewhere = fake_server(move |_, stream| {
        count.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"status":"done","data":[],"pending":0,"job_id":"{ID}","ice_amount":1,"cost":1}}"#
        );
        respond(
            stream,
            "200 OK",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        );
        false
    });
    let location = format!("{elsewhere}/api/elsewhere");
    let to = location.clone();
    let redirecting = fake_server(move |head, stream| {
        let status = if head.starts_with("GET") {
            "302 Found"
        } else {
            "307 Temporary Redirect"
        };
        respond(stream, status, &format!("Location: {to}\r\n"), b"");
        false
    });
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    for args in [
        vec!["jobs"],
        vec!["status", ID],
        vec!["submit", &wall],
        vec!["shutdown", "--token", "secret"],
        vec!["delete", ID, "--token", "secret"],
    ] {
        let output = icewall(&redirecting, &args);
        let message = exited_with(&args, &output, 1);
        assert!(
            message.contains(&format!("redirect to {location}"))
                && message.contains("not followed"),
            "{args:?}: {message}"
        );
    }
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
}

/// A server that accepts connections and never says a word on them.
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    base
}

/// Runs each of `runs` at once, each given `limit` to end before it is killed, and
/// returns what each printed.
fn run_all_within(base: &str, runs: &[Vec<&str>], limit: Duration) -> Vec<std::process::Output> {
    let started = Instant::now();
    let mut children: Vec<_> = runs.iter().map(|args| spawn_icewall(base, args)).collect();
    let ended = crate::common::poll_until(limit, || {
        children
            .iter_mut()
            .all(|child| child.try_wait().unwrap().is_some())
    });
    if !ended {
        for child in &mut children {
            let _ = child.kill();
        }
    }
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    assert!(
        ended,
        "still running after {:?}: {:?}",
        started.elapsed(),
        runs.iter()
            .zip(&outputs)
            .filter(|(_, output)| output.status.code().is_none())
            .map(|(args, _)| args)
            .collect::<Vec<_>>()
    );
    outputs
}

#[test]
fn a_server_that_says_nothing_is_given_up_on_after_the_silence_timeout_with_exit_3() {
    let silent = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    let quick = ["--debug-silence-timeout", "1s"];
    let runs: Vec<Vec<&str>> = [
        vec!["jobs"],
        vec!["status", ID],
        vec!["status", ID, "--wait", "1s"],
        vec!["log", ID],
        vec!["submit", &wall, "--wait"],
    ]
    .into_iter()
    .map(|args| [args, quick.to_vec()].concat())
    .collect();
    let outputs = run_all_within(&silent, &runs, Duration::from_secs(20));
    for (args, output) in runs.iter().zip(&outputs) {
        let message = exited_with(&args, output, 3);
        // A wait no longer than the silence ends first.
        let says = if args.contains(&"--wait") && args[0] == "status" {
            "no answer came within --wait 1s; giving up"
        } else {
            "nothing came from it for 1s; giving up"
        };
        assert!(message.contains(says), "{args:?}: {message}");
    }
    // A flag for tests only: it is not offered to users.
    let help = super::stdout(&super::icewall_local(&["status", "--help"]));
    assert!(!help.contains("silence"), "{help}");
}

/// A server that takes a job, refuses waits (as one with a short --max-wait does), says
/// once that the job is running, and then, on the same kept-alive connection or a new
/// one, says nothing more.
fn server_that_stalls_after_one_answer() -> String {
    let answered = AtomicUsize::new(0);
    fake_server(move |head, stream| {
        let json = "Content-Type: application/json\r\n";
        if head.starts_with("POST") {
            let body = format!(r#"{{"job_id":"{ID}"}}"#);
            respond(stream, "202 Accepted", json, body.as_bytes());
        } else if head.contains("wait=") {
            let body = br#"{"status":"error","reason":"wait is over --max-wait"}"#;
            respond(stream, "400 Bad Request", json, body);
        } else if answered.fetch_add(1, Ordering::SeqCst) == 0 {
            respond(stream, "200 OK", json, br#"{"status":"running"}"#);
        }
        // Silent from now on, the connection kept open.
        true
    })
}

#[test]
fn a_wait_on_a_server_that_stalls_on_a_kept_alive_connection_gives_up_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    let quick = ["--debug-silence-timeout", "1s"];
    for args in [
        vec!["status", ID, "--wait", "1h"],
        vec!["submit", &wall, "--wait"],
    ] {
        let args = [args, quick.to_vec()].concat();
        let stalling = server_that_stalls_after_one_answer();
        let output = run_all_within(
            &stalling,
            std::slice::from_ref(&args),
            Duration::from_secs(20),
        );
        let output = &output[0];
        let message = exited_with(&args, output, 3);
        assert!(
            message.contains("nothing came from it for 1s; giving up"),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn an_answer_over_16_mib_is_refused_not_read_on() {
    // Valid JSON, and a valid answer but for its size.
    let padded = fake_server(|_, stream| {
        let mut body = br#"{"status":"running","padding":""#.to_vec();
        body.resize(body.len() + 17 * 1024 * 1024, b'a');
        body.extend_from_slice(br#""}"#);
        respond(
            stream,
            "200 OK",
            "Content-Type: application/json\r\n",
            &body,
        );
        false
    });
    // An answer that never ends, until the client stops reading it.
    let endless = fake_server(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
              {\"status\":\"running\",\"padding\":\"",
        );
        let chunk = vec![b'a'; 64 * 1024];
        while stream.write_all(&chunk).is_ok() {}
        false
    });
    for base in [&padded, &endless] {
        let runs = [vec!["status", ID], vec!["jobs"], vec!["health"]];
        let outputs = run_all_within(base, &runs, Duration::from_secs(20));
        for (args, output) in runs.iter().zip(&outputs) {
            let message = exited_with(&args, output, 2);
            assert!(
                message.contains("larger than 16 MiB"),
                "{args:?}: {message}"
            );
        }
    }
}

#[test]
fn an_answer_cut_off_or_stalled_midway_is_a_failure_to_reach_the_server() {
    let cut_off = fake_server(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n\
              {\"status\":",
        );
        false
    });
    let stalled = fake_server(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n\
              {\"status\":",
        );
        // Held open, silent, until the client gives up.
        true
    });
    let runs: Vec<Vec<&str>> = [vec!["status", ID], vec!["jobs"], vec!["shutdown"]]
        .into_iter()
        .map(|args| [args, vec!["--debug-silence-timeout", "1s"]].concat())
        .collect();
    for (base, detail) in [
        (&cut_off, "closed before"),
        (&stalled, "nothing came from it for 1s"),
    ] {
        let outputs = run_all_within(base, &runs, Duration::from_secs(20));
        for (args, output) in runs.iter().zip(&outputs) {
            let message = exited_with(&args, output, 3);
            assert!(
                message.contains("cannot reach the server") && message.contains(detail),
                "{args:?}: {message}"
            );
        }
    }
}

#[test]
fn an_answer_that_is_not_json_is_named_as_such_by_every_subcommand() {
    let html = fake_server(|_, stream| {
        respond(
            stream,
            "200 OK",
            "Content-Type: text/html\r\n",
            b"<html>hello</html>",
        );
        false
    });
    for args in [
        vec!["shutdown"],
        vec!["query", ID, "--profile", "1", "--day", "1"],
        vec!["status", ID],
        vec!["jobs"],
    ] {
        let output = icewall(&html, &args);
        let message = exited_with(&args, &output, 2);
        assert!(
            message.starts_with("icewall: the server sent an answer this client cannot read: "),
            "{args:?}: {message}"
        );
    }
}

/// A row of a summary or of a page of profiles.
fn profile_row(number: usize) -> String {
    format!(r#"{{"profile":{number},"sections":1,"days":1,"ice":195,"cost":370500}}"#)
}

/// A server whose job's summary leaves rows out, with a total of `total`, and whose
/// pages of profiles are made by `page` from the `after` asked for.
fn paging_server(total: usize, page: fn(usize) -> String) -> String {
    fake_server(move |head, stream| {
        let json = "Content-Type: application/json\r\n";
        let body = if head.contains("/profiles?") {
            let after = head
                .split("after=")
                .nth(1)
                .and_then(|rest| rest.split('&').next())
                .and_then(|after| after.parse().ok())
                .unwrap_or(0);
            page(after)
        } else {
            format!(
                r#"{{"status":"done","data":{{"days":1,"num_teams":null,"ice":195,"cost":370500,"profiles":[{}],"profiles_total":{total},"profiles_truncated":true}}}}"#,
                profile_row(1)
            )
        };
        respond(stream, "200 OK", json, body.as_bytes());
        false
    })
}

#[test]
fn pages_of_a_result_end_at_the_total_its_summary_gives() {
    // Each page brings the next row and says more follow, for ever.
    let endless = paging_server(3, |after| {
        format!(
            r#"{{"profiles":[{}],"next_after":{}}}"#,
            profile_row(after + 1),
            after + 1
        )
    });
    // The same row, again and again.
    let repeating = paging_server(3, |_| {
        format!(r#"{{"profiles":[{}],"next_after":2}}"#, profile_row(2))
    });
    // Ends short of the total.
    let short = paging_server(3, |after| {
        format!(
            r#"{{"profiles":[{}],"next_after":null}}"#,
            profile_row(after + 1)
        )
    });
    // Brings nothing, and says more follow from where it was asked.
    let empty = paging_server(3, |after| {
        format!(r#"{{"profiles":[],"next_after":{after}}}"#)
    });
    // Counts more profiles than any wall a client reads has.
    let vast = paging_server(100_000_000, |after| {
        format!(
            r#"{{"profiles":[{}],"next_after":{}}}"#,
            profile_row(after + 1),
            after + 1
        )
    });
    for (base, detail) in [
        (&endless, "says more follow after profile 3 of the 3"),
        (&repeating, "profile 2 where profile 3 was due"),
        (&short, "says none follow after profile 2 of the 3"),
        (&empty, "an empty page after profile 1 of the 3"),
        (&vast, "100000000 profiles, more than the 10000000"),
    ] {
        let runs = [vec!["result", ID], vec!["result", ID, "--json"]];
        let outputs = run_all_within(base, &runs, Duration::from_secs(20));
        for (args, output) in runs.iter().zip(&outputs) {
            let message = exited_with(&args, output, 2);
            assert!(message.contains(detail), "{args:?}: {message}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn an_error_page_is_shown_short_on_one_line_with_control_bytes_escaped() {
    // A proxy's page: HTML over many lines, a terminal escape in it, 100 KB long.
    let proxy = fake_server(|_, stream| {
        let mut page = "<html>\n  <head><title>502 Bad \x1b[2J Gateway</title></head>\n".to_owned();
        page.push_str(&"  <p>upstream unavailable</p>\n".repeat(3500));
        respond(
            stream,
            "502 Bad Gateway",
            "Content-Type: text/html\r\n",
            page.as_bytes(),
        );
        false
    });
    // An icewall-shaped refusal whose reason goes on and on.
    let long_reason = fake_server(|_, stream| {
        let body = format!(
            r#"{{"status":"error","reason":"no{}"}}"#,
            " no".repeat(10_000)
        );
        respond(
            stream,
            "400 Bad Request",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        );
        false
    });
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    for (base, starts) in [
        (
            &proxy,
            "icewall: HTTP 502 (text/html): <html> <head><title>502 Bad \\u{1b}[2J Gateway</title></head> <p>upstream unavailable</p>",
        ),
        (&long_reason, "icewall: no no no"),
    ] {
        for args in [
            vec!["jobs"],
            vec!["status", ID],
            vec!["submit", &wall, "--retries", "0"],
        ] {
            let output = icewall(base, &args);
            let message = exited_with(&args, &output, 1);
            assert!(message.starts_with(starts), "{args:?}: {message}");
            assert!(message.len() < 600, "{args:?}: {} bytes", message.len());
            assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
            assert!(!output.stderr.contains(&0x1b), "{args:?}");
        }
    }
}

/// A server whose queue is full: every request gets a 503 saying so, with `headers`
/// besides its content type.
fn queue_full_server(headers: &'static str) -> String {
    fake_server(move |_, stream| {
        let body = br#"{"status":"error","reason":"the queue is full"}"#;
        let headers = format!("Content-Type: application/json\r\n{headers}");
        respond(stream, "503 Service Unavailable", &headers, body);
        false
    })
}

#[test]
fn a_submit_that_may_have_made_the_job_says_retrying_with_its_key_is_safe() {
    // Takes the whole request, then closes without a word.
    let lost = fake_server(|_, _| false);
    let full = queue_full_server("");
    // Accepted, and the answer cut off before the job's id.
    let cut_off = fake_server(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n\
              {\"job_id\":",
        );
        false
    });
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    for (base, code) in [(&lost, 3), (&full, 1), (&cut_off, 3)] {
        let output = icewall(
            base,
            &[
                "submit",
                &wall,
                "--idempotency-key",
                "nightly-42",
                "--retries",
                "0",
            ],
        );
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("retrying with --idempotency-key nightly-42 is safe"),
            "{}",
            stderr(&output)
        );
        // Without a key of the user's, the one sent is named.
        let output = icewall(base, &["submit", &wall, "--retries", "0"]);
        let message = stderr(&output);
        let key = message
            .split("--idempotency-key ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no key in: {message}"));
        assert!(uuid::Uuid::parse_str(key).is_ok(), "{message}");
    }
    // Nothing was sent, or the server said no for good: no hint.
    let nowhere = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let bad = fake_server(|_, stream| {
        let body = br#"{"status":"error","reason":"line 1: bad"}"#;
        respond(
            stream,
            "400 Bad Request",
            "Content-Type: application/json\r\n",
            body,
        );
        false
    });
    for (base, code) in [(&nowhere, 3), (&bad, 1)] {
        let output = icewall(base, &["submit", &wall, "--idempotency-key", "nightly-42"]);
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
        assert!(
            !stderr(&output).contains("idempotency"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn a_team_log_is_printed_with_control_bytes_escaped_but_its_lines_kept() {
    let hostile = fake_server(|_, stream| {
        let log = "day 1: team 1\x1b[2J finished\tsection 1\r\nday 2: \u{9b}31m team 2\x07\n";
        respond(
            stream,
            "200 OK",
            "Content-Type: text/plain\r\n",
            log.as_bytes(),
        );
        false
    });
    let output = icewall(&hostile, &["log", ID]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        super::stdout(&output),
        "day 1: team 1\\u{1b}[2J finished\tsection 1\\r\nday 2: \\u{9b}31m team 2\\u{7}\n"
    );
}

/// A server that takes a job and then never answers a question about it, the
/// connection held open.
fn server_that_takes_a_job_and_stalls() -> String {
    fake_server(|head, stream| {
        if head.starts_with("POST") {
            let body = format!(r#"{{"job_id":"{ID}"}}"#);
            respond(
                stream,
                "202 Accepted",
                "Content-Type: application/json\r\n",
                body.as_bytes(),
            );
        }
        true
    })
}

#[test]
fn a_wait_ends_at_its_timeout_however_long_the_server_stalls() {
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    // Far longer than the waits, so that only the wait's own bound can end them in time.
    let slow = ["--debug-silence-timeout", "60s"];
    let never_answers = server_that_takes_a_job_and_stalls();
    let answers_once = server_that_stalls_after_one_answer();
    let submit = [
        vec!["submit", &wall, "--wait", "--timeout", "2s"],
        slow.to_vec(),
    ]
    .concat();
    let status = [vec!["status", ID, "--wait", "2s"], slow.to_vec()].concat();
    for (base, args, code, says) in [
        (
            &never_answers,
            &submit,
            4,
            format!("no answer about job {ID} came within 2s"),
        ),
        (
            &answers_once,
            &submit,
            4,
            format!("job {ID} is still running after 2s"),
        ),
        (
            &never_answers,
            &status,
            3,
            "no answer came within --wait 2s".to_owned(),
        ),
    ] {
        let (_, message) = ended_in_time(base, args, code);
        assert!(message.contains(&says), "{args:?}: {message}");
    }
}

/// A server whose queue of connections is full: a connect to it is never answered,
/// as one to a host that drops packets.
fn server_that_takes_no_connection() -> (String, TcpListener, TcpStream) {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Linux takes a second listen as the new length of the queue: none waiting but one.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let address = listener.local_addr().unwrap();
    let queued = TcpStream::connect(address).unwrap();
    (format!("http://{address}"), listener, queued)
}

/// `status --wait 2s`, with the silence limit far beyond the wait: what ends it is the
/// wait.
const STATUS_WAITING_2S: [&str; 6] = [
    "status",
    ID,
    "--wait",
    "2s",
    "--debug-silence-timeout",
    "60s",
];

#[test]
fn a_wait_ends_at_its_timeout_when_the_server_takes_no_connection() {
    let (base, _listener, _queued) = server_that_takes_no_connection();
    let (_, message) = ended_in_time(&base, &STATUS_WAITING_2S, 3);
    assert!(
        message.contains("no answer came within --wait 2s"),
        "{message}"
    );
}

#[test]
fn a_password_in_the_server_url_is_never_shown() {
    let nowhere = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let silent = silent_server().replace("http://", "http://me:hunter2@");
    let quick = ["--debug-silence-timeout", "1s"];
    for (base, args, code) in [
        (format!("http://me:hunter2@{nowhere}"), vec!["jobs"], 3),
        (silent.clone(), [vec!["jobs"], quick.to_vec()].concat(), 3),
        (
            silent,
            [vec!["status", ID, "--wait", "1s"], quick.to_vec()].concat(),
            3,
        ),
        (format!("http://me:hunter2@{nowhere}/?a"), vec!["jobs"], 2),
    ] {
        let output = run_all_within(&base, std::slice::from_ref(&args), Duration::from_secs(10));
        let message = exited_with(&args, &output[0], code);
        assert!(!message.contains("hunter2"), "{args:?}: {message}");
        assert!(message.contains("me:***@127.0.0.1:"), "{args:?}: {message}");
    }
}

#[test]
fn status_wait_prints_the_last_status_when_a_later_request_goes_unanswered() {
    let answers_once = server_that_stalls_after_one_answer();
    let (output, message) = ended_in_time(&answers_once, &STATUS_WAITING_2S, 0);
    assert_eq!(super::stdout(&output).trim(), "running", "{message}");
}

#[test]
fn a_submission_and_its_retries_end_within_the_timeout_of_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let wall = wall_file(&dir);
    // Takes the request and never answers it.
    let stalls = fake_server(|_, _| true);
    // The queue full, and a retry asked for later than the timeout.
    let full = queue_full_server("Retry-After: 30\r\n");
    let args = [
        "submit",
        &wall,
        "--wait",
        "--timeout",
        "2s",
        "--idempotency-key",
        "nightly-42",
        "--debug-silence-timeout",
        "60s",
    ];
    for (base, says) in [
        (
            &full,
            "the queue is full; its retry in 30s would come after --timeout 2s",
        ),
        (&stalls, "no answer to the submission came within 2s"),
    ] {
        let (_, message) = ended_in_time(base, &args, 4);
        assert!(message.contains(says), "{message}");
        assert!(
            message.contains("retrying with --idempotency-key nightly-42 is safe"),
            "{message}"
        );
    }
}

#[test]
fn health_on_a_server_that_is_not_icewall_says_so_with_exit_2() {
    let not_found = |stream: &mut TcpStream| {
        respond(
            stream,
            "404 Not Found",
            "Content-Type: text/html\r\n",
            b"<html><body>Not Found</body></html>",
        );
    };
    let foreign = fake_server(move |_, stream| {
        not_found(stream);
        false
    });
    // Alive by its /healthz (many servers have one), but with no /readyz.
    let alive_only = fake_server(move |head, stream| {
        if head.starts_with("GET /healthz ") {
            let body = br#"{"status":"ok"}"#;
            respond(stream, "200 OK", "Content-Type: application/json\r\n", body);
        } else {
            not_found(stream);
        }
        false
    });
    for (base, path) in [(&foreign, "/healthz"), (&alive_only, "/readyz")] {
        let output = icewall(base, &["health"]);
        let message = exited_with(&path, &output, 2);
        assert_eq!(
            message.trim(),
            format!(
                "icewall: {base} is not an icewall server (is --server right?): it has no \
                 {path}: HTTP 404 (text/html): <html><body>Not Found</body></html>"
            )
        );
        assert_eq!(super::stdout(&output), "");
    }
}
