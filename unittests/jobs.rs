//! A job's record (`GET /api/jobs/<id>`), waiting for a result (`?wait=`), and the
//! filtered, ordered job list, against the real server on port 0. Each test runs on
//! both stores (`files::` and `postgres::`) but those about the file store's own files.

use crate::common::{EXAMPLE_JSON, Gate, Server, Store, a_done_job, a_done_job_in, on_both_stores};
use serde_json::Value;

on_both_stores!(
    a_jobs_record_tells_its_times_its_size_and_whether_it_was_replayed,
    a_failed_jobs_record_has_its_reason_and_unknown_ids_get_404,
    finished_jobs_are_listed_by_status_either_way_and_paged,
    queued_and_running_jobs_are_listed_by_status,
    a_waiter_gets_the_result_as_soon_as_the_job_finishes,
    a_wait_is_bounded_by_its_time_and_by_max_wait_and_refuses_bad_values,
    a_graceful_shutdown_answers_every_waiter_at_once_and_exits_0,
    cancelled_jobs_do_not_keep_the_queue_full,
    a_log_read_racing_its_delete_gets_the_whole_log_or_404,
    cached_answers_are_the_stored_ones_and_gone_with_their_delete,
    the_openapi_document_gives_the_flag_bound_parameters_their_maximum,
);

fn record(server: &Server, id: &str) -> Value {
    let reply = server.get(&format!("/api/jobs/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// An RFC 3339 time in UTC as the server writes it, to the millisecond.
fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let bytes = text.as_bytes();
    assert!(
        text.len() == 24 && text.ends_with('Z') && bytes[10] == b'T' && bytes[19] == b'.',
        "{text}"
    );
}

fn a_jobs_record_tells_its_times_its_size_and_whether_it_was_replayed(store: Store) {
    let server = store.start(&[]);
    let submit = |key: &str| {
        let reply = server.post_with(
            "/api/simulate",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            EXAMPLE_JSON.as_bytes(),
        );
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.json()["job_id"].as_str().unwrap().to_owned()
    };
    let id = submit("record-1");
    let fresh = record(&server, &id);
    assert_eq!(fresh["job_id"], id.as_str());
    assert_timestamp(&fresh["created_at"]);
    assert_eq!(
        (&fresh["profiles"], &fresh["sections"], &fresh["num_teams"]),
        (&Value::from(3), &Value::from(9), &Value::from(3))
    );
    assert_eq!(fresh["replayed"], false);
    assert_eq!(fresh["reason"], Value::Null);

    server.wait_finished(&id);
    let done = record(&server, &id);
    assert_eq!(done["status"], "done");
    for key in ["created_at", "started_at", "finished_at"] {
        assert_timestamp(&done[key]);
    }
    // The same format throughout: the strings order as the times do.
    let time = |key: &str| done[key].as_str().unwrap().to_owned();
    assert!(time("created_at") <= time("started_at"), "{done}");
    assert!(time("started_at") <= time("finished_at"), "{done}");
    assert!(
        done["queue_ms"].is_u64() && done["run_ms"].is_u64(),
        "{done}"
    );
    assert_eq!(done["replayed"], false);

    assert_eq!(submit("record-1"), id);
    assert_eq!(record(&server, &id)["replayed"], true);

    let mut fields: Vec<&str> = done
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    let mut expected = [
        "job_id",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "queue_ms",
        "run_ms",
        "profiles",
        "sections",
        "num_teams",
        "reason",
        "replayed",
    ];
    expected.sort_unstable();
    assert_eq!(fields, expected);
}

fn a_failed_jobs_record_has_its_reason_and_unknown_ids_get_404(store: Store) {
    let server = store.start(&["--debug-panic-on-num-teams", "7"]);
    let id = server.submit_json(r#"{"profiles": [[1, 2]], "num_teams": 7}"#);
    server.wait_finished(&id);
    let failed = record(&server, &id);
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("the simulation panicked"),
        "{failed}"
    );
    assert_eq!(failed["num_teams"], 7);
    for unknown in ["0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e7f", "not-a-uuid"] {
        let reply = server.get(&format!("/api/jobs/{unknown}"));
        assert_eq!(reply.status, 404, "{unknown}");
        assert_eq!(reply.reason(), "Invalid job_id");
    }
    let reply = server.get(&format!("/api/jobs/{id}?verbose=1"));
    assert_eq!(reply.status, 400);
}

#[test]
fn a_recovered_jobs_record_keeps_what_its_result_tells() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = a_done_job_in(dir.path(), &[]);
    let before = record(&server, &id);
    assert!(server.shutdown().success());

    let server = Server::start_in(dir.path(), &[]);
    let after = record(&server, &id);
    // The finish is the result file's time, which is set to it.
    for key in [
        "job_id",
        "status",
        "created_at",
        "finished_at",
        "profiles",
        "sections",
        "num_teams",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_timestamp(&after["finished_at"]);
    // Not kept on disk: unknown after a restart.
    for key in ["started_at", "queue_ms", "run_ms"] {
        assert_eq!(after[key], Value::Null, "{key}");
    }
}

#[test]
fn a_job_queued_again_at_start_up_tells_its_size_once_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let held = gate.one_worker(&[]);
    let server = Server::start_in(dir.path(), &held);
    // The first holds the one worker at the gate after the restart.
    let first = server.submit_json(EXAMPLE_JSON);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(record(&server, &id)["profiles"], 3);
    server.kill9();

    // Its request waits in the journal, unread until the job runs.
    let server = Server::start_in(dir.path(), &held);
    crate::common::wait_until("the first job to run again", || {
        record(&server, &first)["status"] == "running"
    });
    let queued = record(&server, &id);
    assert_eq!(queued["status"], "queued");
    for key in ["profiles", "sections", "num_teams"] {
        assert_eq!(queued[key], Value::Null, "{key}");
    }
    gate.open();
    server.wait_finished(&id);
    let done = record(&server, &id);
    assert_eq!(
        (&done["profiles"], &done["sections"], &done["num_teams"]),
        (&Value::from(3), &Value::from(9), &Value::from(3))
    );
}

/// The ids of a `/api/jobs` page, checking each row's shape on the way.
fn listed(server: &Server, query: &str) -> Vec<String> {
    let reply = server.get(&format!("/api/jobs{query}"));
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "done");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            assert_timestamp(&row["created_at"]);
            let finished = ["done", "failed"].contains(&row["status"].as_str().unwrap());
            assert_eq!(row["finished_at"].is_string(), finished, "{row}");
            if finished {
                assert_timestamp(&row["finished_at"]);
            }
            row["job_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Every page of a listing, `limit` at a time, each page's last id the next `after`.
fn page_through(server: &Server, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let after = all
            .last()
            .map(|id| format!("&after={id}"))
            .unwrap_or_default();
        let page = listed(server, &format!("?limit={limit}{query}{after}"));
        assert!(page.len() <= limit);
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

fn finished_jobs_are_listed_by_status_either_way_and_paged(store: Store) {
    let server = store.start(&["--debug-panic-on-num-teams", "7"]);
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for n in 0..7 {
        if n % 3 == 1 {
            failed.push(server.submit_json(r#"{"profiles": [[1]], "num_teams": 7}"#));
            server.wait_finished(failed.last().unwrap());
        } else {
            done.push(server.submit_json(EXAMPLE_JSON));
            server.wait_finished(done.last().unwrap());
        }
    }
    let mut all: Vec<String> = listed(&server, "");
    assert_eq!(all.len(), 7);
    let reversed = |ids: &[String]| ids.iter().rev().cloned().collect::<Vec<_>>();
    assert_eq!(listed(&server, "?order=oldest"), all);
    assert_eq!(listed(&server, "?order=newest"), reversed(&all));
    assert_eq!(listed(&server, "?status=done"), done);
    assert_eq!(listed(&server, "?status=failed"), failed);
    assert_eq!(
        listed(&server, "?status=done&order=newest"),
        reversed(&done)
    );
    assert_eq!(
        listed(&server, "?order=newest&status=failed"),
        reversed(&failed)
    );
    assert!(listed(&server, "?status=queued").is_empty());
    assert!(listed(&server, "?status=running&order=newest").is_empty());
    // Paging: oldest and newest, filtered or not, pages of 2 and of 1.
    assert_eq!(page_through(&server, "", 2), all);
    assert_eq!(page_through(&server, "&order=newest", 2), reversed(&all));
    assert_eq!(page_through(&server, "&status=done", 2), done);
    assert_eq!(
        page_through(&server, "&status=done&order=newest", 2),
        reversed(&done)
    );
    assert_eq!(
        page_through(&server, "&status=failed&order=newest", 1),
        reversed(&failed)
    );
    // `after` with newest: strictly older than the cursor, whatever its status.
    let cursor = &failed[1];
    let older_done: Vec<String> = done
        .iter()
        .filter(|id| id.as_str() < cursor.as_str())
        .rev()
        .cloned()
        .collect();
    assert!(!older_done.is_empty());
    assert_eq!(
        listed(
            &server,
            &format!("?status=done&order=newest&after={cursor}")
        ),
        older_done
    );
    all.retain(|id| id.as_str() < cursor.as_str());
    assert_eq!(
        listed(&server, &format!("?order=newest&after={cursor}&limit=1000")),
        reversed(&all)
    );
    for (bad, names) in [
        ("?status=finished", "status must be one of"),
        ("?status=", "status must be one of"),
        ("?status=DONE", "status must be one of"),
        ("?order=sideways", "order must be oldest or newest"),
        ("?order=", "order must be oldest or newest"),
        ("?sort=newest", "unknown query parameter `sort`"),
        ("?status=done&after=nope", "after must be a job id"),
    ] {
        let reply = server.get(&format!("/api/jobs{bad}"));
        assert_eq!(reply.status, 400, "{bad}");
        assert!(reply.reason().contains(names), "{bad}: {}", reply.body);
    }
}

fn queued_and_running_jobs_are_listed_by_status(store: Store) {
    // One worker and held jobs: the first runs, the others wait behind it. A cluster
    // node claims none ahead of its free workers here: a claimed job reads `running`.
    let gate = Gate::closed();
    let server = store.start(&gate.one_worker(&["--claim-ahead", "0"]));
    let ids: Vec<String> = (0..4).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    crate::common::wait_until("the first job runs", || {
        listed(&server, "?status=running") == ids[..1]
    });
    assert_eq!(listed(&server, "?status=queued"), ids[1..]);
    assert_eq!(
        listed(&server, "?status=queued&order=newest&limit=2"),
        [ids[3].clone(), ids[2].clone()]
    );
    assert_eq!(
        listed(&server, &format!("?status=queued&after={}", ids[2])),
        ids[3..]
    );
    assert!(listed(&server, "?status=done").is_empty());
    assert_eq!(listed(&server, "?order=newest&limit=1"), ids[3..]);
}

fn a_waiter_gets_the_result_as_soon_as_the_job_finishes(store: Store) {
    let gate = Gate::closed();
    let server = store.start(&gate.args(&[]));
    let id = server.submit_json(EXAMPLE_JSON);
    let asked = std::time::Instant::now();
    // Far longer than the job: an answer before it passes came from the finish. The
    // job is let go once it runs, while the request waits.
    let reply = std::thread::scope(|scope| {
        scope.spawn(|| {
            crate::common::wait_until("the job runs", || {
                server.get(&format!("/api/get_results/{id}")).json()["status"] == "running"
            });
            gate.open();
        });
        server.get(&format!("/api/get_results/{id}?wait=25"))
    });
    let took = asked.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "done", "{body}");
    assert_eq!(body["data"]["cost"], 32233500);
    assert!(took < std::time::Duration::from_secs(25), "{took:?}");
    // A finished job answers at once, waiting or not.
    let again = server.get(&format!("/api/get_results/{id}?wait=25"));
    assert_eq!(
        again.body,
        server.get(&format!("/api/get_results/{id}")).body
    );
}

fn a_wait_is_bounded_by_its_time_and_by_max_wait_and_refuses_bad_values(store: Store) {
    let gate = Gate::closed();
    let server = store.start(&gate.args(&["--max-wait", "5s"]));
    let id = server.submit_json(EXAMPLE_JSON);
    // The job is held: these come back when their time is up. Any number the
    // OpenAPI document allows is taken, as a generated client may write it.
    for wait in ["0", "0.2", "1", "1e-3", "2.5e-1"] {
        let reply = server.get(&format!("/api/get_results/{id}?wait={wait}"));
        assert_eq!(reply.status, 200, "{wait}");
        let status = reply.json()["status"].clone();
        assert!(
            status == "queued" || status == "running",
            "{wait}: {status}"
        );
    }
    let unknown = "0192f0c5-7b7e-7c3a-9d1e-2f3b4c5d6e7f";
    let reply = server.get(&format!("/api/get_results/{unknown}?wait=5"));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.reason(), "Invalid job_id");
    for bad in [
        "abc", "", "-1", "1e2", "inf", "NaN", "1.2.3", ".", "5.001", "6", "-inf",
    ] {
        let reply = server.get(&format!("/api/get_results/{id}?wait={bad}"));
        assert_eq!(reply.status, 400, "{bad:?}");
        let reason = reply.reason();
        assert!(
            reason.contains("wait must be a number of seconds from 0 to 5")
                && reason.contains("--max-wait"),
            "{bad:?}: {reason}"
        );
    }
    assert_eq!(
        server
            .get(&format!("/api/get_results/{id}?wait=0&wiat=1"))
            .status,
        400
    );
}

fn a_graceful_shutdown_answers_every_waiter_at_once_and_exits_0(store: Store) {
    // The job is held until the waiters are answered, who would wait 20 s: their
    // answers came from the shutdown.
    let gate = Gate::closed();
    let mut server = store.start(&gate.one_worker(&[]));
    let id = server.submit_json(EXAMPLE_JSON);
    let url = server.url(&format!("/api/get_results/{id}?wait=20"));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let reply = ureq::get(&url).call().unwrap();
                reply.into_json::<Value>().unwrap()
            })
        })
        .collect();
    // Give the waiters a moment to be in; one that comes later is answered at once too.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    for waiter in waiters {
        let body = waiter.join().unwrap();
        let status = body["status"].as_str().unwrap().to_owned();
        assert!(status == "queued" || status == "running", "{body}");
    }
    gate.open();
    assert!(server.wait_exit().success());
}

fn cancelled_jobs_do_not_keep_the_queue_full(store: Store) {
    // A cluster node claims none ahead of its free workers here: a claimed job reads
    // `running` and cannot be cancelled.
    let gate = Gate::closed();
    let server = store.start(&gate.one_worker(&["--claim-ahead", "0", "--max-queue", "2"]));
    let running = server.submit_json(EXAMPLE_JSON);
    crate::common::wait_until("the first job runs", || {
        listed(&server, "?status=running") == [running.clone()]
    });
    // A cluster node counts the cluster's queue again once a second, and a count made
    // while a claim commits may be one off until the next: a 503 is retried for that long.
    let submit = || {
        let mut reply = None;
        let accepted = crate::common::poll_until(std::time::Duration::from_secs(5), || {
            let answer = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
            assert!(matches!(answer.status, 202 | 503), "{}", answer.body);
            let done = answer.status == 202;
            reply = Some(answer);
            done
        });
        let reply = reply.unwrap();
        assert!(
            accepted,
            "queue is empty, yet: {} {}",
            reply.status, reply.body
        );
        reply.json()["job_id"].as_str().unwrap().to_owned()
    };
    let queued: Vec<String> = (0..2).map(|_| submit()).collect();
    for id in &queued {
        let reply = server.request("DELETE", &format!("/api/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["status"], "cancelled");
    }
    // Nothing is queued any more: one job runs.
    assert_eq!(server.get("/api/num_jobs").json()["num_jobs"], 1);
    assert!(listed(&server, "?status=queued").is_empty());
    submit();
}

#[test]
fn a_v7_id_past_year_9999_on_disk_is_listed_without_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (server, id) = a_done_job_in(dir.path(), &[]);
        assert!(server.shutdown().success());
        id
    };
    let results = dir.path().join("results");
    // A whole, valid result under another (v7) id whose timestamp is past year 9999,
    // as a copy from elsewhere or a renamed file could leave it.
    std::fs::copy(
        results.join(format!("{id}.result")),
        results.join("ffffffff-ffff-7fff-bfff-ffffffffffff.result"),
    )
    .unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let reply = server.get("/api/jobs");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = server.get("/api/jobs/ffffffff-ffff-7fff-bfff-ffffffffffff");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["created_at"], serde_json::Value::Null);
}

#[test]
fn log_reads_racing_deletes_of_log_files_never_answer_500() {
    let server = Server::start(&["--team-logs", "files"]);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    let ids: Vec<String> = (0..300).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &ids {
        server.wait_finished(id);
    }
    // Past the segment's 1 s: no job is pinned, so a delete is two unlinks, no fsync.
    std::thread::sleep(std::time::Duration::from_secs(3));
    for id in &ids {
        let url = format!("{}/api/jobs/{id}/log", server.base);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut statuses = Vec::new();
                    loop {
                        let status = match ureq::get(&url).call() {
                            Ok(response) => response.status(),
                            Err(ureq::Error::Status(status, response)) => {
                                if status == 500 {
                                    eprintln!("500: {}", response.into_string().unwrap());
                                }
                                status
                            }
                            Err(error) => panic!("{error}"),
                        };
                        statuses.push(status);
                        if status != 200 {
                            return statuses;
                        }
                    }
                })
            })
            .collect();
        let reply = server.request("DELETE", &format!("/api/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        for reader in readers {
            for status in reader.join().unwrap() {
                *seen.entry(status).or_default() += 1;
            }
        }
    }
    assert!(!seen.contains_key(&500), "{seen:?}");
}

fn a_log_read_racing_its_delete_gets_the_whole_log_or_404(store: Store) {
    let server = store.start(&[]);
    let ids: Vec<String> = (0..50).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    for id in &ids {
        server.wait_finished(id);
    }
    for id in &ids {
        let url = server.url(&format!("/api/jobs/{id}/log"));
        // Each reader reads the log, body and all, until the delete has taken it.
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    loop {
                        match ureq::get(&url).call() {
                            Ok(response) => {
                                let log = response
                                    .into_string()
                                    .unwrap_or_else(|error| panic!("{url}: cut short: {error}"));
                                assert_eq!(log.lines().count(), 12, "{url}: {log:?}");
                            }
                            Err(ureq::Error::Status(status, response)) => {
                                return (status, response.into_string().unwrap());
                            }
                            Err(error) => panic!("{url}: no answer: {error}"),
                        }
                    }
                })
            })
            .collect();
        let reply = server.request("DELETE", &format!("/api/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        for reader in readers {
            let (status, body) = reader.join().unwrap();
            assert_eq!(status, 404, "{body}");
            assert!(body.contains("Invalid job_id"), "{body}");
        }
    }
}

#[test]
fn a_delete_is_recorded_durably_even_when_no_segment_holds_the_job() {
    let (server, id) = a_done_job(&[]);
    // Its journal segment is gone: the delete could skip the tombstone, and a segment
    // whose removal had not reached the disk would then run the job again after a crash.
    crate::common::wait_until("the segment to go", || {
        crate::common::count_files(&server.results, |name| name.starts_with("requests-")) == 0
    });
    let reply = server.request("DELETE", &format!("/api/jobs/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let buried = std::fs::read_to_string(server.results.join("deleted-jobs.txt")).unwrap();
    assert!(buried.lines().any(|line| line == id), "{buried:?}");
}

fn the_openapi_document_gives_the_flag_bound_parameters_their_maximum(store: Store) {
    let server = store.start(&["--max-wait", "7s", "--max-chart-width", "640"]);
    let document = server.get("/api/openapi.json").json();
    let maximum = |path: &str, name: &str| {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == name)
            .unwrap()["schema"]["maximum"]
            .as_f64()
    };
    assert_eq!(maximum("/api/get_results/{id}", "wait"), Some(7.0));
    assert_eq!(maximum("/api/jobs/{id}/chart", "width"), Some(640.0));
}

/// A done job's summary and the questions on it are answered from memory after their
/// first read: the same answers as the stored result gives (and as a server without the
/// cache gives), and a 404 once the job is deleted, however often they were read before.
fn cached_answers_are_the_stored_ones_and_gone_with_their_delete(store: Store) {
    let server = store.start(&[]);
    let uncached = store.start(&["--answer-cache-bytes", "0"]);
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    let other = uncached.submit_json(EXAMPLE_JSON);
    uncached.wait_finished(&other);
    let questions = [
        "profiles/3/days/16",
        "profiles/3/days/40",
        "profiles/1/overview/5",
        "profiles/overview/16",
        "profiles/overview",
        "profiles/4/days/1",
    ];
    for question in questions {
        let from_disk = uncached.get(&format!("/api/jobs/{other}/{question}"));
        for _ in 0..3 {
            let reply = server.get(&format!("/api/jobs/{id}/{question}"));
            assert_eq!(reply.status, from_disk.status, "{question}: {}", reply.body);
            assert_eq!(reply.body, from_disk.body, "{question}");
        }
    }
    let summary_from_disk = uncached.get(&format!("/api/get_results/{other}"));
    for _ in 0..3 {
        let summary = server.get(&format!("/api/get_results/{id}"));
        assert_eq!(summary.status, 200, "{}", summary.body);
        assert_eq!(summary.body, summary_from_disk.body);
    }
    let day = format!("/api/jobs/{id}/profiles/3/days/16");
    assert_eq!(
        server.get(&day).json(),
        serde_json::json!({"day": 16, "ice_amount": 585})
    );
    let deleted = server.request("DELETE", &format!("/api/jobs/{id}"));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    for question in questions {
        let gone = server.get(&format!("/api/jobs/{id}/{question}"));
        assert_eq!(gone.status, 404, "{question}: {}", gone.body);
    }
    let gone = server.get(&format!("/api/get_results/{id}"));
    assert_eq!(gone.status, 404, "{}", gone.body);
}
