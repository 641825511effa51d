//! icewall: a job server that simulates building the Wall.
//!
//! The flow of a job: an HTTP handler parses a wall config, the job is made durable and
//! queued in the hand-written thread pool, a worker runs the [`wall`] simulation, and
//! the result store writes its summary, work tables and team log under `results/`.

pub mod app;
mod byte_lru;
pub mod cli;
mod coarse_clock;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod moment;
pub mod pool;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod wall;
