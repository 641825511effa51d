//! A request body that was answered before it was read (a 404, a 400 for the query, a
//! 401) is read to its end and dropped before the answer goes, within `--max-body` and
//! `--request-timeout`, so that the connection stays usable; past those the answer
//! says `Connection: close`. Without it actix-web closed the connection after such an
//! answer without a word: a client that sent its next request on it lost that request,
//! and unread bytes in the socket could make the kernel reset the connection under the
//! answer itself (RFC 9112 9.3: read the whole body, or close after the answer).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};

/// Bytes read past `--max-body` to reach the end of a body before its answer (a 413
/// too) is sent: closing a connection with unread bytes makes the kernel reset it, and
/// the client may then lose the answer. Beyond this, the answer closes the connection.
pub const DRAIN_BYTES: u64 = 1024 * 1024;

/// How far a body left unread is read before its answer goes: `--max-body` and
/// `DRAIN_BYTES` more, within `--request-timeout`.
#[derive(Clone, Copy)]
pub struct BodyDrain {
    limit: u64,
    timeout: Duration,
}

impl BodyDrain {
    pub fn new(max_body: usize, request_timeout: Duration) -> BodyDrain {
        BodyDrain {
            limit: (max_body as u64).saturating_add(DRAIN_BYTES),
            timeout: request_timeout,
        }
    }
}

/// A request's body, watched: what its handler left unread comes back here.
pub struct Unread {
    left: Rc<RefCell<Option<Payload>>>,
    /// The body's `Content-Length`, if it has one.
    declared: Option<u64>,
}

impl Unread {
    /// Gives the request's body, if it says it has one, to its handler through a watch
    /// that hands it back here if it is dropped before its end.
    pub fn watch(request: &mut ServiceRequest) -> Option<Unread> {
        let headers = request.headers();
        let declared = match headers.get(CONTENT_LENGTH) {
            Some(length) if length.as_bytes() == b"0" => return None,
            Some(length) => length.to_str().ok().and_then(|length| length.parse().ok()),
            None if headers.contains_key(TRANSFER_ENCODING) => None,
            None => return None,
        };
        let left = Rc::default();
        let watched = Watched {
            payload: Some(request.parts_mut().1.take()),
            left: Rc::clone(&left),
        };
        request.set_payload(Payload::Stream {
            payload: Box::pin(watched),
        });
        Some(Unread { left, declared })
    }

    /// Reads what is left of the body, if any was left, before `response` goes; if the
    /// body is longer than `limit` bytes, or does not end well within `timeout`, the
    /// connection is closed after the answer, and the answer says so.
    pub async fn finish(self, mut response: ServiceResponse, drain: BodyDrain) -> ServiceResponse {
        let Some(rest) = self.left.borrow_mut().take() else {
            return response;
        };
        // A connection that ends anyway needs nothing read.
        if response.request().head().connection_type() == ConnectionType::Close {
            return response;
        }
        let head = response.response_mut().head_mut();
        if head.connection_type() == ConnectionType::Close {
            return response;
        }
        let read_to_end = self.declared.is_none_or(|declared| declared <= drain.limit)
            && tokio::time::timeout(drain.timeout, read_to_end(rest, drain.limit))
                .await
                .unwrap_or(false);
        if !read_to_end {
            head.set_connection_type(ConnectionType::Close);
        }
        response
    }
}

/// Reads `body` to its end and drops it; false if it is longer than `limit` or breaks
/// off.
async fn read_to_end(mut body: Payload, limit: u64) -> bool {
    let mut seen = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > limit {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The body as the handler sees it: it reads through, and a watch dropped before the
/// end gives the rest back.
struct Watched {
    /// `None` once the body has ended.
    payload: Option<Payload>,
    left: Rc<RefCell<Option<Payload>>>,
}

impl Stream for Watched {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(payload) = self.payload.as_mut() else {
            return Poll::Ready(None);
        };
        let next = payload.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            self.payload = None;
        }
        next
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(payload) = self.payload.take() {
            *self.left.borrow_mut() = Some(payload);
        }
    }
}
