//! A finished job's stored result, read from disk on demand through `Jobs`: its
//! summary rows a page at a time, the day-by-day questions, and its team log streamed.

use std::io::Read;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use futures_util::stream;
use serde::Deserialize;

use super::answer_cache::Asked;
use super::bodies::{ConfigPage, CostAnswer, ErrorBody, IceAnswer, ProfilePage, ok_json};
use super::endpoint::{Params, PathParams};
use super::lookup::{
    decimal, done_answer, done_answer_at_once, known_job, page_limit, read_stored,
};
use super::queries::Question;
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobState, StoreError};

/// Bytes of a team log read and sent at a time.
const LOG_CHUNK: usize = 64 * 1024;

/// The id of a done job: 404 for an unknown one, 409 while it is not done.
pub(super) async fn done_job(state: &ApiState, id: &str) -> Result<JobId, ApiError> {
    let (id, job) = known_job(state, id).await?;
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
    let id = done_job(state, id).await?;
    done_answer(state, id, Asked::Question(question), move |jobs| {
        jobs.work(id).map(|work| question.answer(&work))
    })
    .await
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
    (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn profiles(
    path: PathParams,
    query: web::Query<ProfilesQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let first = profile_after(query.after.as_deref())?;
    let limit = page_limit(query.limit.as_deref())?;
    let id = done_job(&state, path.get("id")).await?;
    let (summary, total) =
        read_stored(&state, id, move |jobs| jobs.summary(id, first, limit)).await?;
    let end = first.saturating_add(summary.profiles.len());
    Ok(ok_json(&ProfilePage {
        profiles: summary.profiles,
        next_after: (end < total).then_some(end),
    }))
}

/// A page's `after`: 0 when absent. Beyond the last profile there is nothing to read,
/// however large it is.
fn profile_after(text: Option<&str>) -> Result<usize, ApiError> {
    let after = match text {
        None => 0,
        Some(text) => decimal(text)
            .filter(|&after| after <= i64::MAX as u64)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "after must be a profile number (0 or more) of at most {}",
                    i64::MAX
                ))
            })?,
    };
    Ok(usize::try_from(after).unwrap_or(usize::MAX))
}

#[utoipa::path(get, path = "/api/jobs/{id}/config", operation_id = "job_config", params(
    ("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"),
    ("after" = Option<u64>, Query, minimum = 0, description = "List the profiles numbered after this one; 0 by default"),
    ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 100 by default"),
), responses(
    (status = 200, description = "The wall config the job was run from (as the server parsed it): the heights of the profiles after `after`, in order", body = ConfigPage),
    (status = 400, description = "A bad after or limit, or an unknown parameter", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id, or a done job whose result was stored without its config (by a version that did not keep it)", body = ErrorBody),
    (status = 409, description = "The job is queued or running (its config is kept with its result), or it failed and has no config to show (its request or its result is damaged, or its result was stored by an earlier version)", body = ErrorBody),
    (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn config(
    path: PathParams,
    query: web::Query<ProfilesQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let first = profile_after(query.after.as_deref())?;
    let limit = page_limit(query.limit.as_deref())?;
    let (id, job) = known_job(&state, path.get("id")).await?;
    if !job.is_finished() {
        return Err(ApiError::Conflict(format!(
            "the job is {}; its config is kept with its result",
            job.name()
        )));
    }
    // A failed job may have no config to show: its request did not parse (a damaged
    // journal line), its result is damaged, or an earlier version stored it. Then that
    // failure is the answer, as for every other read of the job.
    let failure = match &job {
        JobState::Failed(reason) => Some(reason.to_string()),
        _ => None,
    };
    let config = read_stored(&state, id, move |jobs| match (jobs.config(id), failure) {
        (Ok(Some(config)), _) => Ok(Ok(config)),
        (Ok(None) | Err(StoreError::Damaged(_)), Some(reason)) => Ok(Err(ApiError::Conflict(
            format!("the job failed: {reason}; it has no config to show"),
        ))),
        (Ok(None), None) => Ok(Err(ApiError::NotFound(
            "this job's config was not kept: its result was stored by an earlier version"
                .to_owned(),
        ))),
        (Err(error), _) => Err(error),
    })
    .await??;
    let profiles = config.profiles();
    let first = first.min(profiles.len());
    let end = first.saturating_add(limit).min(profiles.len());
    Ok(ok_json(&ConfigPage {
        profiles: profiles[first..end]
            .iter()
            .map(|profile| profile.iter().map(|height| height.feet()).collect())
            .collect(),
        num_teams: config.num_teams().map(std::num::NonZeroU64::get),
        profiles_total: profiles.len(),
        next_after: (end < profiles.len()).then_some(end),
    }))
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/{p}/days/{d}", operation_id = "job_ice", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Ice used by the profile on the day", body = IceAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn ice(path: PathParams, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let question = Question::ice(path.get("p"), path.get("d"))?;
    ask(&state, path.get("id"), question).await
}

/// `ice` at once (see `endpoint::AtOnce`): the kept answer of a done job.
pub(super) fn ice_at_once(state: &ApiState, path: &Params<'_>) -> Option<HttpResponse> {
    let question = Question::ice(path.get("p"), path.get("d")).ok()?;
    asked_at_once(state, path, question)
}

/// `profile_cost` at once, as `ice_at_once`.
pub(super) fn profile_cost_at_once(state: &ApiState, path: &Params<'_>) -> Option<HttpResponse> {
    let question = Question::profile_cost(path.get("p"), path.get("d")).ok()?;
    asked_at_once(state, path, question)
}

/// `wall_cost` at once, as `ice_at_once`.
pub(super) fn wall_cost_at_once(state: &ApiState, path: &Params<'_>) -> Option<HttpResponse> {
    let question = Question::wall_cost(path.get("d")).ok()?;
    asked_at_once(state, path, question)
}

/// `total_cost` at once, as `ice_at_once`.
pub(super) fn total_cost_at_once(state: &ApiState, path: &Params<'_>) -> Option<HttpResponse> {
    asked_at_once(state, path, Question::TotalCost)
}

/// `ask`'s answer when it is at hand (see `done_answer_at_once`).
fn asked_at_once(state: &ApiState, path: &Params<'_>, question: Question) -> Option<HttpResponse> {
    done_answer_at_once(state, path.get("id"), Asked::Question(question))
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/{p}/overview/{d}", operation_id = "job_profile_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("p" = u64, Path, minimum = 1, description = "Profile number, from 1"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the profile up to the day", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn profile_cost(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let question = Question::profile_cost(path.get("p"), path.get("d"))?;
    ask(&state, path.get("id"), question).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/overview/{d}", operation_id = "job_wall_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"), ("d" = u64, Path, minimum = 1, description = "Day number, from 1")), responses(
    (status = 200, description = "Cost of the wall up to the day", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn wall_cost(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let question = Question::wall_cost(path.get("d"))?;
    ask(&state, path.get("id"), question).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/profiles/overview", operation_id = "job_total_cost", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "Cost of the whole wall", body = CostAnswer), (status = 400, description = "The day or profile is not a positive integer", body = ErrorBody), (status = 404, description = "Unknown or malformed job id, or no such profile", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn total_cost(
    path: PathParams,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    ask(&state, path.get("id"), Question::TotalCost).await
}

#[utoipa::path(get, path = "/api/jobs/{id}/log", operation_id = "job_log", params(("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it")), responses(
    (status = 200, description = "The team log, one event per line", body = String, content_type = "text/plain"),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody), (status = 409, description = "The job is not done", body = ErrorBody), (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn log(path: PathParams, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (id, job) = known_job(&state, path.get("id")).await?;
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
