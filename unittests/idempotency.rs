//! `Idempotency-Key`: a retried submission gets the job the first one made, even across
//! a restart; the same key with another request is a 422; a removed job frees its key.
//! The tests without a restart or the file store's files run on both stores.

use crate::common::{
    EXAMPLE_JSON, EXAMPLE_TEXT, Server, Store, count_files, on_both_stores, wait_until,
};

on_both_stores!(
    the_same_key_and_request_give_the_same_job,
    bad_keys_are_refused,
    concurrent_requests_with_one_key_make_one_job,
    a_removed_job_frees_its_key,
);

fn submit(server: &Server, key: &str, content_type: &str, body: &str) -> crate::common::Reply {
    server.post_with(
        "/api/simulate?num_teams=3",
        &[("Idempotency-Key", key), ("Content-Type", content_type)],
        body.as_bytes(),
    )
}

fn job_id(reply: &crate::common::Reply) -> String {
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["job_id"].as_str().unwrap().to_owned()
}

fn the_same_key_and_request_give_the_same_job(store: Store) {
    let server = store.start(&[]);
    let first = submit(&server, "order-42", "application/json", EXAMPLE_JSON);
    assert_eq!(first.replayed.as_deref(), Some("false"));
    let id = job_id(&first);
    let again = submit(&server, "order-42", "application/json", EXAMPLE_JSON);
    assert_eq!(job_id(&again), id);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    // The same wall and teams in the text form is the same request.
    assert_eq!(
        job_id(&submit(&server, "order-42", "text/plain", EXAMPLE_TEXT)),
        id
    );
    assert_eq!(server.listed_jobs(), 1);

    let other = submit(&server, "order-42", "text/plain", "1 2 3\n");
    assert_eq!(other.status, 422);
    assert_eq!(
        other.reason(),
        "this Idempotency-Key was used with a different request"
    );
    assert_ne!(
        job_id(&submit(&server, "order-43", "text/plain", "1 2 3\n")),
        id
    );
    assert_eq!(server.wait_finished(&id)["data"]["days"], 31);
}

fn bad_keys_are_refused(store: Store) {
    let server = store.start(&[]);
    for key in [
        "k".repeat(256),
        "with space".to_owned(),
        "tab\tkey".to_owned(),
    ] {
        let reply = submit(&server, &key, "application/json", EXAMPLE_JSON);
        assert_eq!(reply.status, 400, "{key:?}");
        assert!(reply.reason().contains("Idempotency-Key must be"));
    }
    assert_eq!(server.listed_jobs(), 0);
}

fn concurrent_requests_with_one_key_make_one_job(store: Store) {
    let server = store.start(&[]);
    let replies: Vec<crate::common::Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| submit(&server, "same", "application/json", EXAMPLE_JSON)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut ids: Vec<String> = replies
        .iter()
        .filter(|reply| {
            assert!(
                reply.status == 202 || reply.status == 409,
                "{} {}",
                reply.status,
                reply.body
            );
            reply.status == 202
        })
        .map(job_id)
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(server.listed_jobs(), 1);
}

fn a_removed_job_frees_its_key(store: Store) {
    let server = store.start(&[]);
    let removed = job_id(&submit(&server, "reused", "application/json", EXAMPLE_JSON));
    server.wait_finished(&removed);
    let reply = server.request("DELETE", &format!("/api/jobs/{removed}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let fresh = submit(&server, "reused", "text/plain", "1 2 3\n");
    assert_eq!(fresh.replayed.as_deref(), Some("false"));
    let fresh = job_id(&fresh);
    assert_ne!(fresh, removed);
    assert_eq!(server.wait_finished(&fresh)["data"]["days"], 29);
    assert_eq!(server.listed_jobs(), 1);
}

#[test]
fn keys_survive_a_restart_and_a_removed_job_frees_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let kept = job_id(&submit(&server, "kept", "application/json", EXAMPLE_JSON));
    let removed = job_id(&submit(
        &server,
        "removed",
        "application/json",
        EXAMPLE_JSON,
    ));
    server.wait_finished(&kept);
    server.wait_finished(&removed);
    wait_until("the delete", || {
        server
            .request("DELETE", &format!("/api/jobs/{removed}"))
            .status
            == 200
    });
    let results = server.results.clone();
    assert!(server.shutdown().success());

    let server = Server::start_in(dir.path(), &[]);
    assert_eq!(
        job_id(&submit(&server, "kept", "application/json", EXAMPLE_JSON)),
        kept
    );
    let fresh = job_id(&submit(
        &server,
        "removed",
        "application/json",
        EXAMPLE_JSON,
    ));
    assert_ne!(fresh, removed);
    assert_eq!(server.wait_finished(&fresh)["status"], "done");
    assert!(server.shutdown().success());
    // The keys file was compacted at the restart: the removed job's key is gone from it.
    let keys = std::fs::read_to_string(results.join("idempotency-keys.jsonl")).unwrap();
    assert_eq!(keys.matches(&removed).count(), 0, "{keys}");
    assert_eq!(keys.matches(&kept).count(), 1, "{keys}");
    assert_eq!(count_files(&results, |name| name.ends_with(".tmp")), 0);
}

#[test]
fn a_client_gone_before_its_answer_leaves_its_key_usable() {
    use std::io::Write;
    // Every accept takes a second once its request is journaled: time to hang up.
    let server = Server::start(&["--debug-accept-delay-ms", "1000"]);
    let mut stream =
        std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    // A request answered first leaves unread bytes, so hanging up resets the
    // connection: the server then drops the keyed request's handler.
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
         POST /api/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Idempotency-Key: hung-up\r\nContent-Length: {}\r\n\r\n{EXAMPLE_JSON}",
        EXAMPLE_JSON.len()
    )
    .unwrap();
    stream.flush().unwrap();
    // Hung up before the answer, while the request is being accepted.
    wait_until("the request to be journaled", || {
        count_files(&server.results, |name| name.starts_with("requests-")) > 0
    });
    drop(stream);

    let mut retried = None;
    wait_until("a retry with the key to be accepted", || {
        let reply = submit(&server, "hung-up", "application/json", EXAMPLE_JSON);
        assert!(
            reply.status == 202 || reply.status == 409,
            "{} {}",
            reply.status,
            reply.body
        );
        let accepted = reply.status == 202;
        retried = Some(reply);
        accepted
    });
    let id = job_id(&retried.unwrap());
    assert_eq!(server.wait_finished(&id)["data"]["cost"], 32233500);
    assert_eq!(server.listed_jobs(), 1, "one job for the key");
    assert!(server.shutdown().success());
}

#[test]
fn the_keys_file_drops_removed_jobs_keys_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Rewritten past 4 KiB (about 40 records); five jobs kept, the others retired.
    let flags = ["--debug-compaction-bytes", "4096", "--max-results", "5"];
    let server = Server::start_in(dir.path(), &flags);
    let keyed = |n: usize| {
        let id = job_id(&submit(
            &server,
            &format!("order-{n}"),
            "application/json",
            EXAMPLE_JSON,
        ));
        server.wait_finished(&id);
        id
    };
    let mut ids: Vec<String> = (0..60).map(keyed).collect();
    wait_until("retention of all but five", || server.listed_jobs() == 5);
    let keys_file = server.results.join("idempotency-keys.jsonl");
    let len = || std::fs::metadata(&keys_file).unwrap().len();
    // Without a rewrite the file only grows: a few hundred more keys bring one.
    let mut last = (59, len());
    let rewritten = (60..400).any(|n| {
        let id = keyed(n);
        let now = len();
        let shrank = now < last.1;
        last = (n, now);
        ids.push(id);
        shrank
    });
    assert!(rewritten, "no rewrite: {} bytes", last.1);
    // The 55 oldest were gone before the first rewrite could come. The five that were
    // left may still be there at it: retention keeps a job whose request is in the
    // journal's segment in use until that segment goes, and its key with it.
    let text = std::fs::read_to_string(&keys_file).unwrap();
    for id in &ids[..55] {
        assert!(!text.contains(id.as_str()), "{id} kept: {text}");
    }
    // The newest job's key still replays, and a retired job's key is free.
    let newest = format!("order-{}", last.0);
    let again = submit(&server, &newest, "application/json", EXAMPLE_JSON);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(&job_id(&again), ids.last().unwrap());
    let fresh = submit(&server, "order-0", "application/json", EXAMPLE_JSON);
    assert_eq!(fresh.replayed.as_deref(), Some("false"));
    assert_ne!(job_id(&fresh), ids[0]);
    assert!(server.shutdown().success());

    // What the rewrites kept is what a restart finds.
    let server = Server::start_in(dir.path(), &flags);
    let again = submit(&server, &newest, "application/json", EXAMPLE_JSON);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(&job_id(&again), ids.last().unwrap());
    assert!(server.shutdown().success());
}

#[test]
fn the_first_keyed_accept_after_a_restart_does_not_rewrite_a_file_of_live_keys() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--debug-compaction-bytes", "4096"];
    let server = Server::start_in(dir.path(), &flags);
    for n in 0..60 {
        job_id(&submit(
            &server,
            &format!("live-{n}"),
            "application/json",
            EXAMPLE_JSON,
        ));
    }
    let keys_file = server.results.join("idempotency-keys.jsonl");
    assert!(server.shutdown().success());
    let server = Server::start_in(dir.path(), &flags);
    let before = std::fs::metadata(&keys_file).unwrap();
    assert!(before.len() > 4096, "{} bytes", before.len());
    job_id(&submit(
        &server,
        "one-more",
        "application/json",
        EXAMPLE_JSON,
    ));
    // A rewrite comes after the batch's answer: the shutdown waits for it.
    assert!(server.shutdown().success());
    let after = std::fs::metadata(&keys_file).unwrap();
    assert_eq!(
        before.ino(),
        after.ino(),
        "{} live bytes rewritten",
        before.len()
    );
}
