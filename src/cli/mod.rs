//! Command-line subcommands other than the server: for now `simulate`.

pub mod simulate;
