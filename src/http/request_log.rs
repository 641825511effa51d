//! The request middleware every request passes through once routed: it gives the
//! request its id (`X-Request-Id`), logs one line and times it in the metrics, and counts
//! it in flight until its body is sent, so that shutdown knows when no answer is owed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{RequestHead, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{Error, HttpRequest};
use parking_lot::Mutex;
use slog::{KV, Logger, Record, Serializer, info};

use super::endpoint::ParamSpans;
use super::{Connection, RequestId, RequestOnConnection};
use crate::jobs::JobId;
use crate::metrics::RequestTimes;
use crate::moment::Moment;
use crate::telemetry;

pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Characters of a request's path in its log line: the longest route with a whole job
/// id and large numbers fits, so does a typo after it; a hostile path is cut.
const LOGGED_PATH_CHARS: usize = 256;

/// What the middleware needs, one per HTTP worker: its own logger of request lines (see
/// `telemetry::RequestLines`), the metrics and the count of requests in flight.
#[derive(Clone)]
pub struct RequestLog {
    pub logger: Logger,
    pub times: Rc<RequestTimes>,
    pub in_flight: WorkerInFlight,
}

/// Requests being handled right now, each HTTP worker's in a count of its own. Graceful
/// stop in actix also waits for idle keep-alive connections; counting requests lets the
/// server stop as soon as no request is being answered, instead.
#[derive(Clone, Default)]
pub struct InFlightRequests(Arc<Mutex<Vec<Arc<AtomicUsize>>>>);

/// One HTTP worker's count of its requests in flight. Only its own thread changes the
/// count (the handle is not `Send`), with a load and a store: an atomic
/// read-modify-write would be a full barrier, twice a request. `settle` reads it from
/// another thread.
#[derive(Clone)]
pub struct WorkerInFlight(Rc<WorkerCount>);

/// A worker's count, shared with `InFlightRequests` for reading.
struct WorkerCount(Arc<AtomicUsize>);

impl WorkerCount {
    fn add(&self, requests: isize, ordering: Ordering) {
        let count = &self.0;
        count.store(
            count.load(Ordering::Relaxed).wrapping_add_signed(requests),
            ordering,
        );
    }
}

/// Counts one request for as long as it lives.
struct RequestInFlight(Rc<WorkerCount>);

impl InFlightRequests {
    /// A count for the worker whose thread calls this, and only for that thread.
    pub fn for_worker(&self) -> WorkerInFlight {
        let count = Arc::new(AtomicUsize::new(0));
        let mut counts = self.0.lock();
        // A worker gone (stopped, or restarted after a panic) left its count here alone,
        // and has no request in flight.
        counts.retain(|count| Arc::strong_count(count) > 1);
        counts.push(Arc::clone(&count));
        WorkerInFlight(Rc::new(WorkerCount(count)))
    }

    /// Requests in flight on every worker.
    fn count(&self) -> usize {
        let counts = self.0.lock();
        counts
            .iter()
            .map(|count| count.load(Ordering::Acquire))
            .sum()
    }

    /// Waits until no request is in flight, or `timeout` has passed. The workers' counts
    /// are read one after another, not at one instant: a request that began before the
    /// read of its worker's count is waited for, one that began after it is not, as a
    /// request that begins after this returns is not.
    pub async fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl WorkerInFlight {
    fn enter(&self) -> RequestInFlight {
        self.0.add(1, Ordering::Relaxed);
        RequestInFlight(Rc::clone(&self.0))
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.add(-1, Ordering::Release);
    }
}

/// What the request middleware and the handlers tell each other of the request a
/// connection is answering: its id, and for its log line and metrics the endpoint that
/// answered it and the job it made (a POST). It lives on the connection (see
/// [`RequestTag::of`]): actix-http may read pipelined requests ahead, but calls the
/// service for the next only once the previous answer's body (a `CountedBody`) is
/// dropped; a request's own extensions would cost an allocation and a hash table insert
/// each.
#[derive(Default)]
pub struct RequestTag {
    id: RefCell<Option<RequestId>>,
    /// The endpoint's pattern as registered (ids in it stay `{id}`, so that metric
    /// labels are bounded); `None` when no endpoint matched.
    route: Cell<Option<&'static str>>,
    params: RefCell<ParamSpans>,
    job: Cell<Option<JobId>>,
}

impl RequestTag {
    /// The tag of the request being answered on `request`'s connection.
    pub fn of(request: &HttpRequest) -> Option<&RequestTag> {
        request
            .conn_data::<Rc<Connection>>()
            .map(|connection| connection.request_tag())
    }

    pub(super) fn begin(&self, id: RequestId) {
        *self.id.borrow_mut() = Some(id);
        self.route.set(None);
        *self.params.borrow_mut() = ParamSpans::default();
        self.job.set(None);
    }

    /// The request's id, as its log lines carry it.
    pub fn id(&self) -> Option<String> {
        self.id.borrow().as_ref().map(|id| id.as_str().to_owned())
    }

    /// Set by the endpoint that takes the request, with its path's parameters.
    pub fn answered_by(&self, pattern: &'static str, params: ParamSpans) {
        self.route.set(Some(pattern));
        *self.params.borrow_mut() = params;
    }

    /// Where the request's path parameters are (see `PathParams`).
    pub fn params(&self) -> ParamSpans {
        self.params.borrow().clone()
    }

    /// Set by a handler that made a job, so that its id is on the request's log line.
    pub fn made(&self, job: JobId) {
        self.job.set(Some(job));
    }

    pub(super) fn tagged(&self) -> (Option<&'static str>, Option<JobId>) {
        (self.route.get(), self.job.get())
    }
}

/// A response body that keeps its request counted in flight until it is dropped,
/// which the HTTP server does once it has sent the body (or the client went away).
/// Generic rather than boxed: a box would be an allocation per request.
pub struct CountedBody<B> {
    body: B,
    _in_flight: RequestInFlight,
    /// Starts the clock for the connection's next request headers once dropped.
    _on_connection: Option<RequestOnConnection>,
}

impl<B: MessageBody + Unpin> MessageBody for CountedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(context)
    }
}

/// A request's fields on its log line: the job's id only when the request made one.
struct RequestLine<'a> {
    method: &'a Method,
    path: &'a str,
    status: u16,
    took: Duration,
    request_id: &'a RequestId,
    job_id: Option<JobId>,
}

impl KV for RequestLine<'_> {
    fn serialize(&self, _: &Record, serializer: &mut dyn Serializer) -> slog::Result {
        serializer.emit_str("method", self.method.as_str())?;
        serializer.emit_str("path", &telemetry::truncate(self.path, LOGGED_PATH_CHARS))?;
        serializer.emit_u16("status", self.status)?;
        serializer.emit_f64("elapsed_ms", telemetry::millis(self.took))?;
        if let Some(job) = self.job_id {
            serializer.emit_arguments("job_id", &format_args!("{job}"))?;
        }
        serializer.emit_str("request_id", self.request_id.as_str())
    }
}

/// A request the log follows from its headers to its answer (see `RequestLog::begin`).
pub(super) struct RequestBegun {
    in_flight: RequestInFlight,
    id: RequestId,
    on_connection: Option<RequestOnConnection>,
    started: Moment,
}

/// What keeps an answered request counted until its body is sent (see `CountedBody`).
pub(super) struct Answered {
    in_flight: RequestInFlight,
    on_connection: Option<RequestOnConnection>,
}

impl RequestLog {
    /// Counts a request in flight, gives it its id (the client's, from `head`'s headers, or a
    /// new one) and tags its connection with it: its answer is timed from `started`,
    /// taken before any of the work of answering it (the middleware's, before the gate
    /// and the routing; the reads answered at once, before their path is even split).
    pub(super) fn begin(
        &self,
        head: &RequestHead,
        connection: Option<&Rc<Connection>>,
        started: Moment,
    ) -> RequestBegun {
        let in_flight = self.in_flight.enter();
        let id = RequestId::from_header(head.headers.get(REQUEST_ID));
        // Every connection has one (see `TimedStream`); a request without one (none is
        // served so) is logged with its id but no endpoint.
        let closes = head.connection_type() == ConnectionType::Close;
        let on_connection =
            connection.map(|connection| connection.request_started(id.clone(), closes));
        RequestBegun {
            in_flight,
            id,
            on_connection,
            started,
        }
    }
}

impl RequestBegun {
    /// The request (`method`, `path`) is answered with `status`: its id goes into the
    /// answer's `headers`, its time into the metrics of the endpoint that took it
    /// (`route`, if the tag has none), and its line into the log.
    pub(super) fn answered(
        self,
        (logger, times): (&Logger, &RequestTimes),
        (method, path): (&Method, &str),
        route: Option<&'static str>,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Answered {
        let (tagged_route, job_id) = self
            .on_connection
            .as_ref()
            .map_or((None, None), RequestOnConnection::tagged);
        headers.insert(REQUEST_ID, self.id.header_value());
        let now = Moment::now();
        let took = now.since(self.started);
        times.observe(tagged_route.or(route).unwrap_or("unmatched"), status, took);
        let line = RequestLine {
            method,
            path,
            status: status.as_u16(),
            took,
            job_id,
            request_id: &self.id,
        };
        // Stamped with the read that timed it, not a read of the wall clock of its own.
        telemetry::stamped_at(now, || info!(logger, "request"; line));
        Answered {
            in_flight: self.in_flight,
            on_connection: self.on_connection,
        }
    }
}

impl<B> CountedBody<B> {
    /// `body`, keeping its request counted until it is sent.
    pub(super) fn new(body: B, answered: Answered) -> CountedBody<B> {
        CountedBody {
            body,
            _in_flight: answered.in_flight,
            _on_connection: answered.on_connection,
        }
    }
}

/// The middleware, for `App::wrap_fn`: a named function rather than a closure, and not
/// `middleware::from_fn`, which would box every request's future once more.
pub fn log_request<S, B>(
    request: ServiceRequest,
    service: &S,
    log: &RequestLog,
) -> impl Future<Output = Result<ServiceResponse<CountedBody<B>>, Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + Unpin + 'static,
{
    let begun = log.begin(
        request.head(),
        request.conn_data::<Rc<Connection>>(),
        Moment::now(),
    );
    let logger = log.logger.clone();
    let times = Rc::clone(&log.times);
    let response = service.call(request);
    async move {
        let response = response.await?;
        let status = response.status();
        let (request, mut response) = response.into_parts();
        let answered = begun.answered(
            (&logger, &times),
            (request.method(), request.path()),
            None,
            status,
            response.headers_mut(),
        );
        // Counted until its body is sent, not just made.
        let response = response.map_body(|_, body| CountedBody::new(body, answered));
        Ok(ServiceResponse::new(request, response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_are_counted_over_every_worker_until_they_end() {
        let requests = InFlightRequests::default();
        let here = requests.for_worker();
        let first = here.enter();
        let (tell_entered, entered) = std::sync::mpsc::channel();
        let (tell_end, end) = std::sync::mpsc::channel::<()>();
        let elsewhere = {
            let requests = requests.clone();
            std::thread::spawn(move || {
                let worker = requests.for_worker();
                let (_one, _two) = (worker.enter(), worker.enter());
                tell_entered.send(()).expect("sent");
                end.recv().expect("told to end");
            })
        };
        entered.recv().expect("entered");
        assert_eq!(requests.count(), 3);
        drop(first);
        assert_eq!(requests.count(), 2);
        tell_end.send(()).expect("sent");
        elsewhere.join().expect("ended");
        assert_eq!(requests.count(), 0);
        // The other worker's count goes with the next worker made.
        let _next = requests.for_worker();
        assert_eq!(requests.0.lock().len(), 2);
        let settled = std::time::Instant::now();
        futures_util::FutureExt::now_or_never(requests.settle(Duration::from_secs(5)))
            .expect("nothing in flight: settled at once");
        assert!(settled.elapsed() < Duration::from_secs(1));
    }
}
