//! Retention: finished jobs expire after `--result-ttl`, the oldest go beyond
//! `--max-results`, and `DELETE /api/jobs/<id>` removes one; a removed job answers 404
//! like an unknown one, and its file is gone.

mod common;

use common::{EXAMPLE_JSON, Server, count_files, wait_until};

fn results_of(server: &Server) -> usize {
    count_files(&server.results, |name| name.ends_with(".result"))
}

#[test]
fn delete_removes_a_finished_job_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir.path(),
        &["--workers", "1", "--debug-job-delay-ms", "300"],
    );
    let done = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&done);
    let running = server.submit_json(EXAMPLE_JSON);

    let refused = server.request("DELETE", &format!("/api/jobs/{running}"));
    assert_eq!(refused.status, 409);
    assert!(
        refused
            .reason()
            .contains("only a finished job can be deleted")
    );

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
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--admin-token", "t0ken"]);
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
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
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--result-ttl", "1s"]);
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
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--max-results", "3"]);
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
