//! The page's HTTP side on the real server: the embedded files with their headers, and
//! the public JSON it reads (`/api/stats`, `/api/jobs/<id>/chart`).

use std::io::Read;

use crate::common::postgres::database;
use crate::common::{EXAMPLE_JSON, Gate, Server, a_done_job, wait_until};
use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().build()
}

fn call(request: ureq::Request) -> ureq::Response {
    match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("no HTTP answer: {error}"),
    }
}

#[test]
fn the_page_is_served_with_its_type_an_etag_and_a_strict_policy() {
    let server = Server::start(&[]);
    for (path, content_type) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let response = call(agent().get(&server.url(path)));
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.content_type(), content_type, "{path}");
        let policy = response.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(response.header("cache-control"), Some("no-cache"));
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        let etag = response.header("etag").unwrap().to_owned();
        let again = call(agent().get(&server.url(path)).set("If-None-Match", &etag));
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        // HEAD answers the same headers.
        let head = call(agent().head(&server.url(path)));
        assert_eq!((head.status(), head.content_type()), (200, content_type));
    }
    let html = call(agent().get(&server.url("/"))).into_string().unwrap();
    assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
    // Gzip to a client that takes it, and the same bytes once inflated.
    let gzipped = call(
        agent()
            .get(&server.url("/assets/app.js"))
            .set("Accept-Encoding", "gzip"),
    );
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    let mut packed = Vec::new();
    gzipped.into_reader().read_to_end(&mut packed).unwrap();
    let mut script = String::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_string(&mut script)
        .unwrap();
    assert_eq!(script, server.get("/assets/app.js").body);
    // Unknown files and parameters are refused as everywhere else.
    let missing = server.get("/assets/nope.js");
    assert_eq!(missing.status, 404);
    assert!(missing.reason().contains("no such asset"));
    assert_eq!(server.get("/?x=1").status, 400);
}

#[test]
fn stats_count_jobs_by_state_and_the_last_hour() {
    let before = std::time::Instant::now();
    let (server, _) = a_done_job(&["--workers", "3"]);
    let stats = server.get("/api/stats").json();
    let up = before.elapsed();
    assert_eq!(stats["jobs"]["done"], 1, "{stats}");
    assert_eq!(stats["jobs"]["failed"], 0);
    assert_eq!(stats["jobs"]["queued"], 0);
    assert_eq!(stats["workers"]["total"], 3);
    assert_eq!(stats["accepting"], true);
    let intervals = stats["throughput"]["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 60);
    assert_eq!(intervals.last().unwrap()["done"], 1, "{stats}");
    assert_eq!(stats["throughput"]["interval_seconds"], 60);
    // Counted from the server's start: the minutes before it are zeros, and the minute
    // under way has had no more time than the server.
    let before_start = stats["throughput"]["intervals_before_start"]
        .as_u64()
        .unwrap();
    assert!((59 - (up.as_secs() / 60).min(59)..=59).contains(&before_start));
    assert!(
        intervals[..before_start as usize]
            .iter()
            .all(|i| i["done"] == 0 && i["failed"] == 0)
    );
    let current = stats["throughput"]["current_interval_ms"].as_u64().unwrap();
    assert!(
        current < 60_000 && u128::from(current) <= up.as_millis(),
        "{stats}"
    );
    assert_eq!(stats["run_time"]["samples"], 1);
    assert!(stats["run_time"]["p95_ms"].as_f64().unwrap() >= 0.0);
    assert!(stats["queue_wait"]["p50_ms"].as_f64().is_some());
    // A node on its own has no nodes to list.
    assert!(stats.get("nodes").is_none(), "{stats}");
}

/// The nodes `/api/stats` lists on `server`, by address.
fn nodes_seen_by(server: &Server) -> Vec<Value> {
    let mut nodes = server.get("/api/stats").json()["nodes"]
        .as_array()
        .expect("a cluster node lists the nodes")
        .clone();
    nodes.sort_by_key(|node| node["address"].as_str().unwrap().to_owned());
    nodes
}

#[test]
fn stats_list_every_node_of_a_cluster_and_mark_a_silent_one_stale() {
    let Some((_, url)) = database() else { return };
    let args = ["--database-url", url.as_str(), "--lease", "3s"];
    let first = Server::start(&args);
    let second = Server::start(
        &["--workers", "3"]
            .iter()
            .chain(&args)
            .copied()
            .collect::<Vec<_>>(),
    );
    let address = |server: &Server| server.base.trim_start_matches("http://").to_owned();
    let mut addresses = vec![address(&first), address(&second)];
    addresses.sort();
    for server in [&first, &second] {
        let nodes = nodes_seen_by(server);
        let listed: Vec<&str> = nodes
            .iter()
            .map(|node| node["address"].as_str().unwrap())
            .collect();
        assert_eq!(listed, addresses, "{nodes:?}");
        for node in &nodes {
            let workers = if node["address"] == address(&second) {
                3
            } else {
                2
            };
            assert_eq!(node["workers"], workers, "{node}");
            assert_eq!(node["running"], 0, "{node}");
            assert_eq!(node["stale"], false, "{node}");
            assert!(node["heartbeat_age_ms"].is_u64(), "{node}");
            assert_eq!(node["node_id"].as_str().unwrap().len(), 36, "{node}");
            assert!(
                node["started_at"].as_str().unwrap().ends_with('Z'),
                "{node}"
            );
        }
    }
    assert_ne!(
        nodes_seen_by(&first)[0]["node_id"],
        nodes_seen_by(&first)[1]["node_id"]
    );

    // Killed, the second node never says goodbye: after a lease without its heartbeat
    // the first lists it as stale, and itself as live.
    let gone = address(&second);
    second.kill9();
    wait_until("the killed node is listed as stale", || {
        nodes_seen_by(&first)
            .iter()
            .any(|node| node["address"] == gone.as_str() && node["stale"] == true)
    });
    let nodes = nodes_seen_by(&first);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let dead = nodes
        .iter()
        .find(|node| node["address"] == gone.as_str())
        .unwrap();
    assert!(dead["heartbeat_age_ms"].as_u64().unwrap() >= 3000, "{dead}");
    let live = nodes
        .iter()
        .find(|node| node["address"] != gone.as_str())
        .unwrap();
    assert_eq!(live["stale"], false, "{live}");
}

fn sum(values: &Value) -> u64 {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_u64().unwrap())
        .sum()
}

#[test]
fn a_chart_integrates_every_bucket_exactly() {
    let (server, id) = a_done_job(&[]);
    // One bucket a day when the screen has room: WALL.md's profile 3 with 3 teams.
    let chart = server.get(&format!("/api/jobs/{id}/chart")).json();
    assert_eq!(
        (chart["days"].as_u64(), chart["buckets"].as_u64()),
        (Some(31), Some(31))
    );
    let profile3: Vec<u64> = chart["ice"][2]["ice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ice| ice.as_u64().unwrap())
        .collect();
    let mut expected = vec![0; 5];
    expected.extend([195; 4]);
    expected.extend([390; 6]);
    expected.extend([585; 13]);
    expected.extend([195; 3]);
    assert_eq!(profile3, expected);
    assert_eq!(chart["cost"][30], 32_233_500);
    assert_eq!(chart["teams"]["num_teams"], 3);
    assert_eq!(chart["teams"]["rows"].as_array().unwrap().len(), 3);
    // Seven buckets of five days (the last of one): the same totals.
    let narrow = server.get(&format!("/api/jobs/{id}/chart?width=7")).json();
    assert_eq!(
        (narrow["buckets"].as_u64(), narrow["bucket_days"].as_u64()),
        (Some(7), Some(5))
    );
    for profile in 0..3 {
        assert_eq!(
            sum(&narrow["ice"][profile]["ice"]),
            sum(&chart["ice"][profile]["ice"])
        );
    }
    assert_eq!(narrow["cost"][6], 32_233_500);
    // Unlimited crews: no Gantt.
    let crews = server.submit_json(r#"{"profiles": [[21,25,28],[17],[17,22,17,19,17]]}"#);
    server.wait_finished(&crews);
    let chart = server.get(&format!("/api/jobs/{crews}/chart")).json();
    assert_eq!(chart["days"], 13);
    assert!(chart["teams"].is_null());
}

#[test]
fn a_wall_of_many_profiles_stacks_the_largest_and_sums_the_others() {
    let server = Server::start(&[]);
    // Twenty profiles; profile p has p sections of height 0.
    let profiles: Vec<String> = (1..=20).map(|p| vec!["0"; p].join(" ")).collect();
    let reply = server.post(
        "/api/simulate",
        "text/plain",
        profiles.join("\n").as_bytes(),
    );
    let id = reply.json()["job_id"].as_str().unwrap().to_owned();
    let result = server.wait_finished(&id);
    let chart = server.get(&format!("/api/jobs/{id}/chart?width=4")).json();
    let series = chart["ice"].as_array().unwrap();
    assert_eq!(series.len(), 9);
    let stacked: Vec<u64> = series[..8]
        .iter()
        .map(|series| series["profile"].as_u64().unwrap())
        .collect();
    assert_eq!(stacked, (13..=20).collect::<Vec<u64>>());
    assert!(series[8]["profile"].is_null());
    assert_eq!(series[8]["profiles"], 12);
    let all: u64 = series.iter().map(|series| sum(&series["ice"])).sum();
    assert_eq!(all, result["data"]["ice"].as_u64().unwrap());
}

#[test]
fn a_chart_refuses_bad_widths_and_unfinished_or_unknown_jobs() {
    // The job is held, never opened: it stays unfinished for the whole test.
    let gate = Gate::closed();
    let server = Server::start(&gate.args(&["--max-chart-width", "50"]));
    let id = server.submit_json(EXAMPLE_JSON);
    // `%2B5` is `+5`: a sign is no digit, here as in every integer parameter.
    for width in ["0", "51", "x", "-1", "%2B5", "+5"] {
        let reply = server.get(&format!("/api/jobs/{id}/chart?width={width}"));
        assert_eq!(reply.status, 400, "{width}");
        assert_eq!(
            reply.reason(),
            "width must be an integer in 1..=50 (the server's --max-chart-width)"
        );
    }
    let reply = server.get(&format!("/api/jobs/{id}/chart?wide=3"));
    assert_eq!(reply.status, 400);
    assert!(reply.reason().contains("`wide`"));
    assert_eq!(server.get(&format!("/api/jobs/{id}/chart")).status, 409);
    let unknown = server.get("/api/jobs/01a22d96-0b83-70e9-ae0c-b5fd24c19cf9/chart");
    assert_eq!(
        (unknown.status, unknown.reason()),
        (404, "Invalid job_id".to_owned())
    );
}

#[test]
fn a_finished_jobs_config_is_kept_with_its_result_and_read_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let args = gate.args(&["--debug-panic-on-num-teams", "7"]);
    let server = Server::start_in(dir.path(), &args);
    let done = server.submit_json(EXAMPLE_JSON);
    let failed = server.submit_json(r#"{"profiles": [[0, 30], [5]], "num_teams": 7}"#);
    let held = server.get(&format!("/api/jobs/{done}/config"));
    assert_eq!(held.status, 409, "{}", held.body);
    assert!(held.reason().contains("its config is kept with its result"));
    gate.open();
    server.wait_finished(&done);
    assert_eq!(server.wait_finished(&failed)["status"], "failed");

    let example = serde_json::json!({
        "profiles": [[21, 25, 28], [17], [17, 22, 17, 19, 17]],
        "num_teams": 3,
        "profiles_total": 3,
        "next_after": null,
    });
    let check = |server: &Server| {
        assert_eq!(
            server.get(&format!("/api/jobs/{done}/config")).json(),
            example
        );
        let page = server.get(&format!("/api/jobs/{done}/config?after=1&limit=1"));
        assert_eq!(
            page.json(),
            serde_json::json!({"profiles": [[17]], "num_teams": 3, "profiles_total": 3, "next_after": 2})
        );
        let past = server
            .get(&format!("/api/jobs/{done}/config?after=9"))
            .json();
        assert_eq!(
            (
                past["profiles"].as_array().unwrap().len(),
                &past["next_after"]
            ),
            (0, &Value::Null)
        );
        // A failed job's config is kept too: it is what to look at to see why.
        let failed = server.get(&format!("/api/jobs/{failed}/config")).json();
        assert_eq!(failed["profiles"], serde_json::json!([[0, 30], [5]]));
        assert_eq!(failed["num_teams"], 7);
    };
    check(&server);
    // After a restart the journal is long gone: the config comes from the result.
    assert!(server.shutdown().success());
    let server = Server::start_in(dir.path(), &[]);
    check(&server);
    let journals =
        crate::common::count_files(&server.results, |name| name.starts_with("requests-"));
    assert_eq!(journals, 0);

    for (query, reason) in [
        ("limit=0", "limit must be"),
        ("after=x", "after must be"),
        ("width=3", "`width`"),
    ] {
        let reply = server.get(&format!("/api/jobs/{done}/config?{query}"));
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.reason().contains(reason), "{query}: {}", reply.body);
    }
    let unknown = server.get("/api/jobs/01a22d96-0b83-70e9-ae0c-b5fd24c19cf9/config");
    assert_eq!(
        (unknown.status, unknown.reason()),
        (404, "Invalid job_id".to_owned())
    );
}

#[test]
fn a_clusters_job_config_is_read_on_any_node() {
    let Some((pg, url)) = database() else { return };
    let args = ["--database-url", url.as_str()];
    let first = Server::start(&args);
    let second = Server::start(&args);
    let id = first.submit_json(EXAMPLE_JSON);
    second.wait_finished(&id);
    for server in [&first, &second] {
        let config = server.get(&format!("/api/jobs/{id}/config")).json();
        assert_eq!(
            config["profiles"],
            serde_json::json!([[21, 25, 28], [17], [17, 22, 17, 19, 17]])
        );
        assert_eq!(config["num_teams"], 3);
    }
    // The results in the database keep no request of their own.
    let kept = pg
        .psql(&url, "SELECT get_byte(body, 8) FROM icewall_results")
        .unwrap();
    assert_eq!(kept, "1", "a cluster's results stay in version 1");
}

#[test]
fn stats_name_the_widest_chart_the_server_draws() {
    let server = Server::start(&["--max-chart-width", "300"]);
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["max_chart_width"], 300, "{stats}");
}
