//! Who may do what: admin actions need the admin token when one is set, are open on a
//! loopback-only server without one, and are refused on a reachable server without one,
//! and to other sites' web pages; requests for host names not the server's are refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{Server, read_until_closed};

#[test]
fn shutdown_needs_the_admin_token_when_one_is_set() {
    let mut server = Server::start(&["--admin-token", "s3cret-token"]);
    let missing = server.request("POST", "/api/graceful_shutdown");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.www_authenticate.as_deref(), Some("Bearer"));
    assert!(missing.reason().contains("Authorization: Bearer"));
    for wrong in [
        "Bearer s3cret-tokem",
        "Bearer s3cret-token-and-more",
        "Bearer x",
        "Bearer S3CRET-TOKEN",
    ] {
        let reply = server.request_as("GET", "/api/graceful_shutdown", wrong);
        assert_eq!(reply.status, 403, "{wrong}");
        assert_eq!(reply.reason(), "the admin token is wrong");
    }
    for no_bearer in ["Basic czNjcmV0LXRva2Vu", "Bearer ", "s3cret-token"] {
        let reply = server.request_as("POST", "/api/graceful_shutdown", no_bearer);
        assert_eq!(reply.status, 401, "{no_bearer}");
    }
    // Refused attempts change nothing: the server still takes jobs.
    assert_eq!(server.submit_json(crate::common::EXAMPLE_JSON).len(), 36);
    let allowed = server.request_as("POST", "/api/graceful_shutdown", "bearer s3cret-token");
    assert_eq!(allowed.status, 200);
    assert!(server.wait_exit().success());
}

#[test]
fn a_reachable_server_without_a_token_refuses_admin_actions_but_obeys_signals() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--bind", "0.0.0.0:0"]);
    let reply = server.request("POST", "/api/graceful_shutdown");
    assert_eq!(reply.status, 403);
    assert!(reply.reason().contains("admin actions are disabled"));
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    server.wait_finished(&id);
    server.signal("TERM");
    assert!(server.wait_exit().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.contains("no --admin-token on a non-loopback address"),
        "{log}"
    );
}

/// A request with the given headers, whatever its status: (status, body).
fn send(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = ureq::request(method, &server.url(path));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    match request.call() {
        Ok(response) => (response.status(), response.into_string().unwrap()),
        Err(ureq::Error::Status(status, response)) => (status, response.into_string().unwrap()),
        Err(error) => panic!("no HTTP answer: {error}"),
    }
}

#[test]
fn another_sites_web_page_cannot_run_admin_actions() {
    let mut server = Server::start(&[]);
    let id = server.submit_json(crate::common::EXAMPLE_JSON);
    server.wait_finished(&id);
    let own_origin = server.base.clone();
    let other_port = own_origin.replace(
        &format!(":{}", server.base.rsplit(':').next().unwrap()),
        ":1",
    );
    // What an <img>, a form or a fetch() from another page sends.
    let cross_site: [&[(&str, &str)]; 6] = [
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "same-site")],
        &[("Origin", "http://evil.example")],
        &[("Origin", "null")],
        &[("Origin", &other_port)],
        &[("Sec-Fetch-Site", "cross-site"), ("Origin", &own_origin)],
    ];
    for headers in cross_site {
        for (method, path) in [
            ("GET", "/api/graceful_shutdown".to_owned()),
            ("POST", "/api/graceful_shutdown".to_owned()),
            ("DELETE", format!("/api/jobs/{id}")),
        ] {
            let (status, body) = send(&server, method, &path, headers);
            assert_eq!(status, 403, "{method} {path} {headers:?}: {body}");
            assert!(body.contains("another site's web page"), "{body}");
            assert!(body.contains(r#""status":"error""#), "{body}");
        }
    }
    // A second Origin or Sec-Fetch-Site behind an allowed one is not let through.
    let host = server.base.trim_start_matches("http://").to_owned();
    for headers in [
        format!("Origin: {own_origin}\r\nOrigin: http://evil.example\r\n"),
        "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Site: cross-site\r\n".to_owned(),
    ] {
        let answer = server.exchange(&format!(
            "GET /api/graceful_shutdown HTTP/1.1\r\nHost: {host}\r\n{headers}\
             Connection: close\r\n\r\n"
        ));
        assert!(answer.starts_with("HTTP/1.1 400"), "{headers}: {answer}");
        assert!(answer.contains("more than one"), "{answer}");
    }
    // Nothing happened: the job is still there and the server is not shutting down.
    assert_eq!(server.get(&format!("/api/get_results/{id}")).status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    // The server's own page, or a typed URL, may.
    // (409 while the job's journal segment is still needed: it is retried.)
    let mut status = 0;
    crate::common::wait_until("the delete is done", || {
        status = send(
            &server,
            "DELETE",
            &format!("/api/jobs/{id}"),
            &[("Sec-Fetch-Site", "same-origin"), ("Origin", &own_origin)],
        )
        .0;
        status != 409
    });
    assert_eq!(status, 200);
    let (status, body) = send(
        &server,
        "GET",
        "/api/graceful_shutdown",
        &[("Sec-Fetch-Site", "none")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(server.wait_exit().success());
}

/// A GET with this exact `Host` header, over a raw connection: its status line and body.
fn get_with_host(server: &Server, host: &str) -> String {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/num_jobs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn requests_for_other_host_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for own in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "LocalHost".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let answer = get_with_host(&server, &own);
        assert!(answer.starts_with("HTTP/1.1 200"), "{own}: {answer}");
    }
    // DNS rebinding: the attacker's name now points at 127.0.0.1.
    for other in [
        format!("evil.example:{port}"),
        "localhost.evil.example".to_owned(),
    ] {
        let answer = get_with_host(&server, &other);
        assert!(answer.starts_with("HTTP/1.1 421"), "{other}: {answer}");
        assert!(answer.contains("does not answer for the host"), "{answer}");
        assert!(answer.contains(r#""status":"error""#), "{answer}");
    }
    for malformed in ["a b", "x:port", "[::1"] {
        let answer = get_with_host(&server, malformed);
        assert!(answer.starts_with("HTTP/1.1 400"), "{malformed}: {answer}");
        assert!(answer.contains("Host header"), "{answer}");
    }
    // A target in absolute form names the host, and `Host` is then ignored (RFC 9112
    // 3.2.2): also on a connection whose earlier request passed the check.
    let absolute = |target_host: &str| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
             GET http://{target_host}/api/num_jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let answer = server.exchange(&absolute(&format!("evil.example:{port}")));
    let second = answer.split("HTTP/1.1 ").nth(2).unwrap_or_default();
    assert!(second.starts_with("421"), "{answer}");
    assert!(
        second.contains("does not answer for the host `evil.example`"),
        "{answer}"
    );
    let answer = server.exchange(&absolute(&format!("localhost:{port}")));
    let second = answer.split("HTTP/1.1 ").nth(2).unwrap_or_default();
    assert!(second.starts_with("200"), "{answer}");
    // Its Host is still checked for what HTTP asks of every request; an HTTP/1.0
    // request without one is judged by its target.
    for (request, status) in [
        ("GET http://localhost/healthz HTTP/1.1\r\n", "400"),
        (
            "GET http://localhost/healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
            "400",
        ),
        ("GET http://evil.example/healthz HTTP/1.0\r\n", "421"),
    ] {
        let answer = server.exchange(&format!("{request}Connection: close\r\n\r\n"));
        assert!(
            answer.contains(&format!(" {status} ")),
            "{request}: {answer}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let named = Server::start_in(
        dir.path(),
        &["--allowed-hosts", "icewall.test,Other.Test,fqdn.test."],
    );
    for allowed in [
        "icewall.test",
        "other.test:8080",
        "127.0.0.1",
        "fqdn.test",
        "fqdn.test.",
    ] {
        let answer = get_with_host(&named, allowed);
        assert!(answer.starts_with("HTTP/1.1 200"), "{allowed}: {answer}");
    }
    assert!(get_with_host(&named, "evil.example").starts_with("HTTP/1.1 421"));

    let dir = tempfile::tempdir().unwrap();
    let any = Server::start_in(dir.path(), &["--allowed-hosts", "*"]);
    assert!(get_with_host(&any, "evil.example").starts_with("HTTP/1.1 200"));
}

#[test]
fn every_request_on_a_connection_has_its_host_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Pipelined on one keep-alive connection: an allowed host, then another name, then
    // the allowed one twice, then the allowed one alone again.
    for host in [
        "Host: localhost",
        "Host: evil.example",
        "Host: localhost\r\nHost: localhost",
        "Host: localhost",
    ] {
        write!(stream, "GET /api/num_jobs HTTP/1.1\r\n{host}\r\n\r\n").unwrap();
    }
    write!(
        stream,
        "GET /api/num_jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let answers = read_until_closed(&mut stream);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "421", "400", "200", "200"], "{answers}");
    assert!(answers.contains("more than one Host header"), "{answers}");
}

/// Runs `icewall serve` with `command`'s extra arguments and environment until it
/// exits; a server that started runs on, so it is killed at a deadline.
fn serve_until_exit(mut command: Command, dir: &std::path::Path) -> std::process::Output {
    let mut child = command
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::common::poll_until(std::time::Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn an_admin_token_no_header_can_carry_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (token, expected) in [
        ("", "the admin token is empty"),
        (" s3cret", "whitespace"),
        ("s3cret ", "whitespace"),
        ("\ts3cret\n", "whitespace"),
        ("s3c\u{7f}ret", "control character"),
        ("pässwörd", "visible ASCII only"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_icewall"));
        command.args(["serve", "--bind", "127.0.0.1:0", "--admin-token", token]);
        let output = serve_until_exit(command, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{token:?} was taken: {stderr}"
        );
        assert!(
            stderr.contains("--admin-token") && stderr.contains(expected),
            "{token:?}: {stderr}"
        );
    }
    // The same check holds for the environment variable.
    let mut command = Command::new(env!("CARGO_BIN_EXE_icewall"));
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("ICEWALL_ADMIN_TOKEN", "  ");
    let output = serve_until_exit(command, dir.path());
    assert_eq!(output.status.code(), Some(2));
}
