//! The client subcommands (`submit`, `status`, `result`, `query`, `log`, `jobs`,
//! `shutdown`): talk to a running server over HTTP and print what it says.
//!
//! Exit codes: 0 done; 1 the server said no (its `reason` is printed); 2 a usage or
//! local input error (a job id that is not a UUID among them: ids go into URLs, so
//! nothing else is ever sent); 3 the server cannot be reached.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use thousands::Separable;

use super::simulate::write_summary;
use crate::jobs::JobId;
use crate::wall::{Summary, is_json_config, parse_num_teams, truncate_for_message};

/// Where the server is, for every client subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "ICEWALL_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
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
        /// Retries with the same key get the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a job's status.
    Status { id: JobId },
    /// Print a finished job's summary.
    Result {
        id: JobId,
        /// The API's JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Ice used on a day by a profile, and the profile's cost up to that day.
    Query {
        id: JobId,
        #[arg(long)]
        profile: u64,
        #[arg(long)]
        day: u64,
    },
    /// Print a finished job's team log.
    Log { id: JobId },
    /// List jobs, oldest first.
    Jobs {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Ask the server to finish its jobs and stop.
    Shutdown {
        /// The server's admin token.
        #[arg(long, env = "ICEWALL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{reason}")]
    Refused { status: u16, reason: String },
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("{0}")]
    Input(String),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::Input(_) | ClientError::Output(_) => 2,
            ClientError::Unreachable { .. } => 3,
        }
    }
}

struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(server: &str) -> Client {
        Client {
            base: server.trim_end_matches('/').to_owned(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    fn send(
        &self,
        request: ureq::Request,
        body: Option<(&str, &[u8])>,
    ) -> Result<ureq::Response, ClientError> {
        let sent = match body {
            Some((content_type, bytes)) => {
                request.set("Content-Type", content_type).send_bytes(bytes)
            }
            None => request.call(),
        };
        match sent {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|body| body["reason"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("HTTP {status}: {}", text.trim()));
                Err(ClientError::Refused { status, reason })
            }
            Err(error) => Err(ClientError::Unreachable {
                server: self.base.clone(),
                detail: error.to_string(),
            }),
        }
    }

    fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self.send(self.agent.get(&format!("{}{path}", self.base)), None)?;
        response.into_json().map_err(|error| {
            ClientError::Input(format!(
                "the server sent something that is not JSON: {error}"
            ))
        })
    }

    fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let mut text = String::new();
        self.send(self.agent.get(&format!("{}{path}", self.base)), None)?
            .into_reader()
            .read_to_string(&mut text)
            .map_err(|error| ClientError::Unreachable {
                server: self.base.clone(),
                detail: error.to_string(),
            })?;
        Ok(text)
    }
}

/// Runs a client subcommand against `server`, printing to `out`.
///
/// # Errors
/// See the module documentation for what each error means.
pub fn run(
    command: ClientCommand,
    server: &ServerArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let client = Client::new(&server.server);
    match command {
        ClientCommand::Submit {
            file,
            num_teams,
            wait,
            json,
            idempotency_key,
        } => {
            let id = submit(&client, &file, num_teams, idempotency_key.as_deref())?;
            if !wait {
                writeln!(out, "{id}")?;
                return Ok(());
            }
            let result = wait_for(&client, &id)?;
            print_result(&id, &result, json, out)
        }
        ClientCommand::Status { id } => {
            let result = client.get_json(&format!("/api/get_results/{id}"))?;
            writeln!(out, "{}", result["status"].as_str().unwrap_or("unknown"))?;
            Ok(())
        }
        ClientCommand::Result { id, json } => {
            let result = client.get_json(&format!("/api/get_results/{id}"))?;
            print_result(&id, &result, json, out)
        }
        ClientCommand::Query { id, profile, day } => {
            let ice = client.get_json(&format!("/api/jobs/{id}/profiles/{profile}/days/{day}"))?;
            let cost =
                client.get_json(&format!("/api/jobs/{id}/profiles/{profile}/overview/{day}"))?;
            let number =
                |value: &Value, key: &str| value[key].as_u64().unwrap_or(0).separate_with_commas();
            writeln!(out, "profile {profile}, day {day}")?;
            writeln!(
                out,
                "ice on the day: {} cubic yards",
                number(&ice, "ice_amount")
            )?;
            writeln!(
                out,
                "cost to date:   {} Gold Dragons",
                number(&cost, "cost")
            )?;
            Ok(())
        }
        ClientCommand::Log { id } => {
            write!(out, "{}", client.get_text(&format!("/api/jobs/{id}/log"))?)?;
            Ok(())
        }
        ClientCommand::Jobs { limit } => {
            let listing = client.get_json(&format!("/api/jobs?limit={}", limit.clamp(1, 1000)))?;
            for job in listing["data"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{}  {}",
                    job["job_id"].as_str().unwrap_or("?"),
                    job["status"].as_str().unwrap_or("?")
                )?;
            }
            Ok(())
        }
        ClientCommand::Shutdown { token } => {
            let mut request = client
                .agent
                .post(&format!("{}/api/graceful_shutdown", client.base));
            if let Some(token) = token {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            let answer: Value = client
                .send(request, None)?
                .into_json()
                .map_err(|error| ClientError::Input(error.to_string()))?;
            writeln!(
                out,
                "shutting down; {} jobs still to finish",
                answer["pending"]
            )?;
            Ok(())
        }
    }
}

fn submit(
    client: &Client,
    file: &PathBuf,
    num_teams: Option<std::num::NonZeroU64>,
    key: Option<&str>,
) -> Result<JobId, ClientError> {
    let body = if file.as_os_str() == "-" {
        let mut body = Vec::new();
        io::stdin().lock().read_to_end(&mut body).map(|_| body)
    } else {
        std::fs::read(file)
    }
    .map_err(|error| ClientError::Input(format!("cannot read {}: {error}", file.display())))?;
    let content_type = if is_json_config(&body) {
        "application/json"
    } else {
        "text/plain"
    };
    let query = num_teams.map_or(String::new(), |teams| format!("?num_teams={teams}"));
    let mut request = client
        .agent
        .post(&format!("{}/api/simulate{query}", client.base));
    if let Some(key) = key {
        request = request.set("Idempotency-Key", key);
    }
    let answer: Value = client
        .send(request, Some((content_type, &body)))?
        .into_json()
        .map_err(|error| ClientError::Input(error.to_string()))?;
    // Checked like any id the client sends on: it goes into URLs.
    answer["job_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ClientError::Input(format!(
                "the server sent no valid job id: {}",
                truncate_for_message(&answer.to_string())
            ))
        })
}

/// Polls with a growing interval until the job is done or failed; a spinner shows the
/// state and the time taken on a terminal, nothing otherwise.
fn wait_for(client: &Client, id: &JobId) -> Result<Value, ClientError> {
    let spinner = if io::stderr().is_terminal() {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        );
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        let result = client.get_json(&format!("/api/get_results/{id}"))?;
        let status = result["status"].as_str().unwrap_or("unknown").to_owned();
        if status == "done" || status == "failed" {
            spinner.finish_and_clear();
            return Ok(result);
        }
        spinner.set_message(format!(
            "job {id} {status}, {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_secs(1));
    }
}

fn print_result(
    id: &JobId,
    result: &Value,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match result["status"].as_str() {
        Some("done") => {
            if json {
                writeln!(out, "{}", result["data"])?;
                return Ok(());
            }
            let summary: Summary =
                serde_json::from_value(result["data"].clone()).map_err(|error| {
                    ClientError::Input(format!(
                        "the server sent a summary this client cannot read: {error}"
                    ))
                })?;
            write_summary(&summary, out)?;
            Ok(())
        }
        Some("failed") => Err(ClientError::Refused {
            status: 200,
            reason: format!(
                "job {id} failed: {}",
                result["reason"].as_str().unwrap_or("no reason given")
            ),
        }),
        other => Err(ClientError::Refused {
            status: 409,
            reason: format!(
                "job {id} is {}; its result is not ready",
                other.unwrap_or("unknown")
            ),
        }),
    }
}
