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
