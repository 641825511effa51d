//! The PostgreSQL harness itself (`common::postgres`): databases of their own on the
//! shared server, data kept across a restart and a crash of a server of a test's own,
//! and no postgres left running after the test binary, whether it exits or is killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::postgres::{PostgresServer, shared};
use crate::common::wait_until;

#[test]
fn the_shared_server_gives_each_test_a_database_of_its_own() {
    let Some(server) = shared() else { return };
    let first = server.create_database();
    let second = server.create_database();
    assert_ne!(first, second);
    for (url, name) in [(&first, "first"), (&second, "second")] {
        assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
        let create = format!("CREATE TABLE walls (name text); INSERT INTO walls VALUES ('{name}')");
        server.psql(url, &create).unwrap();
    }
    assert_eq!(
        server.psql(&first, "SELECT name FROM walls").unwrap(),
        "first"
    );
    assert_eq!(
        server.psql(&second, "SELECT name FROM walls").unwrap(),
        "second"
    );
}

#[test]
fn a_server_of_its_own_keeps_committed_rows_across_a_restart_and_a_crash() {
    // Started from a thread that ends at once: the server must not end with it.
    let started = std::thread::spawn(PostgresServer::start).join().unwrap();
    let Some(server) = started else { return };
    let url = server.create_database();
    let insert = |name: &str| {
        server
            .psql(&url, &format!("INSERT INTO walls VALUES ('{name}')"))
            .unwrap()
    };
    server.psql(&url, "CREATE TABLE walls (name text)").unwrap();
    insert("before the stop");
    server.stop();
    let refused = server.psql(&url, "SELECT 1").unwrap_err();
    assert!(refused.contains("connection"), "{refused}");
    server.start_again();
    insert("before the crash");
    server.kill();
    server.start_again();
    assert_eq!(
        server
            .psql(
                &url,
                "SELECT string_agg(name, ', ' ORDER BY name) FROM walls"
            )
            .unwrap(),
        "before the crash, before the stop"
    );

    let postmaster = server.postmaster_pid().expect("it runs");
    let directory = server.directory().to_owned();
    drop(server);
    assert!(
        !is_running(postmaster),
        "postgres {postmaster} outlived its server"
    );
    assert!(
        !directory.exists(),
        "{} was left behind",
        directory.display()
    );
}

#[test]
fn the_shared_server_stops_and_goes_when_the_test_binary_exits() {
    let output = fixture("exit").output().unwrap();
    assert!(
        output.status.success(),
        "the fixture failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some((postmaster, directory)) = stdout.lines().find_map(shared_server_line) else {
        return; // it skipped, and said why
    };
    assert!(
        !is_running(postmaster),
        "postgres {postmaster} outlived the binary"
    );
    assert!(
        !directory.exists(),
        "{} was left behind",
        directory.display()
    );
}

#[test]
fn no_postgres_outlives_a_killed_test_binary() {
    let mut child = fixture("wait").stdout(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let found = stdout
        .lines()
        .find_map(|line| shared_server_line(&line.unwrap()));
    let Some((postmaster, directory)) = found else {
        let status = child.wait().unwrap();
        assert!(status.success(), "the fixture failed: {status}");
        return; // it skipped, and said why
    };
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the killed binary's postgres ends", || {
        !is_running(postmaster)
    });
    // Only an exit removes the directory; a SIGKILL leaves it.
    std::fs::remove_dir_all(directory).unwrap();
}

/// Which of the fixture's modes to run: `exit` returns, `wait` waits to be killed.
const FIXTURE_MODE: &str = "ICEWALL_TEST_POSTGRES_FIXTURE";
const SHARED_SERVER: &str = "shared postgres ";

/// This test binary again, running only the fixture below.
fn fixture(mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "postgres_harness::fixture_holding_the_shared_server",
            "--exact",
        ])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(FIXTURE_MODE, mode);
    command
}

/// The postmaster pid and directory the fixture printed, from one of its lines (libtest
/// may have started the line with the test's name).
fn shared_server_line(line: &str) -> Option<(u32, PathBuf)> {
    let (_, server) = line.split_once(SHARED_SERVER)?;
    let (pid, directory) = server.split_once(' ')?;
    Some((pid.parse().unwrap(), PathBuf::from(directory)))
}

/// Run by the two tests above in a test binary of its own: starts the shared server and
/// prints its postmaster and directory, then returns or waits to be killed.
#[test]
#[ignore = "a fixture: the tests above run it in a child process"]
fn fixture_holding_the_shared_server() {
    let Ok(mode) = std::env::var(FIXTURE_MODE) else {
        return;
    };
    let Some(server) = shared() else { return };
    let postmaster = server.postmaster_pid().expect("it runs");
    println!(
        "{SHARED_SERVER}{postmaster} {}",
        server.directory().display()
    );
    if mode == "wait" {
        loop {
            std::thread::park();
        }
    }
}

/// Whether process `pid` still runs (a zombie nobody reaped does not).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest);
        state.is_some_and(|state| !state.starts_with('Z'))
    })
}
