//! `POST /api/simulate`: checks the content type, encoding and size, reads (and
//! gunzips) and parses the config, and answers 202 with the job id once the job is
//! durably accepted.

use std::io::Read;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;

use super::bodies::{ErrorBody, JobAccepted, WallConfigBody, WallConfigText, json_with};
use super::connection::{BodyOnConnection, Connection};
use super::gate::single_header;
use super::unread_body::DRAIN_BYTES;
use super::{ApiError, ApiState, RequestTag};
use crate::jobs::{IdempotencyKey, Submission, Submitted};
use crate::metrics::Rejection;
use crate::wall::{self, Limits, WallConfig};

/// Bodies up to this size are parsed on the HTTP thread; larger ones on a blocking one.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum ConfigFormat {
    Json,
    Text,
}

#[derive(Clone, Copy)]
enum BodyEncoding {
    Identity,
    Gzip,
}

#[derive(Deserialize)]
struct SubmitQuery {
    num_teams: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/simulate",
    params(
        ("num_teams" = Option<i64>, Query, minimum = 1, description = "Teams; overrides the body's `num_teams`"),
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Retries with the same key and request get the same job"),
    ),
    request_body(
        description = "A wall config: JSON, or the text form (one profile per line)",
        content((WallConfigBody = "application/json"), (WallConfigText = "text/plain")),
    ),
    responses(
        (status = 202, description = "Accepted: the request is on disk", body = JobAccepted,
            headers(("Location" = String, description = "Where to poll"), ("Idempotent-Replayed" = String))),
        (status = 400, description = "A bad config, num_teams or Idempotency-Key", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is being accepted", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json or text/plain, or a Content-Encoding other than gzip or identity", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used with another request", body = ErrorBody),
        (status = 503, description = "The queue is full, the server is shutting down, or the disk refuses", body = ErrorBody,
            headers(("Retry-After" = u32))),
    ),
)]
pub async fn submit(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    // Refusals from here on are counted by the job service.
    let submission = read_submission(&request, payload, &state)
        .await
        .inspect_err(|error| state.metrics.rejected(rejection(error)))?;
    let Submitted { id, replayed } = state.jobs.submit(submission).await?;
    let mut accepted = HttpResponse::Accepted();
    accepted
        .insert_header((header::LOCATION, format!("/api/get_results/{id}")))
        .insert_header((
            "Idempotent-Replayed",
            if replayed { "true" } else { "false" },
        ));
    let response = json_with(
        accepted,
        &JobAccepted {
            job_id: id.to_string(),
        },
    );
    if let Some(tag) = RequestTag::of(&request) {
        tag.made(id);
    }
    Ok(response)
}

fn rejection(error: &ApiError) -> Rejection {
    match error {
        ApiError::PayloadTooLarge(_) => Rejection::TooLarge,
        ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
            Rejection::UnsupportedMediaType
        }
        ApiError::RequestTimeout => Rejection::Timeout,
        ApiError::Unavailable(_) => Rejection::ShuttingDown,
        _ => Rejection::Invalid,
    }
}

/// Everything about a submission that can be checked before the job service sees it.
async fn read_submission(
    request: &HttpRequest,
    payload: web::Payload,
    state: &ApiState,
) -> Result<Submission, ApiError> {
    let request_id = RequestTag::of(request).and_then(RequestTag::id);
    let checked = (|| {
        let format = config_format(request)?;
        let encoding = content_encoding(request)?;
        let num_teams = query_num_teams(request)?;
        let key = idempotency_key(request)?;
        if !state.jobs.is_accepting() {
            return Err(ApiError::Unavailable(
                "the server is shutting down and accepts no new jobs".to_owned(),
            ));
        }
        Ok((format, encoding, num_teams, key))
    })();
    let body = read_body(request, payload, state.max_body, state.request_timeout).await;
    // The body is read (within its bounds) even when the request is refused already:
    // closing with unread bytes would reset the connection before the answer is read.
    let (format, encoding, num_teams, key) = checked?;
    let body = body?;
    let limits = state.limits;
    let max_body = state.max_body;
    let config = match encoding {
        BodyEncoding::Identity if body.len() <= INLINE_PARSE_BYTES => {
            parse(format, &body, &limits)?
        }
        BodyEncoding::Identity => web::block(move || parse(format, &body, &limits)).await??,
        // A small gzip body can grow to the limit: always off the HTTP thread.
        BodyEncoding::Gzip => {
            web::block(move || parse(format, &gunzip(&body, max_body)?, &limits)).await??
        }
    };
    let config = match num_teams {
        Some(teams) => config.with_num_teams(Some(teams)),
        None => config,
    };
    Ok(Submission {
        config,
        key,
        request_id,
    })
}

fn config_format(request: &HttpRequest) -> Result<ConfigFormat, ApiError> {
    // Which of two would be read is up to the reader: the body may be a wall in one
    // form and not in the other.
    let Some(value) = single_header(request.headers(), "Content-Type")? else {
        return Err(ApiError::UnsupportedMediaType("none".to_owned()));
    };
    // The media type before its parameters, which no form of the wall reads. Read by
    // hand: the `mime` crate refuses the whitespace RFC 9110 allows before a `;`.
    let unreadable = || ApiError::UnsupportedMediaType("an unreadable Content-Type".to_owned());
    let value = value.to_str().map_err(|_| unreadable())?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    let (kind, subtype) = essence.split_once('/').ok_or_else(unreadable)?;
    if !is_token(kind) || !is_token(subtype) {
        return Err(unreadable());
    }
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(ConfigFormat::Json)
    } else if essence.eq_ignore_ascii_case("text/plain") {
        Ok(ConfigFormat::Text)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "`{}`",
            wall::truncate_for_message(&essence.to_ascii_lowercase())
        )))
    }
}

/// A token of RFC 9110 (section 5.6.2): a media type's type or subtype.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// The body's `Content-Encoding`: none or `identity`, or `gzip` (also as `x-gzip`);
/// anything else is refused rather than parsed as if it were plain.
fn content_encoding(request: &HttpRequest) -> Result<BodyEncoding, ApiError> {
    let mut codings = request
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.eq_ignore_ascii_case(b"identity"));
    let encoding = match codings.next() {
        None => BodyEncoding::Identity,
        Some(coding)
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") =>
        {
            BodyEncoding::Gzip
        }
        Some(coding) => {
            return Err(ApiError::UnsupportedEncoding(format!(
                "`{}`",
                wall::truncate_for_message(&String::from_utf8_lossy(coding))
            )));
        }
    };
    if codings.next().is_some() {
        return Err(ApiError::UnsupportedEncoding(
            "with more than one coding".to_owned(),
        ));
    }
    Ok(encoding)
}

/// Decodes a gzip body (one or more members), refusing one that decodes to more than
/// `max_body` bytes before it has all been decoded.
fn gunzip(body: &[u8], max_body: usize) -> Result<Vec<u8>, ApiError> {
    let mut decoded = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take((max_body as u64).saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|error| ApiError::BadRequest(format!("the body is not valid gzip: {error}")))?;
    if decoded.len() > max_body {
        return Err(ApiError::PayloadTooLarge(max_body));
    }
    Ok(decoded)
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    // A retry that lists its keys in another order would make a second job.
    let Some(value) = single_header(request.headers(), "Idempotency-Key")? else {
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

/// Reads the body within `max_body` bytes and `timeout`; a declared length far over the
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
    let limit = max_body as u64;
    // Saturating: `--max-body` may be as large as the flag takes.
    if declared.is_some_and(|length| length > limit.saturating_add(DRAIN_BYTES)) {
        return Err(ApiError::PayloadTooLarge(max_body));
    }
    let capacity = declared.map_or(0, |length| length.min(limit) as usize);
    let on_connection = request
        .conn_data::<Rc<Connection>>()
        .map(Connection::body_started);
    let read = async {
        let mut body = web::BytesMut::with_capacity(capacity);
        let mut seen = 0u64;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|error| ApiError::BadRequest(format!("bad request body: {error}")))?;
            if let Some(on_connection) = &on_connection {
                on_connection.took(chunk.len());
            }
            seen += chunk.len() as u64;
            if seen > limit.saturating_add(DRAIN_BYTES) {
                break;
            }
            if seen <= limit {
                body.extend_from_slice(&chunk);
            }
        }
        if seen > limit {
            return Err(ApiError::PayloadTooLarge(max_body));
        }
        // actix-http ends a body at the client's end of the stream as if it were whole.
        // A declared length tells; a chunked body's end only the stream can.
        let cut = match declared {
            Some(length) => seen < length,
            None => on_connection
                .as_ref()
                .is_some_and(BodyOnConnection::was_cut),
        };
        if cut {
            return Err(ApiError::IncompleteBody);
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
