//! What the job handlers share to find a job: its id parsed and its state (404 for an
//! unknown one), a page size, and a read of its stored result off the async threads or
//! from the answer cache.

use actix_web::HttpResponse;
use actix_web::web::{self, Bytes};
use serde::Serialize;

use super::answer_cache::{AnswerKey, Asked};
use super::bodies::{json_bytes, ok_json_bytes};
use super::{ApiError, ApiState};
use crate::jobs::{JobId, JobState, Jobs, StoreError};

/// Page size of `/api/jobs` and `/api/jobs/<id>/profiles` when no `limit` is given,
/// and the largest allowed.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(super) async fn known_job(state: &ApiState, id: &str) -> Result<(JobId, JobState), ApiError> {
    let id: JobId = id.parse()?;
    let job = state
        .jobs
        .state(id)
        .await?
        .ok_or_else(ApiError::invalid_job_id)?;
    Ok((id, job))
}

/// An unsigned integer written in decimal digits only: Rust's own parsing also takes a
/// leading `+`, which no parameter of the API allows.
pub(super) fn decimal(text: &str) -> Option<u64> {
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// A page size: `DEFAULT_PAGE` when absent, 400 outside `1..=MAX_PAGE`.
pub(super) fn page_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_PAGE),
        Some(text) => decimal(text)
            .and_then(|limit| usize::try_from(limit).ok())
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer in 1..={MAX_PAGE}"))
            }),
    }
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
        Err(StoreError::Unavailable(unavailable)) => Err(unavailable.into()),
        Err(error) => match state.jobs.state(id).await? {
            None => Err(ApiError::invalid_job_id()),
            Some(_) => Err(error.into()),
        },
        Ok(read) => Ok(read),
    }
}

/// The JSON answer to what was `asked` of the result of `id`, a job known done just now
/// (so a deleted job never reaches its kept answers): from the answer cache while the
/// store's files are in place, or else made by `read` off the async threads, and kept.
/// `read` answers an error of the question itself (a day out of range) inside.
pub(super) async fn done_answer<T: Serialize + Send + 'static>(
    state: &ApiState,
    id: JobId,
    asked: Asked,
    read: impl FnOnce(&Jobs) -> Result<Result<T, ApiError>, StoreError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let key = (id, asked);
    let answer = match kept_answer(state, key) {
        Some(answer) => answer,
        None => {
            // Boxed: inline, the read's state would size every cached answer's future.
            let answer = json_bytes(&Box::pin(read_stored(state, id, read)).await??)?;
            state.answers.insert(key, answer.clone());
            answer
        }
    };
    Ok(ok_json_bytes(answer))
}

/// The kept answer to what was `asked` of a done job's result, if it is in the answer
/// cache and the store's files are in place (see `AnswerCache`).
fn kept_answer(state: &ApiState, key: AnswerKey) -> Option<Bytes> {
    if state.jobs.results_in_place() {
        state.answers.get(key)
    } else {
        None
    }
}

/// `done_answer`'s answer when it is at hand (see `endpoint::AtOnce`): the job `id`
/// (as the path gives it) is known done without waiting and the answer is kept; `None`
/// for anything else, which the handler's route answers.
pub(super) fn done_answer_at_once(
    state: &ApiState,
    id: &str,
    asked: Asked,
) -> Option<HttpResponse> {
    let id: JobId = id.parse().ok()?;
    if state.jobs.state_at_once(id)? != JobState::Done {
        return None;
    }
    kept_answer(state, (id, asked)).map(ok_json_bytes)
}
