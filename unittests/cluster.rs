//! Cluster mode against a real PostgreSQL: several nodes on one database answer for each
//! other's jobs, migrate once, share Idempotency-Keys, pick up the jobs of a node killed
//! between claim and result, drain without taking the queue with them, and lose no
//! accepted job through `kill -9` of a node or a restart of the database.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::postgres::{PostgresServer, database, shared};
use crate::common::{
    EXAMPLE_JSON, Gate, Server, a_job_with_a_long_team_log, poll_until, wait_until,
};

/// A node of the cluster on `url`, with `args` besides.
pub fn node(url: &str, args: &[&str]) -> Server {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// The example's result, which every job of these tests must end with.
fn assert_example_done(server: &Server, id: &str) {
    let result = server.wait_finished(id);
    assert_eq!(result["status"], "done", "{id}: {result}");
    assert_eq!(result["data"]["cost"], 32_233_500, "{id}: {result}");
    assert_eq!(result["data"]["days"], 31, "{id}: {result}");
}

pub fn one_row(pg: &PostgresServer, url: &str, sql: &str) -> String {
    pg.psql(url, sql).unwrap().trim().to_owned()
}

/// A psql session that ran `sql` and keeps its transaction open until `finish`.
pub struct Session(std::process::Child);

impl Session {
    /// A session that ran `sql`, once the database shows it idle in its transaction
    /// after a statement starting with `last`.
    pub fn holding(pg: &PostgresServer, url: &str, sql: &str, last: &str) -> Session {
        let session = Session::open(pg, url, sql);
        wait_until("the test's session holds its transaction", || {
            one_row(
                pg,
                url,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'idle in transaction' AND query LIKE '{last}%'"
                ),
            ) == "1"
        });
        session
    }

    /// A session whose open transaction holds the Idempotency-Key `key`: an accept of
    /// the key waits for it, and the accepts batched behind that one with it.
    pub fn holding_key(pg: &PostgresServer, url: &str, key: &str) -> Session {
        Session::holding(
            pg,
            url,
            &format!(
                "BEGIN;\nINSERT INTO icewall_jobs (id, state, idempotency_key) \
                 VALUES (gen_random_uuid(), 'queued', '{key}');\n"
            ),
            "INSERT",
        )
    }

    /// A session whose open transaction holds the row of the job `id` locked: whatever
    /// changes the job waits for it.
    pub fn locking_row(pg: &PostgresServer, url: &str, id: &str) -> Session {
        Session::holding(
            pg,
            url,
            &format!("BEGIN;\nSELECT id FROM icewall_jobs WHERE id = '{id}' FOR UPDATE;\n"),
            "SELECT id FROM icewall_jobs",
        )
    }

    /// A session whose open transaction holds `table` locked against everything, reads
    /// too, as a migration or an operator's `LOCK TABLE` may.
    pub fn locking_table(pg: &PostgresServer, url: &str, table: &str) -> Session {
        Session::holding(
            pg,
            url,
            &format!("BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n"),
            "LOCK",
        )
    }

    pub fn open(pg: &PostgresServer, url: &str, sql: &str) -> Session {
        let mut child = pg.psql_session(url);
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.flush().unwrap();
        Session(child)
    }

    pub fn finish(mut self, last: &str) {
        let mut stdin = self.0.stdin.take().unwrap();
        stdin.write_all(last.as_bytes()).unwrap();
        drop(stdin);
        assert!(self.0.wait().unwrap().success());
    }
}

/// A psql session that holds `icewall_results` locked (no result can be written; claims
/// still can) until its stdin is closed.
fn lock_results(pg: &PostgresServer, url: &str) -> std::process::Child {
    let mut session = pg.psql_session(url);
    let stdin = session.stdin.as_mut().unwrap();
    std::io::Write::write_all(
        stdin,
        b"BEGIN;\nLOCK TABLE icewall_results IN EXCLUSIVE MODE;\n",
    )
    .unwrap();
    std::io::Write::flush(stdin).unwrap();
    wait_until("the test holds the lock", || {
        one_row(
            pg,
            url,
            "SELECT count(*) FROM pg_locks WHERE granted AND mode = 'ExclusiveLock' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND relation = 'icewall_results'::regclass",
        ) == "1"
    });
    session
}

/// Creates the trigger `name`, which runs `body` (PL/pgSQL statements) `when` (as
/// `BEFORE INSERT ON icewall_results FOR EACH ROW`): how these tests make the database
/// slow, or refuse as a full disk or a broken rule would, at the statement they aim at.
pub fn create_trigger(pg: &PostgresServer, url: &str, name: &str, when: &str, body: &str) {
    one_row(
        pg,
        url,
        &format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN {body} END $$;
             CREATE TRIGGER {name} {when} EXECUTE FUNCTION {name}()"
        ),
    );
}

/// Waits until `count` jobs of the cluster run (held at a gate, in these tests).
pub fn wait_until_running(pg: &PostgresServer, url: &str, what: &str, count: usize) {
    wait_until(what, || {
        one_row(
            pg,
            url,
            "SELECT count(*) FROM icewall_jobs WHERE state = 'running'",
        ) == count.to_string()
    });
}

/// The query of a job's state and attempt, as `running 1`.
pub fn state_and_attempt(id: &str) -> String {
    format!("SELECT state || ' ' || attempt FROM icewall_jobs WHERE id = '{id}'")
}

/// Waits for the job's first run, then does to it what the heartbeat's reaper does to a
/// job whose node missed its heartbeats: queued again, its lease gone, while that run
/// goes on. The run must be held (at a gate) until then: one that ended first left the
/// job done with its result stored, which no reaper requeues, and run again its result
/// would be refused as a second one for the job.
fn requeue_its_first_run(pg: &PostgresServer, url: &str, id: &str) {
    wait_until("the job's first run", || {
        one_row(pg, url, &state_and_attempt(id)) == "running 1"
    });
    let requeued = one_row(
        pg,
        url,
        &format!(
            "WITH requeued AS (
                 UPDATE icewall_jobs SET state = 'queued', lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE id = '{id}' AND state = 'running' AND attempt = 1
                 RETURNING id
             )
             SELECT count(*) FROM requeued"
        ),
    );
    assert_eq!(
        requeued,
        "1",
        "the job's first run ended before the test requeued it (the job is {})",
        one_row(pg, url, &state_and_attempt(id))
    );
}

#[test]
fn three_nodes_answer_every_question_about_each_others_jobs() {
    let Some((_, url)) = database() else { return };
    let nodes: Vec<Server> = (0..3).map(|_| node(&url, &[])).collect();
    let ids: Vec<String> = nodes
        .iter()
        .map(|node| node.submit_json(EXAMPLE_JSON))
        .collect();
    for id in &ids {
        for node in &nodes {
            assert_example_done(node, id);
            assert_eq!(
                node.get(&format!("/api/jobs/{id}/profiles/3/days/16"))
                    .json(),
                serde_json::json!({"day": 16, "ice_amount": 585})
            );
            let log = node.get(&format!("/api/jobs/{id}/log"));
            assert_eq!(log.status, 200);
            assert!(
                log.body
                    .starts_with("day 2: team 3 finished section 3 of profile 1\n"),
                "{}",
                log.body
            );
        }
    }
    let listed = nodes[2].get("/api/jobs?limit=10").json();
    let listed: HashSet<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect());
    // A delete on one node is seen by the others at once.
    let deleted = nodes[1].request("DELETE", &format!("/api/jobs/{}", ids[0]));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    for node in &nodes {
        assert_eq!(
            node.get(&format!("/api/get_results/{}", ids[0])).status,
            404
        );
        assert_eq!(
            node.get(&format!("/api/jobs/{}/profiles/3/days/16", ids[0]))
                .status,
            404,
            "a question every node has answered (and kept) before the delete"
        );
    }
    let stats = nodes[0].get("/api/stats").json();
    assert_eq!(stats["jobs"]["done"], 2, "{stats}");
    for node in &nodes {
        // Each node took one submission, durable once the database committed it.
        let metrics = node.get("/metrics").body;
        assert!(
            metrics.contains("\nicewall_accept_seconds_count 1\n"),
            "{metrics}"
        );
    }
    for node in nodes {
        assert!(node.shutdown().success());
    }
}

#[test]
fn every_line_a_node_logs_names_the_node_its_request_lines_too() {
    let Some((_, url)) = database() else { return };
    let mut server = node(&url, &["--log-target", "stdout", "--log-format", "json"]);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_example_done(&server, &id);
    let mut stdout = server.take_stdout();
    assert!(server.shutdown().success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut log).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let requests = records
        .iter()
        .filter(|record| record["msg"] == "request")
        .count();
    assert!(requests >= 2, "the POST and the polls: {log}");
    let nodes: HashSet<&str> = records
        .iter()
        .map(|record| record["node_id"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(nodes.len(), 1, "{log}");
    assert_eq!(nodes.iter().next().unwrap().len(), 36, "{log}");
}

#[test]
fn nodes_starting_at_once_migrate_the_database_once() {
    let Some((pg, url)) = database() else { return };
    let nodes: Vec<Server> = thread::scope(|scope| {
        let starting: Vec<_> = (0..3).map(|_| scope.spawn(|| node(&url, &[]))).collect();
        starting
            .into_iter()
            .map(|node| node.join().unwrap())
            .collect()
    });
    assert_eq!(
        one_row(
            pg,
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM icewall_schema"
        ),
        "1,2"
    );
    let id = nodes[0].submit_json(EXAMPLE_JSON);
    assert_example_done(&nodes[2], &id);
}

#[test]
fn two_nodes_racing_one_idempotency_key_make_one_job() {
    let Some((pg, url)) = database() else { return };
    let nodes = [node(&url, &[]), node(&url, &[])];
    let answers: Vec<(u16, String)> = thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|racer| {
                let node = &nodes[racer % 2];
                scope.spawn(move || {
                    let reply = node.post_with(
                        "/api/simulate",
                        &[
                            ("Content-Type", "application/json"),
                            ("Idempotency-Key", "one-wall-please"),
                        ],
                        EXAMPLE_JSON.as_bytes(),
                    );
                    (reply.status, reply.body)
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect()
    });
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert!(matches!(status, 200 | 202), "{status} {body}");
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            body["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(one_row(pg, &url, "SELECT count(*) FROM icewall_jobs"), "1");
    // The key with another request, on either node: 422.
    for node in &nodes {
        let reply = node.post_with(
            "/api/simulate",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "one-wall-please"),
            ],
            br#"{"profiles": [[1]]}"#,
        );
        assert_eq!(reply.status, 422, "{}", reply.body);
    }
}

#[test]
fn a_node_killed_between_claim_and_result_has_its_job_run_again_after_its_lease() {
    let Some((pg, url)) = database() else { return };
    let gate = Gate::closed();
    let doomed = node(&url, &gate.args(&["--lease", "1s"]));
    let id = doomed.submit_json(EXAMPLE_JSON);
    wait_until("the job is claimed and held at the gate", || {
        doomed.get(&format!("/api/get_results/{id}")).json()["status"] == "running"
    });
    wait_until("the operators see the node run it", || {
        doomed.get("/api/stats").json()["nodes"][0]["running"] == 1
    });
    doomed.kill9();
    let survivor = node(&url, &["--lease", "1s"]);
    assert_example_done(&survivor, &id);
    assert_eq!(
        one_row(
            pg,
            &url,
            &format!("SELECT attempt || ' ' || state FROM icewall_jobs WHERE id = '{id}'")
        ),
        "2 done"
    );
    // The operators' view: the dead node, stale, runs nothing now (its last heartbeat
    // said one job), nor does the survivor.
    let stats = survivor.get("/api/stats").json();
    let nodes = stats["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{stats}");
    for listed in nodes {
        assert_eq!(listed["running"], 0, "{listed}");
    }
    assert_eq!(
        nodes
            .iter()
            .filter(|listed| listed["stale"] == true)
            .count(),
        1,
        "{stats}"
    );
}

#[test]
fn a_nodes_start_up_line_names_the_node_and_nothing_of_a_results_directory() {
    let Some((_, url)) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster_node = Server::start_in(dir.path(), &["--database-url", &url]);
    let node_id = cluster_node.get("/api/stats").json()["nodes"][0]["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The log is written behind the server's work: read once the line is there.
    let mut log = String::new();
    poll_until(Duration::from_secs(10), || {
        log = std::fs::read_to_string(dir.path().join("logs/icewall.log")).unwrap_or_default();
        log.contains(" started")
    });
    let started = log
        .lines()
        .find(|line| line.contains(" started"))
        .unwrap_or_else(|| panic!("no start-up line: {log}"));
    assert!(started.contains(&node_id), "{started}");
    for file_store_only in ["results_dir", "jobs_on_disk"] {
        assert!(!started.contains(file_store_only), "{started}");
    }
}

/// Waits for the lease keeper's first beat (at once, after the node's registration),
/// the one node's of `url`.
fn first_beat(pg: &PostgresServer, url: &str) {
    wait_until("the first beat", || {
        one_row(
            pg,
            url,
            "SELECT heartbeat_at > started_at FROM icewall_nodes",
        ) == "t"
    });
}

#[test]
fn a_readiness_probe_does_not_pass_for_the_nodes_heartbeat() {
    let Some((pg, url)) = database() else { return };
    // A beat every 20 s: none comes during the test after the first.
    let cluster_node = node(&url, &["--lease", "60s"]);
    let beat = "SELECT heartbeat_at FROM icewall_nodes";
    first_beat(pg, &url);
    let first = one_row(pg, &url, beat);
    assert_eq!(cluster_node.get("/readyz").status, 200);
    // The probe wrote, but not the heartbeat: the reapers would take a node whose
    // lease keeper is stuck for alive as long as something asks it if it is ready.
    assert_eq!(one_row(pg, &url, beat), first);
    assert_eq!(
        one_row(pg, &url, "SELECT probed_at IS NOT NULL FROM icewall_nodes"),
        "t"
    );
}

#[test]
fn retention_forgets_a_silent_node_but_not_one_whose_long_lease_spaces_its_beats() {
    let Some((pg, url)) = database() else { return };
    // A beat every 80 minutes: silent for more than the hour after which a node that
    // stopped beating is forgotten, and alive.
    let live = node(&url, &["--lease", "4h"]);
    first_beat(pg, &url);
    one_row(
        pg,
        &url,
        "UPDATE icewall_nodes SET heartbeat_at = now() - interval '61 minutes';
         INSERT INTO icewall_nodes (id, address, workers, lease_ms, heartbeat_at)
             VALUES (gen_random_uuid(), 'gone', 1, 30000, now() - interval '2 hours')",
    );
    wait_until("a sweep forgets the node gone for two hours", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM icewall_nodes WHERE address = 'gone'",
        ) == "0"
    });
    let nodes = live.get("/api/stats").json()["nodes"].clone();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(nodes[0]["stale"], false, "{nodes}");
}

#[test]
fn a_job_whose_node_dies_each_time_fails_after_max_attempts() {
    let Some((_, url)) = database() else { return };
    let gate = Gate::closed();
    let doomed = node(&url, &gate.args(&["--lease", "1s", "--max-attempts", "1"]));
    let id = doomed.submit_json(EXAMPLE_JSON);
    wait_until("the job is claimed", || {
        doomed.get(&format!("/api/get_results/{id}")).json()["status"] == "running"
    });
    doomed.kill9();
    let survivor = node(&url, &["--lease", "1s", "--max-attempts", "1"]);
    let result = survivor.wait_finished(&id);
    assert_eq!(result["status"], "failed", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("stopped answering"), "{reason}");
}

#[test]
fn a_draining_node_finishes_its_own_jobs_and_leaves_the_queue_to_the_others() {
    let Some((pg, url)) = database() else { return };
    let gate = Gate::closed();
    let draining = node(&url, &gate.one_worker(&["--claim-ahead", "0"]));
    let ids: Vec<String> = (0..5).map(|_| draining.submit_json(EXAMPLE_JSON)).collect();
    wait_until("one job is claimed", || {
        draining.get(&format!("/api/get_results/{}", ids[0])).json()["status"] == "running"
    });
    let reply = draining.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["pending"],
        1,
        "only its own job: {}",
        reply.body
    );
    gate.open();
    let mut draining = draining;
    assert!(draining.wait_exit().success());
    assert_eq!(
        one_row(
            pg,
            &url,
            "SELECT count(*) FILTER (WHERE state = 'done') || ' ' || count(*) \
             FILTER (WHERE state = 'queued') FROM icewall_jobs"
        ),
        "1 4"
    );
    let other = node(&url, &[]);
    for id in &ids {
        assert_example_done(&other, id);
    }
}

/// Submits the example to the nodes in turn until told to stop; keeps the ids that got
/// a 202 and every status seen.
struct Load {
    accepted: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(bases: Arc<Mutex<Vec<String>>>) -> Load {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, statuses, stop) = (
                Arc::clone(&accepted),
                Arc::clone(&statuses),
                Arc::clone(&stop),
            );
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build();
            thread::spawn(move || {
                let mut turn = 0;
                while !stop.load(Ordering::SeqCst) {
                    let base = {
                        let bases = bases.lock().unwrap();
                        turn += 1;
                        bases[turn % bases.len()].clone()
                    };
                    let sent = agent
                        .post(&format!("{base}/api/simulate"))
                        .set("Content-Type", "application/json")
                        .send_string(EXAMPLE_JSON);
                    match sent {
                        Ok(response) => {
                            statuses.lock().unwrap().push(response.status());
                            let body: serde_json::Value = response.into_json().unwrap();
                            accepted
                                .lock()
                                .unwrap()
                                .push(body["job_id"].as_str().unwrap().to_owned());
                        }
                        Err(ureq::Error::Status(status, _)) => {
                            statuses.lock().unwrap().push(status);
                        }
                        // A node killed under the request: no answer, no promise.
                        Err(_) => {}
                    }
                }
            })
        };
        Load {
            accepted,
            statuses,
            stop,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    fn finish(mut self) -> (Vec<String>, Vec<u16>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let accepted = self.accepted.lock().unwrap().clone();
        let statuses = self.statuses.lock().unwrap().clone();
        (accepted, statuses)
    }
}

/// Every accepted job ends done with the example's result, once: one result row each
/// (the key allows no second). A job whose commit was made but whose 202 was lost with
/// its node is no promise, but it too must run: no job is left behind.
fn assert_every_accepted_job_done_once(
    pg: &PostgresServer,
    url: &str,
    reader: &Server,
    ids: &[String],
) {
    for id in ids {
        assert_example_done(reader, id);
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id was given twice");
    let listed = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        one_row(
            pg,
            url,
            &format!("SELECT count(*) FROM icewall_results WHERE job_id IN ({listed})")
        ),
        ids.len().to_string(),
        "one result per accepted job"
    );
    wait_until("every job in the database is done", || {
        one_row(
            pg,
            url,
            "SELECT count(*) FROM icewall_jobs WHERE state <> 'done'",
        ) == "0"
    });
}

#[test]
fn kill_9_of_a_node_under_load_loses_no_accepted_job() {
    let Some((pg, url)) = database() else { return };
    let lease = ["--lease", "1s"];
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&url, &lease)).collect();
    let bases = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|node| node.base.clone())
            .collect::<Vec<_>>(),
    ));
    let load = Load::start(Arc::clone(&bases));
    for round in 0..3 {
        let before = load.accepted();
        wait_until("the load gets some jobs in", || {
            load.accepted() >= before + 20
        });
        // The node killed in the middle of its work, then one started in its place.
        let victim = nodes.remove(round % nodes.len());
        let victim_base = victim.base.clone();
        victim.kill9();
        let fresh = node(&url, &lease);
        let mut bases = bases.lock().unwrap();
        let slot = bases.iter().position(|base| *base == victim_base).unwrap();
        bases[slot] = fresh.base.clone();
        nodes.push(fresh);
    }
    let before = load.accepted();
    wait_until("the load goes on", || load.accepted() >= before + 20);
    let (accepted, statuses) = load.finish();
    assert!(
        statuses.iter().all(|status| *status == 202),
        "every answer given was a 202: {statuses:?}"
    );
    assert_every_accepted_job_done_once(pg, &url, &nodes[0], &accepted);
}

#[test]
fn the_database_restarted_under_load_loses_no_accepted_job_and_answers_no_500() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.create_database();
    let args = ["--database-timeout", "2s", "--lease", "2s"];
    let nodes = [node(&url, &args), node(&url, &args)];
    let bases = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|node| node.base.clone())
            .collect::<Vec<_>>(),
    ));
    let load = Load::start(bases);
    wait_until("the load gets some jobs in", || load.accepted() >= 20);
    pg.stop();
    // While it is down: accepts and reads answer 503, and the nodes are not ready.
    let down = nodes[0].post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(nodes[1].get("/readyz").status, 503);
    assert_eq!(nodes[1].get("/api/jobs?limit=1").status, 503);
    let during = load.accepted();
    pg.start_again();
    assert!(
        poll_until(Duration::from_secs(20), || nodes[0].get("/readyz").status
            == 200),
        "the node reconnects by itself"
    );
    wait_until("accepts resume", || load.accepted() >= during + 20);
    let (accepted, statuses) = load.finish();
    assert!(
        statuses.iter().all(|status| matches!(status, 202 | 503)),
        "only 202 and 503: {statuses:?}"
    );
    assert!(statuses.contains(&503), "the outage was seen: {statuses:?}");
    assert_every_accepted_job_done_once(&pg, &url, &nodes[1], &accepted);
}

/// bench/cluster-kill9.py found it: a database restart longer than a lease left every
/// node's last beat a lease old when it came back, and the first reaper took the jobs
/// of nodes that were alive all along, each run again and charged an attempt.
#[test]
fn a_database_down_for_longer_than_a_lease_costs_a_running_job_no_attempt() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.create_database();
    let gate = Gate::closed();
    let lease = ["--lease", "4s"];
    let holder = node(&url, &gate.args(&lease));
    let id = holder.submit_json(EXAMPLE_JSON);
    wait_until("the job is claimed and held at the gate", || {
        holder.get(&format!("/api/get_results/{id}")).json()["status"] == "running"
    });
    // Would run the job at once, were it queued again.
    let other = node(&url, &lease);
    pg.stop();
    // Which comes first once the database is back, the holder's beat or the other's
    // reaper, is left to chance otherwise: the holder is held still until the other
    // node has been back in touch for a reaper's round (a third of a lease).
    holder.signal("STOP");
    thread::sleep(Duration::from_secs(5));
    pg.start_again();
    let back = poll_until(Duration::from_secs(20), || {
        other.get("/readyz").status == 200
    });
    thread::sleep(Duration::from_millis(1500));
    holder.signal("CONT");
    assert!(back, "the other node reconnects by itself");
    assert!(
        poll_until(Duration::from_secs(20), || holder.get("/readyz").status
            == 200),
        "the holder reconnects by itself"
    );
    // Time for every reaper to look, several times.
    thread::sleep(Duration::from_secs(4));
    gate.open();
    assert_example_done(&other, &id);
    assert_eq!(
        one_row(
            &pg,
            &url,
            &format!("SELECT attempt || ' ' || state FROM icewall_jobs WHERE id = '{id}'")
        ),
        "1 done",
        "the job ran once, on the node that held it through the outage"
    );
}

#[test]
fn a_large_team_log_comes_from_its_chunks_as_the_file_store_writes_it() {
    let Some((pg, url)) = database() else { return };
    let cluster = node(&url, &[]);
    let files = Server::start(&[]);
    let read_log = |server: &Server, id: &str| {
        let response = ureq::get(&server.url(&format!("/api/jobs/{id}/log")))
            .call()
            .unwrap();
        let declared: usize = response.header("content-length").unwrap().parse().unwrap();
        let mut log = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut log).unwrap();
        assert_eq!(log.len(), declared);
        log
    };
    let (in_cluster, in_files) = (
        a_job_with_a_long_team_log(&cluster),
        a_job_with_a_long_team_log(&files),
    );
    let log = read_log(&cluster, &in_cluster);
    assert!(log.len() > 8 << 20, "{} bytes", log.len());
    assert!(
        log == read_log(&files, &in_files),
        "the two stores' logs differ"
    );
    assert_eq!(
        one_row(
            pg,
            &url,
            &format!("SELECT count(*) FROM icewall_team_logs WHERE job_id = '{in_cluster}'")
        ),
        log.len().div_ceil(1 << 20).to_string()
    );
    let deleted = cluster.request("DELETE", &format!("/api/jobs/{in_cluster}"));
    assert_eq!(deleted.status, 200);
    assert_eq!(
        one_row(pg, &url, "SELECT count(*) FROM icewall_team_logs"),
        "0",
        "a delete takes the log's chunks with it"
    );
}

#[test]
fn a_node_stops_claiming_while_its_results_wait_for_the_database() {
    let Some((pg, url)) = database() else { return };
    let node = node(&url, &["--workers", "1", "--claim-ahead", "0"]);
    // Results cannot be written while the test holds this lock; claims still can.
    let mut session = lock_results(pg, &url);
    let ids: Vec<String> = (0..700).map(|_| node.submit_json(EXAMPLE_JSON)).collect();
    // One worker, none claimed ahead, two batches of 256 results waiting: 513 at most.
    let mut counts = String::new();
    wait_until("claiming stops at its bound", || {
        let now = one_row(
            pg,
            &url,
            "SELECT count(*) FILTER (WHERE state = 'running') || ' ' || \
             count(*) FILTER (WHERE state = 'queued') FROM icewall_jobs",
        );
        let settled = now == counts;
        counts = now;
        std::thread::sleep(Duration::from_millis(300));
        settled && counts.starts_with("513 ")
    });
    assert_eq!(counts, "513 187", "running, queued");
    std::io::Write::write_all(session.stdin.as_mut().unwrap(), b"COMMIT;\n").unwrap();
    drop(session.stdin.take());
    assert!(session.wait().unwrap().success());
    for id in ids.iter().step_by(50) {
        assert_example_done(&node, id);
    }
    wait_until("every job is done", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM icewall_jobs WHERE state = 'done'",
        ) == "700"
    });
}

#[test]
fn a_node_without_its_database_stops_at_start_up_saying_why() {
    // The URL as a flag, and as ICEWALL_DATABASE_URL: either puts the node in cluster
    // mode. A URL that cannot be read stops it at once, whatever the start timeout;
    // a database that does not answer, once the timeout has passed (0s: one try).
    let refused = "postgres://postgres@127.0.0.1:1/icewall";
    for (url, by_env, start_timeout, why) in [
        ("not a url", false, "60s", "a bad --database-url"),
        (refused, false, "0s", "Connection refused"),
        (refused, true, "1s", "gave up after waiting 1."),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_icewall"));
        command.args(["serve", "--bind", "127.0.0.1:0", "--database-timeout", "2s"]);
        if by_env {
            command.env("ICEWALL_DATABASE_URL", url);
            command.env("ICEWALL_DATABASE_START_TIMEOUT", start_timeout);
        } else {
            command.args(["--database-url", url]);
            command.args(["--database-start-timeout", start_timeout]);
        }
        let began = Instant::now();
        let (code, stderr) = crate::common::refused_start(command, dir.path());
        assert_eq!(code, Some(1), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
        assert!(began.elapsed() < Duration::from_secs(20), "{url}: {stderr}");
        if start_timeout == "1s" {
            assert!(
                stderr.contains("s for it (--database-start-timeout 1s): ")
                    && stderr.contains("Connection refused"),
                "{stderr}"
            );
        } else {
            assert!(!stderr.contains("gave up"), "{url}: {stderr}");
        }
    }
}

#[test]
fn a_node_refused_by_its_database_stops_at_once_without_waiting() {
    let Some((pg, _)) = database() else { return };
    let no_role = pg.url("postgres").replace("postgres@", "no_such_role@");
    for (url, why) in [
        (
            pg.url("no_such_database"),
            r#"database "no_such_database" does not exist"#,
        ),
        (no_role, r#"role "no_such_role" does not exist"#),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_icewall"));
        command.args(["serve", "--bind", "127.0.0.1:0", "--database-url", &url]);
        // The default start timeout, a minute: none of it is waited.
        let began = Instant::now();
        let (code, stderr) = crate::common::refused_start(command, dir.path());
        let took = began.elapsed();
        assert_eq!(code, Some(1), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("gave up"), "{url}: {stderr}");
        assert!(took < Duration::from_secs(10), "{url}: {took:?} {stderr}");
    }
}

#[test]
fn a_node_started_before_its_database_waits_for_it_alive_and_not_ready() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let url = pg.url("postgres");
    pg.stop();
    let mut waiting = Server::starting(&["--database-url", &url]);
    wait_until("the node says it waits for its database", || {
        waiting.log().contains("cannot reach the database yet")
    });
    let alive = waiting.get("/healthz");
    assert_eq!(alive.status, 200, "{}", alive.body);
    let ready = waiting.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.retry_after.as_deref(), Some("1"));
    assert!(
        ready.body.contains("the server is starting"),
        "{}",
        ready.body
    );

    pg.start_again();
    waiting.wait_listening();
    let ready = waiting.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let id = waiting.submit_json(EXAMPLE_JSON);
    assert_example_done(&waiting, &id);
    // The log is written out by a thread of its own, every 100 ms.
    wait_until("the log says the database answered", || {
        waiting.log().contains("the database answered: starting")
    });
    assert!(waiting.shutdown().success());
}

#[test]
fn a_node_waiting_for_its_database_stops_at_once_on_a_signal() {
    // No database at all: the node waits for a minute, unless stopped.
    for signal in ["TERM", "INT"] {
        let mut waiting =
            Server::starting(&["--database-url", "postgres://postgres@127.0.0.1:1/icewall"]);
        wait_until("the node says it waits for its database", || {
            waiting.log().contains("cannot reach the database yet")
        });
        assert_eq!(waiting.get("/healthz").status, 200);
        let sent = Instant::now();
        waiting.signal(signal);
        let status = waiting.wait_exit();
        let took = sent.elapsed();
        // Its default action, as anywhere in the start-up (see SignalsWhileStarting).
        let number = if signal == "TERM" {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        assert_eq!(status.signal(), Some(number), "SIG{signal}: {status}");
        assert!(took < Duration::from_secs(5), "SIG{signal}: {took:?}");
    }
}

#[test]
fn a_node_logging_to_stdout_says_on_stderr_at_once_that_it_waits_for_its_database() {
    // On stdout nothing precedes the listening line, which comes once the database
    // answers: the warning goes to stderr meanwhile, as the operator needs it now.
    let mut waiting = Server::starting(&[
        "--database-url",
        "postgres://postgres@127.0.0.1:1/icewall",
        "--log-target",
        "stdout",
    ]);
    let mut stderr = waiting.take_stderr();
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stderr, &mut line).is_ok_and(|read| read > 0) {
            if lines.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    let began = Instant::now();
    let warning = loop {
        let line = said
            .recv_timeout(Duration::from_secs(20))
            .expect("a line on stderr while the node waits");
        if line.contains("cannot reach the database yet") {
            break line;
        }
    };
    assert!(began.elapsed() < Duration::from_secs(10), "{warning}");
    assert!(
        warning.contains(" WARN ") && warning.contains("Connection refused"),
        "{warning}"
    );
    waiting.signal("TERM");
    assert!(!waiting.wait_exit().success());
}

#[test]
fn a_node_claims_no_long_jobs_ahead_of_its_workers() {
    let Some((pg, url)) = database() else { return };
    let gate = Gate::closed();
    let busy = node(&url, &gate.one_worker(&["--claim-poll", "100ms"]));
    let ids: Vec<String> = (0..6).map(|_| busy.submit_json(EXAMPLE_JSON)).collect();
    wait_until_running(pg, &url, "a job runs", 1);
    // Several claim polls later, the node still holds only the job on its worker: it
    // knows no run time yet, so it claims nothing ahead, and the other jobs stay in the
    // queue for any node.
    std::thread::sleep(Duration::from_millis(500));
    let counts = "SELECT count(*) FILTER (WHERE state = 'running') || ' ' || \
                  count(*) FILTER (WHERE state = 'queued') FROM icewall_jobs";
    assert_eq!(one_row(pg, &url, counts), "1 5", "running, queued");
    gate.open();
    for id in &ids {
        assert_example_done(&busy, id);
    }
}

#[test]
fn a_claim_under_way_when_a_node_drains_runs_its_job_before_the_node_stops() {
    let Some((pg, url)) = database() else { return };
    // The claim holds the job it took for a while: the drain begins meanwhile.
    let mut draining = node(
        &url,
        &[
            "--workers",
            "1",
            "--claim-ahead",
            "0",
            "--debug-claim-delay-ms",
            "1500",
        ],
    );
    let id = draining.submit_json(EXAMPLE_JSON);
    thread::sleep(Duration::from_millis(300));
    let reply = draining.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    assert!(draining.wait_exit().success());
    let row = one_row(
        pg,
        &url,
        &format!("SELECT state || ' ' || attempt FROM icewall_jobs WHERE id = '{id}'"),
    );
    assert_eq!(
        row, "done 1",
        "the job the claim took was left running under the stopped node's lease"
    );
}

#[test]
fn a_database_error_reading_a_team_log_is_a_503_not_a_500() {
    let Some((pg, url)) = database() else { return };
    let cluster = node(&url, &[]);
    let id = a_job_with_a_long_team_log(&cluster);
    // The chunks cannot be read, the job and its result still can.
    one_row(
        pg,
        &url,
        "ALTER TABLE icewall_team_logs RENAME TO icewall_team_logs_away",
    );
    let refused = cluster.get(&format!("/api/jobs/{id}/log"));
    one_row(
        pg,
        &url,
        "ALTER TABLE icewall_team_logs_away RENAME TO icewall_team_logs",
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.retry_after.is_some());
    let again = ureq::get(&cluster.url(&format!("/api/jobs/{id}/log")))
        .call()
        .unwrap();
    assert_eq!(again.status(), 200, "once the database answers again");
}

#[test]
fn a_key_whose_job_is_past_its_ttl_is_not_replayed() {
    let Some((_, url)) = database() else { return };
    let node = node(&url, &["--result-ttl", "1s"]);
    let submit = || {
        node.post_with(
            "/api/simulate",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "order-1"),
            ],
            EXAMPLE_JSON.as_bytes(),
        )
    };
    let first = submit();
    assert_eq!(first.status, 202, "{}", first.body);
    let first = first.json()["job_id"].as_str().unwrap().to_owned();
    node.wait_finished(&first);
    wait_until("the job is past its TTL", || {
        node.get(&format!("/api/get_results/{first}")).status == 404
    });
    // A 409 (the key being let go) may come first; never the job that answers 404.
    let mut retry = submit();
    if retry.status == 409 {
        retry = submit();
    }
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert_eq!(
        retry.replayed.as_deref(),
        Some("false"),
        "replayed a job past its TTL"
    );
    let second = retry.json()["job_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(node.wait_finished(&second)["status"], "done");
}

#[test]
fn a_node_that_runs_a_job_again_keeps_the_lease_of_the_new_attempt_when_the_old_one_ends() {
    let Some((pg, url)) = database() else { return };
    // One worker, and room to claim ahead: the job's second attempt waits on this node
    // behind its first. Each run lasts two leases; the first is then held at the gate
    // until it has been requeued (a delay alone, under load, could let it end first).
    let gate = Gate::closed();
    let server = node(
        &url,
        &gate.args(&[
            "--workers",
            "1",
            "--claim-ahead",
            "4",
            "--lease",
            "1s",
            "--claim-poll",
            "100ms",
            "--debug-job-delay-ms",
            "2000",
        ]),
    );
    let id = server.submit_json(EXAMPLE_JSON);
    let state = state_and_attempt(&id);
    // The node claims it again while its first run goes on.
    requeue_its_first_run(pg, &url, &id);
    gate.open();
    assert_example_done(&server, &id);
    // The first run's end must not drop the second run from the node's own jobs: its
    // lease would go unrenewed, run out, and the job run a third time.
    assert_eq!(one_row(pg, &url, &state), "done 2");
}

#[test]
fn two_attempts_of_one_job_finishing_in_one_batch_store_the_newer_one() {
    let Some((pg, url)) = database() else { return };
    let gate = Gate::closed();
    let server = node(
        &url,
        &gate.args(&[
            "--workers",
            "3",
            "--claim-ahead",
            "0",
            "--lease",
            "2s",
            "--claim-poll",
            "100ms",
            "--debug-panic-on-num-teams",
            "7",
        ]),
    );
    // Two runs of one job at the gate: the second claimed as the reaper would leave it.
    let id = server.submit_json(EXAMPLE_JSON);
    let state = state_and_attempt(&id);
    requeue_its_first_run(pg, &url, &id);
    wait_until("the job's second run", || {
        one_row(pg, &url, &state) == "running 2"
    });
    // Results wait while the test holds this lock: the first batch, a job that fails
    // at once, waits on it, and both runs' results queue up behind it.
    let mut session = lock_results(pg, &url);
    let failing = server.submit_json(r#"{"profiles": [[1]], "num_teams": 7}"#);
    wait_until("the first batch waits on the lock", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND datname = current_database()",
        ) == "1"
    });
    gate.open();
    thread::sleep(Duration::from_millis(1000));
    drop(session.stdin.take());
    assert!(session.wait().unwrap().success());
    assert_eq!(server.wait_finished(&failing)["status"], "failed");
    assert_example_done(&server, &id);
    assert_eq!(
        one_row(pg, &url, &state),
        "done 2",
        "the batch holding both runs was refused, and the job ran a third time"
    );
}

#[test]
fn a_failed_look_for_a_keys_job_fails_only_the_keyed_submissions_of_its_batch() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &[]);
    let submit = |key: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(key.map(|key| ("Idempotency-Key", key)));
        server.post_with("/api/simulate", &headers, EXAMPLE_JSON.as_bytes())
    };
    let first = submit(Some("order-1"));
    assert_eq!(first.status, 202, "{}", first.body);
    let first = first.json()["job_id"].as_str().unwrap().to_owned();
    server.wait_finished(&first);
    // The look for the job holding a key (after the batch's commit) fails from now on.
    create_trigger(
        pg,
        &url,
        "icewall_test_refuse",
        "BEFORE UPDATE OF idempotency_key ON icewall_jobs FOR EACH STATEMENT",
        "RAISE EXCEPTION 'refused by the test';",
    );
    // A key held by the test's open transaction stops the accepts behind a first
    // batch: the next two submissions then go in one batch.
    let session = Session::holding_key(pg, &url, "blocker");
    let (plain, keyed) = thread::scope(|scope| {
        let blocked = scope.spawn(|| submit(Some("blocker")));
        wait_until("the first batch waits for the key", || {
            one_row(
                pg,
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND datname = current_database()",
            ) == "1"
        });
        let plain = scope.spawn(|| submit(None));
        let keyed = scope.spawn(|| submit(Some("order-1")));
        thread::sleep(Duration::from_millis(1000));
        session.finish("ROLLBACK;\n");
        assert_eq!(blocked.join().unwrap().status, 202);
        (plain.join().unwrap(), keyed.join().unwrap())
    });
    // The job without a key was committed: answering 503 would invite a retry that
    // makes it twice.
    assert_eq!(plain.status, 202, "{}", plain.body);
    let made = plain.json()["job_id"].as_str().unwrap().to_owned();
    assert_example_done(&server, &made);
    // The keyed one is answered 503: its retry finds its job.
    assert_eq!(keyed.status, 503, "{}", keyed.body);
    one_row(pg, &url, "DROP TRIGGER icewall_test_refuse ON icewall_jobs");
    let retry = submit(Some("order-1"));
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert_eq!(retry.replayed.as_deref(), Some("true"));
    assert_eq!(retry.json()["job_id"], first.as_str());
}

#[test]
fn cancel_takes_a_queued_job_out_from_any_node_and_leaves_a_finished_one() {
    let Some((pg, url)) = database() else { return };
    let gate = Gate::closed();
    let busy = gate.one_worker(&["--claim-ahead", "0"]);
    let nodes = [node(&url, &busy), node(&url, &busy)];
    // Both nodes' one worker held: a third job stays queued.
    let held: Vec<String> = nodes
        .iter()
        .map(|node| node.submit_json(EXAMPLE_JSON))
        .collect();
    wait_until_running(pg, &url, "both jobs run", 2);
    let queued = nodes[0].submit_json(EXAMPLE_JSON);
    let cancel = |id: &str| nodes[1].request("POST", &format!("/api/jobs/{id}/cancel"));
    let refused = cancel(&held[0]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.reason(),
        "the job is running; only a queued job can be cancelled"
    );
    let cancelled = cancel(&queued);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(
        nodes[0].get(&format!("/api/get_results/{queued}")).status,
        404
    );
    gate.open();
    assert_example_done(&nodes[1], &held[0]);
    let refused = cancel(&held[0]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.reason(),
        "the job is done; only a queued job can be cancelled"
    );
    assert_eq!(
        nodes[1]
            .get(&format!("/api/get_results/{}", held[0]))
            .status,
        200
    );
}

#[test]
fn a_job_past_its_ttl_is_unknown_to_delete_and_cancel_as_to_reads() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--result-ttl", "1s"]);
    // The sweeper, which would remove the job's row, is kept out while the test runs:
    // it takes this lock first.
    let mut sweeper_kept_out = pg.psql_session(&url);
    let stdin = sweeper_kept_out.stdin.as_mut().unwrap();
    std::io::Write::write_all(stdin, b"SELECT pg_advisory_lock(7594024960086797314);\n").unwrap();
    std::io::Write::flush(stdin).unwrap();
    wait_until("the test holds the sweeper's lock", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ) == "1"
    });
    let id = server.submit_json(EXAMPLE_JSON);
    assert_example_done(&server, &id);
    wait_until("the job is past its TTL", || {
        server.get(&format!("/api/get_results/{id}")).status == 404
    });
    let cancelled = server.request("POST", &format!("/api/jobs/{id}/cancel"));
    assert_eq!(cancelled.status, 404, "{}", cancelled.body);
    let deleted = server.request("DELETE", &format!("/api/jobs/{id}"));
    assert_eq!(deleted.status, 404, "{}", deleted.body);
    assert_eq!(
        one_row(
            pg,
            &url,
            &format!("SELECT count(*) FROM icewall_jobs WHERE id = '{id}'")
        ),
        "1",
        "the row waits for the sweeper"
    );
    drop(sweeper_kept_out.stdin.take());
    let _ = sweeper_kept_out.wait();
}

#[test]
fn retention_keeps_the_newest_jobs_within_max_results_and_within_max_results_bytes() {
    let Some(pg) = shared() else { return };
    let finished = |url: &str| {
        one_row(
            pg,
            url,
            "SELECT coalesce(string_agg(id::text, ',' ORDER BY finished_at, id), '') \
             FROM icewall_jobs WHERE state = 'done'",
        )
    };
    let submit_five = |server: &Server| -> Vec<String> {
        (0..5)
            .map(|_| {
                let id = server.submit_json(EXAMPLE_JSON);
                assert_example_done(server, &id);
                id
            })
            .collect()
    };
    // Under the bound the sweeps keep everything; past it, the oldest go.
    let url = pg.create_database();
    let server = node(&url, &["--max-results", "3"]);
    let ids = submit_five(&server);
    wait_until("the trim to 3 jobs", || {
        finished(&url) == ids[2..].join(",")
    });

    // The same wall makes results of the same size: room for three, and a bit.
    let url = pg.create_database();
    let sizing = node(&url, &[]);
    let first = submit_five(&sizing);
    let size: u64 = one_row(
        pg,
        &url,
        &format!(
            "SELECT result_bytes FROM icewall_jobs WHERE id = '{}'",
            first[0]
        ),
    )
    .parse()
    .unwrap();
    assert!(sizing.shutdown().success());
    let limit = format!("{}B", 3 * size + size / 2);
    let server = node(&url, &["--max-results-bytes", &limit]);
    wait_until("the trim to 3 results' bytes", || {
        finished(&url) == first[2..].join(",")
    });
    let more = submit_five(&server);
    wait_until("the trim as jobs finish", || {
        finished(&url) == more[2..].join(",")
    });
}
