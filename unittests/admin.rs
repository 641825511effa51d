//! Who may do what: admin actions need the admin token when one is set, are open on a
//! loopback-only server without one, and are refused on a reachable server without one.

mod common;

use std::process::Command;

use common::Server;

#[test]
fn shutdown_needs_the_admin_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--admin-token", "s3cret-token"]);
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
    assert_eq!(server.submit_json(common::EXAMPLE_JSON).len(), 36);
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
    let id = server.submit_json(common::EXAMPLE_JSON);
    server.wait_finished(&id);
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(server.wait_exit().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.contains("no --admin-token on a non-loopback address"),
        "{log}"
    );
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn an_empty_or_padded_admin_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (token, expected) in [
        ("", "the admin token is empty"),
        (" s3cret", "whitespace"),
        ("s3cret ", "whitespace"),
        ("\ts3cret\n", "whitespace"),
        ("s3c\u{7f}ret", "control character"),
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
