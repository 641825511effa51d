//! Command-line subcommands other than the server: `simulate` runs a wall in-process,
//! the client subcommands talk to a running server.

pub mod client;
pub mod simulate;
