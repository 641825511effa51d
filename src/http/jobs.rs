//! Job endpoints: a job's status and record, the listing and the count, delete, and
//! the graceful shutdown. A finished job's stored result is read in `job_results`.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::answer_cache::Asked;
use super::bodies::{
    Deleted, ErrorBody, JobList, JobListEntry, JobResult, NumJobs, ShuttingDown, Summary, ok_json,
};
use super::endpoint::{Params, PathParams};
use super::lookup::{done_answer, done_answer_at_once, page_limit};
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobInfo, JobState, Order, Removable, Status};

#[derive(Deserialize)]
pub struct ResultsQuery {
    wait: Option<String>,
}

/// The `wait` of `/api/get_results`: seconds (a fraction allowed, as in `0.5`) from 0
/// to `--max-wait`; absent, 0.
fn wait_time(text: Option<&str>, max_wait: Duration) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(Duration::ZERO);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "wait must be a number of seconds from 0 to {} (the server's --max-wait), got `{}`",
            max_wait.as_secs_f64(),
            crate::wall::truncate_for_message(text)
        ))
    };
    // Any number a JSON or OpenAPI client may write (`0.5`, `1e-3`), but never
    // `inf` or `NaN`, and never below 0.
    let seconds: f64 = text.parse().map_err(|_| bad())?;
    if !seconds.is_finite() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|wait| *wait <= max_wait)
        .ok_or_else(bad)
}

#[utoipa::path(get, path = "/api/get_results/{id}", params(
    ("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"),
    ("wait" = Option<f64>, Query, minimum = 0, description = "Hold the answer until the job is done or failed, or this many seconds pass (at most the server's --max-wait, 60 by default); a graceful shutdown answers at once"),
), responses(
    (status = 200, description = "The job's status, with the summary when done", body = JobResult),
    (status = 400, description = "A bad wait, or one over --max-wait", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody),
))]
pub async fn results(
    path: PathParams,
    query: web::Query<ResultsQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_time(query.wait.as_deref(), state.max_wait)?;
    let id: JobId = path.get("id").parse()?;
    let job = state
        .jobs
        .wait(id, wait, state.shutdown.triggered())
        .await?
        .ok_or_else(ApiError::invalid_job_id)?;
    Ok(match job {
        JobState::Queued | JobState::Running => ok_json(&JobResult {
            reason: None,
            status: job.name(),
            data: None,
        }),
        JobState::Failed(reason) => ok_json(&JobResult {
            reason: Some(reason.to_string()),
            status: "failed",
            data: None,
        }),
        JobState::Done => {
            let limit = state.max_summary_profiles;
            done_answer(&state, id, Asked::Summary, move |jobs| {
                let (summary, total) = jobs.summary(id, 0, limit)?;
                Ok(Ok(JobResult {
                    reason: None,
                    status: "done",
                    data: Some(Summary::bounded(summary, total)),
                }))
            })
            .await?
        }
    })
}

/// `results` at once (see `endpoint::AtOnce`): a done job's kept summary (a `?wait=`
/// is the route's, as any query string).
pub(super) fn results_at_once(state: &ApiState, path: &Params<'_>) -> Option<HttpResponse> {
    done_answer_at_once(state, path.get("id"), Asked::Summary)
}

/// A job's record, from memory (no disk read). Times are RFC 3339 in UTC, `null` while
/// unknown: a job recovered at start-up has no `started_at`, nor a size from a large
/// or failed result.
#[derive(Serialize, ToSchema)]
pub struct JobDetails {
    #[schema(format = Uuid)]
    job_id: String,
    #[schema(value_type = String, pattern = "^(queued|running|done|failed)$")]
    status: &'static str,
    /// From the job id (a v7 UUID holds its creation time); in cluster mode, when the
    /// database took it, on the clock of `started_at` and `finished_at`.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// Milliseconds between creation and start.
    queue_ms: Option<u64>,
    /// Milliseconds between start and the result written.
    run_ms: Option<u64>,
    #[schema(minimum = 1)]
    profiles: Option<u32>,
    #[schema(minimum = 1)]
    sections: Option<u32>,
    /// `null`: unlimited crews (or not known yet, when `profiles` is `null` too).
    #[schema(minimum = 1)]
    num_teams: Option<u64>,
    /// Why a failed job failed.
    reason: Option<String>,
    /// Whether a request with the job's Idempotency-Key was answered with this job
    /// (since the server started).
    replayed: bool,
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, to the millisecond; `None`
/// past year 9999, which RFC 3339 cannot write (a v7 id read from disk may claim it).
pub(super) fn rfc3339(epoch_ms: u64) -> Option<String> {
    use std::fmt::Write;
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(epoch_ms))?;
    let mut text = String::new();
    write!(text, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(text)
}

impl JobDetails {
    fn new(id: JobId, info: JobInfo) -> JobDetails {
        let created_ms = info.created_ms.or_else(|| id.created_ms());
        let shape = info.shape;
        JobDetails {
            job_id: id.to_string(),
            status: info.state.name(),
            created_at: created_ms.and_then(rfc3339),
            started_at: info.started_ms.and_then(rfc3339),
            finished_at: info.finished_ms.and_then(rfc3339),
            queue_ms: created_ms
                .zip(info.started_ms)
                .map(|(created, started)| started.saturating_sub(created)),
            run_ms: info
                .started_ms
                .zip(info.finished_ms)
                .map(|(started, finished)| finished.saturating_sub(started)),
            profiles: shape.map(|shape| shape.profiles.get()),
            sections: shape.and_then(|shape| shape.sections).map(|n| n.get()),
            num_teams: shape.and_then(|shape| shape.num_teams).map(|n| n.get()),
            reason: match info.state {
                JobState::Failed(reason) => Some(reason.to_string()),
                _ => None,
            },
            replayed: info.replayed,
        }
    }
}

#[utoipa::path(get, path = "/api/jobs/{id}", operation_id = "job_details", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "The job's record, from memory", body = JobDetails),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody)))]
pub async fn details(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let id: JobId = path.get("id").parse()?;
    let info = state
        .jobs
        .info(id)
        .await?
        .ok_or_else(ApiError::invalid_job_id)?;
    Ok(ok_json(&JobDetails::new(id, info)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
    status: Option<String>,
    order: Option<String>,
}

#[utoipa::path(get, path = "/api/jobs", params(
    ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 100 by default"),
    ("after" = Option<String>, Query, format = Uuid, description = "List jobs after this one in the order asked (older with `newest`); the last id of the previous page"),
    ("status" = Option<String>, Query, pattern = "^(queued|running|done|failed)$", description = "Only jobs in this state"),
    ("order" = Option<String>, Query, pattern = "^(oldest|newest)$", description = "`oldest` first (the default) or `newest` first"),
), responses((status = 200, description = "Jobs in the order asked", body = JobList), (status = 400, description = "A bad limit, after, status or order, or an unknown parameter", body = ErrorBody)))]
pub async fn list(
    query: web::Query<ListQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit.as_deref())?;
    let after = query
        .after
        .as_deref()
        .map(str::parse::<JobId>)
        .transpose()
        .map_err(|_| ApiError::BadRequest("after must be a job id".to_owned()))?;
    let one_status: [Status; 1];
    let statuses: &[Status] = match query.status.as_deref() {
        None => &Status::ALL,
        Some(name) => {
            one_status = [Status::parse(name).ok_or_else(|| {
                ApiError::BadRequest(
                    "status must be one of queued, running, done, failed".to_owned(),
                )
            })?];
            &one_status
        }
    };
    let order = match query.order.as_deref() {
        None | Some("oldest") => Order::Oldest,
        Some("newest") => Order::Newest,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "order must be oldest or newest".to_owned(),
            ));
        }
    };
    let jobs: Vec<JobListEntry> = state
        .jobs
        .page(statuses, order, after, limit)
        .await?
        .into_iter()
        .map(|(id, job)| JobListEntry {
            job_id: id.to_string(),
            status: job.state.name(),
            created_at: job.created_ms.or_else(|| id.created_ms()).and_then(rfc3339),
            finished_at: job.finished_ms.and_then(rfc3339),
        })
        .collect();
    Ok(ok_json(&JobList {
        data: jobs,
        status: "done",
    }))
}

#[utoipa::path(get, path = "/api/num_jobs", responses((status = 200, description = "Jobs queued or running", body = NumJobs)))]
pub async fn count(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    Ok(ok_json(&NumJobs {
        num_jobs: state.jobs.in_flight().await?,
    }))
}

/// Removes a finished job, or cancels a queued one (an admin action).
#[utoipa::path(delete, path = "/api/jobs/{id}", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), security(("admin_token" = []), ()), responses(
    (status = 200, description = "A finished job and its result are removed (`deleted`), or a queued job is taken out before it runs (`cancelled`); neither comes back after a restart", body = Deleted),
    (status = 401, description = "The admin token is needed", body = ErrorBody, headers(("WWW-Authenticate" = String))),
    (status = 403, description = "A wrong admin token, or admin actions are disabled", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 409, description = "The job is running", body = ErrorBody),
    (status = 500, description = "The disk refused the delete; the job is unchanged", body = ErrorBody)))]
pub async fn delete(
    request: HttpRequest,
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    remove(&request, &path, &state, Removable::FinishedOrQueued).await
}

/// Cancels a queued job; unlike `DELETE`, never removes a finished one (an admin
/// action).
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), security(("admin_token" = []), ()), responses(
    (status = 200, description = "The queued job is taken out before it runs (`cancelled`), and does not come back after a restart", body = Deleted),
    (status = 401, description = "The admin token is needed", body = ErrorBody, headers(("WWW-Authenticate" = String))),
    (status = 403, description = "A wrong admin token, or admin actions are disabled", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 409, description = "The job is running, done or failed: it is left as it is", body = ErrorBody),
    (status = 500, description = "The disk refused the cancel; the job is unchanged", body = ErrorBody)))]
pub async fn cancel(
    request: HttpRequest,
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    remove(&request, &path, &state, Removable::QueuedOnly).await
}

/// The admin action of `DELETE` and of a cancel.
async fn remove(
    request: &HttpRequest,
    path: &PathParams,
    state: &ApiState,
    what: Removable,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(request)?;
    let id: JobId = path.get("id").parse()?;
    let removed = state.jobs.remove(id, what).await?;
    Ok(ok_json(&Deleted {
        job_id: id.to_string(),
        status: removed.name(),
    }))
}

/// Refuses new jobs from this moment and starts the drain; answers at once.
#[utoipa::path(method(get, post), path = "/api/graceful_shutdown", security(("admin_token" = []), ()), responses(
    (status = 200, description = "New jobs are refused; queued ones finish; then the server exits", body = ShuttingDown),
    (status = 401, description = "The admin token is needed", body = ErrorBody, headers(("WWW-Authenticate" = String))),
    (status = 403, description = "A wrong admin token, or admin actions are disabled", body = ErrorBody)))]
pub async fn graceful_shutdown(
    request: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request)?;
    state.shutdown.trigger();
    Ok(ok_json(&ShuttingDown {
        pending: state.jobs.pending_here(),
        status: "shutting_down",
    }))
}
