//! Job endpoints: status, listing, counting, shutdown, and the questions, the summary
//! and the team log of a finished job (read from disk on demand).

use std::io::Read;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::openapi::*;
use super::queries::Question;
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobState, ResultStore, StoreError};
use crate::wall::Summary;

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
/// 404, as it would a moment later: its file going is no server error.
pub(super) async fn read_stored<T: Send + 'static>(
    state: &ApiState,
    id: JobId,
    read: impl FnOnce(&ResultStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.jobs.store().clone();
    match web::block(move || read(&store)).await? {
        Err(StoreError::Missing) if state.jobs.state(id).is_none() => {
            Err(ApiError::invalid_job_id())
        }
        read => Ok(read?),
    }
}

/// The `/api/get_results` body of a done job.
#[derive(Serialize)]
struct Done {
    status: &'static str,
    data: BoundedSummary,
}

/// A summary with at most `--max-summary-profiles` rows; when rows were left out it
/// says how many there are, and only then, so that other answers keep their shape.
#[derive(Serialize)]
struct BoundedSummary {
    #[serde(flatten)]
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    profiles_total: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    profiles_truncated: bool,
}

#[utoipa::path(get, path = "/api/get_results/{id}", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "The job's status, with the summary when done", body = JobResult),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 500, description = "The stored result cannot be read", body = ErrorBody),
))]
pub async fn results(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, job) = known_job(&state, &path)?;
    Ok(match job {
        JobState::Queued | JobState::Running => {
            HttpResponse::Ok().json(json!({"status": job.name()}))
        }
        JobState::Failed(reason) => {
            HttpResponse::Ok().json(json!({"status": "failed", "reason": &*reason}))
        }
        JobState::Done => {
            let limit = state.max_summary_profiles;
            let (summary, total) =
                read_stored(&state, id, move |store| store.read_summary(id, 0, limit)).await?;
            let truncated = total > summary.profiles.len();
            HttpResponse::Ok().json(Done {
                status: "done",
                data: BoundedSummary {
                    summary,
                    profiles_total: truncated.then_some(total),
                    profiles_truncated: truncated,
                },
            })
        }
    })
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
    let answer = read_stored(state, id, move |store| {
        store.open_work(id).map(|work| question.answer(&work))
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
    let (summary, total) = read_stored(&state, id, move |store| {
        store.read_summary(id, first, limit)
    })
    .await?;
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
    let (file, length) = read_stored(&state, id, move |store| store.open_log(id)).await?;
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
}

#[utoipa::path(get, path = "/api/jobs", params(
    ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 100 by default"),
    ("after" = Option<String>, Query, format = Uuid, description = "List jobs after this one"),
), responses((status = 200, description = "Jobs, oldest first", body = JobList), (status = 400, description = "A bad limit or after", body = ErrorBody)))]
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
    let jobs: Vec<_> = state
        .jobs
        .registry()
        .page(after, limit)
        .into_iter()
        .map(|(id, job)| json!({"job_id": id.to_string(), "status": job.name()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"status": "done", "data": jobs})))
}

#[utoipa::path(get, path = "/api/num_jobs", responses((status = 200, description = "Jobs queued or running", body = NumJobs)))]
pub async fn count(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"num_jobs": state.jobs.registry().in_flight()}))
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
    Ok(HttpResponse::Ok().json(json!({"job_id": id.to_string(), "status": removed.name()})))
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
    state.jobs.stop_accepting();
    state.shutdown.trigger();
    Ok(HttpResponse::Ok().json(json!({
        "status": "shutting_down",
        "pending": state.jobs.registry().in_flight(),
    })))
}
