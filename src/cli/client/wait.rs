//! Waiting for a job to finish (the server holds each request with `?wait=`) and
//! printing its result as a table or as the API's JSON.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::ClientError;
use super::connection::{Client, JobResult};
use super::deadline::{self, Deadline};
use crate::cli::printable;
use crate::cli::simulate::write_summary;
use crate::wall::{ProfileSummary, Summary};
use serde::Deserialize;

/// The longest server-side wait (`?wait=`) of one request: within the server's default
/// `--max-wait` (60s) and this client's read timeout, and short enough that proxies
/// keep the connection.
const WAIT_PER_REQUEST: Duration = Duration::from_secs(10);

pub(super) fn is_finished(result: &JobResult) -> bool {
    result.status == "done" || result.status == "failed"
}

/// The wait asked of a server that refused `WAIT_PER_REQUEST` (its `--max-wait` is
/// shorter), before it is asked without one.
const SHORT_WAIT: Duration = Duration::from_secs(1);

/// How long to pause before asking again when the server answered before the wait
/// asked for was up (a draining server answers every held request at once), or when it
/// holds no request at all.
const EARLY_ANSWER_PAUSE: Duration = Duration::from_millis(500);

/// The most of a `--timeout` kept back from the last held request, for a new
/// connection's handshakes and the answer's way back, so that the answer comes before
/// the timeout rather than being cut off by it.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Asks until the job is done or failed, or `deadline` has passed (never, if `None`),
/// and returns its last answer, finished or not, or `None` if none came in time (a
/// stalled server cannot hold the wait past `deadline`): the server holds each request
/// until the job finishes (`?wait=`), so no time is lost between polls. A server that
/// refuses the wait (its `--max-wait` is shorter) is asked for `SHORT_WAIT`, and if it
/// refuses that too, without a wait, every `EARLY_ANSWER_PAUSE`. A spinner shows the
/// state and the time taken on a terminal, nothing otherwise.
pub(super) fn wait_for(
    client: &Client,
    id: &str,
    deadline: Option<Deadline>,
) -> Result<Option<JobResult>, ClientError> {
    let no_time = deadline.is_some_and(|deadline| deadline.left().is_zero());
    let spinner = if io::stderr().is_terminal() && !no_time {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        );
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let left = || deadline.map_or(WAIT_PER_REQUEST, |deadline| deadline.left());
    // A quarter of a short timeout, so that it still holds a request.
    let margin = deadline.map_or(Duration::ZERO, |deadline| {
        (deadline.given / 4).min(ANSWER_MARGIN)
    });
    // The longest wait the server takes: 10 s, then 1 s, then none, as it refuses them.
    let mut longest_wait = WAIT_PER_REQUEST;
    let mut last_answer = None;
    loop {
        let wait = left().saturating_sub(margin).min(longest_wait);
        let asked = Instant::now();
        let (asking, asked_about) = (client.clone(), id.to_owned());
        let answer = deadline::by(deadline, move || asking.job_result(&asked_about, wait));
        let result = match answer {
            Some(Err(ClientError::Refused { status: 400, .. })) if !wait.is_zero() => {
                longest_wait = if longest_wait > SHORT_WAIT {
                    SHORT_WAIT
                } else {
                    Duration::ZERO
                };
                continue;
            }
            Some(Ok(result)) => result,
            // A stalled server cannot hold the wait past its deadline.
            None => {
                spinner.finish_and_clear();
                return Ok(last_answer);
            }
            Some(Err(error)) => return Err(error),
        };
        // Within the margin, a request would be cut off before its answer came.
        if is_finished(&result) || left() <= margin {
            spinner.finish_and_clear();
            return Ok(Some(result));
        }
        spinner.set_message(format!("job {id} {}", printable(&result.status)));
        last_answer = Some(result);
        // Answered before its wait was up, or asked without one.
        if wait.is_zero() || asked.elapsed() < wait {
            std::thread::sleep(EARLY_ANSWER_PAUSE.min(left().saturating_sub(margin)));
        }
    }
}

/// A done job's summary as a table, or as the API's JSON; the rows a summary leaves
/// out on a server's `--max-summary-profiles` are read page by page, so that the whole
/// result is printed, as `simulate` prints it.
pub(super) fn print_result(
    client: &Client,
    id: &str,
    result: &JobResult,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match (result.status.as_str(), &result.data) {
        ("done", Some(data)) => {
            let cannot_read = |error: serde_json::Error| {
                ClientError::Input(format!(
                    "the server sent a summary this client cannot read: {error}"
                ))
            };
            let done: DoneSummary = serde_json::from_str(data.get()).map_err(cannot_read)?;
            if json && !done.profiles_truncated {
                // The server's own bytes, keys in the API's order.
                writeln!(out, "{}", data.get())?;
                return Ok(());
            }
            let mut summary = done.summary;
            if done.profiles_truncated {
                read_left_out_rows(client, id, &mut summary, done.profiles_total)?;
            }
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&summary).map_err(cannot_read)?
                )?;
            } else {
                write_summary(&summary, out)?;
            }
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

/// A done job's summary, and whether it left rows out (only then does it say so).
#[derive(Deserialize)]
struct DoneSummary {
    #[serde(flatten)]
    summary: Summary,
    #[serde(default)]
    profiles_truncated: bool,
    /// Sent with `profiles_truncated`: the rows there are, which bounds the pages read.
    #[serde(default)]
    profiles_total: Option<usize>,
}

/// The most profile rows read for one job: ten times the most profiles a wall has on a
/// server's default `--max-sections`, so that a server that counts without end, or says
/// more follow for ever, is stopped.
const MAX_PROFILE_ROWS: usize = 10_000_000;

/// The rows after those of `summary`, from `/api/jobs/<id>/profiles`, a page at a time,
/// up to the `total` the summary counts: each page must bring the next rows, and say
/// that more follow exactly when they do, or the server's answers cannot be trusted to
/// end.
fn read_left_out_rows(
    client: &Client,
    id: &str,
    summary: &mut Summary,
    total: Option<usize>,
) -> Result<(), ClientError> {
    #[derive(Deserialize)]
    struct Page {
        profiles: Vec<ProfileSummary>,
        next_after: Option<usize>,
    }
    let cannot_read = |what: String| {
        ClientError::Input(format!(
            "the server sent pages of profiles this client cannot read: {what}"
        ))
    };
    let total = total.ok_or_else(|| {
        cannot_read("its summary leaves rows out without saying how many there are".to_owned())
    })?;
    if total > MAX_PROFILE_ROWS {
        return Err(cannot_read(format!(
            "its summary counts {total} profiles, more than the {MAX_PROFILE_ROWS} a wall \
             read here may have"
        )));
    }
    while summary.profiles.len() < total {
        let after = summary.profiles.len();
        let page = client.get_json(&format!("/api/jobs/{id}/profiles?after={after}&limit=1000"))?;
        let page: Page =
            serde_json::from_value(page).map_err(|error| cannot_read(error.to_string()))?;
        if let Some((row, due)) = page
            .profiles
            .iter()
            .zip(after + 1..)
            .find(|(row, due)| row.profile != *due)
        {
            return Err(cannot_read(format!(
                "profile {} where profile {due} was due",
                row.profile
            )));
        }
        // A page that brings nothing would be asked for again and again.
        if page.profiles.is_empty() {
            return Err(cannot_read(format!(
                "an empty page after profile {after} of the {total} its summary counts"
            )));
        }
        let end = after + page.profiles.len();
        if end > total || page.next_after != (end < total).then_some(end) {
            let follow = if page.next_after.is_some() {
                "more follow"
            } else {
                "none follow"
            };
            return Err(cannot_read(format!(
                "a page says {follow} after profile {end} of the {total} its summary counts"
            )));
        }
        summary.profiles.extend(page.profiles);
    }
    Ok(())
}
