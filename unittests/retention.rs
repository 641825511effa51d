//! Retention: finished jobs expire after `--result-ttl`, the oldest go beyond
//! `--max-results`, and `DELETE /api/jobs/<id>` removes one; a removed job answers 404
//! like an unknown one, and its file is gone.

use crate::common::{
    EXAMPLE_JSON, Gate, Server, a_done_job, a_done_job_in, count_files, one_worker_behind_a_gate,
    wait_until,
};

fn results_of(server: &Server) -> usize {
    count_files(&server.results, |name| name.ends_with(".result"))
}

/// A done job, and a running one held at the (closed) gate, on a server of one worker.
fn done_and_running(server: &Server, gate: &Gate) -> (String, String) {
    gate.open();
    let done = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&done);
    gate.close();
    let running = server.submit_json(EXAMPLE_JSON);
    // A queued job would be cancelled: this one must have started.
    wait_until("the job to start", || {
        server.get(&format!("/api/get_results/{running}")).json()["status"] == "running"
    });
    (done, running)
}

#[test]
fn delete_removes_a_finished_job_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    // The running one is held at the gate until it has been refused.
    let (done, running) = done_and_running(&server, &gate);

    let refused = server.request("DELETE", &format!("/api/jobs/{running}"));
    assert_eq!(refused.status, 409);
    assert!(
        refused
            .reason()
            .contains("only a finished job can be deleted")
    );
    gate.open();

    // A finished job may still be pinned for a moment by jobs accepted with it.
    wait_until("the delete", || {
        server
            .request("DELETE", &format!("/api/jobs/{done}"))
            .status
            == 200
    });
    let gone = server.get(&format!("/api/get_results/{done}"));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.reason(), "Invalid job_id");
    assert_eq!(server.get(&format!("/api/jobs/{done}/log")).status, 404);
    assert_eq!(
        server
            .request("DELETE", &format!("/api/jobs/{done}"))
            .status,
        404
    );
    assert_eq!(
        server
            .request("DELETE", "/api/jobs/0192f0c5-7b7e-4c3a-9d1e-2f3b4c5d6e7f")
            .status,
        404
    );
    assert_eq!(server.request("DELETE", "/api/jobs/nope").status, 404);

    server.wait_finished(&running);
    assert_eq!(server.listed_jobs(), 1);
    let results = server.results.clone();
    assert!(server.shutdown().success());
    assert_eq!(count_files(&results, |name| name.starts_with(&done)), 0);
    // Deleted stays deleted across a restart.
    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(
        restarted.get(&format!("/api/get_results/{done}")).status,
        404
    );
    assert_eq!(
        restarted.get(&format!("/api/get_results/{running}")).status,
        200
    );
}

#[test]
fn delete_is_an_admin_action() {
    let (server, id) = a_done_job(&["--admin-token", "t0ken"]);
    assert_eq!(
        server.request("DELETE", &format!("/api/jobs/{id}")).status,
        401
    );
    assert_eq!(
        server
            .request_as("DELETE", &format!("/api/jobs/{id}"), "Bearer nope")
            .status,
        403
    );
    wait_until("the delete", || {
        server
            .request_as("DELETE", &format!("/api/jobs/{id}"), "Bearer t0ken")
            .status
            == 200
    });
}

#[test]
fn finished_jobs_expire_after_the_ttl() {
    let server = Server::start(&["--result-ttl", "1s"]);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    wait_until("the expiry", || {
        server.get(&format!("/api/get_results/{id}")).status == 404
    });
    assert_eq!(
        server.get(&format!("/api/get_results/{id}")).reason(),
        "Invalid job_id"
    );
    wait_until("the file removal", || results_of(&server) == 0);
    assert_eq!(server.listed_jobs(), 0);
}

#[test]
fn the_oldest_finished_jobs_go_beyond_max_results() {
    let server = Server::start(&["--max-results", "3"]);
    let ids: Vec<String> = (0..8)
        .map(|_| {
            let id = server.submit_json(EXAMPLE_JSON);
            server.wait_finished(&id);
            id
        })
        .collect();
    wait_until("the trim", || {
        server.listed_jobs() == 3 && results_of(&server) == 3
    });
    let listed = server.get("/api/jobs").json()["data"].clone();
    let kept: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ids[5..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        server.get(&format!("/api/get_results/{}", ids[0])).status,
        404
    );
}

/// A delete that goes through at once: no 409 "retry in a moment" any more.
fn delete(server: &Server, id: &str) -> crate::common::Reply {
    server.request("DELETE", &format!("/api/jobs/{id}"))
}

#[test]
fn a_deleted_job_stays_deleted_when_its_segment_is_kept_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let server = Server::start_in(dir.path(), &gate.one_worker(&[]));
    // Accepted together, so both lines are in one journal segment.
    let done = server.submit_json(EXAMPLE_JSON);
    let unstorable = server.submit_json(EXAMPLE_JSON);
    // The second job's result cannot be put in place: a directory holds its name, so
    // it fails and its segment is kept for a restart. Both jobs are held until the
    // directory is in place.
    let in_the_way = server.results.join(format!("{unstorable}.result"));
    std::fs::create_dir(&in_the_way).unwrap();
    gate.open();
    assert_eq!(server.wait_finished(&done)["status"], "done");
    let failed = server.wait_finished(&unstorable);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("could not be stored"),
        "{failed}"
    );

    let deleted = delete(&server, &done);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        deleted.json(),
        serde_json::json!({"job_id": done, "status": "deleted"})
    );
    assert_eq!(server.get(&format!("/api/get_results/{done}")).status, 404);
    std::fs::remove_dir(&in_the_way).unwrap();
    let results = server.results.clone();
    assert!(server.shutdown().success());
    assert_eq!(
        count_files(&results, |name| name.starts_with("requests-")),
        1,
        "the segment holding the deleted job's request is still on disk"
    );

    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(
        restarted.wait_finished(&unstorable)["data"]["cost"],
        32233500,
        "the unstored job runs again"
    );
    assert_eq!(
        restarted.get(&format!("/api/get_results/{done}")).status,
        404,
        "the deleted job does not come back"
    );
    assert_eq!(restarted.listed_jobs(), 1);
    assert!(restarted.shutdown().success());
    assert_eq!(count_files(&results, |name| name.starts_with(&done)), 0);
}

#[test]
fn a_delete_that_fails_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = a_done_job_in(dir.path(), &[]);
    // `remove_file` refuses a non-empty directory, for root too (unlike permissions).
    let result = server.results.join(format!("{id}.result"));
    let aside = dir.path().join("aside.result");
    std::fs::rename(&result, &aside).unwrap();
    std::fs::create_dir(&result).unwrap();
    std::fs::write(result.join("in-the-way"), b"").unwrap();

    let mut refused = delete(&server, &id);
    // Without tombstones a job still journaled was refused for a moment (409).
    wait_until("an answer to the delete", || {
        refused = delete(&server, &id);
        refused.status != 409
    });
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        refused
            .reason()
            .starts_with("the job could not be deleted and is unchanged: "),
        "{}",
        refused.reason()
    );
    assert_ne!(server.get(&format!("/api/get_results/{id}")).status, 404);
    assert_eq!(server.listed_jobs(), 1);

    std::fs::remove_dir_all(&result).unwrap();
    std::fs::rename(&aside, &result).unwrap();
    assert_eq!(
        server.get(&format!("/api/get_results/{id}")).json()["data"]["cost"],
        32233500,
        "the job answers as it did before the failed delete"
    );
    assert_eq!(delete(&server, &id).status, 200);
    assert!(server.shutdown().success());
    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(restarted.get(&format!("/api/get_results/{id}")).status, 404);
}

#[test]
fn reads_racing_deletes_never_answer_500() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Server::start(&[]);
    let ids: Vec<String> = (0..100).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &ids {
        server.wait_finished(id);
    }
    // The readers all ask about the job being deleted; `ids.len()` stops them.
    let current = AtomicUsize::new(0);
    let errors: Vec<String> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|reader| {
                let (server, ids, current) = (&server, &ids, &current);
                scope.spawn(move || {
                    let mut errors = Vec::new();
                    while let Some(id) = ids.get(current.load(Ordering::SeqCst)) {
                        let path = match reader % 3 {
                            0 => format!("/api/get_results/{id}"),
                            1 => format!("/api/jobs/{id}/profiles/1/days/1"),
                            _ => format!("/api/jobs/{id}/log"),
                        };
                        let reply = server.get(&path);
                        if reply.status != 200 && reply.status != 404 {
                            errors.push(format!("{path}: {} {}", reply.status, reply.body));
                        }
                    }
                    errors
                })
            })
            .collect();
        for (index, id) in ids.iter().enumerate() {
            current.store(index, Ordering::SeqCst);
            wait_until("the delete", || delete(&server, id).status == 200);
        }
        current.store(ids.len(), Ordering::SeqCst);
        readers
            .into_iter()
            .flat_map(|reader| reader.join().unwrap())
            .collect()
    });
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(server.listed_jobs(), 0);
    assert_eq!(results_of(&server), 0);
}

fn status(server: &Server, id: &str) -> String {
    let reply = server.get(&format!("/api/get_results/{id}"));
    if reply.status == 404 {
        return "unknown".to_owned();
    }
    reply.json()["status"].as_str().unwrap().to_owned()
}

fn num_jobs(server: &Server) -> u64 {
    server.get("/api/num_jobs").json()["num_jobs"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_queued_job_is_cancelled_and_never_runs_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Jobs are held at the gate until the cancels are done, on both servers.
    let gate = Gate::closed();
    let held = gate.one_worker(&[]);
    let server = Server::start_in(dir.path(), &held);
    let running = server.submit_json(EXAMPLE_JSON);
    let queued = server.submit_json(EXAMPLE_JSON);
    let later = server.submit_json(EXAMPLE_JSON);
    wait_until("the first job to start", || {
        status(&server, &running) == "running"
    });
    assert_eq!(status(&server, &queued), "queued");
    assert_eq!(num_jobs(&server), 3);

    let cancelled = delete(&server, &queued);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(
        cancelled.json(),
        serde_json::json!({"job_id": queued, "status": "cancelled"})
    );
    assert_eq!(
        server.get(&format!("/api/get_results/{queued}")).reason(),
        "Invalid job_id"
    );
    assert_eq!(num_jobs(&server), 2);
    assert_eq!(server.listed_jobs(), 2);
    assert_eq!(delete(&server, &queued).status, 404);
    let refused = delete(&server, &running);
    assert_eq!(refused.status, 409);
    assert!(
        refused.reason().starts_with("the job is running;"),
        "{}",
        refused.reason()
    );
    // A crash: the journal segment with all three requests stays on disk.
    server.kill9();

    let server = Server::start_in(dir.path(), &held);
    wait_until("the rerun of the first job to start", || {
        status(&server, &running) == "running"
    });
    assert_eq!(
        status(&server, &queued),
        "unknown",
        "a cancel survives a crash"
    );
    assert_eq!(status(&server, &later), "queued");
    // A job queued again by the restart is cancelled as well; the drain then ends.
    assert_eq!(delete(&server, &later).json()["status"], "cancelled");
    assert_eq!(num_jobs(&server), 1);
    assert!(
        server
            .get("/metrics")
            .body
            .lines()
            .any(|line| line == r#"icewall_jobs_total{outcome="cancelled"} 1"#)
    );
    gate.open();
    assert!(server.shutdown().success());

    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(status(&server, &running), "done");
    assert_eq!(status(&server, &queued), "unknown");
    assert_eq!(status(&server, &later), "unknown");
    assert_eq!(server.listed_jobs(), 1);
    assert_eq!(num_jobs(&server), 0);
    let results = server.results.clone();
    assert!(server.shutdown().success());
    for cancelled in [&queued, &later] {
        assert_eq!(
            count_files(&results, |name| name.starts_with(cancelled.as_str())),
            0
        );
    }
}

#[test]
fn a_cancel_that_cannot_be_recorded_leaves_the_job_queued() {
    let (gate, server) = one_worker_behind_a_gate();
    let running = server.submit_json(EXAMPLE_JSON);
    let queued = server.submit_json(EXAMPLE_JSON);
    wait_until("the first job to start", || {
        status(&server, &running) == "running"
    });
    // The tombstone cannot be appended where a directory holds its name.
    let tombstones = server.results.join("deleted-jobs.txt");
    std::fs::create_dir(&tombstones).unwrap();
    let refused = delete(&server, &queued);
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        refused.reason().contains("is unchanged"),
        "{}",
        refused.reason()
    );
    assert_eq!(status(&server, &queued), "queued");
    assert_eq!(num_jobs(&server), 2);
    gate.open();
    assert_eq!(server.wait_finished(&queued)["data"]["cost"], 32233500);
    std::fs::remove_dir(&tombstones).unwrap();
    assert!(server.shutdown().success());
}

/// The ids `/api/jobs` lists, oldest first.
fn listed_ids(server: &Server) -> Vec<String> {
    server.get("/api/jobs?limit=1000").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_oldest_finished_jobs_go_beyond_max_results_bytes_counted_at_finish_and_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let mut ids: Vec<String> = (0..5)
        .map(|_| {
            let id = server.submit_json(EXAMPLE_JSON);
            server.wait_finished(&id);
            id
        })
        .collect();
    // The same wall makes results of the same size.
    let size = std::fs::metadata(server.results.join(format!("{}.result", ids[0])))
        .unwrap()
        .len();
    assert!(server.shutdown().success());

    // Room for three results, and a bit: the two oldest go at start-up.
    let limit = format!("{}B", 3 * size + size / 2);
    let server = Server::start_in(dir.path(), &["--max-results-bytes", &limit]);
    wait_until("the trim at start-up", || {
        listed_ids(&server) == ids[2..] && results_of(&server) == 3
    });
    assert_eq!(
        server.get(&format!("/api/get_results/{}", ids[1])).status,
        404
    );
    // And as jobs finish: each new result pushes the oldest out.
    for _ in 0..2 {
        let id = server.submit_json(EXAMPLE_JSON);
        server.wait_finished(&id);
        ids.push(id);
    }
    wait_until("the trim as jobs finish", || {
        listed_ids(&server) == ids[4..] && results_of(&server) == 3
    });
}

#[test]
fn max_results_bytes_takes_a_size_with_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "lots", "-1MiB"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_icewall"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .arg(format!("--max-results-bytes={bad}"))
            .arg("--results-dir")
            .arg(dir.path().join("results"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--max-results-bytes"), "{bad}: {stderr}");
    }
}

#[test]
fn cancel_takes_a_queued_job_out_and_leaves_running_and_finished_ones_alone() {
    let (gate, server) = one_worker_behind_a_gate();
    let (done, running) = done_and_running(&server, &gate);
    let queued = server.submit_json(EXAMPLE_JSON);
    let cancel = |id: &str| server.request("POST", &format!("/api/jobs/{id}/cancel"));

    for (id, state) in [(&done, "done"), (&running, "running")] {
        let refused = cancel(id);
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(
            refused.reason(),
            format!("the job is {state}; only a queued job can be cancelled")
        );
    }
    // Unlike a DELETE, a cancel never removes a finished job.
    assert_eq!(server.get(&format!("/api/get_results/{done}")).status, 200);
    let cancelled = cancel(&queued);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(
        cancelled.json(),
        serde_json::json!({"job_id": queued, "status": "cancelled"})
    );
    assert_eq!(
        server.get(&format!("/api/get_results/{queued}")).status,
        404
    );
    assert_eq!(cancel(&queued).status, 404);
    assert_eq!(
        server.get(&format!("/api/jobs/{running}/cancel")).status,
        405
    );
    gate.open();
    assert_eq!(server.wait_finished(&running)["status"], "done");
}

#[test]
fn the_tombstones_file_keeps_only_what_a_kept_segment_needs_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    // Rewritten past 1 KiB, some 27 tombstones.
    let server = Server::start_in(
        dir.path(),
        &gate.one_worker(&["--debug-compaction-bytes", "1024"]),
    );
    // As above: the deleted job's request stays journaled, in a segment kept for the
    // job whose result could not be stored.
    let done = server.submit_json(EXAMPLE_JSON);
    let unstorable = server.submit_json(EXAMPLE_JSON);
    let in_the_way = server.results.join(format!("{unstorable}.result"));
    std::fs::create_dir(&in_the_way).unwrap();
    gate.open();
    server.wait_finished(&done);
    assert_eq!(server.wait_finished(&unstorable)["status"], "failed");
    assert_eq!(delete(&server, &done).status, 200);
    // Every DELETE adds a tombstone, needed while the job's segment is on disk: these
    // go a second after they last took a request.
    let delete_one = || {
        let id = server.submit_json(EXAMPLE_JSON);
        server.wait_finished(&id);
        assert_eq!(delete(&server, &id).status, 200);
        id
    };
    let sealed = || std::thread::sleep(std::time::Duration::from_millis(1500));
    // Not in the kept segment either.
    sealed();
    let mut deleted: Vec<String> = (0..30).map(|_| delete_one()).collect();
    sealed();
    let tombstones = server.results.join("deleted-jobs.txt");
    let len = || std::fs::metadata(&tombstones).unwrap().len();
    // Without a rewrite the file only grows: a hundred more bring one.
    let mut last = len();
    let rewritten = (0..100).any(|_| {
        deleted.push(delete_one());
        let now = len();
        let shrank = now < last;
        last = now;
        shrank
    });
    assert!(rewritten, "no rewrite: {last} bytes");
    let text = std::fs::read_to_string(&tombstones).unwrap();
    assert!(text.contains(&done), "{text}");
    for id in &deleted[..30] {
        assert!(!text.contains(id.as_str()), "{id} kept: {text}");
    }
    std::fs::remove_dir(&in_the_way).unwrap();
    assert!(server.shutdown().success());

    let restarted = Server::start_in(dir.path(), &[]);
    assert_eq!(
        restarted.wait_finished(&unstorable)["data"]["cost"],
        32233500
    );
    for id in deleted.iter().chain([&done]) {
        assert_eq!(restarted.get(&format!("/api/get_results/{id}")).status, 404);
    }
    assert_eq!(restarted.listed_jobs(), 1);
    assert!(restarted.shutdown().success());
}

/// An id made a day from now, as a server whose clock was a day ahead made its jobs'.
fn an_id_from_tomorrow() -> String {
    let tomorrow = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    let since_epoch = tomorrow.duration_since(std::time::UNIX_EPOCH).unwrap();
    let timestamp = uuid::Timestamp::from_unix(
        uuid::NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    );
    uuid::Uuid::new_v7(timestamp).to_string()
}

#[test]
fn jobs_made_after_a_restart_under_a_clock_set_back_are_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (server, made_ahead) = a_done_job_in(dir.path(), &[]);
    let results = server.results.clone();
    assert!(server.shutdown().success());
    // The job as a clock a day ahead would have named it; the restart's clock is then
    // a day behind its id.
    let tomorrows = an_id_from_tomorrow();
    std::fs::rename(
        results.join(format!("{made_ahead}.result")),
        results.join(format!("{tomorrows}.result")),
    )
    .unwrap();

    let restarted = Server::start_in(dir.path(), &["--max-results", "1"]);
    let made_now = restarted.submit_json(EXAMPLE_JSON);
    restarted.wait_finished(&made_now);
    assert!(made_now > tomorrows, "{made_now} sorts before {tomorrows}");
    // Retention's "oldest first" takes the job kept from before, not the one just made.
    wait_until("the trim", || {
        restarted
            .get(&format!("/api/get_results/{tomorrows}"))
            .status
            == 404
    });
    assert_eq!(
        restarted
            .get(&format!("/api/get_results/{made_now}"))
            .status,
        200
    );
}

#[test]
fn a_result_from_the_future_is_kept_one_ttl_from_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = a_done_job_in(dir.path(), &[]);
    let results = server.results.clone();
    assert!(server.shutdown().success());
    // Written under a clock ten days ahead, or read back under one set back since.
    let in_ten_days = std::time::SystemTime::now() + std::time::Duration::from_secs(864_000);
    std::fs::File::options()
        .write(true)
        .open(results.join(format!("{id}.result")))
        .unwrap()
        .set_modified(in_ten_days)
        .unwrap();

    let restarted = Server::start_in(dir.path(), &["--result-ttl", "2s"]);
    let record = restarted.get(&format!("/api/jobs/{id}")).json();
    let finished_at = humantime::parse_rfc3339(record["finished_at"].as_str().unwrap()).unwrap();
    assert!(
        finished_at <= std::time::SystemTime::now(),
        "finished in the future: {record}"
    );
    wait_until("the expiry", || {
        restarted.get(&format!("/api/get_results/{id}")).status == 404
    });
}
