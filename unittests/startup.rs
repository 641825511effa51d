//! Start-up on a results directory as crashes, careless operators and damage leave
//! it: one server per directory, nothing touched by a server that cannot start, odd
//! entries reported and left alone, and a damaged journal line costing only its job.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{EXAMPLE_JSON, Gate, KilledOnDrop, Server, a_done_job_in};

/// Everything under `dir`: each path with its type, and a digest of a regular file's bytes
/// (a file removed while it is looked at is left out).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u64)> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let file_type = entry.file_type().unwrap();
            let path = entry.path();
            let contents = if file_type.is_file() {
                let mut hasher = DefaultHasher::new();
                match std::fs::read(&path) {
                    Ok(bytes) => bytes.hash(&mut hasher),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => panic!("{}: {error}", path.display()),
                }
                hasher.finish()
            } else {
                0
            };
            if file_type.is_dir() {
                pending.push(path.clone());
            }
            entries.insert(path, (format!("{file_type:?}"), contents));
        }
    }
    entries
}

/// A snapshot of a running server's `dir` once the server has stopped changing it:
/// the journal's segments made ahead are let go about two seconds after the last
/// submission, so two snapshots longer apart than that must agree.
fn settled_snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u64)> {
    let mut last = snapshot(dir);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(3));
        let now = snapshot(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("{} did not settle", dir.display());
}

/// Runs `icewall serve` with `args` until it exits; `None` if it was still running
/// after 30 s (it is killed then).
fn serve_to_exit(args: &[&str], results: &Path, logs: &Path) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .arg("serve")
        .args(args)
        .arg("--results-dir")
        .arg(results)
        .arg("--logs-dir")
        .arg(logs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !crate::common::poll_until(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    }) {
        child.kill().unwrap();
        child.wait().unwrap();
        return None;
    }
    Some(child.wait_with_output().unwrap())
}

/// The journal segments in `results` holding `id`'s line, with the line's offset.
fn journal_line_of(results: &Path, id: &str) -> (PathBuf, usize) {
    for entry in std::fs::read_dir(results).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("requests-") {
            let bytes = std::fs::read(&path).unwrap();
            let needle = format!("{{\"job_id\":\"{id}\"");
            if let Some(at) = bytes
                .windows(needle.len())
                .position(|window| window == needle.as_bytes())
            {
                return (path, at);
            }
        }
    }
    panic!("no journal line for {id}");
}

#[test]
fn a_zero_byte_in_a_journal_line_costs_only_its_own_job() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    // One runs (held at the gate), the others wait in the queue; then the server dies.
    let ids: Vec<String> = (0..5).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let results = server.results.clone();
    server.kill9();

    let (segment, line) = journal_line_of(&results, &ids[1]);
    let mut bytes = std::fs::read(&segment).unwrap();
    // Inside the request, well past the job id.
    bytes[line + 70] = 0;
    std::fs::write(&segment, &bytes).unwrap();

    let server = Server::start_in(dir.path(), &[]);
    for (index, id) in ids.iter().enumerate() {
        let reply = server.get(&format!("/api/get_results/{id}"));
        assert_eq!(reply.status, 200, "job {index} {id}: {}", reply.body);
        let result = server.wait_finished(id);
        if index == 1 {
            assert_eq!(result["status"], "failed", "{result}");
            let reason = result["reason"].as_str().unwrap();
            assert!(reason.contains("damaged on disk"), "{reason}");
        } else {
            assert_eq!(result["status"], "done", "job {index}: {result}");
            assert_eq!(result["data"]["cost"], 32233500);
        }
    }
    assert!(server.shutdown().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    assert!(
        log.contains(&format!("a damaged line at byte {} (job {})", line, ids[1])),
        "{log}"
    );

    // Its failure is stored: a second restart answers the same.
    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(server.wait_finished(&ids[1])["status"], "failed");
    assert_eq!(server.listed_jobs(), 5);
    assert!(server.shutdown().success());
}

#[test]
fn a_second_server_on_one_results_directory_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let first = Server::start_in(dir.path(), &gate.one_worker(&[]));
    let running = first.submit_json(EXAMPLE_JSON);
    let queued = first.submit_json(EXAMPLE_JSON);
    crate::common::wait_until("the first job runs", || {
        first.get(&format!("/api/get_results/{running}")).json()["status"] == "running"
    });
    let before = settled_snapshot(&first.results);

    let output = serve_to_exit(
        &["--bind", "127.0.0.1:0"],
        &first.results,
        &dir.path().join("second-logs"),
    )
    .expect("the second server refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another icewall server")
            && stderr.contains(&format!("pid {}", first.pid()))
            && stderr.contains(first.base.trim_start_matches("http://")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(
        snapshot(&first.results),
        before,
        "the directory was changed"
    );
    assert_eq!(
        first.get(&format!("/api/get_results/{queued}")).json()["status"],
        "queued"
    );
}

#[test]
fn a_server_that_cannot_bind_leaves_the_results_directory_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    let queued: Vec<String> = (0..2).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let results = server.results.clone();
    server.kill9();
    // What an earlier version's crash mid-write left too: recovery would remove it.
    std::fs::create_dir_all(results.join("tmp")).unwrap();
    std::fs::write(results.join("tmp/leftover.result.tmp"), b"half").unwrap();
    let before = snapshot(&results);

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = serve_to_exit(&["--bind", &address], &results, &dir.path().join("logs"))
        .expect("a server that cannot bind exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert_eq!(snapshot(&results), before, "the directory was changed");
    drop(taken);

    let server = Server::start_in(dir.path(), &[]);
    for id in &queued {
        assert_eq!(server.wait_finished(id)["status"], "done");
    }
    assert!(server.shutdown().success());
}

#[test]
fn a_malformed_bind_address_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bind in ["nonsense", "127.0.0.1", "127.0.0.1:99999"] {
        let output = serve_to_exit(
            &["--bind", bind],
            &dir.path().join("results"),
            &dir.path().join("logs"),
        )
        .expect("a bad flag ends the start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bind}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{bind}' for '--bind <BIND>'")),
            "{stderr}"
        );
    }
    assert_eq!(snapshot(dir.path()), BTreeMap::new());
}

/// `icewall serve` with `args` and `environment`, which a usage error ends at once.
fn refused_usage(args: &[&str], environment: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .arg("serve")
        .args(args)
        .envs(environment.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable_and_a_secret_is_not_printed() {
    let stderr = refused_usage(&[], &[("ICEWALL_WORKERS", "abc")]);
    assert!(
        stderr.contains("invalid value 'abc' for '--workers <WORKERS>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tip: the value came from the environment variable ICEWALL_WORKERS"),
        "{stderr}"
    );
    // The flag given wins over the variable, and is what was wrong.
    let stderr = refused_usage(&["--workers", "x"], &[("ICEWALL_WORKERS", "abc")]);
    assert!(stderr.contains("invalid value 'x'"), "{stderr}");
    assert!(!stderr.contains("environment variable"), "{stderr}");

    for (args, environment) in [
        (
            &[][..],
            &[("ICEWALL_ADMIN_TOKEN", "s3cret-t\u{f6}k\u{e9}n")][..],
        ),
        (&["--admin-token=s3cret-token "][..], &[][..]),
    ] {
        let stderr = refused_usage(args, environment);
        assert!(
            !stderr.contains("s3cret"),
            "the token was printed: {stderr}"
        );
        assert!(
            stderr.contains("invalid value '***' for '--admin-token <ADMIN_TOKEN>'"),
            "{stderr}"
        );
    }
}

#[test]
fn a_refused_start_leaves_no_log_behind_and_writes_nothing_into_a_running_servers_log() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let logs = dir.path().join("logs/of/icewall");
    let output = serve_to_exit(&["--bind", &address], &dir.path().join("results"), &logs)
        .expect("a server that cannot bind exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert_eq!(
        snapshot(dir.path()),
        BTreeMap::new(),
        "the refused start left files behind"
    );
    drop(taken);

    // A second server on the first one's directories: its refusal is its own news,
    // not a line in the running server's log that reads as that server's end.
    let first = Server::start_in(dir.path(), &[]);
    let log = dir.path().join("logs/icewall.log");
    crate::common::wait_until("the first server logs its start", || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("INFO started"))
    });
    let output = serve_to_exit(
        &["--bind", "127.0.0.1:0"],
        &first.results,
        &dir.path().join("logs"),
    )
    .expect("the second server refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another icewall server"),
        "{stderr}"
    );
    assert!(first.shutdown().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("ERRO"), "{text}");
    assert!(text.ends_with("INFO stopped\n"), "{text}");
}

/// `request` sent to `address` on a connection of its own; the answer, or what came
/// of it within 5 s.
fn exchange_within_5s(address: &str, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(error) => format!("no answer within 5 s ({error}): {answer:?}"),
    }
}

#[test]
fn while_it_recovers_its_jobs_the_server_is_alive_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("recover");
    let address = {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let mut server = KilledOnDrop(
        Command::new(env!("CARGO_BIN_EXE_icewall"))
            .args(["serve", "--bind", &address])
            .arg("--results-dir")
            .arg(dir.path().join("results"))
            .arg("--logs-dir")
            .arg(dir.path().join("logs"))
            .arg("--debug-start-gate")
            .arg(&gate)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut server.0;
    crate::common::wait_until("the server binds", || {
        std::net::TcpStream::connect(&address).is_ok()
    });
    let get = |path: &str| {
        exchange_within_5s(
            &address,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
    };
    let alive = get("/healthz");
    assert!(alive.starts_with("HTTP/1.1 200 OK\r\n"), "{alive}");
    assert!(alive.ends_with(r#"{"status":"ok"}"#), "{alive}");
    for answer in [
        get("/readyz"),
        exchange_within_5s(
            &address,
            "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n1 2",
        ),
    ] {
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
        assert!(answer.contains("the server is starting"), "{answer}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the server stopped");

    std::fs::write(&gate, b"").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, format!("listening on http://{address}\n"));
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn entries_that_are_not_files_are_reported_by_name_and_start_up_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (server, done) = a_done_job_in(dir.path(), &[]);
    let results = server.results.clone();
    assert!(server.shutdown().success());

    let odd = [
        ("requests-0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e70.jsonl", "dir"),
        (
            "requests-0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e71.jsonl",
            "fifo",
        ),
        ("idempotency-keys.jsonl", "fifo"),
        ("0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e72.result", "dir"),
    ];
    for (name, kind) in odd {
        let path = results.join(name);
        if kind == "dir" {
            std::fs::create_dir(&path).unwrap();
        } else {
            assert!(
                Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success()
            );
        }
    }
    let mut server = start_with_deadline(dir.path());
    assert_eq!(server.wait_finished(&done)["data"]["cost"], 32233500);
    let keyed = server.post_with(
        "/api/simulate",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "odd-keys-file"),
        ],
        EXAMPLE_JSON.as_bytes(),
    );
    assert_eq!(keyed.status, 503, "{}", keyed.body);
    let plain = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&plain)["status"], "done");
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    assert!(server.wait_exit().success());
    let log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap();
    for (name, kind) in odd {
        let kind = if kind == "dir" {
            "a directory"
        } else {
            "a FIFO"
        };
        assert!(
            log.contains(name)
                && log
                    .lines()
                    .any(|line| line.contains(name) && line.contains(kind)),
            "{name}: {log}"
        );
        let left = std::fs::symlink_metadata(results.join(name))
            .unwrap()
            .file_type();
        assert!(left.is_dir() || left.is_fifo(), "{name} was left alone");
    }
}

/// `Server::start_in`, but failing the test (and killing the server) instead of
/// hanging when start-up blocks.
fn start_with_deadline(dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(["serve", "--bind", "127.0.0.1:0", "--results-dir"])
        .arg(dir.join("results"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let _ = sender.send(String::from_utf8_lossy(&line).into_owned());
    });
    let line = receiver.recv_timeout(Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("start-up blocked");
    assert!(line.starts_with("listening on "), "{line}");
    // It starts: now run it as the other tests do.
    Server::start_in(dir, &[])
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    // A soft limit of 256 as a shell might hand it down, a hard one of 4096.
    let server = Server::start_under(&["prlimit", "--nofile=256:4096", "--"], dir.path(), &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn a_limit_of_open_files_too_low_to_serve_is_refused_at_start_up_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=30:30", "--"])
        .arg(env!("CARGO_BIN_EXE_icewall"))
        .args(["serve", "--bind", "127.0.0.1:0", "--http-workers", "2"]);
    let output = crate::common::in_dirs_of(&mut command, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = output;
    if !crate::common::poll_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    }) {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the server started under a limit of 30 open files");
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the limit of open files is 30") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !dir.path().join("results").exists(),
        "the results directory was touched"
    );
}

#[test]
fn a_start_up_stops_at_once_on_sigterm_even_as_a_containers_first_process() {
    // The kernel skips a signal's default action for a PID namespace's first process,
    // as a container's entry point is: there the start-up must take SIGTERM itself.
    let namespaces = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status();
    if !namespaces.is_ok_and(|status| status.success()) {
        // Only root may make a PID namespace here; CI runs as root.
        assert!(
            !rustix::process::geteuid().is_root(),
            "root cannot run unshare --pid"
        );
        eprintln!("skipped: unshare --pid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let address = {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_icewall"))
        .args(["serve", "--bind", &address]);
    let mut unshare = KilledOnDrop(
        crate::common::in_dirs_of(&mut command, dir.path())
            // Never opened: the start-up lasts until the signal.
            .arg("--debug-start-gate")
            .arg(dir.path().join("never"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    crate::common::wait_until("the server binds", || {
        std::net::TcpStream::connect(&address).is_ok()
    });
    let children = format!("/proc/{0}/task/{0}/children", unshare.0.id());
    let first = std::fs::read_to_string(&children).unwrap();
    let first = first.split_whitespace().next().expect("unshare's child");
    let status = std::fs::read_to_string(format!("/proc/{first}/status")).unwrap();
    let pid_here = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .and_then(|pids| pids.split_whitespace().last());
    assert_eq!(pid_here, Some("1"), "{status}");
    let signalled = Command::new("kill")
        .args(["-TERM", first])
        .status()
        .unwrap();
    assert!(signalled.success());
    let stopped = crate::common::poll_until(Duration::from_secs(5), || {
        unshare.0.try_wait().unwrap().is_some()
    });
    assert!(stopped, "SIGTERM did not stop a start-up running as PID 1");
    let mut stderr = String::new();
    unshare
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // unshare exits as its child did: 128 + 15, as a shell reports a death by SIGTERM.
    let exit = unshare.0.wait().unwrap();
    assert_eq!(exit.code(), Some(143), "{exit:?} {stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM while starting"),
        "{stderr}"
    );
}
