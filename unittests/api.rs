//! The HTTP contract of API.md, against the real server on port 0: the example wall
//! through every endpoint, and every error status with its reason. Each test runs on
//! both stores (`files::` and `postgres::`) but those about the file store's own files.

use std::io::Write;

use crate::common::{
    EXAMPLE_JSON, EXAMPLE_TEXT, Gate, Server, Store, a_done_job, a_done_job_in, on_both_stores,
    read_until_closed, wait_until,
};

on_both_stores!(
    example_wall_answers_every_job_endpoint,
    text_configs_take_num_teams_from_the_query,
    own_wall_answers_with_or_without_trailing_slash,
    own_wall_comes_from_profiles_and_num_teams,
    bad_configs_get_400_naming_where_and_why,
    limits_on_sections_body_and_content_type,
    unknown_or_malformed_job_ids_get_404,
    bad_days_and_profiles_get_400_and_missing_profiles_404,
    questions_on_an_unfinished_job_get_409,
    jobs_are_listed_oldest_first_in_pages,
    a_full_queue_answers_503_with_retry_after_and_keeps_what_it_accepted,
    a_panicking_job_fails_alone_and_the_pool_keeps_its_size,
    unknown_routes_and_wrong_methods_answer_json,
    the_openapi_document_describes_every_endpoint,
    every_operation_in_the_openapi_document_has_its_own_operation_id,
    a_streamed_answer_is_not_held_back_by_delayed_acks,
    a_wall_of_many_profiles_gets_a_bounded_summary_and_its_rows_page_by_page,
    a_wall_that_needs_no_work_has_an_empty_team_log,
    head_answers_wherever_get_does_with_the_same_headers_and_no_body,
    a_text_config_with_bare_cr_line_ends_is_three_profiles,
    json_numbers_are_read_as_written,
);

fn example_wall_answers_every_job_endpoint(store: Store) {
    let server = store.start(&[]);
    let reply = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(reply.status, 202);
    let id = reply.json()["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.location.as_deref(),
        Some(format!("/api/get_results/{id}").as_str())
    );

    let result = server.wait_finished(&id);
    assert_eq!(
        result,
        serde_json::json!({"status": "done", "data": {"days": 31, "num_teams": 3, "ice": 16965,
            "cost": 32233500, "profiles": [
                {"profile": 1, "sections": 3, "days": 9, "ice": 3120, "cost": 5928000},
                {"profile": 2, "sections": 1, "days": 15, "ice": 2535, "cost": 4816500},
                {"profile": 3, "sections": 5, "days": 31, "ice": 11310, "cost": 21489000}]}})
    );
    let ask = |path: &str| server.get(&format!("/api/jobs/{id}{path}")).json();
    assert_eq!(
        ask("/profiles/3/days/16"),
        serde_json::json!({"day": 16, "ice_amount": 585})
    );
    assert_eq!(
        ask("/profiles/2/days/1"),
        serde_json::json!({"day": 1, "ice_amount": 0})
    );
    assert_eq!(
        ask("/profiles/2/days/1000"),
        serde_json::json!({"day": 1000, "ice_amount": 0})
    );
    assert_eq!(
        ask("/profiles/1/overview/2"),
        serde_json::json!({"day": 2, "cost": 3 * 195 * 1900 * 2})
    );
    assert_eq!(
        ask("/profiles/overview/31"),
        serde_json::json!({"day": 31, "cost": 32233500})
    );
    assert_eq!(
        ask("/profiles/overview"),
        serde_json::json!({"day": null, "cost": 32233500})
    );
    assert_eq!(
        ask("/profiles/overview/"),
        serde_json::json!({"day": null, "cost": 32233500})
    );

    let log = server.get(&format!("/api/jobs/{id}/log"));
    assert_eq!(log.status, 200);
    assert!(log.content_type.starts_with("text/plain"));
    let lines: Vec<&str> = log.body.lines().collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0], "day 2: team 3 finished section 3 of profile 1");
    assert_eq!(lines[11], "day 31: team 2 relieved");
}

#[test]
fn team_log_files_sit_beside_results_and_survive_a_change_of_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, inline) = a_done_job_in(dir.path(), &[]);
    let expected = server.get(&format!("/api/jobs/{inline}/log")).body;
    assert_eq!(expected.lines().count(), 12);
    assert!(server.shutdown().success());

    let (server, own) = a_done_job_in(dir.path(), &["--team-logs", "files"]);
    let file = std::fs::read_to_string(server.results.join(format!("{own}.log"))).unwrap();
    assert_eq!(file, expected);
    let result = std::fs::read(server.results.join(format!("{own}.result"))).unwrap();
    let first_line = expected.lines().next().unwrap().as_bytes();
    assert!(
        !result
            .windows(first_line.len())
            .any(|bytes| bytes == first_line),
        "the log is not in the result too"
    );
    for id in [&own, &inline] {
        let log = server.get(&format!("/api/jobs/{id}/log"));
        assert_eq!(log.status, 200);
        assert_eq!(log.body, expected);
    }
    assert_eq!(
        server
            .get(&format!("/api/jobs/{own}/profiles/3/days/16"))
            .json()["ice_amount"],
        585
    );
    assert!(server.shutdown().success());
}

fn text_configs_take_num_teams_from_the_query(store: Store) {
    let server = store.start(&[]);
    let unlimited = server.post("/api/simulate", "text/plain", EXAMPLE_TEXT.as_bytes());
    let teams = server.post(
        "/api/simulate?num_teams=2",
        "text/plain; charset=utf-8",
        EXAMPLE_TEXT.as_bytes(),
    );
    let unlimited = server.wait_finished(unlimited.json()["job_id"].as_str().unwrap());
    let teams = server.wait_finished(teams.json()["job_id"].as_str().unwrap());
    assert_eq!(unlimited["data"]["days"], 13);
    assert_eq!(unlimited["data"]["num_teams"], serde_json::Value::Null);
    assert_eq!(teams["data"]["days"], 48);
    let crlf = server.post(
        "/api/simulate",
        "text/plain",
        "\u{feff}21 25 28 \r\n17\r\n\t17 22 17 19 17\r\n".as_bytes(),
    );
    assert_eq!(
        server.wait_finished(crlf.json()["job_id"].as_str().unwrap())["data"]["cost"],
        32233500
    );
}

fn own_wall_answers_with_or_without_trailing_slash(store: Store) {
    let server = store.start(&[]);
    for slash in ["", "/"] {
        let ask = |path: &str| server.get(&format!("{path}{slash}")).json();
        assert_eq!(
            ask("/profiles/1/days/1"),
            serde_json::json!({"day": 1, "ice_amount": 585})
        );
        assert_eq!(
            ask("/profiles/1/overview/1"),
            serde_json::json!({"day": 1, "cost": 1111500})
        );
        assert_eq!(
            ask("/profiles/overview/1"),
            serde_json::json!({"day": 1, "cost": 3334500})
        );
        assert_eq!(
            ask("/profiles/overview"),
            serde_json::json!({"day": null, "cost": 32233500})
        );
        assert_eq!(
            ask("/profiles/config"),
            serde_json::json!({"profiles": [[21, 25, 28], [17], [17, 22, 17, 19, 17]], "num_teams": null})
        );
    }
    let logs = server.get("/profiles/logs");
    assert!(logs.content_type.starts_with("text/plain"));
    assert_eq!(logs.body.lines().count(), 18);
}

fn own_wall_comes_from_profiles_and_num_teams(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let wall = dir.path().join("wall.txt");
    std::fs::write(&wall, EXAMPLE_TEXT).unwrap();
    let server = store.start(&["--profiles", wall.to_str().unwrap(), "--num-teams", "3"]);
    assert_eq!(server.get("/profiles/3/days/16").json()["ice_amount"], 585);
    assert_eq!(server.get("/profiles/logs").body.lines().count(), 12);
    assert_eq!(server.get("/profiles/config").json()["num_teams"], 3);
}

fn bad_configs_get_400_naming_where_and_why(store: Store) {
    let server = store.start(&[]);
    let cases: [(&str, &str, &str); 6] = [
        (
            "text/plain",
            "1 2\n3 31\n",
            "line 2 (profile 2), column 2: height `31` is outside 0..=30",
        ),
        (
            "text/plain",
            "1 abc\n",
            "line 1 (profile 1), column 2: `abc` is not an integer height",
        ),
        (
            "application/json",
            r#"{"profiles": [[1, true]]}"#,
            "profile 1, section 2",
        ),
        (
            "application/json",
            r#"{"profiles": []}"#,
            "the wall has no profiles",
        ),
        (
            "application/json",
            r#"{"profiles": [[1]], "num_teams": 0}"#,
            "num_teams must be an integer from 1",
        ),
        ("text/plain", "", "the wall has no profiles"),
    ];
    for (content_type, body, expected) in cases {
        let reply = server.post("/api/simulate", content_type, body.as_bytes());
        assert_eq!(reply.status, 400, "{body}");
        assert!(
            reply.reason().contains(expected),
            "{body}: {}",
            reply.reason()
        );
    }
    let reply = server.post("/api/simulate?num_teams=0", "text/plain", b"1 2\n");
    assert_eq!(reply.status, 400);
    assert!(reply.reason().contains("num_teams"));
    let long = format!("{}\n", vec!["1"; 2001].join(" "));
    let reply = server.post("/api/simulate", "text/plain", long.as_bytes());
    assert_eq!(reply.status, 400);
    assert!(
        reply.reason().contains(
            "column 2001: `1` is one section more than a profile may have (at most 2000)"
        )
    );
}

fn limits_on_sections_body_and_content_type(store: Store) {
    let server = store.start(&["--max-body", "1000", "--max-sections", "5"]);
    let reply = server.post("/api/simulate", "text/plain", b"1 2 3\n4 5 6\n");
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .reason()
            .contains("line 2 (profile 2), column 3: `6` is one section more than the wall may have in all (at most 5)")
    );
    let reply = server.post("/api/simulate", "text/plain", "1 ".repeat(600).as_bytes());
    assert_eq!(reply.status, 413);
    assert!(reply.reason().contains("1000 bytes"));
    for content_type in ["application/xml", "", "text/html"] {
        let reply = server.post("/api/simulate", content_type, b"1 2\n");
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert!(reply.reason().starts_with("Content-Type must be"));
    }
}

fn unknown_or_malformed_job_ids_get_404(store: Store) {
    let server = store.start(&[]);
    let unknown = "0192f0c5-7b7e-4c3a-9d1e-2f3b4c5d6e7f";
    for id in [
        unknown,
        "xx",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        &"a".repeat(10_000),
    ] {
        for path in ["/api/get_results/", "/api/jobs/"] {
            let suffix = if path == "/api/jobs/" {
                "/profiles/overview"
            } else {
                ""
            };
            let reply = server.get(&format!("{path}{id}{suffix}"));
            assert_eq!(reply.status, 404, "{path}{id}");
            assert_eq!(reply.reason(), "Invalid job_id");
        }
    }
    assert_eq!(server.get(&format!("/api/jobs/{unknown}/log")).status, 404);
}

fn bad_days_and_profiles_get_400_and_missing_profiles_404(store: Store) {
    let server = store.start(&[]);
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    for bad in ["0", "-1", "x", "99999999999999999999", "1.5"] {
        for path in [
            format!("/api/jobs/{id}/profiles/1/days/{bad}"),
            format!("/api/jobs/{id}/profiles/{bad}/days/1"),
            format!("/api/jobs/{id}/profiles/overview/{bad}"),
            format!("/profiles/{bad}/overview/1"),
            format!("/profiles/1/days/{bad}"),
        ] {
            let reply = server.get(&path);
            assert_eq!(reply.status, 400, "{path}");
            assert!(
                reply.reason().contains("must be a positive integer"),
                "{path}"
            );
        }
    }
    let reply = server.get(&format!("/api/jobs/{id}/profiles/4/days/1"));
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.reason(),
        "profile 4 does not exist; the wall has 3 profiles"
    );
    assert_eq!(server.get("/profiles/4/overview/1").status, 404);
}

fn questions_on_an_unfinished_job_get_409(store: Store) {
    let gate = Gate::closed();
    let server = store.start(&gate.args(&[]));
    let id = server.submit_json(EXAMPLE_JSON);
    let status = server.get(&format!("/api/get_results/{id}")).json()["status"].clone();
    assert!(status == "queued" || status == "running", "{status}");
    for path in ["/profiles/1/days/1", "/profiles/overview", "/log"] {
        let reply = server.get(&format!("/api/jobs/{id}{path}"));
        assert_eq!(reply.status, 409, "{path}");
        assert!(reply.reason().contains("the job is"));
    }
    assert_eq!(server.get("/api/num_jobs").json()["num_jobs"], 1);
    gate.open();
    server.wait_finished(&id);
    assert_eq!(server.get("/api/num_jobs").json()["num_jobs"], 0);
}

fn jobs_are_listed_oldest_first_in_pages(store: Store) {
    let server = store.start(&[]);
    let ids: Vec<String> = (0..5).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    let page = |query: &str| -> Vec<String> {
        let reply = server.get(&format!("/api/jobs{query}")).json();
        assert_eq!(reply["status"], "done");
        reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["job_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page(""), ids);
    assert_eq!(page("?limit=2"), ids[..2]);
    assert_eq!(page(&format!("?limit=2&after={}", ids[1])), ids[2..4]);
    assert_eq!(page(&format!("?after={}", ids[4])), Vec::<String>::new());
    for bad in ["?limit=0", "?limit=x", "?limit=1001", "?after=nope"] {
        assert_eq!(server.get(&format!("/api/jobs{bad}")).status, 400, "{bad}");
    }
}

fn a_full_queue_answers_503_with_retry_after_and_keeps_what_it_accepted(store: Store) {
    let gate = Gate::closed();
    let server = store.start(&gate.one_worker(&["--max-queue", "10"]));
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let reply = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
        match reply.status {
            202 => accepted.push(reply.json()["job_id"].as_str().unwrap().to_owned()),
            503 => {
                refused += 1;
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                assert_eq!(
                    reply.reason(),
                    "the job queue is full (--max-queue 10); retry later"
                );
            }
            other => panic!("unexpected status {other}: {}", reply.body),
        }
    }
    assert!(
        refused > 0 && accepted.len() >= 3,
        "{} accepted, {refused} refused",
        accepted.len()
    );
    gate.open();
    for id in &accepted {
        assert_eq!(server.wait_finished(id)["status"], "done");
    }
}

#[test]
fn queued_jobs_are_bounded_in_bytes_and_accepted_again_once_the_queue_drains() {
    let gate = Gate::closed();
    let server = Server::start(&gate.one_worker(&["--max-queue-bytes", "2KiB"]));
    let submit = || server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    let mut accepted = Vec::new();
    let refused = loop {
        assert!(accepted.len() < 200, "2 KiB of queue took 200 jobs");
        let reply = submit();
        match reply.status {
            202 => accepted.push(reply.json()["job_id"].as_str().unwrap().to_owned()),
            503 => break reply,
            other => panic!("unexpected status {other}: {}", reply.body),
        }
    };
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(
        refused
            .reason()
            .contains("would take them past the --max-queue-bytes limit of 2048 bytes"),
        "{}",
        refused.reason()
    );
    assert!(accepted.len() >= 3, "{} accepted", accepted.len());
    gate.open();
    wait_until("a job accepted again", || {
        let reply = submit();
        assert!(reply.status == 202 || reply.status == 503, "{}", reply.body);
        if reply.status == 202 {
            accepted.push(reply.json()["job_id"].as_str().unwrap().to_owned());
        }
        reply.status == 202
    });
    for id in &accepted {
        assert_eq!(server.wait_finished(id)["data"]["cost"], 32233500);
    }
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.lines().any(|line| line == "icewall_queue_bytes 0"),
        "{metrics}"
    );
}

fn a_panicking_job_fails_alone_and_the_pool_keeps_its_size(store: Store) {
    let gate = Gate::closed();
    let server = store.start(&gate.args(&["--workers", "2", "--debug-panic-on-num-teams", "7"]));
    let panicking = r#"{"profiles": [[1, 2, 3]], "num_teams": 7}"#;
    let failed: Vec<String> = (0..4).map(|_| server.submit_json(panicking)).collect();
    for id in &failed {
        let result = server.wait_finished(id);
        assert_eq!(result["status"], "failed");
        assert!(
            result["reason"].as_str().unwrap().contains("panicked"),
            "{result}"
        );
        let reply = server.get(&format!("/api/jobs/{id}/profiles/overview"));
        assert_eq!(reply.status, 409);
        assert!(reply.reason().contains("failed"));
    }
    // Both workers are alive if two jobs can be running at the same moment.
    let healthy: Vec<String> = (0..2).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    wait_until("two jobs running at once", || {
        healthy
            .iter()
            .all(|id| server.get(&format!("/api/get_results/{id}")).json()["status"] == "running")
    });
    gate.open();
    for id in &healthy {
        assert_eq!(server.wait_finished(id)["status"], "done");
    }
}

fn unknown_routes_and_wrong_methods_answer_json(store: Store) {
    let server = store.start(&[]);
    let reply = server.get("/nowhere");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.reason(), "no such endpoint: GET /nowhere");
    for (method, path) in [
        ("GET", "/api/simulate"),
        ("DELETE", "/api/num_jobs"),
        ("PUT", "/profiles/overview"),
    ] {
        let reply = server.request(method, path);
        assert_eq!(reply.status, 405, "{method} {path}");
        assert!(reply.content_type.starts_with("application/json"));
        assert!(reply.reason().contains(method));
        assert!(
            reply
                .allow
                .as_deref()
                .is_some_and(|allow| allow.contains("GET") || allow.contains("POST")),
            "{method} {path}"
        );
    }
}

fn the_openapi_document_describes_every_endpoint(store: Store) {
    let server = store.start(&[]);
    let document = server.get("/api/openapi.json").json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/simulate", "post"),
        ("/api/get_results/{id}", "get"),
        ("/api/jobs", "get"),
        ("/api/num_jobs", "get"),
        ("/api/graceful_shutdown", "get"),
        ("/api/graceful_shutdown", "post"),
        ("/api/jobs/{id}", "delete"),
        ("/api/jobs/{id}", "get"),
        ("/api/jobs/{id}/profiles/{p}/days/{d}", "get"),
        ("/api/jobs/{id}/profiles/{p}/overview/{d}", "get"),
        ("/api/jobs/{id}/profiles/overview/{d}", "get"),
        ("/api/jobs/{id}/profiles/overview", "get"),
        ("/api/jobs/{id}/log", "get"),
        ("/profiles/{p}/days/{d}", "get"),
        ("/profiles/{p}/overview/{d}", "get"),
        ("/profiles/overview/{d}", "get"),
        ("/profiles/overview", "get"),
        ("/profiles/config", "get"),
        ("/profiles/logs", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    let statuses: Vec<&String> = paths["/api/simulate"]["post"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    for status in ["202", "400", "408", "409", "413", "415", "422", "503"] {
        assert!(
            statuses.iter().any(|s| s.as_str() == status),
            "POST /api/simulate lacks {status}"
        );
    }
}

fn every_operation_in_the_openapi_document_has_its_own_operation_id(store: Store) {
    let server = store.start(&[]);
    let document = server.get("/api/openapi.json").json();
    let methods = [
        "get", "head", "post", "put", "patch", "delete", "options", "trace",
    ];
    let mut owners: std::collections::HashMap<String, String> = Default::default();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in methods.iter().filter(|method| item.get(**method).is_some()) {
            let operation = format!("{method} {path}");
            let id = item[*method]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{operation} has no operationId"))
                .to_owned();
            if let Some(first) = owners.insert(id.clone(), operation.clone()) {
                panic!("operationId {id} is used by both {first} and {operation}");
            }
        }
    }
    assert!(owners.len() >= 22, "too few operations: {owners:?}");
    // The ids are stable names a generated client can keep.
    for (id, operation) in [
        ("graceful_shutdown", "get /api/graceful_shutdown"),
        ("graceful_shutdown_post", "post /api/graceful_shutdown"),
        ("job_ice", "get /api/jobs/{id}/profiles/{p}/days/{d}"),
        ("own_wall_ice", "get /profiles/{p}/days/{d}"),
    ] {
        assert_eq!(owners.get(id).map(String::as_str), Some(operation), "{id}");
    }
}

fn a_streamed_answer_is_not_held_back_by_delayed_acks(store: Store) {
    let server = store.start(&[]);
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    // One keep-alive connection; a body sent apart from its headers used to wait for the
    // client's delayed ACK, about 40 ms each time. The median is immune to a slow outlier.
    let agent = ureq::AgentBuilder::new().build();
    let mut took: Vec<std::time::Duration> = (0..21)
        .map(|_| {
            let started = std::time::Instant::now();
            let log = agent
                .get(&server.url(&format!("/api/jobs/{id}/log")))
                .call()
                .unwrap();
            assert_eq!(log.into_string().unwrap().lines().count(), 12);
            started.elapsed()
        })
        .collect();
    took.sort();
    assert!(
        took[10] < std::time::Duration::from_millis(20),
        "median {:?}",
        took[10]
    );
}

/// Feet a profile of one section at height `height` needs.
fn feet_of(height: u64) -> u64 {
    30 - height
}

fn a_wall_of_many_profiles_gets_a_bounded_summary_and_its_rows_page_by_page(store: Store) {
    const PROFILES: u64 = 5000;
    let server = store.start(&[
        "--max-summary-profiles",
        "100",
        "--debug-panic-on-num-teams",
        "7",
    ]);
    let height = |profile: u64| (profile - 1) % 31;
    let walls: Vec<String> = (1..=PROFILES)
        .map(|profile| format!("[{}]", height(profile)))
        .collect();
    let id = server.submit_json(&format!(r#"{{"profiles": [{}]}}"#, walls.join(",")));
    let result = server.wait_finished(&id);
    assert_eq!(result["status"], "done", "{result}");
    let row = |profile: u64| {
        let feet = feet_of(height(profile));
        serde_json::json!({"profile": profile, "sections": 1, "days": feet,
            "ice": feet * 195, "cost": feet * 370_500})
    };
    let data = &result["data"];
    let total_feet: u64 = (1..=PROFILES).map(|profile| feet_of(height(profile))).sum();
    assert_eq!(data["cost"], total_feet * 370_500);
    assert_eq!(data["days"], 30);
    assert_eq!(data["profiles_total"], PROFILES);
    assert_eq!(data["profiles_truncated"], true);
    let first: Vec<serde_json::Value> = (1..=100).map(row).collect();
    assert_eq!(data["profiles"], serde_json::Value::from(first));

    // Every row exactly once, in order.
    let mut rows = Vec::new();
    let mut after = Some(0);
    while let Some(cursor) = after {
        let page = server.get(&format!(
            "/api/jobs/{id}/profiles?after={cursor}&limit=1000"
        ));
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        rows.extend(page["profiles"].as_array().unwrap().iter().cloned());
        after = page["next_after"].as_u64();
        assert!(rows.len() as u64 <= PROFILES, "the pages never end");
    }
    let expected: Vec<serde_json::Value> = (1..=PROFILES).map(row).collect();
    assert_eq!(rows, expected);
    let page = server
        .get(&format!("/api/jobs/{id}/profiles?after=4990"))
        .json();
    assert_eq!(page["profiles"].as_array().unwrap().len(), 10);
    assert_eq!(page["next_after"], serde_json::Value::Null);
    let page = server.get(&format!("/api/jobs/{id}/profiles")).json();
    assert_eq!(page["profiles"].as_array().unwrap().len(), 100);
    assert_eq!(page["next_after"], 100);
    for after in ["5000", "9223372036854775807"] {
        let page = server
            .get(&format!("/api/jobs/{id}/profiles?after={after}"))
            .json();
        assert_eq!(
            page,
            serde_json::json!({"profiles": [], "next_after": null}),
            "{after}"
        );
    }

    // The questions still answer, profile by profile and for the whole wall.
    let ask = |path: &str| server.get(&format!("/api/jobs/{id}{path}")).json();
    for profile in [1, 2, 30, 31, 32, 2500, PROFILES] {
        let feet = feet_of(height(profile));
        assert_eq!(
            ask(&format!("/profiles/{profile}/days/1"))["ice_amount"],
            if feet > 0 { 195 } else { 0 },
            "profile {profile}"
        );
        assert_eq!(
            ask(&format!("/profiles/{profile}/overview/7"))["cost"],
            feet.min(7) * 370_500,
            "profile {profile}"
        );
    }
    let through_day_5: u64 = (1..=PROFILES)
        .map(|profile| feet_of(height(profile)).min(5))
        .sum();
    assert_eq!(ask("/profiles/overview/5")["cost"], through_day_5 * 370_500);
    assert_eq!(ask("/profiles/overview")["cost"], total_feet * 370_500);
    let missing = server.get(&format!("/api/jobs/{id}/profiles/{}/days/1", PROFILES + 1));
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Bad pages are refused with a reason; unknown and unfinished jobs as elsewhere.
    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=%2B5",
        "after=-1",
        "after=%2B1",
        "after=1.5",
        "after=",
        "afterr=3",
    ] {
        let reply = server.get(&format!("/api/jobs/{id}/profiles?{query}"));
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(!reply.reason().is_empty());
    }
    let unknown = server.get("/api/jobs/0190f0a0-0000-7000-8000-000000000000/profiles");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.reason(), "Invalid job_id");
    let failed = server.submit_json(r#"{"profiles": [[1]], "num_teams": 7}"#);
    assert_eq!(server.wait_finished(&failed)["status"], "failed");
    let reply = server.get(&format!("/api/jobs/{failed}/profiles"));
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.reason().starts_with("the job failed"));
}

fn a_wall_that_needs_no_work_has_an_empty_team_log(store: Store) {
    for layout in ["inline", "files"] {
        let server = store.start(&["--team-logs", layout]);
        for body in [
            r#"{"profiles": [[30, 30], [30]]}"#,
            r#"{"profiles": [[30, 30], [30]], "num_teams": 2}"#,
        ] {
            let id = server.submit_json(body);
            assert_eq!(server.wait_finished(&id)["data"]["cost"], 0, "{body}");
            let log = server.get(&format!("/api/jobs/{id}/log"));
            assert_eq!(log.status, 200, "{layout} {body}: {}", log.body);
            assert_eq!(log.body, "", "{layout} {body}");
            assert!(
                log.content_type.starts_with("text/plain"),
                "{layout} {body}"
            );
        }
    }
}

fn head_answers_wherever_get_does_with_the_same_headers_and_no_body(store: Store) {
    let server = store.start(&[]);
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    let agent = ureq::AgentBuilder::new().build();
    let paths = [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/api/openapi.json".to_owned(),
        "/api/jobs".to_owned(),
        "/api/num_jobs".to_owned(),
        format!("/api/get_results/{id}"),
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/profiles/1/days/1"),
        format!("/api/jobs/{id}/profiles/1/overview/1"),
        format!("/api/jobs/{id}/profiles/overview/1"),
        format!("/api/jobs/{id}/profiles/overview"),
        format!("/api/jobs/{id}/log"),
        "/profiles/1/days/1/".to_owned(),
        "/profiles/1/overview/1".to_owned(),
        "/profiles/overview/1".to_owned(),
        "/profiles/overview".to_owned(),
        "/profiles/config".to_owned(),
        "/profiles/logs".to_owned(),
    ];
    for path in &paths {
        let get = agent.get(&server.url(path)).call().unwrap();
        let head = agent.head(&server.url(path)).call().unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(head.content_type(), get.content_type(), "HEAD {path}");
        // Metrics count the requests themselves, so their length moves.
        if path != "/metrics" {
            assert_eq!(
                head.header("content-length"),
                get.header("content-length"),
                "HEAD {path}"
            );
        }
        assert_eq!(head.into_string().unwrap(), "", "HEAD {path}");
    }
    // Errors too, without their body.
    let missing = agent.head(&server.url("/api/get_results/nope")).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    // And a wrong method's Allow names HEAD where GET is allowed.
    let reply = server.request("PUT", "/healthz");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.allow.as_deref(), Some("GET, HEAD"));
    // Not on the shutdown endpoint: HEAD is a safe method that tools send freely.
    let reply = server.request("HEAD", "/api/graceful_shutdown");
    assert_eq!(reply.status, 405);
    assert_eq!(server.get("/readyz").status, 200);
}

fn a_text_config_with_bare_cr_line_ends_is_three_profiles(store: Store) {
    let server = store.start(&[]);
    let reply = server.post(
        "/api/simulate",
        "text/plain",
        b"21 25 28\r17\r17 22 17 19 17\r",
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.json()["job_id"].as_str().unwrap().to_owned();
    let result = server.wait_finished(&id);
    assert_eq!(result["data"]["profiles"].as_array().unwrap().len(), 3);
    assert_eq!(result["data"]["cost"], 32233500);
    let refused = server.post("/api/simulate", "text/plain", b"1\r2 31\r");
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .reason()
            .contains("line 2 (profile 2), column 2: height `31` is outside 0..=30"),
        "{}",
        refused.body
    );
}

fn json_numbers_are_read_as_written(store: Store) {
    let server = store.start(&[]);
    let id = server.submit_json(r#"{"profiles": [[21, 25, 28], [17], [17, 22, 17, 19, -0]]}"#);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    for (token, expected) in [
        (
            "1e1",
            "profile 1, section 2: `1e1` is not an integer height",
        ),
        (
            "-0.0",
            "profile 1, section 2: `-0.0` is not an integer height",
        ),
        (
            "18446744073709551616",
            "`18446744073709551616` is not an integer height",
        ),
    ] {
        let body = format!(r#"{{"profiles": [[1, {token}]]}}"#);
        let reply = server.post("/api/simulate", "application/json", body.as_bytes());
        assert_eq!(reply.status, 400, "{token}: {}", reply.body);
        assert!(reply.reason().contains(expected), "{token}: {}", reply.body);
    }
}

#[test]
fn extra_slashes_are_routed_as_the_plain_path_and_the_query_is_kept() {
    let (server, id) = a_done_job(&[]);
    let plain = server.get(&format!("/api/get_results/{id}"));
    assert_eq!(plain.status, 200);
    for path in [
        format!("/api/get_results/{id}/"),
        format!("//api//get_results/{id}//"),
        format!("/api/get_results/{id}/?wait=1"),
    ] {
        let reply = server.get(&path);
        assert_eq!((reply.status, &reply.body), (200, &plain.body), "{path}");
    }
    // The query is kept: a misspelt parameter is still refused.
    let reply = server.get(&format!("//api/get_results/{id}/?wiat=1"));
    assert_eq!(reply.status, 400);
    assert!(reply.reason().contains("`wiat`"), "{}", reply.body);
    let reply = server.get("//");
    assert_eq!(reply.status, 200, "the page, at the root");
}

/// The hottest reads are answered beneath actix-web once their answer is kept
/// (`http::at_once`): the same status, headers and body as the route gives.
#[test]
fn a_read_answered_at_once_is_the_one_its_route_gives() {
    let (server, id) = a_done_job(&[]);
    let agent = ureq::AgentBuilder::new().build();
    let answer = |method: &str, path: &str| {
        let reply = agent.request(method, &server.url(path)).call().unwrap();
        let mut headers: Vec<(String, String)> = reply
            .headers_names()
            .into_iter()
            .filter(|name| !matches!(name.as_str(), "date" | "x-request-id"))
            .map(|name| {
                let value = reply.header(&name).unwrap_or_default().to_owned();
                (name, value)
            })
            .collect();
        headers.sort();
        (reply.status(), headers, reply.into_string().unwrap())
    };
    let results = format!("/api/get_results/{id}");
    let questions = [
        format!("/api/jobs/{id}/profiles/1/days/1"),
        format!("/api/jobs/{id}/profiles/2/overview/1"),
        format!("/api/jobs/{id}/profiles/overview/2"),
        format!("/api/jobs/{id}/profiles/overview"),
    ];
    // The route's: each question's first read (its answer not kept yet), and a read
    // with a `?wait=` (always the route's); then the same reads answered at once.
    let mut by_route: Vec<_> = questions.iter().map(|path| answer("GET", path)).collect();
    by_route.push(answer("GET", &format!("{results}?wait=0")));
    let mut at_once: Vec<_> = questions.iter().map(|path| answer("GET", path)).collect();
    at_once.push(answer("GET", &results));
    assert_eq!(by_route, at_once);
    for (path, (status, headers, _)) in questions.iter().chain([&results]).zip(&at_once) {
        let head = answer("HEAD", path);
        assert_eq!(
            (head.0, &head.1, head.2.as_str()),
            (*status, headers, ""),
            "HEAD {path}"
        );
    }
}

/// What every answer has, an answer at once has too: the gate's checks, the client's
/// request id, its log line and its metrics under its endpoint.
#[test]
fn a_read_answered_at_once_passes_the_gate_and_is_logged_and_counted() {
    let (server, id) = a_done_job(&[]);
    let results = format!("/api/get_results/{id}");
    assert_eq!(server.get(&results).status, 200, "its answer kept");
    let count = |server: &Server| {
        let metrics = server.get("/metrics").body;
        let wanted = "icewall_http_request_duration_seconds_count{route=\"/api/get_results/{id}\",status=\"200\"} ";
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(wanted))
            .map_or(0, |count| count.parse::<u64>().unwrap())
    };
    let before = count(&server);
    let reply = ureq::get(&server.url(&results))
        .set("X-Request-Id", "at-once-17")
        .call()
        .unwrap();
    assert_eq!(reply.header("x-request-id"), Some("at-once-17"));
    assert_eq!(count(&server), before + 1);
    wait_until("the request's log line", || {
        server.log().lines().any(|line| {
            line.contains(&format!("path: {results}, status: 200"))
                && line.ends_with("request_id: at-once-17")
        })
    });
    let misdirected = server.exchange(&format!(
        "GET {results} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    ));
    assert!(misdirected.starts_with("HTTP/1.1 421"), "{misdirected}");
    let smuggled = server.exchange(&format!(
        "GET {results} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ));
    assert!(smuggled.starts_with("HTTP/1.1 400"), "{smuggled}");
}

/// A read with a body is answered too, and its body read past, even one sent after its
/// answer: the next request on the connection is the one after it (not the body taken
/// for a request, nor the connection closed under it). An empty body is none.
#[test]
fn a_reads_body_sent_after_its_answer_is_read_past() {
    let (server, id) = a_done_job(&[]);
    let results = format!("/api/get_results/{id}");
    let kept = server.get(&results).body;
    for (length, body) in [(5, "hello"), (0, "")] {
        let mut connection = server.connect();
        write!(
            connection,
            "GET {results} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // A connection closed under the first answer refuses this write; the answers
        // say so below.
        let _ = write!(
            connection,
            "{body}GET {results} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let twice = read_until_closed(&mut connection);
        assert_eq!(
            twice.matches("HTTP/1.1 200 OK").count(),
            2,
            "body of {length}: {twice}"
        );
        assert_eq!(
            twice.matches(kept.as_str()).count(),
            2,
            "body of {length}: {twice}"
        );
    }
}

/// An answer at once is timed from its request, as a routed one is from before its
/// gate and routing: its log line's `elapsed_ms` (and its histogram) hold the work of
/// answering it, here a path of 30,000 slashes to split, not only its last step.
#[test]
fn a_read_answered_at_once_is_timed_from_its_request() {
    let server = Server::start(&[]);
    let path = format!("/profiles/overview{}", "/".repeat(30_000));
    // An empty query string sends the same read to its route.
    let ways = [("at-once", ""), ("route", "?")];
    for round in 0..5 {
        for (way, query) in ways {
            let answer = server.exchange(&format!(
                "GET {path}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: timed-{way}-{round}\r\nConnection: close\r\n\r\n"
            ));
            assert!(answer.starts_with("HTTP/1.1 200"), "{way}: {answer}");
        }
    }
    let elapsed = |way: &str| -> Vec<f64> {
        let id = format!("request_id: timed-{way}-");
        server
            .log()
            .lines()
            .filter(|line| line.contains(&id))
            .map(|line| {
                let (_, rest) = line.split_once("elapsed_ms: ").unwrap();
                rest.split(',').next().unwrap().parse().unwrap()
            })
            .collect()
    };
    wait_until("the requests' log lines", || {
        ways.iter().all(|(way, _)| elapsed(way).len() == 5)
    });
    let median = |way: &str| {
        let mut times = elapsed(way);
        times.sort_by(f64::total_cmp);
        times[2]
    };
    let (at_once, route) = (median("at-once"), median("route"));
    assert!(
        at_once * 10.0 >= route,
        "answered at once in {at_once} ms, by its route in {route} ms"
    );
}

#[test]
fn path_parameters_are_read_with_their_percent_encoded_digits_decoded() {
    let server = Server::start(&[]);
    let plain = server.get("/profiles/1/days/1");
    assert_eq!(plain.status, 200);
    let reply = server.get("/profiles/%31/days/%31/");
    assert_eq!((reply.status, &reply.body), (200, &plain.body));
    // An encoded slash is no segment boundary: it stays in the parameter, which is
    // then no number.
    let reply = server.get("/profiles/1%2F/days/1");
    assert_eq!(reply.status, 400);
    assert!(reply.reason().contains("`1%2F`"), "{}", reply.body);
}
