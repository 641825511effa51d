//! The client subcommands' flags and arguments, as clap parses them from the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::{IdempotencyKey, JobId};
use crate::wall::parse_num_teams;

/// Where the server is and how to trust it, for every client subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's base URL, `http://` or `https://`.
    // Checked by `parse_server_url` when the client starts, not by clap, whose error
    // would show a password in it.
    #[arg(
        long,
        value_name = "URL",
        env = "ICEWALL_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A PEM file of CA certificates to trust for `https://`, besides the bundled
    /// Mozilla roots (for a server behind a private CA).
    #[arg(long, value_name = "FILE", env = "ICEWALL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How long the server may say nothing (to the lookup of its name, to a connect, or
    /// between two pieces of an answer) before the client gives up; hidden, as only a test, which cannot wait
    /// the minute a user should get, has reason to shorten it.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "60s", value_parser = crate::settings::nonzero_duration)]
    pub debug_silence_timeout: Duration,
}

/// A URL the client can send requests to: `http` or `https` with a host; anything else
/// is a usage error naming the URL.
pub(super) fn parse_server_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|error| format!("`{text}` is not a URL: {error}"))?;
    let shown = shown_url(text);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{shown}` is not an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{shown}` has a query or fragment; give the base URL"
        ));
    }
    Ok(text.to_owned())
}

/// A URL as messages show it: a password in it (which ureq sends as Basic
/// credentials, to a proxy that asks for them) masked, as an admin token is never shown.
pub(super) fn shown_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            let mut shown = url.to_string();
            // The parser gives a bare host the path `/`, which `text` did not have.
            if !text.ends_with('/') && url.path() == "/" && url.query().is_none() {
                shown.pop();
            }
            shown
        }
        _ => text.to_owned(),
    }
}

/// How `submit` retries a submission the server refuses with 503 (queue full).
#[derive(Clone, Debug, clap::Args)]
pub struct RetryArgs {
    /// Times to retry a submission refused with 503, after the server's Retry-After;
    /// 0 never retries. Retries reuse the Idempotency-Key, so they never make two jobs.
    #[arg(long, env = "ICEWALL_RETRIES", default_value_t = 5)]
    pub retries: u32,
    /// Longest time to keep retrying (e.g. `30s`, `2m`), whatever --retries allows.
    #[arg(long, env = "ICEWALL_RETRY_FOR", default_value = "60s", value_parser = crate::settings::parse_duration)]
    pub retry_for: Duration,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a wall config (text or JSON); prints the job id.
    Submit {
        /// The config file; `-` reads stdin.
        file: PathBuf,
        /// Number of teams; unlimited crews if absent.
        #[arg(long, value_parser = parse_num_teams)]
        num_teams: Option<std::num::NonZeroU64>,
        /// Wait for the result and print it.
        #[arg(long)]
        wait: bool,
        /// With --wait, print the summary as JSON.
        #[arg(long, requires = "wait")]
        json: bool,
        /// With --wait, give up after this long (`30s`, `5m`; above zero), the submission
        /// and its retries included: exit 4, the job goes on. Waits as long as it takes if
        /// absent.
        #[arg(long, value_name = "DURATION", requires = "wait", value_parser = crate::settings::nonzero_duration)]
        timeout: Option<Duration>,
        /// Retries with the same key get the same job; a fresh one is made if absent.
        /// 1 to 255 visible ASCII characters.
        #[arg(long, value_parser = idempotency_key)]
        idempotency_key: Option<String>,
        /// Largest config, as the server's --max-body (bytes, or with a unit: `16MiB`);
        /// reading stops past it.
        #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::settings::parse_size)]
        max_body: u64,
        #[command(flatten)]
        retry: RetryArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a job's status.
    Status {
        /// The job id, as `submit` printed it.
        id: JobId,
        /// Wait up to this long (`30s`, `5m`) for the job to be done or failed, then
        /// print its status.
        #[arg(long, value_name = "DURATION", value_parser = crate::settings::parse_duration)]
        wait: Option<Duration>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a finished job's summary.
    Result {
        /// The job id, as `submit` printed it.
        id: JobId,
        /// The API's JSON object instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ice used on a day by a profile, and the profile's cost up to that day.
    Query {
        /// The job id, as `submit` printed it.
        id: JobId,
        /// The profile, counted from 1 in the config's order.
        #[arg(long, allow_negative_numbers = true, value_parser = counted_from_one())]
        profile: u64,
        /// The day, counted from 1; a day after the wall is done answers ice 0.
        #[arg(long, allow_negative_numbers = true, value_parser = counted_from_one())]
        day: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a finished job's team log.
    Log {
        /// The job id, as `submit` printed it.
        id: JobId,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List jobs, newest first, a page at a time.
    Jobs {
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "running", "done", "failed"])]
        status: Option<String>,
        /// Newest or oldest first.
        #[arg(long, default_value = "newest", value_parser = ["newest", "oldest"])]
        order: String,
        /// At most this many, 1 to 1000.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Start after this job id (the last one of the previous page): older ones with
        /// `--order newest`, newer ones with `--order oldest`.
        #[arg(long)]
        after: Option<JobId>,
        /// Print the page's jobs as JSON: the `data` array of the API's answer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a queued job so that it never runs; a finished job is left alone.
    Cancel {
        /// The job id, as `submit` printed it.
        id: JobId,
        /// The server's admin token.
        #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a done or failed job and its result.
    Delete {
        /// The job id, as `submit` printed it.
        id: JobId,
        /// The server's admin token.
        #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Check that the server is alive and ready for jobs: exit 0 ready, 1 not ready,
    /// 2 not an icewall server, 3 unreachable.
    Health {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask the server to finish its jobs and stop.
    Shutdown {
        /// The server's admin token.
        #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A key the server takes, so that a bad one is a usage error before anything is sent.
fn idempotency_key(text: &str) -> Result<String, String> {
    IdempotencyKey::parse(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| {
            "an Idempotency-Key is 1 to 255 visible ASCII characters, without spaces".to_owned()
        })
}

impl ClientCommand {
    /// The admin token given, for the subcommands that take one.
    pub(super) fn token(&self) -> Option<&str> {
        match self {
            ClientCommand::Cancel { token, .. }
            | ClientCommand::Delete { token, .. }
            | ClientCommand::Shutdown { token, .. } => token.as_deref(),
            _ => None,
        }
    }

    pub(super) fn server(&self) -> &ServerArgs {
        match self {
            ClientCommand::Submit { server, .. }
            | ClientCommand::Status { server, .. }
            | ClientCommand::Result { server, .. }
            | ClientCommand::Query { server, .. }
            | ClientCommand::Log { server, .. }
            | ClientCommand::Jobs { server, .. }
            | ClientCommand::Cancel { server, .. }
            | ClientCommand::Delete { server, .. }
            | ClientCommand::Health { server }
            | ClientCommand::Shutdown { server, .. } => server,
        }
    }
}

/// A profile or a day: 1 to 2^63 - 1, what the server takes, so that a value it would
/// refuse is a usage error and never sent.
fn counted_from_one() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=i64::MAX.unsigned_abs())
}
