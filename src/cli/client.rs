//! The client subcommands (`submit`, `status`, `result`, `query`, `log`, `jobs`,
//! `cancel`, `delete`, `health`, `shutdown`): talk to a running server over HTTP or
//! HTTPS and print what it says.
//!
//! Exit codes: 0 done; 1 the server said no (its `reason` is printed) or redirected
//! (which is not followed); 2 a usage or local input error (a job id that is not a UUID
//! among them: ids go into URLs, so nothing else is ever sent), or an answer this client
//! cannot read; 3 the server cannot be reached, or its answer was cut off or stalled; 4
//! `submit --wait --timeout` ran out of time, the submission or a request of the wait
//! unanswered, or the job unfinished (the job goes on; the message names it and the last
//! status the server gave, or the key that makes retrying the submission safe).

mod args;
mod connection;
mod deadline;
mod submit;
mod wait;

use std::io::{self, Write};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use thousands::Separable;

pub use self::args::{ClientCommand, RetryArgs, ServerArgs};
use self::connection::{Client, unreadable};
use self::deadline::Deadline;
use self::submit::{read_config, submit};
use self::wait::{is_finished, print_result, wait_for};
use super::printable;

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
    #[error("{0}")]
    TimedOut(String),
}

/// A wait for job `id` that ran out of time, with the last status the server gave in
/// it, if any.
fn unfinished(id: &str, status: Option<&str>, after: Duration) -> ClientError {
    let after = humantime::format_duration(after);
    let what = match status {
        Some(status) => format!("job {id} is still {status} after {after}"),
        None => format!("no answer about job {id} came within {after}"),
    };
    ClientError::TimedOut(format!("{what}; it goes on (`icewall status {id}`)"))
}

impl ClientError {
    /// The error of a wait for job `id`, which was made: the message names it, so that
    /// the job is not made again.
    fn while_waiting_for(self, id: &str) -> ClientError {
        self.with_message(|what| {
            format!("job {id} was submitted, but waiting for it failed: {what}")
        })
    }

    /// The same error, what it says about the server's answer rewritten by `say`.
    fn with_message(self, say: impl FnOnce(String) -> String) -> ClientError {
        match self {
            ClientError::Refused { status, reason } => ClientError::Refused {
                status,
                reason: say(reason),
            },
            ClientError::Unreachable { server, detail } => ClientError::Unreachable {
                server,
                detail: say(detail),
            },
            ClientError::Input(reason) => ClientError::Input(say(reason)),
            ClientError::TimedOut(reason) => ClientError::TimedOut(say(reason)),
            other => other,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::Input(_) | ClientError::Output(_) => 2,
            ClientError::Unreachable { .. } => 3,
            ClientError::TimedOut(_) => 4,
        }
    }
}

/// Runs a client subcommand, printing to `out`.
///
/// # Errors
/// See the module documentation for what each error means.
pub fn run(command: ClientCommand, out: &mut impl Write) -> Result<(), ClientError> {
    // Checked here rather than by clap, whose error would show the token.
    if let Some(token) = command.token() {
        crate::settings::admin_token(token).map_err(ClientError::Input)?;
    }
    let client = Client::new(command.server())?;
    match command {
        ClientCommand::Submit {
            file,
            num_teams,
            wait,
            json,
            timeout,
            idempotency_key,
            max_body,
            retry,
            server: _,
        } => {
            let body = read_config(&file, max_body)?;
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            // The timeout bounds the submission too: a stalled server or a full queue
            // must not hold the wait's user past it.
            let deadline = timeout.map(Deadline::after);
            let id = submit(&client, body, num_teams, &key, &retry, deadline)?;
            if !wait {
                writeln!(out, "{id}")?;
                return Ok(());
            }
            match wait_for(&client, &id, deadline).map_err(|error| error.while_waiting_for(&id))? {
                Some(result) if is_finished(&result) => {
                    print_result(&client, &id, &result, json, out)
                }
                last => Err(unfinished(
                    &id,
                    last.map(|result| result.status).as_deref(),
                    timeout.unwrap_or_default(),
                )),
            }
        }
        ClientCommand::Status { id, wait, .. } => {
            let id = id.to_string();
            let result = match wait.filter(|wait| !wait.is_zero()) {
                None => client.job_result(&id, Duration::ZERO)?,
                // The wait running out is no error, and prints the last status the
                // server gave; a server that gave none in it has no status to print.
                Some(wait) => {
                    wait_for(&client, &id, Some(Deadline::after(wait)))?.ok_or_else(|| {
                        ClientError::Unreachable {
                            server: client.shown().to_owned(),
                            detail: format!(
                                "no answer came within --wait {}; giving up",
                                humantime::format_duration(wait)
                            ),
                        }
                    })?
                }
            };
            writeln!(out, "{}", printable(&result.status))?;
            Ok(())
        }
        ClientCommand::Result { id, json, .. } => {
            let id = id.to_string();
            let result = client.job_result(&id, Duration::ZERO)?;
            print_result(&client, &id, &result, json, out)
        }
        ClientCommand::Query {
            id, profile, day, ..
        } => {
            let ice = client.get_json(&format!("/api/jobs/{id}/profiles/{profile}/days/{day}"))?;
            let cost =
                client.get_json(&format!("/api/jobs/{id}/profiles/{profile}/overview/{day}"))?;
            let number = |value: &Value, key: &str| {
                value[key]
                    .as_u64()
                    .map(|number| number.separate_with_commas())
                    .ok_or_else(|| unreadable(&format!("no `{key}` in its answer")))
            };
            let (ice, cost) = (number(&ice, "ice_amount")?, number(&cost, "cost")?);
            writeln!(out, "profile {profile}, day {day}")?;
            writeln!(out, "ice on the day: {ice} cubic yards")?;
            writeln!(out, "cost to date:   {cost} Gold Dragons")?;
            Ok(())
        }
        ClientCommand::Log { id, .. } => client.copy_body(&format!("/api/jobs/{id}/log"), out),
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
        // A cancel leaves a job that finished since it was looked at (a `DELETE` would
        // remove its result).
        ClientCommand::Cancel { id, token, .. } => {
            let request = client
                .agent
                .post(&client.url(&format!("/api/jobs/{id}/cancel")));
            remove_job(&client, request, token.as_deref(), &id.to_string(), out)
        }
        ClientCommand::Delete { id, token, .. } => {
            let request = client.agent.delete(&client.url(&format!("/api/jobs/{id}")));
            remove_job(&client, request, token.as_deref(), &id.to_string(), out)
        }
        ClientCommand::Health { .. } => health(&client, out),
        ClientCommand::Shutdown { token, .. } => {
            let request = with_token(
                client.agent.post(&client.url("/api/graceful_shutdown")),
                token.as_deref(),
            );
            let answer: Value = client.read_json(client.send(request, None)?)?;
            let pending = answer["pending"]
                .as_u64()
                .ok_or_else(|| unreadable("no `pending` in its answer"))?;
            writeln!(out, "shutting down; {pending} jobs still to finish")?;
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
    let listing: Listing = client.read_json(client.send(request, None)?)?;
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
            printable(&row.job_id),
            printable(created),
            printable(&row.status)
        )?;
    }
    Ok(())
}

/// Sends a `DELETE` or a cancel of job `id`, and prints what became of it (`deleted`
/// or `cancelled`).
fn remove_job(
    client: &Client,
    request: ureq::Request,
    token: Option<&str>,
    id: &str,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let answer: Value = client.read_json(client.send(with_token(request, token), None)?)?;
    let status = answer["status"]
        .as_str()
        .ok_or_else(|| unreadable("no `status` in its answer"))?;
    writeln!(out, "{} {id}", printable(status))?;
    Ok(())
}

/// Alive (`/healthz`) and then ready for jobs (`/readyz`).
fn health(client: &Client, out: &mut impl Write) -> Result<(), ClientError> {
    let get = |path: &str| {
        // Both are icewall's for as long as it answers: a server without them is
        // another, or one behind another's path (a wrong --server).
        client
            .send(client.agent.get(&client.url(path)), None)
            .map_err(|error| match error {
                ClientError::Refused {
                    status: 404,
                    reason,
                } => ClientError::Input(format!(
                    "{} is not an icewall server (is --server right?): it has no {path}: \
                     {reason}",
                    client.shown()
                )),
                other => other,
            })
    };
    get("/healthz")?;
    match get("/readyz") {
        Ok(answer) => {
            // Any web server answers 200: only icewall's readiness counts.
            let answer: Value = client.read_json(answer)?;
            if answer["status"] != "ready" {
                return Err(unreadable("its /readyz is not icewall's"));
            }
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
