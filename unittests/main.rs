//! The integration tests, one binary: each module drives the real `icewall` binary
//! (spawned on port 0 by the helpers in `common`) over HTTP or its command line.

mod common;

mod admin;
mod api;
mod browser;
mod client;
mod clock_steps;
mod cluster;
mod cluster_faults;
mod engine_matches_naive;
mod faults;
mod hostile;
mod idempotency;
mod jobs;
mod lifecycle;
mod operations;
mod page;
mod postgres_harness;
mod retention;
mod simulate_cli;
mod startup;
mod under_valgrind;
mod walkthrough;
