//! The client subcommands, run as real processes against a real server on port 0.

mod common;

use std::process::{Command, Output};

use common::{EXAMPLE_TEXT, Server};

fn icewall(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(args)
        .args(["--server", server])
        .env_remove("ICEWALL_ADMIN_TOKEN")
        .output()
        .expect("the icewall binary runs")
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
    let wall = dir.path().join("wall.txt");
    std::fs::write(&wall, EXAMPLE_TEXT).unwrap();
    let wall = wall.to_str().unwrap();

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
    assert!(
        stderr(&unreachable).contains("cannot reach the server"),
        "{}",
        stderr(&unreachable)
    );
}

#[test]
fn completions_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let output = icewall("http://127.0.0.1:1", &["completions", shell]);
        assert!(output.status.success());
        assert!(stdout(&output).contains("icewall"), "{shell}");
    }
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
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let id = server.submit_json(common::EXAMPLE_JSON);
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
