//! Cluster mode when its database is slow or silent, or when a node drains or removes a
//! job while the database changes under it: no submission answered 503 becomes a job
//! afterwards, no drain waits for ever or leaves a claimed job behind, a node recovers
//! on new connections, and a removal names the state it acted on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::cluster::{
    Session, create_trigger, node, one_row, state_and_attempt, wait_until_running,
};
use crate::common::postgres::{PostgresServer, database};
use crate::common::{
    EXAMPLE_JSON, Gate, Reply, Server, a_job_with_a_long_team_log, poll_until, wait_until,
};

/// Whether the server's process has exited (a zombie nobody reaped yet counts).
fn has_exited(server: &Server) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Sends `request` and hangs up once `waiting` holds (the request is under way). A
/// request answered first leaves unread bytes, so hanging up resets the connection: the
/// server then drops the request's handler (as in idempotency.rs).
fn hang_up_once(server: &Server, request: &str, waiting: impl FnMut() -> bool) {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n{request}"
    )
    .unwrap();
    stream.flush().unwrap();
    wait_until("the request is under way", waiting);
}

/// Sessions of this database waiting for a lock, whose query contains `like`.
fn lock_waits(pg: &PostgresServer, url: &str, like: &str) -> String {
    one_row(
        pg,
        url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND datname = current_database() AND query LIKE '%{like}%'"
        ),
    )
}

#[test]
fn a_client_gone_during_its_accept_does_not_stop_the_node_from_draining() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &[]);
    // A key held by the test's open transaction: the accept's insert waits for it.
    let session = Session::holding_key(pg, &url, "blocker");
    hang_up_once(
        &server,
        &format!(
            "POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nIdempotency-Key: blocker\r\n\
             Content-Length: {}\r\n\r\n{EXAMPLE_JSON}",
            EXAMPLE_JSON.len()
        ),
        || lock_waits(pg, &url, "WITH batch") == "1",
    );
    thread::sleep(Duration::from_millis(500));
    session.finish("ROLLBACK;\n");
    // The batch commits whether or not its client is there.
    wait_until("the hung-up client's job is committed", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM icewall_jobs WHERE idempotency_key = 'blocker'",
        ) == "1"
    });
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        poll_until(Duration::from_secs(20), || has_exited(&server)),
        "the node did not exit 20 s after its graceful shutdown: the drain waits for an \
         accept whose client left"
    );
}

/// A node waiting 1 s for its database (`--database-timeout`), and a first job it ran;
/// from then on the database takes 2.5 s to insert a request: longer than the node
/// waits (a commit waiting for a synchronous standby, a stalled disk; a pause in a
/// trigger here).
fn a_node_slow_to_accept(pg: &PostgresServer, url: &str) -> (Server, String) {
    let server = node(url, &["--database-timeout", "1s"]);
    // A first job: the accept's statement is prepared on the node's connections.
    let first = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&first)["status"], "done");
    create_trigger(
        pg,
        url,
        "icewall_test_pause",
        "BEFORE INSERT ON icewall_requests FOR EACH STATEMENT",
        "PERFORM pg_sleep(2.5); RETURN NULL;",
    );
    (server, first)
}

#[test]
fn an_accept_answered_503_is_not_committed_after_its_answer() {
    let Some((pg, url)) = database() else { return };
    let (server, first) = a_node_slow_to_accept(pg, &url);
    let refused = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
    assert_eq!(refused.status, 503, "{}", refused.body);
    one_row(
        pg,
        &url,
        "DROP TRIGGER icewall_test_pause ON icewall_requests",
    );
    thread::sleep(Duration::from_millis(2500));
    let jobs = one_row(
        pg,
        &url,
        &format!(
            "SELECT count(*) || ' ' || coalesce(string_agg(state, ','), '') FROM icewall_jobs \
             WHERE id <> '{first}'"
        ),
    );
    // The client was told 503 (retry): a retry without a key would make a second job.
    let retried = server.submit_json(EXAMPLE_JSON);
    assert_eq!(
        jobs, "0",
        "a submission answered 503 ({}) was committed afterwards; its retry made {retried}, \
         a second job",
        refused.body
    );
}

/// A TCP proxy on 127.0.0.1 in front of PostgreSQL that can make the connections it
/// carries go silent (nothing forwarded, nothing closed), as a network that dropped
/// them without a reset; connections made after that are carried normally.
struct Proxy {
    port: u16,
    carried: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let carried: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (carried, stop) = (Arc::clone(&carried), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let silent = Arc::new(AtomicBool::new(false));
                    carried.lock().unwrap().push(Arc::clone(&silent));
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (silent, stop) = (Arc::clone(&silent), Arc::clone(&stop));
                        thread::spawn(move || pump(from, to, &silent, &stop));
                    }
                }
            });
        }
        Proxy {
            port,
            carried,
            stop,
        }
    }

    fn silence_every_connection_so_far(&self) {
        for silent in self.carried.lock().unwrap().iter() {
            silent.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buffer = vec![0; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if silent.load(Ordering::SeqCst) {
            // Held open, never answered: what a dropped route looks like.
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_node_whose_database_connections_went_silent_recovers_on_new_ones() {
    let Some((pg, url)) = database() else { return };
    let (head, tail) = url.rsplit_once(':').unwrap();
    let (port, database) = tail.split_once('/').unwrap();
    let proxy = Proxy::start(port.parse().unwrap());
    let via_proxy = format!("{head}:{}/{database}", proxy.port);
    let server = node(&via_proxy, &["--database-timeout", "1s", "--lease", "3s"]);
    let before = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&before)["status"], "done");
    assert_eq!(server.get("/readyz").status, 200);

    proxy.silence_every_connection_so_far();
    // The database is up and takes new connections all along. Requests answer 503 for
    // a --database-timeout or so; after that the node is expected to work again.
    thread::sleep(Duration::from_secs(3));
    let ready = poll_until(Duration::from_secs(20), || {
        server.get("/readyz").status == 200
    });
    let read = poll_until(Duration::from_secs(20), || {
        server.get(&format!("/api/get_results/{before}")).status == 200
    });
    let mut after = None;
    let accepted = poll_until(Duration::from_secs(20), || {
        let reply = server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
        if reply.status == 202 {
            after = Some(reply.json()["job_id"].as_str().unwrap().to_owned());
        }
        reply.status == 202
    });
    let ran = after.as_ref().is_some_and(|after| {
        poll_until(Duration::from_secs(20), || {
            one_row(
                pg,
                &url,
                &format!("SELECT state FROM icewall_jobs WHERE id = '{after}'"),
            ) == "done"
        })
    });
    let stuck = one_row(
        pg,
        &url,
        "SELECT count(*) FILTER (WHERE state = 'queued') || ' queued, ' || \
         count(*) FILTER (WHERE state = 'running') || ' running' FROM icewall_jobs",
    );
    assert!(
        ready && read && accepted && ran,
        "40+ s after its connections went silent: /readyz 200: {ready}, a read 200: \
         {read}, an accept 202: {accepted}, the new job run: {ran} (jobs: {stuck})"
    );
}

#[test]
fn a_drain_leaves_no_job_claimed_by_a_slow_claim_behind() {
    let Some((pg, url)) = database() else { return };
    let draining = node(
        &url,
        &[
            "--workers",
            "1",
            "--claim-ahead",
            "0",
            "--database-timeout",
            "1s",
            "--lease",
            "2s",
            "--max-attempts",
            "1",
        ],
    );
    // The database is slow to answer a claim (a pause in a trigger, here): longer than
    // --database-timeout, well within a lease.
    create_trigger(
        pg,
        &url,
        "icewall_test_pause",
        "BEFORE UPDATE ON icewall_jobs FOR EACH ROW \
         WHEN (OLD.state = 'queued' AND NEW.state = 'running')",
        "PERFORM pg_sleep(2.5); RETURN NEW;",
    );
    let id = draining.submit_json(EXAMPLE_JSON);
    wait_until("the claim is under way", || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' \
             AND datname = current_database() AND query LIKE '%no_wait%'",
        ) == "1"
    });
    let reply = draining.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200);
    wait_until("the draining node exits", || has_exited(&draining));
    // The claim the node stopped waiting for commits.
    let committed = poll_until(Duration::from_secs(5), || {
        one_row(pg, &url, &state_and_attempt(&id)) != "queued 0"
    });
    let left = one_row(
        pg,
        &url,
        &format!(
            "SELECT state || ' ' || attempt || ' lease_owner ' || \
             coalesce(lease_owner::text, 'none') FROM icewall_jobs WHERE id = '{id}'"
        ),
    );
    eprintln!("row after the drain (claim committed: {committed}): {left}");
    one_row(pg, &url, "DROP TRIGGER icewall_test_pause ON icewall_jobs");
    let other = node(&url, &["--lease", "2s", "--max-attempts", "1"]);
    let result = other.wait_finished(&id);
    assert_eq!(
        result["status"], "done",
        "a job that no node ever lost, only a graceful drain: {result} (its row after the \
         drain: {left})"
    );
}

/// Pauses every statement that deletes job rows for 1.5 s, even one that deletes none:
/// a removal that deletes first and looks at the job after has a window between the
/// two, where the job can change.
fn pause_each_delete_of_a_job(pg: &PostgresServer, url: &str) {
    create_trigger(
        pg,
        url,
        "icewall_test_pause",
        "AFTER DELETE ON icewall_jobs FOR EACH STATEMENT",
        "PERFORM pg_sleep(1.5); RETURN NULL;",
    );
}

/// `removal`'s reply; if it pauses in a delete that found nothing to delete (see
/// `pause_each_delete_of_a_job`), `meanwhile` changes the job first.
fn removal_racing(
    pg: &PostgresServer,
    url: &str,
    removal: impl FnOnce() -> Reply + Send,
    meanwhile: impl FnOnce(),
) -> Reply {
    thread::scope(|scope| {
        let removing = scope.spawn(removal);
        let paused = || {
            one_row(
                pg,
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' \
                 AND datname = current_database()",
            ) == "1"
        };
        wait_until("the removal is answered or pauses", || {
            removing.is_finished() || paused()
        });
        if !removing.is_finished() {
            meanwhile();
        }
        removing.join().unwrap()
    })
}

/// A node with `flags`, and its job, running until the gate opens.
fn a_held_job(pg: &PostgresServer, url: &str, flags: &[&str]) -> (Server, Gate, String) {
    let gate = Gate::closed();
    let server = node(url, &gate.args(flags));
    let id = server.submit_json(EXAMPLE_JSON);
    wait_until("the job runs", || {
        one_row(pg, url, &state_and_attempt(&id)) == "running 1"
    });
    (server, gate, id)
}

#[test]
fn a_delete_racing_the_jobs_finish_never_refuses_it_as_done() {
    let Some((pg, url)) = database() else { return };
    let (server, gate, id) = a_held_job(pg, &url, &[]);
    pause_each_delete_of_a_job(pg, &url);
    let reply = removal_racing(
        pg,
        &url,
        || server.request("DELETE", &format!("/api/jobs/{id}")),
        || {
            gate.open();
            wait_until("the job is done", || {
                one_row(pg, &url, &state_and_attempt(&id)) == "done 1"
            });
        },
    );
    // Deleted, or refused as running: never refused as done, which a DELETE takes.
    assert!(
        reply.status == 200 || reply.reason().contains("running"),
        "{} {}",
        reply.status,
        reply.body
    );
    gate.open();
}

#[test]
fn a_cancel_racing_the_reaper_never_calls_a_queued_job_done() {
    let Some((pg, url)) = database() else { return };
    // One worker, held by the job's first run: nothing here claims it again.
    let (server, gate, id) = a_held_job(pg, &url, &["--workers", "1", "--claim-ahead", "0"]);
    pause_each_delete_of_a_job(pg, &url);
    let reply = removal_racing(
        pg,
        &url,
        || server.request("POST", &format!("/api/jobs/{id}/cancel")),
        || {
            // What the reaper does to a job whose node missed its heartbeats.
            one_row(
                pg,
                &url,
                &format!(
                    "UPDATE icewall_jobs SET state = 'queued', lease_owner = NULL, \
                     lease_expires_at = NULL WHERE id = '{id}'"
                ),
            );
        },
    );
    let now = one_row(pg, &url, &state_and_attempt(&id));
    assert!(
        !reply.reason().contains("done"),
        "{} {} (the job is {now})",
        reply.status,
        reply.body
    );
    gate.open();
}

#[test]
fn a_cancel_left_little_time_by_the_request_before_it_is_not_made_after_its_503() {
    let Some((pg, url)) = database() else { return };
    // One connection, one worker held by a job that stays running.
    let flags = [
        "--workers",
        "1",
        "--claim-ahead",
        "0",
        "--database-pool-size",
        "1",
        "--database-timeout",
        "1s",
    ];
    let (server, gate, held) = a_held_job(pg, &url, &flags);
    let mut refused = 0;
    for round in 0..8u64 {
        let queued = server.submit_json(EXAMPLE_JSON);
        // A cancel of the held job waits on its row, locked here, for the whole of its
        // time, and holds the node's one connection meanwhile.
        let session = Session::locking_row(pg, &url, &held);
        let reply = thread::scope(|scope| {
            let (server, held) = (&server, &held);
            scope.spawn(move || server.request("POST", &format!("/api/jobs/{held}/cancel")));
            thread::sleep(Duration::from_millis(5 + round));
            server.request("POST", &format!("/api/jobs/{queued}/cancel"))
        });
        session.finish("ROLLBACK;\n");
        if reply.status == 503 {
            refused += 1;
            thread::sleep(Duration::from_millis(300));
            assert_eq!(
                one_row(pg, &url, &state_and_attempt(&queued)),
                "queued 0",
                "a cancel answered 503 ({}) was made all the same",
                reply.body
            );
        } else {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        let _ = server.request("POST", &format!("/api/jobs/{queued}/cancel"));
    }
    assert!(refused > 0, "no cancel waited behind the one before it");
    gate.open();
}

#[test]
fn a_team_log_streaming_when_the_node_drains_is_sent_whole() {
    let Some((_, url)) = database() else { return };
    log_streaming_through_a_drain(&node(&url, &[]));
}

/// The control: the same on the file store passes.
#[test]
fn a_team_log_streaming_when_a_file_store_server_drains_is_sent_whole_too() {
    log_streaming_through_a_drain(&Server::start(&[]));
}

/// Starts reading the long team log of `id` (see `a_job_with_a_long_team_log`), then
/// asks the server to shut down: a drain with nothing to finish, which ends at once while
/// the log is still being sent. Returns the log's declared length, the first 64 KiB read
/// and the reader of the rest.
fn a_log_half_read_when_the_drain_ends(
    server: &Server,
    id: &str,
) -> (usize, Vec<u8>, impl Read + use<>) {
    let response = ureq::get(&server.url(&format!("/api/jobs/{id}/log")))
        .call()
        .unwrap();
    let declared: usize = response.header("content-length").unwrap().parse().unwrap();
    let mut reader = response.into_reader();
    let mut first = vec![0; 64 * 1024];
    reader.read_exact(&mut first).unwrap();
    let shutdown = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(shutdown.status, 200);
    (declared, first, reader)
}

fn log_streaming_through_a_drain(server: &Server) {
    // On a node, read from the database in chunks as the client reads.
    let id = a_job_with_a_long_team_log(server);
    let (declared, first, mut reader) = a_log_half_read_when_the_drain_ends(server, &id);
    // The server gives requests still being answered --shutdown-timeout (10 s).
    thread::sleep(Duration::from_millis(500));
    let mut rest = Vec::new();
    let ended = reader.read_to_end(&mut rest);
    let got = first.len() + rest.len();
    assert!(
        ended.is_ok() && got == declared,
        "{got} of {declared} bytes, then {ended:?}"
    );
}

/// Between the drain's unregister and `close` (a team log still being sent), a
/// heartbeat would find no row for the node and register it again: a node that
/// stopped cleanly would be listed, stale, for an hour.
#[test]
fn a_drained_node_is_not_registered_again_while_its_last_requests_finish() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--lease", "1s"]);
    let id = a_job_with_a_long_team_log(&server);
    assert_eq!(one_row(pg, &url, "SELECT count(*) FROM icewall_nodes"), "1");
    let (_, _, mut reader) = a_log_half_read_when_the_drain_ends(&server, &id);
    // The log is still being sent.
    thread::sleep(Duration::from_millis(2500));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        poll_until(Duration::from_secs(20), || has_exited(&server)),
        "the node did not exit"
    );
    let left = one_row(
        pg,
        &url,
        "SELECT count(*) || ' ' || coalesce(string_agg(id::text, ','), '') FROM icewall_nodes",
    );
    assert_eq!(
        left, "0",
        "a node that stopped cleanly left its row: {left}"
    );
}

/// A request given up while its statement still runs (here: waiting for a row lock)
/// gives its connection up: its statement is cancelled, so that its backend ends
/// before the pool makes another, and the node holds no more than its pool.
#[test]
fn requests_given_up_do_not_take_the_node_past_its_pool_size() {
    let Some((pg, url)) = database() else { return };
    let server = node(
        &url,
        &["--database-pool-size", "8", "--database-timeout", "1s"],
    );
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    let session = Session::locking_row(pg, &url, &id);
    let backends = || {
        one_row(
            pg,
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND application_name <> 'psql' \
             AND query NOT LIKE 'SELECT id FROM icewall_jobs%'",
        )
        .parse::<usize>()
        .unwrap()
    };
    // Counted while the requests wait and are given up, and after.
    let done = AtomicBool::new(false);
    let most = thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                most = most.max(backends());
                thread::sleep(Duration::from_millis(50));
            }
            most.max(backends())
        });
        for _ in 0..4 {
            thread::scope(|round| {
                for _ in 0..6 {
                    round.spawn(|| {
                        let reply = server.request("DELETE", &format!("/api/jobs/{id}"));
                        assert_eq!(reply.status, 503, "{}", reply.body);
                    });
                }
            });
        }
        done.store(true, Ordering::SeqCst);
        sampler.join().unwrap()
    });
    eprintln!("most backends of the node seen: {most}");
    session.finish("ROLLBACK;\n");
    assert!(
        most <= 10,
        "the node held {most} connections, with --database-pool-size 8 (+1 LISTEN, +1 \
         for its leases)"
    );
}

#[test]
fn a_swept_node_registers_again_even_with_a_pool_of_one() {
    let Some((pg, url)) = database() else { return };
    let _server = node(
        &url,
        &[
            "--database-pool-size",
            "1",
            "--database-timeout",
            "1s",
            "--lease",
            "1s",
        ],
    );
    wait_until("the node is registered", || {
        one_row(pg, &url, "SELECT count(*) FROM icewall_nodes") == "1"
    });
    // What the sweeper does to a node silent for an hour.
    one_row(pg, &url, "DELETE FROM icewall_nodes");
    let back = poll_until(Duration::from_secs(8), || {
        one_row(pg, &url, "SELECT count(*) FROM icewall_nodes") == "1"
    });
    assert!(
        back,
        "8 s after its row was swept, the heartbeat has not registered the node again"
    );
}

#[test]
fn a_cancel_whose_client_hung_up_is_counted_on_its_node_all_the_same() {
    let Some((pg, url)) = database() else { return };
    // The one worker held by a first job: a second one stays queued.
    let (server, gate, _running) = a_held_job(pg, &url, &["--workers", "1", "--claim-ahead", "0"]);
    let queued = server.submit_json(EXAMPLE_JSON);
    // The test locks the queued job's row: the cancel waits for it.
    let session = Session::locking_row(pg, &url, &queued);
    hang_up_once(
        &server,
        &format!(
            "POST /api/jobs/{queued}/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Length: 0\r\n\r\n"
        ),
        || lock_waits(pg, &url, "FOR UPDATE") == "1",
    );
    thread::sleep(Duration::from_millis(500));
    session.finish("ROLLBACK;\n");
    wait_until("the job is gone", || {
        one_row(
            pg,
            &url,
            &format!("SELECT count(*) FROM icewall_jobs WHERE id = '{queued}'"),
        ) == "0"
    });
    let counted = || {
        server
            .get("/metrics")
            .body
            .contains("icewall_jobs_total{outcome=\"cancelled\"} 1")
    };
    assert!(
        poll_until(Duration::from_secs(5), counted),
        "the cancel is not in the node's metrics"
    );
    gate.open();
}

#[test]
fn results_the_database_refuses_for_a_while_wait_on_their_node_and_cost_no_attempt() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--lease", "1s", "--database-timeout", "1s"]);
    let first = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&first)["status"], "done");
    // The database takes claims but no result, as when its disk is full.
    create_trigger(
        pg,
        &url,
        "icewall_test_full",
        "BEFORE INSERT ON icewall_results FOR EACH STATEMENT",
        "RAISE EXCEPTION 'no room' USING ERRCODE = 'disk_full';",
    );
    let refused = server.submit_json(EXAMPLE_JSON);
    // For that reason: under load a beat late for the 1 s lease is a 503 of its own, and
    // the node claims again once the next beat is in.
    wait_until("the node says its results are refused", || {
        let readyz = server.get("/readyz");
        readyz.status == 503 && readyz.body.contains("refuses")
    });
    let queued: Vec<String> = (0..3).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    // Four leases: given up after one, the job would have run again, an attempt more.
    thread::sleep(Duration::from_millis(4000));
    assert_eq!(one_row(pg, &url, &state_and_attempt(&refused)), "running 1");
    for id in &queued {
        assert_eq!(
            one_row(pg, &url, &state_and_attempt(id)),
            "queued 0",
            "a node whose results are refused claimed more jobs"
        );
    }
    let readyz = server.get("/readyz");
    assert_eq!(readyz.status, 503);
    assert!(readyz.body.contains("refuses"), "{}", readyz.body);
    let metrics = server.get("/metrics").body;
    let retries = metrics
        .lines()
        .find_map(|line| line.strip_prefix("icewall_store_retries_total "))
        .and_then(|count| count.parse::<u64>().ok());
    assert!(retries.is_some_and(|count| count > 0), "{metrics}");
    one_row(
        pg,
        &url,
        "DROP TRIGGER icewall_test_full ON icewall_results",
    );
    for id in queued.iter().chain([&refused]) {
        assert_eq!(server.wait_finished(id)["status"], "done");
    }
    assert_eq!(one_row(pg, &url, &state_and_attempt(&refused)), "done 1");
    assert_eq!(server.get("/readyz").status, 200);
}

/// A node with `flags` and a worker for each of `count` jobs, all running, held at their
/// end by the gate.
fn jobs_held_running(
    pg: &PostgresServer,
    url: &str,
    flags: &[&str],
    count: usize,
) -> (Server, Gate, Vec<String>) {
    let gate = Gate::closed();
    let workers = count.to_string();
    let server = node(url, &gate.args(&[flags, &["--workers", &workers]].concat()));
    let ids: Vec<String> = (0..count)
        .map(|_| server.submit_json(EXAMPLE_JSON))
        .collect();
    wait_until_running(pg, url, "the jobs run", count);
    (server, gate, ids)
}

#[test]
fn a_result_the_database_refuses_for_good_fails_its_job_alone_saying_why() {
    let Some((pg, url)) = database() else { return };
    let (server, gate, ids) = jobs_held_running(pg, &url, &["--lease", "1s"], 2);
    let [first, second] = &ids[..] else {
        unreachable!("two jobs")
    };
    // The first job's result alone breaks a rule of the database: a refusal that no
    // retry mends. Both results go in one batch.
    create_trigger(
        pg,
        &url,
        "icewall_test_refuse",
        "BEFORE INSERT ON icewall_results FOR EACH ROW",
        &format!(
            "IF NEW.job_id = '{first}' THEN
                 RAISE EXCEPTION 'not this one' USING ERRCODE = 'check_violation';
             END IF;
             RETURN NEW;"
        ),
    );
    gate.open();
    let failed = server.wait_finished(first);
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("the database refused its result") && reason.contains("not this one"),
        "{reason}"
    );
    // It took the connection and answered: "unavailable" would tell the user to retry.
    assert!(!reason.contains("unavailable"), "{reason}");
    assert_eq!(server.wait_finished(second)["status"], "done");
    assert_eq!(one_row(pg, &url, &state_and_attempt(first)), "failed 1");
    assert_eq!(one_row(pg, &url, &state_and_attempt(second)), "done 1");
}

/// Has the database raise `condition` (a PL/pgSQL condition name) with `message` on
/// every result of a job of 7 teams, and checks that such a job fails after its tries,
/// saying why, and that the node goes on: the next job is done and the node is ready.
/// These refusals are the job's own fault, not a database that is down. Returns the
/// failed job's id.
fn a_job_whose_result_is_always_refused_fails_alone(
    pg: &PostgresServer,
    url: &str,
    condition: &str,
    message: &str,
) -> String {
    let server = node(url, &["--lease", "1s", "--database-timeout", "1s"]);
    create_trigger(
        pg,
        url,
        "icewall_test_refuse",
        "BEFORE INSERT ON icewall_results FOR EACH ROW",
        &format!(
            "IF (SELECT num_teams FROM icewall_jobs WHERE id = NEW.job_id) = 7 THEN
                 RAISE EXCEPTION '{message}' USING ERRCODE = '{condition}';
             END IF;
             RETURN NEW;"
        ),
    );
    let refused = server.submit_json(r#"{"profiles": [[21, 25, 28]], "num_teams": 7}"#);
    let failed = server.wait_finished(&refused);
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("did not take its result in 3 tries") && reason.contains(message),
        "{reason}"
    );
    let next = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&next)["status"], "done");
    assert_eq!(server.get("/readyz").status, 200);
    refused
}

#[test]
fn a_result_the_database_always_cancels_fails_its_job_and_the_node_goes_on() {
    let Some((pg, url)) = database() else { return };
    // Cancelled every time, as by a statement_timeout it always runs past: slowness of
    // this result.
    let cancelled =
        a_job_whose_result_is_always_refused_fails_alone(pg, &url, "query_canceled", "too slow");
    assert_eq!(
        one_row(pg, &url, &state_and_attempt(&cancelled)),
        "failed 1"
    );
}

#[test]
fn a_result_past_a_limit_of_the_database_fails_its_job_and_the_node_goes_on() {
    let Some((pg, url)) = database() else { return };
    // Past a limit every time, as a large result past `temp_file_limit` would.
    a_job_whose_result_is_always_refused_fails_alone(
        pg,
        &url,
        "configuration_limit_exceeded",
        "past a limit",
    );
}

#[test]
fn results_refused_a_while_for_want_of_memory_are_kept_when_it_passes() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--lease", "1s", "--database-timeout", "1s"]);
    // What PostgreSQL says when other sessions have filled its lock table: a shortage
    // of the whole database, which passes, and no fault of these results.
    create_trigger(
        pg,
        &url,
        "icewall_test_oom",
        "BEFORE INSERT ON icewall_results FOR EACH ROW",
        "RAISE EXCEPTION 'out of shared memory' USING ERRCODE = 'out_of_memory';",
    );
    let ids: Vec<String> = (0..3).map(|_| server.submit_json(EXAMPLE_JSON)).collect();
    thread::sleep(Duration::from_millis(2000));
    one_row(pg, &url, "DROP TRIGGER icewall_test_oom ON icewall_results");
    for id in &ids {
        assert_eq!(server.wait_finished(id)["status"], "done");
        assert_eq!(one_row(pg, &url, &state_and_attempt(id)), "done 1");
    }
}

#[test]
fn a_node_whose_finisher_stopped_says_so_and_leaves_its_jobs_to_the_others() {
    let Some((pg, url)) = database() else { return };
    // A job of 7 teams fails on this node, and its finisher panics on a failed job:
    // a defect of the node's own, which nothing else stops.
    let broken = node(
        &url,
        &[
            "--lease",
            "1s",
            "--debug-panic-on-num-teams",
            "7",
            "--debug-finisher-panics",
        ],
    );
    let id = broken.submit_json(r#"{"profiles": [[21, 25, 28]], "num_teams": 7}"#);
    wait_until("the node says it is not ready", || {
        broken.get("/readyz").status == 503
    });
    assert!(
        broken.get("/readyz").body.contains("finisher stopped"),
        "{}",
        broken.get("/readyz").body
    );
    // Its lease is no longer extended: another node runs the job.
    let survivor = node(&url, &["--lease", "1s"]);
    assert_eq!(survivor.wait_finished(&id)["status"], "done");
    assert_eq!(one_row(pg, &url, &state_and_attempt(&id)), "done 2");
}

#[test]
fn results_refused_for_good_do_not_hold_up_a_drain_a_lease_each() {
    let Some((pg, url)) = database() else { return };
    let (server, gate, ids) = jobs_held_running(pg, &url, &["--lease", "3s"], 4);
    create_trigger(
        pg,
        &url,
        "icewall_test_refuse_all",
        "BEFORE INSERT ON icewall_results FOR EACH ROW",
        "RAISE EXCEPTION 'none of these' USING ERRCODE = 'check_violation';",
    );
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let began = std::time::Instant::now();
    gate.open();
    assert!(
        poll_until(Duration::from_secs(30), || has_exited(&server)),
        "the node did not exit 30 s after its graceful shutdown"
    );
    let took = began.elapsed();
    // Failing a job refused for good needs no wait: a lease each, it took 12 s.
    assert!(took < Duration::from_secs(6), "the drain took {took:?}");
    for id in &ids {
        assert_eq!(one_row(pg, &url, &state_and_attempt(id)), "failed 1");
    }
}

#[test]
fn a_drain_gives_up_results_the_database_does_not_answer_a_lease_after_it_began() {
    let Some((pg, url)) = database() else { return };
    let (server, gate, ids) = jobs_held_running(pg, &url, &["--lease", "1s"], 4);
    // The results' table is locked (a migration, an operator's LOCK TABLE): a result's
    // statement waits without an answer, while the database answers everything else.
    let session = Session::locking_table(pg, &url, "icewall_results");
    let reply = server.post("/api/graceful_shutdown", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let began = std::time::Instant::now();
    gate.open();
    let exited = poll_until(Duration::from_secs(40), || has_exited(&server));
    let took = began.elapsed();
    session.finish("ROLLBACK;\n");
    assert!(
        exited,
        "the node did not exit 40 s after its graceful shutdown"
    );
    // A lease after the drain began, and the drain's own steps: split and tried job by
    // job, four leases a try, it took 20 s.
    assert!(took < Duration::from_secs(8), "the drain took {took:?}");
    for id in &ids {
        assert_ne!(
            one_row(pg, &url, &state_and_attempt(id)),
            "failed 1",
            "a job was failed for a database that did not answer a draining node"
        );
    }
}

#[test]
fn a_submission_behind_a_slow_batch_gets_its_503_within_the_database_timeout() {
    let Some((pg, url)) = database() else { return };
    let (server, _) = a_node_slow_to_accept(pg, &url);
    // Each arrives while the batch before it waits for the database.
    let waits: Vec<(u16, Duration, String)> = thread::scope(|scope| {
        let posts: Vec<_> = (0..4)
            .map(|n| {
                let server = &server;
                scope.spawn(move || {
                    thread::sleep(Duration::from_millis(300 * n));
                    let began = std::time::Instant::now();
                    let reply =
                        server.post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes());
                    (reply.status, began.elapsed(), reply.reason())
                })
            })
            .collect();
        posts.into_iter().map(|post| post.join().unwrap()).collect()
    });
    for (status, waited, reason) in &waits {
        assert_eq!(*status, 503);
        // Not "on disk": a node in cluster mode stores nothing there.
        assert!(
            reason.starts_with("the job could not be stored in the database: "),
            "{reason}"
        );
        assert!(
            *waited < Duration::from_millis(1500),
            "a submission waited {waited:?} for its 503, past the 1 s --database-timeout: \
             {waits:?}"
        );
    }
}

#[test]
fn submissions_left_little_time_by_a_slow_batch_are_not_committed_after_their_503() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--database-timeout", "1s"]);
    let first = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&first)["status"], "done");
    // Only a job whose key is marked is slow to insert: the batch behind it is quick,
    // but starts with little of its submissions' time left.
    create_trigger(
        pg,
        &url,
        "icewall_test_pause_marked",
        "BEFORE INSERT ON icewall_jobs FOR EACH ROW",
        "IF NEW.idempotency_key LIKE 'slow-%' THEN PERFORM pg_sleep(2.5); END IF;
         RETURN NEW;",
    );
    let mut accepted = 0;
    let mut refused = 0;
    for round in 0..12u64 {
        let statuses: Vec<u16> = thread::scope(|scope| {
            let server = &server;
            let slow = scope.spawn(move || {
                let key = format!("slow-{round}");
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", key.as_str()),
                ];
                server
                    .post_with("/api/simulate", &headers, EXAMPLE_JSON.as_bytes())
                    .status
            });
            // Some just behind the slow one, with little time left when it is over; some
            // later, with time enough.
            let quick: Vec<_> = (0..24)
                .map(|n| {
                    let after = if n < 16 { 5 + round } else { 400 };
                    scope.spawn(move || {
                        thread::sleep(Duration::from_millis(after));
                        server
                            .post("/api/simulate", "application/json", EXAMPLE_JSON.as_bytes())
                            .status
                    })
                })
                .collect();
            assert_eq!(slow.join().unwrap(), 503);
            quick.into_iter().map(|post| post.join().unwrap()).collect()
        });
        for status in statuses {
            match status {
                202 => accepted += 1,
                503 => refused += 1,
                other => panic!("a submission was answered {other}"),
            }
        }
    }
    assert!(
        accepted > 0,
        "no submission was accepted: {refused} answered 503"
    );
    // What was given up has had the time to land, were it to.
    thread::sleep(Duration::from_millis(1500));
    let made = one_row(
        pg,
        &url,
        &format!(
            "SELECT count(*) FROM icewall_jobs WHERE id <> '{first}' \
             AND idempotency_key IS NULL"
        ),
    );
    assert_eq!(
        made,
        accepted.to_string(),
        "{accepted} submissions were answered 202 and {refused} 503, but {made} jobs were \
         made: a submission answered 503 was committed"
    );
}

#[test]
fn requests_that_take_every_connection_of_a_node_do_not_let_its_leases_run_out() {
    let Some((pg, url)) = database() else { return };
    let timing = ["--lease", "3s", "--database-timeout", "1s"];
    let mut flags = timing.to_vec();
    flags.extend(["--database-pool-size", "2"]);
    let (server, gate, id) = a_held_job(pg, &url, &flags);
    // A node that would run the job again were its lease to run out.
    let other = node(&url, &timing);
    // Requests for the nodes' table wait on this lock until their timeout, and take
    // every connection of the node's pool meanwhile.
    let session = Session::locking_table(pg, &url, "icewall_nodes");
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let _ = server.get("/api/stats");
                }
            });
        }
        // Two leases and more.
        thread::sleep(Duration::from_millis(7000));
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        one_row(pg, &url, &state_and_attempt(&id)),
        "running 1",
        "the job's lease ran out on a node that was busy, not gone"
    );
    session.finish("COMMIT;\n");
    gate.open();
    assert_eq!(server.wait_finished(&id)["status"], "done");
    assert_eq!(one_row(pg, &url, &state_and_attempt(&id)), "done 1");
    drop(other);
}

#[test]
fn a_job_a_live_node_holds_but_does_not_run_is_requeued_after_its_lease() {
    let Some((pg, url)) = database() else { return };
    let server = node(&url, &["--lease", "2s", "--claim-poll", "100ms"]);
    let id = server.submit_json(EXAMPLE_JSON);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    // What a claim that committed after the node gave it up leaves: the job running
    // under the live node's lease, with no worker on it, its lease run out.
    one_row(
        pg,
        &url,
        &format!(
            "DELETE FROM icewall_results WHERE job_id = '{id}';
             UPDATE icewall_jobs SET state = 'running', finished_at = NULL,
                 lease_owner = (SELECT id FROM icewall_nodes),
                 lease_expires_at = now() - interval '1 second'
             WHERE id = '{id}'"
        ),
    );
    // Within a beat or two: the node beats, so no other node's reaper takes it.
    let requeued_and_run = poll_until(Duration::from_secs(4), || {
        one_row(pg, &url, &state_and_attempt(&id)) == "done 2"
    });
    assert!(
        requeued_and_run,
        "{}",
        one_row(pg, &url, &state_and_attempt(&id))
    );
}

#[test]
fn a_job_row_locked_by_another_transaction_neither_lets_the_nodes_leases_run_out_nor_requeues_its_job()
 {
    let Some((pg, url)) = database() else { return };
    let timing = ["--lease", "3s", "--database-timeout", "1s"];
    let (server, gate, ids) = jobs_held_running(pg, &url, &timing, 2);
    let [locked, other_job] = &ids[..] else {
        unreachable!("two jobs")
    };
    // A node that would run the job again were its lease to run out, whose reaper looks
    // often, and whose own lease is shorter (as in a rolling change of --lease): the
    // first node beats every second, which is not a sign of death to it.
    let other_node = node(
        &url,
        &[
            "--lease",
            "1s",
            "--database-timeout",
            "1s",
            "--claim-poll",
            "100ms",
        ],
    );
    // One job's row is locked a while, as by a result being stored, a removal or an
    // operator's transaction: the lease of the other must be extended all the same.
    let session = Session::locking_row(pg, &url, locked);
    // Two leases and more: five and more of the other node's.
    thread::sleep(Duration::from_millis(9000));
    assert_eq!(
        one_row(pg, &url, &state_and_attempt(other_job)),
        "running 1",
        "a job's lease ran out on its node while another job's row was locked"
    );
    session.finish("COMMIT;\n");
    // The locked job's lease lapsed under the lock: it stays its live node's, extended
    // at the next beat, rather than being requeued the moment the lock is let go,
    // however long the lock was held.
    thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        one_row(pg, &url, &state_and_attempt(locked)),
        "running 1",
        "a lease that lapsed under a lock was requeued though its node lives"
    );
    gate.open();
    for job in [locked, other_job] {
        assert_eq!(server.wait_finished(job)["status"], "done");
        assert_eq!(one_row(pg, &url, &state_and_attempt(job)), "done 1");
    }
    drop(other_node);
}

#[test]
fn a_node_whose_heartbeat_cannot_reach_the_database_claims_nothing_and_is_not_ready() {
    let Some((pg, url)) = database() else { return };
    // A role of its own, which PostgreSQL can refuse new connections while the node's
    // established ones go on (a superuser's are never refused).
    let database = url.rsplit('/').next().unwrap();
    let role = format!("{database}_node");
    pg.psql(&url, &format!("CREATE ROLE {role} LOGIN")).unwrap();
    pg.psql(&url, &format!("ALTER DATABASE {database} OWNER TO {role}"))
        .unwrap();
    let node_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let server = node(&node_url, &["--lease", "2s"]);
    assert_eq!(server.get("/readyz").status, 200);
    // The lease keeper's own connection is closed and cannot be made again; the
    // node's other connections, its requests' and its notifications', stay.
    pg.psql(&url, &format!("ALTER ROLE {role} CONNECTION LIMIT 0"))
        .unwrap();
    let closed = one_row(
        pg,
        &url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = '{role}' AND application_name LIKE 'icewall % leases'"
        ),
    );
    assert_eq!(closed, "1");
    wait_until("the node says it is not ready", || {
        server.get("/readyz").status == 503
    });
    let readyz = server.get("/readyz");
    assert!(readyz.body.contains("heartbeat"), "{}", readyz.body);
    // Accepted, on a connection it has, but not claimed: the other nodes would take
    // the job back from a node that does not beat.
    let id = server.submit_json(EXAMPLE_JSON);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.get(&format!("/api/get_results/{id}")).json()["status"],
        "queued"
    );
    pg.psql(&url, &format!("ALTER ROLE {role} CONNECTION LIMIT -1"))
        .unwrap();
    assert_eq!(server.wait_finished(&id)["status"], "done");
    wait_until("the node is ready again", || {
        server.get("/readyz").status == 200
    });
}
