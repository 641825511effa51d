//! The API error: every failure a handler can return, each mapped to its status code
//! and to the body `{"status": "error", "reason": ".."}` in one place.

use super::bodies::ErrorBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::jobs::{DeleteError, InvalidJobId, StoreError, SubmitError, Unavailable};
use crate::wall::ConfigError;

/// Seconds a client is told to wait before retrying a refused submission.
const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    /// A `Host` this server does not answer for.
    #[error("{0}")]
    MisdirectedRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("Content-Type must be application/json or text/plain, got {0}")]
    UnsupportedMediaType(String),
    #[error("Content-Encoding {0} is not supported; send the body as identity or gzip")]
    UnsupportedEncoding(String),
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// The client ended the connection before the body's end (see `read_body`).
    #[error("the request body ended before it was complete: the client stopped sending it")]
    IncompleteBody,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid_job_id() -> ApiError {
        ApiError::NotFound("Invalid job_id".to_owned())
    }
}

impl From<InvalidJobId> for ApiError {
    fn from(_: InvalidJobId) -> ApiError {
        ApiError::invalid_job_id()
    }
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> ApiError {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> ApiError {
        match error {
            SubmitError::KeyReused => ApiError::UnprocessableEntity(error.to_string()),
            SubmitError::KeyInProgress => ApiError::Conflict(error.to_string()),
            SubmitError::QueueFull { .. }
            | SubmitError::QueueMemoryFull(_)
            | SubmitError::ShuttingDown
            | SubmitError::Storage(_)
            | SubmitError::Database(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(error: DeleteError) -> ApiError {
        match error {
            DeleteError::Unknown => ApiError::invalid_job_id(),
            DeleteError::InFlight(_) | DeleteError::NotQueued(_) => {
                ApiError::Conflict(error.to_string())
            }
            // The file system refused (read-only, permissions): an operator must act,
            // so it is no transient 503.
            DeleteError::Storage(_) => ApiError::Internal(error.to_string()),
            DeleteError::Unavailable(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(unavailable) => unavailable.into(),
            StoreError::Io(error) if is_passing(&error) => ApiError::Unavailable(format!(
                "the stored result cannot be read now: {error}; retry in a moment"
            )),
            error => ApiError::Internal(format!("the stored result cannot be read: {error}")),
        }
    }
}

/// Whether a read failed for want of what the process will have again soon (file
/// descriptors, memory), not for the state of the disk.
fn is_passing(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN)
    )
}

/// The database of cluster mode cannot be reached: the client may retry.
impl From<Unavailable> for ApiError {
    fn from(error: Unavailable) -> ApiError {
        ApiError::Unavailable(error.to_string())
    }
}

/// What in-memory work tables answer: they cannot fail.
impl From<std::convert::Infallible> for ApiError {
    fn from(never: std::convert::Infallible) -> ApiError {
        match never {}
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> ApiError {
        ApiError::Unavailable("the server is shutting down".to_owned())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::IncompleteBody => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnprocessableEntity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)));
            }
            ApiError::RequestTimeout | ApiError::PayloadTooLarge(_) | ApiError::IncompleteBody => {
                // The rest of the body is unread: the connection cannot be reused. A
                // `Connection` header set here would be dropped by actix-http, which
                // closes only by the response head's own flag.
                response.force_close();
            }
            _ => {}
        }
        super::bodies::json_with(response, &ErrorBody::new(self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_unreadable_for_want_of_descriptors_is_a_503_to_retry_and_a_disk_error_a_500() {
        let passing = ApiError::from(StoreError::Io(std::io::Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error(),
        )));
        assert_eq!(passing.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let response = passing.error_response();
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let disk = ApiError::from(StoreError::Io(std::io::Error::from_raw_os_error(
            rustix::io::Errno::IO.raw_os_error(),
        )));
        assert_eq!(disk.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
