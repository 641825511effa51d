//! The server under a wall clock that is stepped while it runs (as NTP or `date -s`
//! step it), through libfaketime reading its offset from a file: `--result-ttl` counts
//! the time that passed, not the steps, and the job records show the clock as it read
//! then, and results written before a step survive a restart; a cluster node whose
//! clock is off its database's shows its jobs' times on the latter, and its jobs are
//! claimed in the order they came; a clock before 1970 is refused at start-up.
//!
//! Skipped when libfaketime is not installed (Debian's `faketime`), unless
//! `ICEWALL_REQUIRE_FAKETIME=1` (as in CI), where that is a failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cluster::{one_row, wait_until_running};
use crate::common::{EXAMPLE_JSON, Gate, Server, poll_until, wait_until};

const REQUIRE: &str = "ICEWALL_REQUIRE_FAKETIME";

/// The library, where Debian (`/usr/lib/<triplet>/faketime/`) or a build from source
/// (`/usr/local/lib/faketime/`) installs it.
fn libfaketime() -> Option<String> {
    let triplets = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path());
    let found = triplets
        .chain(["/usr/lib".into(), "/usr/local/lib".into()])
        .map(|dir: PathBuf| dir.join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .map(|path| path.display().to_string());
    if found.is_none() {
        assert!(
            std::env::var(REQUIRE).as_deref() != Ok("1"),
            "libfaketime is not installed and {REQUIRE}=1"
        );
        eprintln!("skipped: libfaketime is not installed (apt-get install faketime)");
    }
    found
}

/// A server whose wall clock is the real one moved by the offset in `offset_file`
/// (`+0`, `+1d`, `-2d`; at first `offset`), read again at every look; its monotonic
/// clock is left alone, as a step of the wall clock leaves it.
struct SteppedServer {
    server: Server,
    offset_file: PathBuf,
}

impl SteppedServer {
    fn start(library: &str, dir: &Path, offset: &str, args: &[&str]) -> SteppedServer {
        let offset_file = dir.join("clock-offset");
        std::fs::write(&offset_file, format!("{offset}\n")).unwrap();
        let preload = format!("LD_PRELOAD={library}");
        let timestamp_file = format!("FAKETIME_TIMESTAMP_FILE={}", offset_file.display());
        let wrapper = [
            "env",
            &preload,
            &timestamp_file,
            "FAKETIME_NO_CACHE=1",
            "DONT_FAKE_MONOTONIC=1",
        ];
        let server = Server::start_under(&wrapper, dir, args);
        SteppedServer {
            server,
            offset_file,
        }
    }

    /// Steps the server's wall clock to the real one moved by `offset`: its next look
    /// at the clock sees it (`FAKETIME_NO_CACHE`).
    fn step_to(&self, offset: &str) {
        std::fs::write(&self.offset_file, format!("{offset}\n")).unwrap();
    }
}

fn finished_at(server: &Server, id: &str) -> SystemTime {
    let record = server.get(&format!("/api/jobs/{id}")).json();
    let text = record["finished_at"].as_str().unwrap().to_owned();
    humantime::parse_rfc3339(&text).unwrap()
}

#[test]
fn a_step_of_the_wall_clock_neither_expires_results_nor_keeps_them() {
    let Some(library) = libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stepped = SteppedServer::start(&library, dir.path(), "+0", &["--result-ttl", "4s"]);
    let server = &stepped.server;
    let before = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&before);
    let shown_before = finished_at(server, &before);

    // A day ahead: the result finished a moment ago, whatever the clock says now.
    stepped.step_to("+1d");
    assert_eq!(
        server.get(&format!("/api/get_results/{before}")).status,
        200,
        "a result expired at a step of the clock"
    );
    // Its record shows its times as the clock read them then, as its id does.
    assert_eq!(finished_at(server, &before), shown_before);
    let after = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&after);
    // A job of the day ahead shows its times on it, and the wait and run of a job.
    let record = server.get(&format!("/api/jobs/{after}")).json();
    let ahead = finished_at(server, &after)
        .duration_since(shown_before)
        .unwrap();
    assert!(
        ahead.abs_diff(Duration::from_secs(86_400)) < Duration::from_secs(60),
        "{ahead:?}"
    );
    assert!(record["queue_ms"].as_u64().unwrap() < 60_000, "{record}");

    // Two days back: the result finished under the clock a day ahead still goes once
    // its TTL has passed, not two days later.
    stepped.step_to("-1d");
    for id in [&before, &after] {
        assert!(
            poll_until(Duration::from_secs(20), || {
                server.get(&format!("/api/get_results/{id}")).status == 404
            }),
            "{id} was kept past its TTL after the clock was set back"
        );
    }
}

fn time_of(record: &serde_json::Value, field: &str) -> SystemTime {
    humantime::parse_rfc3339(record[field].as_str().unwrap()).unwrap()
}

#[test]
fn a_cluster_node_whose_clock_is_off_shows_its_jobs_times_on_the_databases_clock() {
    let Some(library) = libfaketime() else {
        return;
    };
    let Some((_, url)) = crate::common::postgres::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes ahead of the database's clock (this machine's).
    let stepped = SteppedServer::start(&library, dir.path(), "+10m", &["--database-url", &url]);
    let server = &stepped.server;
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    let record = server.get(&format!("/api/jobs/{id}")).json();
    let [created, started, finished] =
        ["created_at", "started_at", "finished_at"].map(|field| time_of(&record, field));
    assert!(created <= started && started <= finished, "{record}");
    let now = SystemTime::now();
    let off = now
        .duration_since(created)
        .unwrap_or_else(|early| early.duration());
    assert!(
        off < Duration::from_secs(60),
        "created {off:?} off: {record}"
    );
    assert!(record["queue_ms"].as_u64().unwrap() < 60_000, "{record}");
    let listed = server.get("/api/jobs").json();
    assert_eq!(
        listed["data"][0]["created_at"], record["created_at"],
        "{listed}"
    );
}

#[test]
fn a_server_whose_clock_reads_before_1970_refuses_to_start_saying_why() {
    let Some(library) = libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_icewall"));
    command
        .env("LD_PRELOAD", &library)
        .env("FAKETIME", "@1969-06-01 00:00:00")
        .env("DONT_FAKE_MONOTONIC", "1")
        .args(["serve", "--bind", "127.0.0.1:0"]);
    let (code, stderr) = crate::common::refused_start(command, dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("before 1970-01-01; set it"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_cluster_node_whose_clock_is_behind_does_not_have_its_jobs_claimed_first() {
    let Some(library) = libfaketime() else {
        return;
    };
    let Some((pg, url)) = crate::common::postgres::database() else {
        return;
    };
    let (runner_gate, lagging_gate) = (Gate::closed(), Gate::closed());
    // Each node's one worker held at its gate by a job of its own: the runner's taken
    // while it is the only node.
    let runner = crate::cluster::node(&url, &runner_gate.one_worker(&["--claim-ahead", "0"]));
    let held_by_runner = runner.submit_json(EXAMPLE_JSON);
    wait_until_running(pg, &url, "the runner's job to be held", 1);
    let dir = tempfile::tempdir().unwrap();
    let lagging_args = lagging_gate.one_worker(&["--database-url", &url, "--claim-ahead", "0"]);
    // An hour behind the database's clock (this machine's) and the other node's.
    let lagging = SteppedServer::start(&library, dir.path(), "-1h", &lagging_args);
    lagging.server.submit_json(EXAMPLE_JSON);
    wait_until_running(pg, &url, "the lagging node's job to be held", 2);

    let first = runner.submit_json(EXAMPLE_JSON);
    // Ids made on two nodes sort in the order the jobs came when they came further apart
    // than the nodes' measures of the database's clock can be off (half a round trip
    // each, a few milliseconds on a busy machine): the hour is what this is about.
    std::thread::sleep(Duration::from_millis(50));
    let second = lagging.server.submit_json(EXAMPLE_JSON);
    runner_gate.open();
    for id in [&held_by_runner, &first, &second] {
        runner.wait_finished(id);
    }
    let started = |id: &str| {
        one_row(
            pg,
            &url,
            &format!("SELECT started_at FROM icewall_jobs WHERE id = '{id}'"),
        )
    };
    assert!(
        started(&first) < started(&second),
        "the job accepted second, by the node an hour behind, ran first"
    );
    let newest = runner
        .get("/api/jobs?order=newest&status=done&limit=1")
        .json();
    assert_eq!(newest["data"][0]["job_id"], second.as_str(), "{newest}");
    lagging_gate.open();
}

#[test]
fn results_finished_before_the_clock_was_set_right_survive_a_restart() {
    let Some(library) = libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ttl = ["--result-ttl", "20s"];
    // A day behind, as a clock not yet set right after a boot without a battery.
    let stepped = SteppedServer::start(&library, dir.path(), "-1d", &ttl);
    let id = stepped.server.submit_json(EXAMPLE_JSON);
    stepped.server.wait_finished(&id);
    stepped.step_to("+0");
    let result = stepped.server.results.join(format!("{id}.result"));
    // The file keeps the finish time a restart reads back: on the clock set right.
    wait_until("the result's time set on the clock set right", || {
        // Gone, if it expired meanwhile: then never.
        std::fs::metadata(&result)
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| {
                let off = SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_else(|early| early.duration());
                off < Duration::from_secs(60)
            })
    });
    assert!(stepped.server.shutdown().success());
    let restarted = Server::start_in(dir.path(), &ttl);
    assert_eq!(
        restarted.get(&format!("/api/get_results/{id}")).status,
        200,
        "a result expired at the restart, a day old by the clock it was written under"
    );
}
