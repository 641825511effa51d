//! `submit`: a config file sent under an Idempotency-Key, and resent under the same key
//! when the server refuses it with 503 (queue full), so that a retry never makes two jobs.

use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::connection::{Client, refusal};
use super::deadline::{self, Deadline};
use super::{ClientError, RetryArgs};
use crate::jobs::JobId;
use crate::wall::{is_json_config, truncate_for_message};

/// The wait before retrying a 503 whose Retry-After is missing or not in seconds.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A config file or stdin, whole, up to `max_body` bytes: past it, what the server
/// would refuse is not read on (an endless input, `/dev/zero` or a pipe, included).
pub(super) fn read_config(file: &Path, max_body: u64) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    let limit = max_body.saturating_add(1);
    if file.as_os_str() == "-" {
        io::stdin().lock().take(limit).read_to_end(&mut body)
    } else {
        std::fs::File::open(file).and_then(|file| file.take(limit).read_to_end(&mut body))
    }
    .map_err(|error| ClientError::Input(format!("cannot read {}: {error}", file.display())))?;
    if body.len() as u64 > max_body {
        return Err(ClientError::Refused {
            status: 413,
            reason: format!(
                "{} is larger than --max-body ({max_body} bytes), as the server's limit",
                file.display()
            ),
        });
    }
    Ok(body)
}

/// Submits `body` under the Idempotency-Key `key`, retrying after a 503 as `retry`
/// allows, all by `deadline`: the key makes a retry of an accepted request answer with
/// the same job.
///
/// # Errors
/// `TimedOut` when `deadline` came first, or would come before a retry; its message
/// names the key, as the job may have been made.
pub(super) fn submit(
    client: &Client,
    body: Vec<u8>,
    num_teams: Option<std::num::NonZeroU64>,
    key: &str,
    retry: &RetryArgs,
    deadline: Option<Deadline>,
) -> Result<String, ClientError> {
    let (client, key_sent, retry) = (client.clone(), key.to_owned(), retry.clone());
    deadline::by(deadline, move || {
        send(&client, &body, num_teams, &key_sent, &retry, deadline)
    })
    .unwrap_or_else(|| {
        let given = deadline.map(|deadline| deadline.given).unwrap_or_default();
        Err(safe_to_retry(
            ClientError::TimedOut(format!(
                "no answer to the submission came within {}",
                humantime::format_duration(given)
            )),
            key,
        ))
    })
}

/// `submit`'s requests, which it gives up on at the deadline: this cuts the retries
/// short when the deadline would come before one.
fn send(
    client: &Client,
    body: &[u8],
    num_teams: Option<std::num::NonZeroU64>,
    key: &str,
    retry: &RetryArgs,
    deadline: Option<Deadline>,
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
    // Durations are at most 1000 years (see `settings::parse_duration`): no overflow.
    let retry_for_ends = Instant::now() + retry.retry_for;
    let timeout_first = deadline.filter(|deadline| deadline.at < retry_for_ends);
    let retries_end = timeout_first.map_or(retry_for_ends, |deadline| deadline.at);
    let mut retries_left = retry.retries;
    let response = loop {
        let sent = client
            .post(request.clone(), content_type, body)
            .map_err(|error| *error);
        match sent {
            Err(ureq::Error::Status(503, response)) if retries_left > 0 => {
                let wait = retry_after(&response);
                let refused = refusal(503, response);
                // A Retry-After beyond the retries' end (or beyond the clock) ends them.
                let retry_at = Instant::now().checked_add(wait);
                if retry_at.is_none_or(|retry_at| retry_at > retries_end) {
                    let error = match timeout_first {
                        Some(deadline) => ClientError::TimedOut(format!(
                            "{refused}; its retry in {} would come after --timeout {}",
                            humantime::format_duration(wait),
                            humantime::format_duration(deadline.given)
                        )),
                        None => refused,
                    };
                    return Err(safe_to_retry(error, key));
                }
                retries_left -= 1;
                eprintln!(
                    "icewall: {}; retrying in {}",
                    crate::cli::printable(&refused.to_string()),
                    humantime::format_duration(wait)
                );
                std::thread::sleep(wait);
            }
            sent => {
                let unsure = may_have_made_the_job(&sent);
                break client.answer(sent).map_err(|error| {
                    if unsure {
                        safe_to_retry(error, key)
                    } else {
                        error
                    }
                })?;
            }
        }
    };
    // Accepted: an answer lost now leaves a job whose id only the key can recover.
    let answer: Value = client.read_json(response).map_err(|error| match error {
        unreachable @ ClientError::Unreachable { .. } => safe_to_retry(unreachable, key),
        other => other,
    })?;
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

/// Whether a submission that failed so may still have made the job: the request was
/// sent, and the answer was lost, or came from a proxy (502, 504) or a server that
/// cannot say (503) whether it got there.
fn may_have_made_the_job(sent: &Result<ureq::Response, ureq::Error>) -> bool {
    use ureq::ErrorKind;
    match sent {
        Ok(_) => false,
        Err(ureq::Error::Status(status, _)) => matches!(status, 502..=504),
        // Those before anything is sent.
        Err(ureq::Error::Transport(transport)) => !matches!(
            transport.kind(),
            ErrorKind::InvalidUrl
                | ErrorKind::UnknownScheme
                | ErrorKind::Dns
                | ErrorKind::InsecureRequestHttpsOnly
                | ErrorKind::ConnectionFailed
                | ErrorKind::InvalidProxyUrl
                | ErrorKind::ProxyConnect
                | ErrorKind::ProxyUnauthorized
        ),
    }
}

/// `error`, telling the user how to find out safely whether the job was made: the key
/// it was sent under (made up here unless given) answers with the job if it was, and
/// makes it if not.
fn safe_to_retry(error: ClientError, key: &str) -> ClientError {
    error.with_message(|what| {
        format!(
            "{what}; retrying with --idempotency-key {key} is safe: it makes the job at most once"
        )
    })
}

fn retry_after(response: &ureq::Response) -> Duration {
    response
        .header("Retry-After")
        .and_then(|seconds| seconds.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}
