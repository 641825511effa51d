//! Job endpoints: status, listing, counting, shutdown, and the questions, the summary
//! and the team log of a finished job (read from disk on demand).

use std::io::Read;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::bodies::{
    CostAnswer, Deleted, ErrorBody, IceAnswer, JobList, JobListEntry, JobResult, NumJobs,
    ProfilePage, ShuttingDown, Summary,
};
use super::queries::Question;
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobInfo, JobState, Jobs, Order, Status, StoreError};

/// Bytes of a team log read and sent at a time.
const LOG_CHUNK: usize = 64 * 1024;

/// Page size of `/api/jobs` and `/api/jobs/<id>/profiles` when no `limit` is given,
/// and the largest allowed.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(super) fn known_job(state: &ApiState, id: &str) -> Result<(JobId, JobState), ApiError> {
    let id: JobId = id.parse()?;
    let job = state.jobs.state(id).ok_or_else(ApiError::invalid_job_id)?;
    Ok((id, job))
}

/// Reads a finished job's files on the blocking pool. A job deleted meanwhile answers
/// 404, as it would a moment later: its files going is no server error.
pub(super) async fn read_stored<T: Send + 'static>(
    state: &ApiState,
    id: JobId,
    read: impl FnOnce(&Jobs) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let jobs = state.jobs.clone();
    match web::block(move || read(&jobs)).await? {
        // Whatever a read met while a delete took the files away (the result, or the
        // log file after it), the job is gone: that is a 404, not a server error.
        Err(_) if state.jobs.state(id).is_none() => Err(ApiError::invalid_job_id()),
        read => Ok(read?),
    }
}

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
    (status = 500, description = "The stored result cannot be read", body = ErrorBody),
))]
pub async fn results(
    path: web::Path<String>,
    query: web::Query<ResultsQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_time(query.wait.as_deref(), state.max_wait)?;
    let id: JobId = path.parse()?;
    let job = state
        .jobs
        .wait(id, wait, state.shutdown.triggered())
        .await
        .ok_or_else(ApiError::invalid_job_id)?;
    Ok(match job {
        JobState::Queued | JobState::Running => HttpResponse::Ok().json(JobResult {
            reason: None,
            status: job.name(),
            data: None,
        }),
        JobState::Failed(reason) => HttpResponse::Ok().json(JobResult {
            reason: Some(reason.to_string()),
            status: "failed",
            data: None,
        }),
        JobState::Done => {
            let limit = state.max_summary_profiles;
            let (summary, total) =
                read_stored(&state, id, move |jobs| jobs.summary(id, 0, limit)).await?;
            HttpResponse::Ok().json(JobResult {
                reason: None,
                status: "done",
                data: Some(Summary::bounded(summary, total)),
            })
        }
    })
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
    /// From the job id (a v7 UUID holds its creation time).
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
fn rfc3339(epoch_ms: u64) -> Option<String> {
    use std::fmt::Write;
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(epoch_ms))?;
    let mut text = String::new();
    write!(text, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(text)
}

impl JobDetails {
    fn new(id: JobId, info: JobInfo) -> JobDetails {
        let created_ms = id.created_ms();
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
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let id: JobId = path.parse()?;
    let info = state.jobs.info(id).ok_or_else(ApiError::invalid_job_id)?;
    Ok(HttpResponse::Ok().json(JobDetails::new(id, info)))
}

/// The id of a done job: 404 for an unknown one, 409 while it is not done.
pub(super) fn done_job(state: &ApiState, id: &str) -> Result<JobId, ApiError> {
    let (id, job) = known_job(state, id)?;
    match job {
        JobState::Done => Ok(id),
        JobState::Failed(reason) => Err(ApiError::Conflict(format!("the job failed: {reason}"))),
        JobState::Queued | JobState::Running => Err(ApiError::Conflict(format!(
            "the job is {}; results are not ready",
            job.name()
        ))),
    }
}

/// Answers `question` from a done job's stored work tables, reading only the few
/// steps it needs; 409 while the job is not done.
async fn ask(state: &ApiState, id: &str, question: Question) -> Result<HttpResponse, ApiError> {
    let id = done_job(state, id)?;
    let answer = read_stored(state, id, move |jobs| {
        jobs.work(id).map(|work| question.answer(&work))
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles", params(
    ("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"),
    ("after" = Option<u64>, Query, minimum = 0, description = "List the profiles numbered after this one; 0 by default"),
    ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 100 by default"),
), responses(
    (status = 200, description = "The summary rows of the profiles after `after`, in order", body = ProfilePage),
    (status = 400, description = "A bad after or limit, or an unknown parameter", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 409, description = "The job is not done", body = ErrorBody),
    (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn profiles(
    path: web::Path<String>,
    query: web::Query<ProfilesQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text
            .bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .filter(|&after| after <= i64::MAX as u64)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "after must be a profile number (0 or more) of at most {}",
                    i64::MAX
                ))
            })?,
    };
    let limit = page_limit(query.limit.as_deref())?;
    let id = done_job(&state, &path)?;
    // Beyond the last profile there is nothing to read, however large `after` is.
    let first = usize::try_from(after).unwrap_or(usize::MAX);
    let (summary, total) =
        read_stored(&state, id, move |jobs| jobs.summary(id, first, limit)).await?;
    let end = first.saturating_add(summary.profiles.len());
    Ok(HttpResponse::Ok().json(ProfilePage {
        profiles: summary.profiles,
        next_after: (end < total).then_some(end),
    }))
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/{p}/days/{d}", operation_id = "job_ice", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Ice used by the profile on the day", body = IceAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn ice(
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, profile, day) = path.into_inner();
    ask(&state, &id, Question::ice(&profile, &day)?).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/{p}/overview/{d}", operation_id = "job_profile_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the profile up to the day", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn profile_cost(
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, profile, day) = path.into_inner();
    ask(&state, &id, Question::profile_cost(&profile, &day)?).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/overview/{d}", operation_id = "job_wall_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the wall up to the day", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn wall_cost(
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, day) = path.into_inner();
    ask(&state, &id, Question::wall_cost(&day)?).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/overview", operation_id = "job_total_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "Cost of the whole wall", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn total_cost(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    ask(&state, &path, Question::TotalCost).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/log", operation_id = "job_log", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "The team log, one event per line", body = String, content_type = "text/plain"),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody)))]
pub async fn log(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, job) = known_job(&state, &path)?;
    if job != JobState::Done {
        return Err(ApiError::Conflict(format!(
            "the job is {}; it has no team log",
            job.name()
        )));
    }
    let (file, length) = read_stored(&state, id, move |jobs| jobs.team_log(id)).await?;
    // Streamed in chunks read on the blocking pool: a log can be tens of megabytes.
    let chunks = stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = web::block(move || {
            let mut chunk = vec![0; LOG_CHUNK];
            let filled = file.read(&mut chunk)?;
            chunk.truncate(filled);
            Ok::<_, std::io::Error>((file, chunk))
        })
        .await;
        match read {
            Ok(Ok((_, chunk))) if chunk.is_empty() => None,
            Ok(Ok((file, chunk))) => Some((Ok(Bytes::from(chunk)), Some(file))),
            Ok(Err(error)) => Some((Err(error), None)),
            Err(_) => Some((
                Err(std::io::Error::other("the server is shutting down")),
                None,
            )),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .no_chunking(length)
        .streaming(chunks))
}

/// A page size: `DEFAULT_PAGE` when absent, 400 outside `1..=MAX_PAGE`.
fn page_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_PAGE),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_PAGE}"))
            }),
    }
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
        .into_iter()
        .map(|(id, job)| JobListEntry {
            job_id: id.to_string(),
            status: job.state.name(),
            created_at: id.created_ms().and_then(rfc3339),
            finished_at: job.finished_ms.and_then(rfc3339),
        })
        .collect();
    Ok(HttpResponse::Ok().json(JobList {
        data: jobs,
        status: "done",
    }))
}

#[utoipa::path(get, path = "/api/num_jobs", responses((status = 200, description = "Jobs queued or running", body = NumJobs)))]
pub async fn count(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(NumJobs {
        num_jobs: state.jobs.in_flight(),
    })
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
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request)?;
    let id: JobId = path.parse()?;
    let jobs = state.jobs.clone();
    let removed = web::block(move || jobs.delete(id)).await??;
    Ok(HttpResponse::Ok().json(Deleted {
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
    Ok(HttpResponse::Ok().json(ShuttingDown {
        pending: state.jobs.in_flight(),
        status: "shutting_down",
    }))
}
