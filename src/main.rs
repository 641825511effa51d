//! The `icewall` binary: parses the command line and runs a subcommand.

use std::io::{self, BufWriter};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use icewall::cli::simulate::{self, SimulateArgs};

#[derive(Debug, Parser)]
#[command(name = "icewall", version, about = "Simulates building the Wall")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate one wall config and print the result.
    Simulate(SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => {
            let mut out = BufWriter::new(io::stdout().lock());
            match simulate::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("icewall: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
