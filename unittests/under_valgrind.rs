//! The server under valgrind, where `bench/instructions.sh` counts a read's
//! instructions: it must start, answer and stop there as it does on its own.
//!
//! Skipped when valgrind is not installed, unless `ICEWALL_REQUIRE_VALGRIND=1` (as in
//! CI), where that is a failure.

use std::process::Command;

use crate::common::{EXAMPLE_JSON, Server};

const REQUIRE: &str = "ICEWALL_REQUIRE_VALGRIND";

fn valgrind_is_installed() -> bool {
    let installed = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed && std::env::var(REQUIRE).as_deref() == Ok("1") {
        panic!("valgrind is not installed and {REQUIRE}=1");
    }
    installed
}

#[test]
fn the_server_answers_requests_and_stops_cleanly_under_valgrind() {
    if !valgrind_is_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Valgrind's own tool-less run: the program's instructions translated as callgrind
    // translates them, so a crash of the kind rustix's was (valgrind's core refusing a
    // memory access, whatever the tool) shows here too, at a fraction of callgrind's
    // slow-down, which counting every instruction of a whole test would multiply.
    let server = Server::start_under(&["valgrind", "--tool=none", "-q"], dir.path(), &[]);
    // Every request takes a request id, whose clock read was the one that crashed.
    let id = server.submit_json(EXAMPLE_JSON);
    let result = server.wait_finished(&id);
    assert_eq!(result["status"], "done", "{result}");
    assert_eq!(result["data"]["cost"], 32_233_500, "{result}");
    let day = server
        .get(&format!("/api/jobs/{id}/profiles/3/days/16"))
        .json();
    assert_eq!(day, serde_json::json!({"day": 16, "ice_amount": 585}));
    let status = server.shutdown();
    assert!(
        status.success(),
        "the server under valgrind exited with {status}"
    );
}
