//! The `icewall` binary: parses the command line and runs a subcommand.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};
use icewall::app::App;
use icewall::cli::client::{self, ClientCommand};
use icewall::cli::printable;
use icewall::cli::simulate::{self, SimulateArgs};
use icewall::settings::Settings;
use icewall::telemetry;

#[derive(Debug, Parser)]
#[command(name = "icewall", version, about = "Simulates building the Wall")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the job server.
    Serve(Box<Settings>),
    /// Simulate one wall config and print the result.
    Simulate(SimulateArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = parse_command_line();
    match cli.command {
        Command::Serve(settings) => serve(&settings),
        Command::Simulate(args) => {
            let mut out = BufWriter::new(io::stdout().lock());
            match simulate::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("icewall: {}", printable(&error.to_string()));
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::Client(command) => {
            let mut out = BufWriter::new(io::stdout().lock());
            let ran = client::run(command, &mut out)
                .and_then(|()| out.flush().map_err(client::ClientError::Output));
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                // A reader that took what it wanted (`icewall log ID | head`).
                Err(client::ClientError::Output(error))
                    if error.kind() == io::ErrorKind::BrokenPipe =>
                {
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("icewall: {}", printable(&error.to_string()));
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write that fails (a stdout
            // on a full disk, or closed by `| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "icewall", &mut script);
            let mut out = io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("icewall: cannot write output: {error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// The command line, or its usage error (exit 2). clap names a bad value by its flag
/// even when it came from an `ICEWALL_*` variable, and such a flag may be nowhere on
/// the command line (a systemd unit's environment file, a container's `-e`): the error
/// then says which variable it was. And it quotes the value, which for a secret (an
/// admin token, a database URL) would put it in the journal: `***` instead.
fn parse_command_line() -> Cli {
    Cli::try_parse().unwrap_or_else(|mut error| {
        let Some(argument) = invalid_argument(&error) else {
            error.exit()
        };
        if argument.is_hide_env_values_set() {
            error.insert(
                ContextKind::InvalidValue,
                ContextValue::String("***".to_owned()),
            );
        }
        if let Some(variable) = variable_behind(&argument) {
            error.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![
                    format!("the value came from the environment variable {variable}").into(),
                ]),
            );
        }
        error.exit()
    })
}

/// The flag whose value `error` refuses, as the subcommand given declares it.
fn invalid_argument(error: &clap::Error) -> Option<clap::Arg> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--workers <WORKERS>`
    let long = argument.split(' ').next()?.strip_prefix("--")?;
    let subcommand_name = std::env::args().nth(1)?;
    let cli = Cli::command();
    let subcommand = cli.find_subcommand(&subcommand_name)?;
    subcommand
        .get_arguments()
        .find(|argument| argument.get_long() == Some(long))
        .cloned()
}

/// The environment variable the bad value of `argument` came from: its flag is not on
/// the command line and the variable is set.
fn variable_behind(argument: &clap::Arg) -> Option<String> {
    let flag = format!("--{}", argument.get_long()?);
    let on_the_command_line = std::env::args()
        .skip(1)
        .any(|given| given == flag || given.starts_with(&format!("{flag}=")));
    if on_the_command_line {
        return None;
    }
    let variable = argument.get_env()?;
    std::env::var_os(variable).map(|_| variable.to_string_lossy().into_owned())
}

fn serve(settings: &Settings) -> ExitCode {
    // Refused with a reason rather than panicking: the HTTP `Date` header (and with it
    // actix-web's workers) cannot be written for a time before 1970.
    if let Err(early) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        eprintln!(
            "icewall: the system clock reads {} s before 1970-01-01; set it, then start again",
            early.duration().as_secs()
        );
        return ExitCode::FAILURE;
    }
    // In cluster mode the node has an id, which every line it logs names.
    let node = settings.database_url.as_ref().map(|_| uuid::Uuid::now_v7());
    let (logger, log) = match telemetry::logger(&telemetry::LogOptions {
        format: settings.log_format,
        target: settings.log_target,
        dir: &settings.logs_dir,
        max_bytes: settings.log_max_bytes,
        keep: settings.log_keep,
        node_id: node.map(|node| node.to_string()),
    }) {
        Ok(logger) => logger,
        Err(error) => {
            eprintln!(
                "icewall: cannot log to {}: {error}",
                settings.logs_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let served = actix_web::rt::System::new().block_on(async {
        let app = App::build(settings, node, logger.clone(), log.request_lines())
            .map_err(|error| Stopped::Refused(error.to_string()))?;
        // Scripts and tests wait for this line to learn the port.
        log.announce_listening(app.address());
        app.run_until_stopped()
            .await
            .map_err(|error| Stopped::Failed(error.to_string()))
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        // Not in the log: it may be another server's (a second server on the same
        // directories), which would then read as if that one had stopped; and a start
        // refused leaves nothing on disk.
        Err(Stopped::Refused(error)) => {
            drop(logger);
            log.end_unused();
            eprintln!("icewall: {error}");
            ExitCode::FAILURE
        }
        Err(Stopped::Failed(error)) => {
            slog::error!(logger, "exiting on error"; "error" => &error);
            eprintln!("icewall: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Why `serve` ended with an error.
enum Stopped {
    /// Before it listened: it never served.
    Refused(String),
    /// After it listened.
    Failed(String),
}
