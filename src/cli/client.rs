//! The client subcommands (`submit`, `status`, `result`, `query`, `log`, `jobs`,
//! `cancel`, `delete`, `health`, `shutdown`): talk to a running server over HTTP or
//! HTTPS and print what it says.
//!
//! Exit codes: 0 done; 1 the server said no (its `reason` is printed); 2 a usage or
//! local input error (a job id that is not a UUID among them: ids go into URLs, so
//! nothing else is ever sent); 3 the server cannot be reached; 4 `submit --wait
//! --timeout` ran out of time (the job goes on; the message names it and its status).

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thousands::Separable;
use ureq::rustls;
use ureq::rustls::pki_types::CertificateDer;
use ureq::rustls::pki_types::pem::PemObject;

use super::printable;
use super::simulate::write_summary;
use crate::jobs::JobId;
use crate::wall::{Summary, is_json_config, parse_num_teams, truncate_for_message};

/// Where the server is and how to trust it, for every client subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's base URL, `http://` or `https://`.
    #[arg(
        long,
        value_name = "URL",
        env = "ICEWALL_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_parser = parse_server_url
    )]
    pub server: String,
    /// A PEM file of CA certificates to trust for `https://`, besides the bundled
    /// Mozilla roots (for a server behind a private CA).
    #[arg(long, value_name = "FILE", env = "ICEWALL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// A URL the client can send requests to: `http` or `https` with a host; anything else
/// is a usage error naming the URL.
fn parse_server_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|error| format!("`{text}` is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` has a query or fragment; give the base URL"
        ));
    }
    Ok(text.to_owned())
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
        /// With --wait, give up after this long (`30s`, `5m`): exit 4, the job goes on.
        /// Waits as long as it takes if absent.
        #[arg(long, value_name = "DURATION", requires = "wait", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Retries with the same key get the same job; a fresh one is made if absent.
        #[arg(long)]
        idempotency_key: Option<String>,
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
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
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
        #[arg(long)]
        profile: u64,
        /// The day, counted from 1; a day after the wall is done answers ice 0.
        #[arg(long)]
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
        /// Print the API's list as JSON.
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
    /// 3 unreachable.
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

impl ClientCommand {
    fn server(&self) -> &ServerArgs {
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
    #[error(
        "job {id} is still {status} after {}; it goes on (`icewall status {id}`)",
        humantime::format_duration(*.after)
    )]
    TimedOut {
        id: String,
        status: String,
        after: Duration,
    },
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::Input(_) | ClientError::Output(_) => 2,
            ClientError::Unreachable { .. } => 3,
            ClientError::TimedOut { .. } => 4,
        }
    }
}

struct Client {
    base: String,
    agent: ureq::Agent,
}

/// How long to wait for the server's answer to the headers of a request whose body it
/// stopped reading (see `Client::post`).
const REFUSAL_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest server-side wait (`?wait=`) of one request: within the server's default
/// `--max-wait` (60s) and this client's read timeout, and short enough that proxies
/// keep the connection.
const WAIT_PER_REQUEST: Duration = Duration::from_secs(10);

/// The wait before retrying a 503 whose Retry-After is missing or not in seconds.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The answer of `GET /api/get_results/<id>`; `data` is kept as the server's bytes so
/// that `--json` prints the API's summary exactly, keys in the API's order.
#[derive(Deserialize)]
struct JobResult {
    status: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    reason: Option<String>,
}

impl Client {
    /// # Errors
    /// `Input` when `--ca-cert` cannot be read or holds no certificate.
    fn new(server: &ServerArgs) -> Result<Client, ClientError> {
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60));
        if let Some(path) = &server.ca_cert {
            agent = agent.tls_config(tls_config(path)?);
        }
        Ok(Client {
            base: server.server.trim_end_matches('/').to_owned(),
            agent: agent.build(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Turns what ureq says into the answer or the error the user is shown.
    fn answer(
        &self,
        sent: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, ClientError> {
        match sent {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => Err(refusal(status, response)),
            Err(error) => Err(self.unreachable(error)),
        }
    }

    fn unreachable(&self, error: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            server: self.base.clone(),
            detail: error.to_string(),
        }
    }

    fn send(
        &self,
        request: ureq::Request,
        body: Option<(&str, &[u8])>,
    ) -> Result<ureq::Response, ClientError> {
        match body {
            Some((content_type, bytes)) => self.answer(
                self.post(request, content_type, bytes)
                    .map_err(|error| *error),
            ),
            None => self.answer(request.call()),
        }
    }

    /// Sends a body. A server that refuses a request on its headers (a 413 for a
    /// declared length far over its limit) answers and closes without reading the
    /// body; ureq, still writing, then fails with a broken pipe or a reset and drops
    /// the answer. The same headers with the declared length but no body get that same
    /// answer, which is what the user needs to see; they cannot make a job, as the body
    /// never comes.
    fn post(
        &self,
        request: ureq::Request,
        content_type: &str,
        body: &[u8],
    ) -> Result<ureq::Response, Box<ureq::Error>> {
        let request = request.set("Content-Type", content_type);
        match request.clone().send_bytes(body) {
            Err(ureq::Error::Transport(transport)) if stopped_reading(&transport) => {
                match request
                    .set("Content-Length", &body.len().to_string())
                    .timeout(REFUSAL_PROBE_TIMEOUT)
                    .send(io::empty())
                {
                    Err(refused @ ureq::Error::Status(..)) => Err(Box::new(refused)),
                    _ => Err(Box::new(ureq::Error::Transport(transport))),
                }
            }
            other => other.map_err(Box::new),
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

    /// A job's result, the server holding the answer up to `wait` for the job to finish.
    fn job_result(&self, id: &str, wait: Duration) -> Result<JobResult, ClientError> {
        let mut request = self.agent.get(&self.url(&format!("/api/get_results/{id}")));
        if !wait.is_zero() {
            request = request.query("wait", &format!("{:.3}", wait.as_secs_f64()));
        }
        read_json(self.send(request, None)?)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(response: ureq::Response) -> Result<T, ClientError> {
    response.into_json().map_err(|error| {
        ClientError::Input(format!(
            "the server sent an answer this client cannot read: {error}"
        ))
    })
}

fn refusal(status: u16, response: ureq::Response) -> ClientError {
    let text = response.into_string().unwrap_or_default();
    let reason = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}: {}", text.trim()));
    ClientError::Refused { status, reason }
}

/// Whether a send failed because the server closed the connection while the body was
/// still being written.
fn stopped_reading(transport: &ureq::Transport) -> bool {
    std::error::Error::source(transport)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .is_some_and(|error| {
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )
        })
}

/// TLS that trusts the bundled Mozilla roots (so a static binary in an empty container
/// still verifies public servers) and the certificates of `ca_cert`.
fn tls_config(ca_cert: &Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let unreadable = |error: &dyn std::fmt::Display| {
        ClientError::Input(format!(
            "cannot read CA certificates from {}: {error}",
            ca_cert.display()
        ))
    };
    let certificates = CertificateDer::pem_file_iter(ca_cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| unreadable(&error))?;
    if certificates.is_empty() {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in certificates {
        roots.add(certificate).map_err(|error| unreadable(&error))?;
    }
    // ureq's own default is the ring provider; naming it avoids relying on a process
    // default that another dependency could make ambiguous.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs a client subcommand, printing to `out`.
///
/// # Errors
/// See the module documentation for what each error means.
pub fn run(command: ClientCommand, out: &mut impl Write) -> Result<(), ClientError> {
    let client = Client::new(command.server())?;
    match command {
        ClientCommand::Submit {
            file,
            num_teams,
            wait,
            json,
            timeout,
            idempotency_key,
            retry,
            server: _,
        } => {
            let body = read_config(&file)?;
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let id = submit(&client, &body, num_teams, &key, &retry)?;
            if !wait {
                writeln!(out, "{id}")?;
                return Ok(());
            }
            let result = wait_for(&client, &id, timeout)?;
            if !is_finished(&result) {
                return Err(ClientError::TimedOut {
                    id,
                    status: result.status,
                    after: timeout.unwrap_or_default(),
                });
            }
            print_result(&id, &result, json, out)
        }
        ClientCommand::Status { id, wait, .. } => {
            let result = wait_for(&client, &id.to_string(), Some(wait.unwrap_or_default()))?;
            writeln!(out, "{}", result.status)?;
            Ok(())
        }
        ClientCommand::Result { id, json, .. } => {
            let id = id.to_string();
            let result = client.job_result(&id, Duration::ZERO)?;
            print_result(&id, &result, json, out)
        }
        ClientCommand::Query {
            id, profile, day, ..
        } => {
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
        ClientCommand::Log { id, .. } => {
            write!(out, "{}", client.get_text(&format!("/api/jobs/{id}/log"))?)?;
            Ok(())
        }
        ClientCommand::Jobs {
            status,
            order,
            limit,
            after,
            json,
            ..
        } => {
            let mut query = vec![("limit", limit.to_string()), ("order", order)];
            query.extend(status.map(|status| ("status", status)));
            query.extend(after.map(|id| ("after", id.to_string())));
            list_jobs(&client, &query, json, out)
        }
        ClientCommand::Cancel { id, token, .. } => {
            cancel(&client, &id.to_string(), token.as_deref(), out)
        }
        ClientCommand::Delete { id, token, .. } => {
            let answer = delete_job(&client, &id.to_string(), token.as_deref())?;
            writeln!(out, "{} {id}", answer["status"].as_str().unwrap_or("?"))?;
            Ok(())
        }
        ClientCommand::Health { .. } => health(&client, out),
        ClientCommand::Shutdown { token, .. } => {
            let request = with_token(
                client.agent.post(&client.url("/api/graceful_shutdown")),
                token.as_deref(),
            );
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

fn with_token(request: ureq::Request, token: Option<&str>) -> ureq::Request {
    match token {
        Some(token) => request.set("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

/// A config file or stdin, whole; the server bounds its size.
fn read_config(file: &Path) -> Result<Vec<u8>, ClientError> {
    if file.as_os_str() == "-" {
        let mut body = Vec::new();
        io::stdin().lock().read_to_end(&mut body).map(|_| body)
    } else {
        std::fs::read(file)
    }
    .map_err(|error| ClientError::Input(format!("cannot read {}: {error}", file.display())))
}

/// Submits `body` under the Idempotency-Key `key`, retrying after a 503 as `retry`
/// allows: the key makes a retry of an accepted request answer with the same job.
fn submit(
    client: &Client,
    body: &[u8],
    num_teams: Option<std::num::NonZeroU64>,
    key: &str,
    retry: &RetryArgs,
) -> Result<String, ClientError> {
    let content_type = if is_json_config(body) {
        "application/json"
    } else {
        "text/plain"
    };
    let mut request = client
        .agent
        .post(&client.url("/api/simulate"))
        .set("Idempotency-Key", key);
    if let Some(teams) = num_teams {
        request = request.query("num_teams", &teams.to_string());
    }
    // `None`: a time so far that it never comes.
    let give_up_at = Instant::now().checked_add(retry.retry_for);
    let mut retries_left = retry.retries;
    let response = loop {
        let sent = client
            .post(request.clone(), content_type, body)
            .map_err(|error| *error);
        match sent {
            Err(ureq::Error::Status(503, response)) if retries_left > 0 => {
                let wait = retry_after(&response);
                let refused = refusal(503, response);
                // A Retry-After beyond the deadline (or beyond the clock) ends the retries.
                let retry_at = Instant::now().checked_add(wait);
                if retry_at.is_none() || give_up_at.is_some_and(|give_up| retry_at > Some(give_up))
                {
                    return Err(refused);
                }
                retries_left -= 1;
                eprintln!(
                    "icewall: {refused}; retrying in {}",
                    humantime::format_duration(wait)
                );
                std::thread::sleep(wait);
            }
            sent => break client.answer(sent)?,
        }
    };
    let answer: Value = read_json(response)?;
    // Checked like any id the client sends on: it goes into URLs.
    answer["job_id"]
        .as_str()
        .filter(|id| id.parse::<JobId>().is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Input(format!(
                "the server sent no valid job id: {}",
                truncate_for_message(&answer.to_string())
            ))
        })
}

fn retry_after(response: &ureq::Response) -> Duration {
    response
        .header("Retry-After")
        .and_then(|seconds| seconds.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}

/// One page of `/api/jobs`; the query is built from pairs so that more filters are
/// more pairs.
fn list_jobs(
    client: &Client,
    query: &[(&str, String)],
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    #[derive(Deserialize)]
    struct Listing {
        data: Box<RawValue>,
    }
    #[derive(Deserialize)]
    struct Row {
        job_id: String,
        status: String,
        created_at: Option<String>,
    }
    let request = query.iter().fold(
        client.agent.get(&client.url("/api/jobs")),
        |request, (name, value)| request.query(name, value),
    );
    let listing: Listing = read_json(client.send(request, None)?)?;
    if json {
        writeln!(out, "{}", listing.data.get())?;
        return Ok(());
    }
    let rows: Vec<Row> = serde_json::from_str(listing.data.get()).map_err(|error| {
        ClientError::Input(format!(
            "the server sent a list this client cannot read: {error}"
        ))
    })?;
    for row in rows {
        let created = row.created_at.as_deref().unwrap_or("-");
        writeln!(
            out,
            "{}  {}  {}",
            row.job_id,
            printable(created),
            printable(&row.status)
        )?;
    }
    Ok(())
}

fn delete_job(client: &Client, id: &str, token: Option<&str>) -> Result<Value, ClientError> {
    let request = with_token(
        client.agent.delete(&client.url(&format!("/api/jobs/{id}"))),
        token,
    );
    read_json(client.send(request, None)?)
}

/// `DELETE` cancels a queued job but also removes a finished one: a finished job is
/// refused here instead, so that `cancel` never deletes a result.
fn cancel(
    client: &Client,
    id: &str,
    token: Option<&str>,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let status = client.job_result(id, Duration::ZERO)?.status;
    if status == "done" || status == "failed" {
        return Err(ClientError::Refused {
            status: 409,
            reason: format!(
                "job {id} is {status}; there is nothing to cancel (`icewall delete` removes it)"
            ),
        });
    }
    let answer = delete_job(client, id, token)?;
    writeln!(out, "{} {id}", answer["status"].as_str().unwrap_or("?"))?;
    Ok(())
}

/// Alive (`/healthz`) and then ready for jobs (`/readyz`).
fn health(client: &Client, out: &mut impl Write) -> Result<(), ClientError> {
    client.send(client.agent.get(&client.url("/healthz")), None)?;
    match client.send(client.agent.get(&client.url("/readyz")), None) {
        Ok(_) => {
            writeln!(out, "ready")?;
            Ok(())
        }
        Err(ClientError::Refused { status, reason }) => Err(ClientError::Refused {
            status,
            reason: format!("not ready: {reason}"),
        }),
        Err(error) => Err(error),
    }
}

fn is_finished(result: &JobResult) -> bool {
    result.status == "done" || result.status == "failed"
}

/// Asks until the job is done or failed, or `timeout` has passed (never, if `None`),
/// and returns its last answer: the server holds each request until the job finishes
/// (`?wait=`), so no time is lost between polls. A spinner shows the state and the time
/// taken on a terminal, nothing otherwise.
fn wait_for(
    client: &Client,
    id: &str,
    timeout: Option<Duration>,
) -> Result<JobResult, ClientError> {
    let spinner = if io::stderr().is_terminal() && timeout != Some(Duration::ZERO) {
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
    loop {
        let left = timeout.map_or(WAIT_PER_REQUEST, |timeout| {
            timeout.saturating_sub(started.elapsed())
        });
        let result = client.job_result(id, left.min(WAIT_PER_REQUEST))?;
        if is_finished(&result) || left.is_zero() {
            spinner.finish_and_clear();
            return Ok(result);
        }
        spinner.set_message(format!("job {id} {}", printable(&result.status)));
    }
}

fn print_result(
    id: &str,
    result: &JobResult,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match (result.status.as_str(), &result.data) {
        ("done", Some(data)) => {
            if json {
                writeln!(out, "{}", data.get())?;
                return Ok(());
            }
            let summary: Summary = serde_json::from_str(data.get()).map_err(|error| {
                ClientError::Input(format!(
                    "the server sent a summary this client cannot read: {error}"
                ))
            })?;
            write_summary(&summary, out)?;
            Ok(())
        }
        ("done", None) => Err(ClientError::Input(format!(
            "the server sent no summary for job {id}"
        ))),
        ("failed", _) => Err(ClientError::Refused {
            status: 200,
            reason: format!(
                "job {id} failed: {}",
                result.reason.as_deref().unwrap_or("no reason given")
            ),
        }),
        (other, _) => Err(ClientError::Refused {
            status: 409,
            reason: format!("job {id} is {other}; its result is not ready"),
        }),
    }
}
