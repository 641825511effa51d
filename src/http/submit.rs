//! `POST /api/simulate`: checks the content type and size, reads and parses the config,
//! and answers 202 with the job id once the job is durably accepted.

use std::num::NonZeroU64;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState};
use crate::jobs::{IdempotencyKey, Submitted};
use crate::wall::{self, Limits, WallConfig};

/// Bodies up to this size are parsed on the HTTP thread; larger ones on a blocking one.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum ConfigFormat {
    Json,
    Text,
}

#[derive(Deserialize)]
struct SubmitQuery {
    num_teams: Option<String>,
}

pub async fn submit(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let format = config_format(&request)?;
    let num_teams = query_num_teams(&request)?;
    let key = idempotency_key(&request)?;
    if !state.jobs.is_accepting() {
        return Err(ApiError::Unavailable(
            "the server is shutting down and accepts no new jobs".to_owned(),
        ));
    }
    let body = read_body(&request, payload, state.max_body, state.request_timeout).await?;
    let limits = state.limits;
    let config = if body.len() <= INLINE_PARSE_BYTES {
        parse(format, &body, &limits)?
    } else {
        web::block(move || parse(format, &body, &limits)).await??
    };
    let config = match num_teams {
        Some(teams) => config.with_num_teams(Some(teams)),
        None => config,
    };
    let Submitted { id, replayed } = state.jobs.submit(config, key).await?;
    let mut response = HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/get_results/{id}")))
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ))
        .json(json!({"job_id": id.to_string()}));
    response.extensions_mut().insert(id);
    Ok(response)
}

fn config_format(request: &HttpRequest) -> Result<ConfigFormat, ApiError> {
    let mime = request
        .mime_type()
        .map_err(|_| ApiError::UnsupportedMediaType("an unreadable Content-Type".to_owned()))?;
    match mime {
        Some(mime) if mime.essence_str() == "application/json" => Ok(ConfigFormat::Json),
        Some(mime) if mime.essence_str() == "text/plain" => Ok(ConfigFormat::Text),
        Some(mime) => Err(ApiError::UnsupportedMediaType(format!(
            "`{}`",
            mime.essence_str()
        ))),
        None => Err(ApiError::UnsupportedMediaType("none".to_owned())),
    }
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(IdempotencyKey::parse)
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            )
        })
}

fn query_num_teams(request: &HttpRequest) -> Result<Option<NonZeroU64>, ApiError> {
    let query = web::Query::<SubmitQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(format!("bad query string: {error}")))?;
    query
        .into_inner()
        .num_teams
        .map(|token| wall::parse_num_teams(&token))
        .transpose()
        .map_err(ApiError::from)
}

/// Reads the body within `max_body` bytes and `timeout`; a declared length over the
/// limit is refused before reading anything.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    max_body: usize,
    timeout: Duration,
) -> Result<web::BytesMut, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body as u64) {
        return Err(ApiError::PayloadTooLarge(max_body));
    }
    let capacity = declared.map_or(0, |length| length as usize);
    let read = async {
        let mut body = web::BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|error| ApiError::BadRequest(format!("bad request body: {error}")))?;
            if body.len() + chunk.len() > max_body {
                return Err(ApiError::PayloadTooLarge(max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

fn parse(format: ConfigFormat, body: &[u8], limits: &Limits) -> Result<WallConfig, ApiError> {
    let config = match format {
        ConfigFormat::Json => wall::parse_json(body, limits)?,
        ConfigFormat::Text => WallConfig::try_new(wall::parse_text(body, limits)?, None)?,
    };
    Ok(config)
}
