//! The client subcommands, run as real processes against a real server on port 0.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{EXAMPLE_TEXT, Gate, Server, one_worker_behind_a_gate, wait_until};

fn client_command(server: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_icewall"));
    command
        .args(args)
        .args(["--server", server])
        .env_remove("ICEWALL_ADMIN_TOKEN");
    command
}

fn icewall(server: &str, args: &[&str]) -> Output {
    client_command(server, args)
        .output()
        .expect("the icewall binary runs")
}

/// The client started and left running; `wait_with_output` collects what it printed.
/// Writes the example wall to `wall.txt` in `dir` and returns its path: the client's
/// `submit` reads its wall from a file.
fn example_wall_in(dir: &Path) -> String {
    let wall = dir.join("wall.txt");
    std::fs::write(&wall, EXAMPLE_TEXT).unwrap();
    wall.to_str().unwrap().to_owned()
}

fn spawn_icewall(server: &str, args: &[&str]) -> Child {
    client_command(server, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the icewall binary runs")
}

/// A relay between a client and the server that keeps a copy of what the client sent.
/// The server does not show that it holds a request; the relay tells a test that the
/// client's request is on its way, so that a held job is let go only then.
struct Relay {
    base: String,
    sent: Arc<Mutex<Vec<u8>>>,
    stopped: Arc<AtomicBool>,
}

impl Relay {
    fn to(server: &Server) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let upstream = server.base.trim_start_matches("http://").to_owned();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (copy, stop) = (Arc::clone(&sent), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let client = client.unwrap();
                let server = TcpStream::connect(&upstream).unwrap();
                relay_connection(client, server, Arc::clone(&copy));
            }
        });
        Relay {
            base,
            sent,
            stopped,
        }
    }

    fn has_sent(&self, text: &str) -> bool {
        let sent = self.sent.lock().unwrap();
        sent.windows(text.len())
            .any(|window| window == text.as_bytes())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}

/// Copies bytes both ways until either side closes, recording the client's after they
/// are passed on.
fn relay_connection(client: TcpStream, server: TcpStream, sent: Arc<Mutex<Vec<u8>>>) {
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut from_server, mut to_client) = (server, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buffer = [0; 8192];
        while let Ok(read @ 1..) = from_client.read(&mut buffer) {
            if to_server.write_all(&buffer[..read]).is_err() {
                break;
            }
            sent.lock().unwrap().extend_from_slice(&buffer[..read]);
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn submit_wait_query_log_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let wall = &example_wall_in(dir.path());

    let waited = icewall(
        &server.base,
        &["submit", wall, "--num-teams", "3", "--wait", "--json"],
    );
    assert!(waited.status.success(), "{}", stderr(&waited));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&waited)).unwrap();
    assert_eq!(
        (summary["days"].as_u64(), summary["cost"].as_u64()),
        (Some(31), Some(32233500))
    );

    let submitted = icewall(&server.base, &["submit", wall]);
    assert!(submitted.status.success());
    let id = stdout(&submitted).trim().to_owned();
    assert_eq!(id.len(), 36);
    server.wait_finished(&id);
    assert_eq!(
        stdout(&icewall(&server.base, &["status", &id])).trim(),
        "done"
    );
    let table = stdout(&icewall(&server.base, &["result", &id]));
    assert!(
        table.contains("32,233,500 Gold Dragons") && table.contains("days:     13"),
        "{table}"
    );
    let query = stdout(&icewall(
        &server.base,
        &["query", &id, "--profile", "1", "--day", "1"],
    ));
    assert!(query.contains("ice on the day: 585 cubic yards"), "{query}");
    assert!(
        query.contains("cost to date:   1,111,500 Gold Dragons"),
        "{query}"
    );
    let log = stdout(&icewall(&server.base, &["log", &id]));
    assert_eq!(
        log.lines().next(),
        Some("day 2: team 3 finished section 3 of profile 1")
    );
    assert_eq!(log.lines().count(), 18);
    let jobs = stdout(&icewall(&server.base, &["jobs"]));
    assert_eq!(jobs.lines().count(), 2);
    assert!(jobs.lines().all(|line| line.ends_with("  done")), "{jobs}");
}

#[test]
fn the_exit_code_tells_a_refusal_from_an_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--admin-token", "t"]);
    // A well-formed id the server does not know: an id that is not a UUID is now a
    // usage error, never sent (see below).
    let refused = icewall(
        &server.base,
        &["status", "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e70"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stderr(&refused).trim(), "icewall: Invalid job_id");
    let bad_wall = dir.path().join("bad.txt");
    std::fs::write(&bad_wall, "1 2\n3 31\n").unwrap();
    let refused = icewall(&server.base, &["submit", bad_wall.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("line 2 (profile 2), column 2: height `31` is outside 0..=30")
    );
    let missing = icewall(&server.base, &["submit", "/nonexistent/wall.txt"]);
    assert_eq!(missing.status.code(), Some(2));
    let no_token = icewall(&server.base, &["shutdown"]);
    assert_eq!(no_token.status.code(), Some(1));
    assert!(stderr(&no_token).contains("Authorization: Bearer"));

    let mut server = server;
    let stopped = icewall(&server.base, &["shutdown", "--token", "t"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(server.wait_exit().success());
    let unreachable = icewall(&server.base, &["jobs"]);
    assert_eq!(unreachable.status.code(), Some(3));
    let said = stderr(&unreachable);
    assert!(said.contains("cannot reach the server"), "{said}");
    // The server's address once: the transport's own words repeated it with the path.
    assert_eq!(said.matches(server.base.as_str()).count(), 1, "{said}");
}

/// The binary with no `--server`, for the subcommands that have none.
fn icewall_local(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(args)
        .output()
        .expect("the icewall binary runs")
}

#[test]
fn completions_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let output = icewall_local(&["completions", shell]);
        assert!(output.status.success());
        assert!(stdout(&output).contains("icewall"), "{shell}");
    }
    // As every subcommand's output: a full disk is an error, exit 2, not a panic.
    let full = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(["completions", "bash"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(2), "{}", stderr(&full));
    assert_eq!(
        stderr(&full).trim_end(),
        "icewall: cannot write output: No space left on device (os error 28)"
    );
    let mut closed = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before anything is read, as `icewall completions bash | head -c 0` does.
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    assert!(closed.status.success(), "{}", stderr(&closed));
    assert_eq!(stderr(&closed), "");
    let version = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&version).trim(),
        format!("icewall {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_id_that_is_not_a_job_id_is_a_usage_error_and_never_sent() {
    let server = Server::start(&[]);
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    server.wait_finished(&id);
    for bad in [
        "../graceful_shutdown",
        "../../api/graceful_shutdown",
        "x/../../graceful_shutdown?",
        "",
        &format!("{id}/../../graceful_shutdown"),
    ] {
        let runs: [Vec<&str>; 4] = [
            vec!["status", bad],
            vec!["result", bad],
            vec!["query", bad, "--profile", "1", "--day", "1"],
            vec!["log", bad],
        ];
        for args in runs {
            let output = icewall(&server.base, &args);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{args:?}: {}",
                stdout(&output)
            );
            assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
            let message = stderr(&output);
            assert!(
                message.contains(&format!("'{bad}'")) && message.contains("not a job id"),
                "{args:?}: {message}"
            );
        }
    }
    // Nothing reached the server: it is up, and the good id still works.
    assert_eq!(server.get("/api/num_jobs").status, 200);
    let status = icewall(&server.base, &["status", &id]);
    assert_eq!(stdout(&status).trim(), "done", "{}", stderr(&status));
    assert!(server.shutdown().success());
}

#[test]
fn a_profile_or_day_the_server_would_refuse_is_a_usage_error_and_never_sent() {
    let id = "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e70";
    // No server listens there: a value sent would be exit 3, unreachable.
    let nowhere = "http://127.0.0.1:1";
    for (flag, value) in [
        ("--profile", "0"),
        ("--day", "0"),
        ("--day", "9223372036854775808"),
        ("--profile", "-1"),
    ] {
        let mut args = vec!["query", id, "--profile", "1", "--day", "1"];
        let at = args.iter().position(|arg| *arg == flag).unwrap() + 1;
        args[at] = value;
        let output = icewall(nowhere, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(flag),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let largest = icewall(
        nowhere,
        &[
            "query",
            id,
            "--profile",
            "1",
            "--day",
            "9223372036854775807",
        ],
    );
    assert_eq!(largest.status.code(), Some(3), "{}", stderr(&largest));
}

#[test]
fn server_flag_is_on_the_client_subcommands_only_and_every_argument_has_help() {
    let serve = stdout(&icewall_local(&["serve", "--help"]));
    assert!(serve.contains("--bind"), "{serve}");
    assert!(!serve.contains("--server"), "{serve}");
    let simulate = stdout(&icewall_local(&["simulate", "--help"]));
    assert!(!simulate.contains("--server"), "{simulate}");
    let refused = icewall_local(&["serve", "--server", "http://127.0.0.1:1"]);
    assert_eq!(refused.status.code(), Some(2));
    for command in [
        "submit", "status", "result", "query", "log", "jobs", "cancel", "delete", "health",
        "shutdown",
    ] {
        let help = stdout(&icewall_local(&[command, "--help"]));
        assert!(help.contains("--server <URL>"), "{command}: {help}");
    }
    let query = stdout(&icewall_local(&["query", "--help"]));
    for argument in ["<ID>", "--profile <PROFILE>", "--day <DAY>"] {
        let line = query
            .lines()
            .find(|line| line.trim_start().starts_with(argument))
            .unwrap_or_else(|| panic!("{argument} in {query}"));
        assert!(
            line.trim_start().len() > argument.len() + 10,
            "{argument} has no help: {line}"
        );
    }
}

/// A TLS endpoint on loopback with a certificate from a private CA; it answers every
/// request as a healthy, ready server would, then closes the connection.
struct TlsEndpoint {
    base: String,
    ca_pem: String,
}

fn tls_endpoint(connections: usize) -> TlsEndpoint {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use ureq::rustls;

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream.unwrap());
            let mut head = Vec::new();
            let mut reader = BufReader::new(&mut tls);
            // A client that refuses the certificate ends the handshake: nothing to answer.
            while reader
                .read_until(b'\n', &mut head)
                .is_ok_and(|read| read > 2)
            {}
            if head.is_empty() {
                continue;
            }
            let body = r#"{"status":"ready"}"#;
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    TlsEndpoint {
        base,
        ca_pem: ca.pem(),
    }
}

#[test]
fn https_reaches_a_server_whose_ca_is_given_and_refuses_one_it_does_not_trust() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = tls_endpoint(3);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &endpoint.ca_pem).unwrap();
    let trusted = icewall(
        &endpoint.base,
        &["health", "--ca-cert", ca.to_str().unwrap()],
    );
    assert_eq!(trusted.status.code(), Some(0), "{}", stderr(&trusted));
    assert_eq!(stdout(&trusted).trim(), "ready");
    let untrusted = icewall(&endpoint.base, &["health"]);
    assert_eq!(untrusted.status.code(), Some(3), "{}", stderr(&untrusted));
    assert!(
        stderr(&untrusted).contains("UnknownIssuer"),
        "{}",
        stderr(&untrusted)
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let bad_ca = icewall(
        &endpoint.base,
        &["health", "--ca-cert", not_pem.to_str().unwrap()],
    );
    assert_eq!(bad_ca.status.code(), Some(2), "{}", stderr(&bad_ca));
    assert!(stderr(&bad_ca).contains("not.pem"), "{}", stderr(&bad_ca));
}

#[test]
fn a_body_over_the_limit_is_reported_with_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--max-body", "1000"]);
    // Far past the limit and the server's drain allowance: it answers 413 on the
    // declared length and closes while the client is still writing.
    let wall = dir.path().join("huge.txt");
    std::fs::write(&wall, "1 2\n".repeat(8 * 1024 * 1024)).unwrap();
    // The client's own limit is higher: the server's refusal is what it prints.
    let output = icewall(
        &server.base,
        &["submit", wall.to_str().unwrap(), "--max-body", "64MiB"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim(),
        "icewall: the request body is larger than the limit of 1000 bytes"
    );
    assert_eq!(server.listed_jobs(), 0);
}

#[test]
fn a_malformed_server_url_is_a_usage_error_naming_it() {
    for url in [
        "127.0.0.1:8080",
        "htp://127.0.0.1:8080",
        "http://",
        "not a url",
    ] {
        let output = icewall(url, &["jobs"]);
        assert_eq!(output.status.code(), Some(2), "{url}: {}", stderr(&output));
        assert!(stderr(&output).contains(url), "{url}: {}", stderr(&output));
    }
}

#[test]
fn a_submission_timeout_of_zero_is_a_usage_error_and_never_sent() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let wall = example_wall_in(dir.path());
    let output = icewall(&server.base, &["submit", &wall, "--wait", "--timeout", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--timeout"), "{}", stderr(&output));
    assert_eq!(server.listed_jobs(), 0);
}

#[test]
fn local_mistakes_exit_2_in_every_subcommand_and_control_bytes_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let directory = dir.path().to_str().unwrap();
    for file in ["/nonexistent/wall.txt", directory] {
        let submitted = icewall(&server.base, &["submit", file]);
        let simulated = icewall_local(&["simulate", file]);
        for output in [&submitted, &simulated] {
            assert_eq!(output.status.code(), Some(2), "{file}: {}", stderr(output));
            assert!(
                stderr(output).starts_with(&format!("icewall: cannot read {file}: ")),
                "{}",
                stderr(output)
            );
        }
    }
    let hostile = dir.path().join("hostile.txt");
    std::fs::write(&hostile, "1 2\x1b[31mX\n").unwrap();
    let hostile = hostile.to_str().unwrap();
    let submitted = icewall(&server.base, &["submit", hostile]);
    let simulated = icewall_local(&["simulate", hostile]);
    for output in [&submitted, &simulated] {
        assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
        assert!(!output.stderr.contains(&0x1b), "{:?}", stderr(output));
        assert!(
            stderr(output).contains(r"`2\u{1b}[31mX`"),
            "{}",
            stderr(output)
        );
    }
}

#[test]
fn jobs_pages_with_after_validates_limit_and_prints_the_apis_json() {
    let server = Server::start(&[]);
    let ids: Vec<String> = (0..3)
        .map(|_| server.submit_json(crate::common::EXAMPLE_JSON))
        .collect();
    for limit in ["0", "1001"] {
        let output = icewall(&server.base, &["jobs", "--limit", limit]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{limit}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("1..=1000"), "{}", stderr(&output));
    }
    // Oldest first asked for: the default is newest first.
    let first = stdout(&icewall(
        &server.base,
        &["jobs", "--limit", "1", "--order", "oldest"],
    ));
    assert!(
        first.starts_with(&ids[0]) && first.lines().count() == 1,
        "{first}"
    );
    let rest = stdout(&icewall(
        &server.base,
        &["jobs", "--after", &ids[0], "--order", "oldest"],
    ));
    let listed: Vec<&str> = rest.lines().map(|line| &line[..36]).collect();
    assert_eq!(listed, [ids[1].as_str(), ids[2].as_str()]);
    // Rows carry finished_at: finished, so that both reads see the same rows.
    for id in &ids {
        server.wait_finished(id);
    }
    let json = icewall(
        &server.base,
        &["jobs", "--json", "--limit", "2", "--order", "oldest"],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(printed, server.get("/api/jobs?limit=2").json()["data"]);
    // Not a job id: refused before anything is sent, like every id the client takes.
    let bad_after = icewall(&server.base, &["jobs", "--after", "x&limit=5"]);
    assert_eq!(bad_after.status.code(), Some(2), "{}", stderr(&bad_after));
}

#[test]
fn delete_removes_a_done_job_and_cancel_leaves_a_done_job_alone() {
    let server = Server::start(&[]);
    let kept = server.submit_json(crate::common::EXAMPLE_JSON);
    let deleted = server.submit_json(crate::common::EXAMPLE_JSON);
    server.wait_finished(&kept);
    server.wait_finished(&deleted);

    let cancel = icewall(&server.base, &["cancel", &kept]);
    assert_eq!(cancel.status.code(), Some(1), "{}", stderr(&cancel));
    assert!(
        stderr(&cancel).contains("the job is done; only a queued job can be cancelled"),
        "{}",
        stderr(&cancel)
    );
    assert_eq!(
        stdout(&icewall(&server.base, &["status", &kept])).trim(),
        "done"
    );

    // A job's request may share a journal file with others for a moment after it is
    // done; the server answers 409 "retry in a moment" until then.
    let mut delete = icewall(&server.base, &["delete", &deleted]);
    crate::common::wait_until("the job can be deleted", || {
        if stderr(&delete).contains("retry in a moment") {
            delete = icewall(&server.base, &["delete", &deleted]);
        }
        !stderr(&delete).contains("retry in a moment")
    });
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert_eq!(stdout(&delete).trim(), format!("deleted {deleted}"));
    let gone = icewall(&server.base, &["status", &deleted]);
    assert_eq!(gone.status.code(), Some(1));
    let again = icewall(&server.base, &["delete", &deleted]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr(&again).trim(), "icewall: Invalid job_id");
}

#[test]
fn health_tells_ready_from_not_ready_from_unreachable() {
    // The job submitted below is held, so the server is still draining when asked.
    let gate = Gate::closed();
    let mut server = Server::start(&gate.args(&[]));
    let ready = icewall(&server.base, &["health"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert_eq!(stdout(&ready).trim(), "ready");
    // A job in flight keeps a draining server up, and not ready.
    server.submit_json(crate::common::EXAMPLE_JSON);
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    let draining = icewall(&server.base, &["health"]);
    assert_eq!(draining.status.code(), Some(1), "{}", stderr(&draining));
    assert!(
        stderr(&draining).starts_with("icewall: not ready: "),
        "{}",
        stderr(&draining)
    );
    gate.open();
    assert!(server.wait_exit().success());
    let gone = icewall(&server.base, &["health"]);
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
}

#[test]
fn submit_retries_after_a_full_queue_and_makes_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&["--max-queue", "1"]));
    let running = server.submit_json(crate::common::EXAMPLE_JSON);
    crate::common::wait_until("the first job runs", || {
        server.get(&format!("/api/get_results/{running}")).json()["status"] == "running"
    });
    server.submit_json(crate::common::EXAMPLE_JSON);
    let wall = &example_wall_in(dir.path());

    let no_retry = icewall(&server.base, &["submit", wall, "--retries", "0"]);
    assert_eq!(no_retry.status.code(), Some(1), "{}", stderr(&no_retry));
    assert_eq!(server.listed_jobs(), 2);

    // The queue stays full until the retrying client has been refused too.
    let retrying = spawn_icewall(&server.base, &["submit", wall, "--retry-for", "30s"]);
    wait_until("the second refusal", || queue_full_refusals(&server) == 2);
    gate.open();
    let retried = retrying.wait_with_output().unwrap();
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(
        stderr(&retried).contains("retrying in 1s"),
        "{}",
        stderr(&retried)
    );
    let id = stdout(&retried).trim().to_owned();
    assert_eq!(server.listed_jobs(), 3);
    assert_eq!(server.wait_finished(&id)["status"], "done");
}

#[test]
fn the_summary_json_is_the_same_from_the_api_result_submit_wait_and_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let wall = &example_wall_in(dir.path());

    let waited = icewall(&server.base, &["submit", wall, "--wait", "--json"]);
    assert!(waited.status.success(), "{}", stderr(&waited));
    let id = stdout(&icewall(&server.base, &["submit", wall]))
        .trim()
        .to_owned();
    server.wait_finished(&id);
    let result = icewall(&server.base, &["result", &id, "--json"]);
    let simulated = icewall_local(&["simulate", wall, "--json"]);
    #[derive(serde::Deserialize)]
    struct Done<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let api = server.get(&format!("/api/get_results/{id}")).body;
    let api: Done = serde_json::from_str(&api).unwrap();
    let api = api.data.get();
    assert!(
        api.starts_with(r#"{"days":13,"num_teams":null,"ice":"#),
        "{api}"
    );
    assert_eq!(stdout(&waited).trim(), api);
    assert_eq!(stdout(&result).trim(), api);
    assert_eq!(stdout(&simulated).trim(), api);
}

#[test]
fn jobs_lists_the_newest_first_and_filters_by_status_and_order() {
    let server = Server::start(&["--debug-panic-on-num-teams", "7"]);
    let done: Vec<String> = (0..3)
        .map(|_| server.submit_json(crate::common::EXAMPLE_JSON))
        .collect();
    let failed = server.submit_json(r#"{"profiles": [[1]], "num_teams": 7}"#);
    for id in done.iter().chain([&failed]) {
        server.wait_finished(id);
    }
    let ids_of = |args: &[&str]| -> Vec<String> {
        let output = icewall(&server.base, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
            .lines()
            .map(|line| {
                // id, creation time (RFC 3339), status
                let fields: Vec<&str> = line.split("  ").collect();
                assert_eq!(fields.len(), 3, "{line}");
                assert!(
                    fields[1].ends_with('Z') && fields[1].contains('T'),
                    "{line}"
                );
                fields[0].to_owned()
            })
            .collect()
    };
    let newest_first = [
        failed.clone(),
        done[2].clone(),
        done[1].clone(),
        done[0].clone(),
    ];
    assert_eq!(ids_of(&["jobs"]), newest_first);
    assert_eq!(ids_of(&["jobs", "--status", "failed"]), [failed.as_str()]);
    assert_eq!(
        ids_of(&["jobs", "--status", "done", "--limit", "2"]),
        done[1..].iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        ids_of(&[
            "jobs", "--status", "done", "--order", "oldest", "--after", &done[0]
        ]),
        done[1..]
    );
    assert_eq!(ids_of(&["jobs", "--after", &done[1]]), [done[0].clone()]);
    assert!(ids_of(&["jobs", "--status", "queued"]).is_empty());
    for bad in [["--status", "finished"], ["--order", "sideways"]] {
        let output = icewall(&server.base, &["jobs", bad[0], bad[1]]);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&output).contains(bad[1]), "{}", stderr(&output));
    }
}

/// The sum of the server's metric series that start with `series`.
fn metric_sum(server: &Server, series: &str) -> u64 {
    let metrics = server.get("/metrics").body;
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// How many `/api/get_results` requests the server has answered.
fn results_requests(server: &Server) -> u64 {
    metric_sum(
        server,
        "icewall_http_request_duration_seconds_count{route=\"/api/get_results/{id}\"",
    )
}

/// How many submissions the server has refused with a full queue.
fn queue_full_refusals(server: &Server) -> u64 {
    metric_sum(server, "icewall_jobs_rejected_total{reason=\"queue_full\"}")
}

#[test]
fn submit_wait_holds_one_request_on_the_server_instead_of_polling() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.args(&[]));
    let relay = Relay::to(&server);
    let wall = example_wall_in(dir.path());
    let waiting = spawn_icewall(
        &relay.base,
        &["submit", &wall, "--wait", "--json", "--timeout", "50s"],
    );
    wait_until("the client asks for the result", || {
        relay.has_sent("GET /api/get_results/")
    });
    gate.open();
    let waited = waiting.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", stderr(&waited));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&waited)).unwrap();
    assert_eq!(summary["cost"], 32233500);
    // The job was held when the client first asked: polling would have asked again,
    // the held request once.
    assert_eq!(results_requests(&server), 1);
}

#[test]
fn submit_wait_gives_up_at_its_timeout_with_exit_4_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.args(&[]));
    let wall = example_wall_in(dir.path());
    let waited = icewall(
        &server.base,
        &["submit", &wall, "--wait", "--timeout", "1s"],
    );
    assert_eq!(waited.status.code(), Some(4), "{}", stderr(&waited));
    let message = stderr(&waited);
    assert!(
        message.contains("is still") && message.contains("after 1s"),
        "{message}"
    );
    let listed = server.get("/api/jobs").json()["data"].clone();
    let id = listed[0]["job_id"].as_str().unwrap();
    assert!(message.contains(id), "{message}");
    let status = server.get(&format!("/api/get_results/{id}")).json()["status"].clone();
    assert!(status == "queued" || status == "running", "{status}");
    // --timeout goes with --wait only.
    let output = icewall(&server.base, &["submit", &wall, "--timeout", "1s"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn status_waits_for_the_job_when_asked() {
    let gate = Gate::closed();
    let server = Server::start(&gate.args(&[]));
    let relay = Relay::to(&server);
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    let waiting = spawn_icewall(&relay.base, &["status", &id, "--wait", "30s"]);
    // Held until `status` has asked: it can say `done` only by waiting.
    wait_until("status asks for the job", || {
        relay.has_sent("GET /api/get_results/")
    });
    gate.open();
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "done");
}

#[test]
fn a_wait_answered_early_is_not_asked_again_at_once() {
    let (gate, server) = one_worker_behind_a_gate();
    let held = server.submit_json(crate::common::EXAMPLE_JSON);
    let queued = server.submit_json(crate::common::EXAMPLE_JSON);
    // A draining server answers every wait at once: the queued job waits for the held
    // one, which waits at the gate.
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    let before = results_requests(&server);
    let output = icewall(&server.base, &["status", &queued, "--wait", "3s"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "queued");
    let asked = results_requests(&server) - before;
    assert!(
        (2..=10).contains(&asked),
        "asked {asked} times in 3 s for a job whose waits came back at once"
    );
    gate.open();
    assert_eq!(server.wait_finished(&held)["status"], "done");
}

#[test]
fn a_server_whose_max_wait_is_short_is_polled_and_the_job_is_named_if_the_wait_fails() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.args(&["--max-wait", "1s"]));
    let wall = example_wall_in(dir.path());
    let waiting = spawn_icewall(&server.base, &["submit", &wall, "--wait", "--json"]);
    wait_until("the job is submitted", || {
        server.get("/api/jobs").json()["data"][0]["job_id"].is_string()
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    gate.open();
    let waited = waiting.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", stderr(&waited));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&waited)).unwrap();
    assert_eq!(summary["cost"], 32233500);

    // The server goes away while the client waits: the job was made, and the error
    // names it.
    gate.close();
    let relay = Relay::to(&server);
    let waiting = spawn_icewall(&relay.base, &["submit", &wall, "--wait"]);
    wait_until("the client waits for its job", || {
        relay.has_sent("GET /api/get_results/")
    });
    let listed = server.get("/api/jobs?order=newest").json()["data"].clone();
    let id = listed[0]["job_id"].as_str().unwrap().to_owned();
    server.kill9();
    let waited = waiting.wait_with_output().unwrap();
    assert_eq!(waited.status.code(), Some(3), "{}", stderr(&waited));
    assert!(stderr(&waited).contains(&id), "{}", stderr(&waited));
}

#[test]
fn header_values_no_request_can_carry_are_usage_errors_and_the_token_is_not_shown() {
    let server = Server::start(&[]);
    let wall = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wall.path(), EXAMPLE_TEXT).unwrap();
    let wall = wall.path().to_str().unwrap();
    for key in ["é", "a b", "line\nbreak", ""] {
        let output = icewall(&server.base, &["submit", wall, "--idempotency-key", key]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{key:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("Idempotency-Key"),
            "{}",
            stderr(&output)
        );
    }
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    for (command, token) in [
        (vec!["shutdown"], "sékret"),
        (vec!["delete", &id], "line\nhidden"),
        (vec!["cancel", &id], " padded-hidden"),
    ] {
        let mut args = command.clone();
        args.extend(["--token", token]);
        let output = icewall(&server.base, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let said = stderr(&output);
        assert!(said.contains("admin token"), "{said}");
        assert!(
            !said.contains("kret") && !said.contains("hidden") && !said.contains('é'),
            "the token is shown: {said}"
        );
    }
    assert_eq!(server.get("/healthz").status, 200, "nothing was sent");
    // Durations take a bare number of seconds, as every other flag does.
    let output = icewall(&server.base, &["status", &id, "--wait", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn submit_reads_no_more_than_the_largest_body() {
    let server = Server::start(&[]);
    let output = icewall(&server.base, &["submit", "/dev/zero", "--max-body", "1MiB"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("larger than --max-body (1048576 bytes)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        server.get("/api/jobs").json()["data"],
        serde_json::json!([])
    );
}

#[test]
fn a_reader_that_stops_early_is_no_error_and_a_full_output_is_named() {
    let server = Server::start(&[]);
    // A team log of some 100 KB, more than a pipe holds.
    let profile = vec!["0"; 2000].join(" ");
    let reply = server.post(
        "/api/simulate?num_teams=1",
        "text/plain",
        profile.as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["job_id"].as_str().unwrap().to_owned();
    server.wait_finished(&id);
    let mut log = spawn_icewall(&server.base, &["log", &id]);
    let mut first = [0; 10];
    log.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // Its stdout is closed now, as `icewall log ID | head -c 10` closes it.
    let output = log.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");

    let output = client_command(&server.base, &["status", &id])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot write output: No space left on device"),
        "{}",
        stderr(&output)
    );
}

/// A server that answers every request with `body` as JSON: what a wrong server, or a
/// hostile one, sends.
fn answering(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn odd_answers_are_errors_and_control_bytes_from_the_server_are_escaped() {
    let id = "01a22fb2-0a75-714d-8ce2-6e75ec9a9742";
    let empty = answering("{}");
    for args in [
        vec!["query", id, "--profile", "1", "--day", "1"],
        vec!["delete", id],
        vec!["cancel", id],
        vec!["shutdown"],
        vec!["health"],
    ] {
        let output = icewall(&empty, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stdout(&output)
        );
        assert_eq!(stdout(&output), "", "{args:?}");
        assert!(
            stderr(&output).contains("the server sent an answer this client cannot read"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let colouring = answering(
        r#"{"status":"do\u001b[31mne","data":[{"job_id":"x\u001b[2Jy","status":"done"}]}"#,
    );
    for args in [vec!["status", id], vec!["jobs"]] {
        let output = icewall(&colouring, &args);
        assert!(
            !output.stdout.contains(&0x1b),
            "{args:?}: {:?}",
            stdout(&output)
        );
        assert!(
            stdout(&output).contains(r"\u{1b}"),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn a_result_longer_than_the_servers_summary_is_read_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--max-summary-profiles", "2"]);
    // Five profiles, more than a summary holds and more than one page of 2.
    let wall = dir.path().join("wall.txt");
    std::fs::write(&wall, "21 25 28\n17\n17 22 17 19 17\n5\n29 0\n").unwrap();
    let wall = wall.to_str().unwrap();
    let id = stdout(&icewall(&server.base, &["submit", wall]))
        .trim()
        .to_owned();
    server.wait_finished(&id);
    let summary = server.get(&format!("/api/get_results/{id}")).json();
    assert_eq!(summary["data"]["profiles_truncated"], true, "{summary}");

    let result = icewall(&server.base, &["result", &id, "--json"]);
    assert!(result.status.success(), "{}", stderr(&result));
    let simulated = icewall_local(&["simulate", wall, "--json"]);
    assert_eq!(stdout(&result), stdout(&simulated));
    let table = icewall(&server.base, &["result", &id]);
    let local = icewall_local(&["simulate", wall]);
    assert_eq!(stdout(&table), stdout(&local));
    assert!(stdout(&table).contains("\n       5 "), "{}", stdout(&table));
}

#[test]
fn a_team_log_is_printed_as_it_comes() {
    // A server that sends 200 KB of a log, then nothing for a while, then the rest.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let part = "day 1: team 1 finished section 1 of profile 1\n".repeat(4500);
    let sender = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{part}",
            part.len() * 2
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(4));
        let _ = stream.write_all(part.as_bytes());
    });
    let started = std::time::Instant::now();
    let mut log = spawn_icewall(&base, &["log", "01a22fb2-0a75-714d-8ce2-6e75ec9a9742"]);
    let mut first = vec![0; 100_000];
    log.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the first part came out only after the whole log, {:?}",
        started.elapsed()
    );
    let output = log.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(first.len() + output.stdout.len(), 2 * 4500 * 46);
    sender.join().unwrap();
}

mod misbehaving_servers;

#[test]
fn a_wait_the_server_holds_longer_than_the_silence_timeout_is_not_given_up() {
    let gate = Gate::closed();
    let server = Server::start(&gate.args(&[]));
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    // The server says nothing for the 2 s it holds the request: silence it was asked for.
    let output = icewall(
        &server.base,
        &[
            "status",
            &id,
            "--wait",
            "2s",
            "--debug-silence-timeout",
            "1s",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let status = stdout(&output);
    assert!(
        status.trim() == "queued" || status.trim() == "running",
        "{status}"
    );
    gate.open();
    server.wait_finished(&id);
}
