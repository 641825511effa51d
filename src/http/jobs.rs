//! Job endpoints: status, listing, counting, shutdown, and the questions, the summary
//! and the team log of a finished job (read from disk on demand).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::queries::Question;
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobState};

/// Page size of `/api/jobs` when no `limit` is given, and the largest allowed.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn known_job(state: &ApiState, id: &str) -> Result<(JobId, JobState), ApiError> {
    let id: JobId = id.parse()?;
    let job = state.jobs.state(id).ok_or_else(ApiError::invalid_job_id)?;
    Ok((id, job))
}

fn json_body(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

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
            let store = state.jobs.store().clone();
            json_body(web::block(move || store.read_status(id)).await??)
        }
    })
}

/// Reads the work tables of a done job and answers `question`; 409 while not done.
async fn ask(state: &ApiState, id: &str, question: Question) -> Result<HttpResponse, ApiError> {
    let (id, job) = known_job(state, id)?;
    match job {
        JobState::Done => {}
        JobState::Failed(reason) => {
            return Err(ApiError::Conflict(format!("the job failed: {reason}")));
        }
        JobState::Queued | JobState::Running => {
            return Err(ApiError::Conflict(format!(
                "the job is {}; results are not ready",
                job.name()
            )));
        }
    }
    let store = state.jobs.store().clone();
    let work = web::block(move || store.read_work(id)).await??;
    Ok(HttpResponse::Ok().json(question.answer(&work)?))
}

pub async fn ice(
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, profile, day) = path.into_inner();
    ask(&state, &id, Question::ice(&profile, &day)?).await
}

pub async fn profile_cost(
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, profile, day) = path.into_inner();
    ask(&state, &id, Question::profile_cost(&profile, &day)?).await
}

pub async fn wall_cost(
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (id, day) = path.into_inner();
    ask(&state, &id, Question::wall_cost(&day)?).await
}

pub async fn total_cost(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    ask(&state, &path, Question::TotalCost).await
}

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
    let store = state.jobs.store().clone();
    let log = web::block(move || store.read_log(id)).await??;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(log))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

pub async fn list(
    query: web::Query<ListQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = match &query.limit {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_PAGE}"))
            })?,
    };
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

pub async fn count(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"num_jobs": state.jobs.registry().in_flight()}))
}

/// Removes a finished job (an admin action).
pub async fn delete(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    state.admin.authorize(&request)?;
    let id: JobId = path.parse()?;
    let jobs = state.jobs.clone();
    web::block(move || jobs.delete(id)).await??;
    Ok(HttpResponse::Ok().json(json!({"job_id": id.to_string(), "status": "deleted"})))
}

/// Refuses new jobs from this moment and starts the drain; answers at once.
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
