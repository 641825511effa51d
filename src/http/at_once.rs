//! The hottest reads answered beneath actix-web, straight from the HTTP request: a GET
//! or HEAD of an endpoint that can answer at once (`Endpoint::at_once`), whose answer is
//! already in memory, gets it without a routed `HttpRequest`, a middleware future or a
//! handler, with the same checks, request id, metrics and log line as any answer.
//!
//! Making a routed request (its `HttpRequest`, its path requoted, the app's and the
//! middleware's futures, the endpoint table's scan) was over a third of the user-space
//! instructions of a `get_results` whose answer was kept. Anything this layer does not
//! take (another method or endpoint, a query string, a body, a percent-encoded path, a
//! request the gate refuses, an answer not at hand) goes to the app as it came.

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_http::{Payload, Request};
use actix_web::body::BoxBody;
use actix_web::dev::{Response, Service, ServiceFactory, ServiceResponse};
use actix_web::http::Method;
use actix_web::{Error, web};
use futures_util::TryFutureExt;
use futures_util::future::{Either, LocalBoxFuture, MapOk};

use super::endpoint::{AtOnce, Params};
use super::endpoint::{Pattern, path_segments};
use super::request_log::CountedBody;
use super::{ApiState, Connection, RequestLog, gate};
use crate::moment::Moment;

/// A response of the app, or of this layer.
type Answer = Response<CountedBody<BoxBody>>;

/// An endpoint's pattern and how it answers at once.
pub struct ReadAtOnce {
    pub pattern: Pattern,
    pub answer: AtOnce,
}

/// The layer, around the app (`app`): one per HTTP worker, with that worker's request
/// log.
pub struct AtOnceReads<F> {
    app: F,
    reads: Rc<[ReadAtOnce]>,
    state: web::Data<ApiState>,
    log: RequestLog,
}

impl<F> AtOnceReads<F> {
    pub fn new(
        app: F,
        reads: Vec<ReadAtOnce>,
        state: web::Data<ApiState>,
        log: RequestLog,
    ) -> AtOnceReads<F> {
        AtOnceReads {
            app,
            reads: reads.into(),
            state,
            log,
        }
    }
}

impl<F> ServiceFactory<Request> for AtOnceReads<F>
where
    F: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<CountedBody<BoxBody>>,
            Error = Error,
        >,
    F::Future: 'static,
{
    type Response = Answer;
    type Error = Error;
    type Config = ();
    type Service = AtOnceService<F::Service>;
    type InitError = F::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Service, Self::InitError>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let app = self.app.new_service(());
        let (reads, state, log) = (Rc::clone(&self.reads), self.state.clone(), self.log.clone());
        Box::pin(async move {
            Ok(AtOnceService {
                app: app.await?,
                reads,
                state,
                log,
            })
        })
    }
}

pub struct AtOnceService<S> {
    app: S,
    reads: Rc<[ReadAtOnce]>,
    state: web::Data<ApiState>,
    log: RequestLog,
}

type AppAnswer = fn(ServiceResponse<CountedBody<BoxBody>>) -> Answer;

impl<S> Service<Request> for AtOnceService<S>
where
    S: Service<Request, Response = ServiceResponse<CountedBody<BoxBody>>, Error = Error>,
{
    type Response = Answer;
    type Error = Error;
    type Future = Either<Ready<Result<Answer, Error>>, MapOk<S::Future, AppAnswer>>;

    actix_web::dev::forward_ready!(app);

    fn call(&self, mut request: Request) -> Self::Future {
        // A request with a body (as the HTTP decoder framed it: a `Content-Length` of 0
        // is none) is the app's, which reads or discards it; looking at the payload
        // costs nothing, where looking for its two headers cost two hashed lookups.
        let answer = match request.payload() {
            Payload::None => self.answer(&request),
            _ => None,
        };
        match answer {
            Some(answer) => Either::Left(ready(Ok(answer))),
            None => Either::Right(self.app.call(request).map_ok(Response::from as AppAnswer)),
        }
    }
}

impl<S> AtOnceService<S> {
    /// The answer to `request` if it is one of the reads answered at once and its
    /// answer is at hand; `None` hands it to the app, untouched.
    fn answer(&self, request: &Request) -> Option<Answer> {
        let head = request.head();
        if !matches!(head.method, Method::GET | Method::HEAD) || head.uri.query().is_some() {
            return None;
        }
        // Timed from here, as the middleware times a routed request from before its
        // gate and routing: the path's scan and the gate are this answer's work (a path
        // of thousands of slashes takes a millisecond to split).
        let started = Moment::now();
        let path = head.uri.path();
        // actix-web's routing decodes some escapes first; such a path is its to read.
        if path.contains('%') {
            return None;
        }
        let segments = path_segments(path)?;
        let (read, spans) = self
            .reads
            .iter()
            .find_map(|read| Some((read, read.pattern.matches(&segments)?)))?;
        let connection = request.conn_data::<Rc<Connection>>();
        if !gate::lets_through(head, connection, &self.state.hosts) {
            return None;
        }
        let params = Params::new(path, &spans);
        let response = Response::from((read.answer)(&self.state, &params)?);
        let begun = self.log.begin(head, connection, started);
        let (mut response, body) = response.into_parts();
        let answered = begun.answered(
            (&self.log.logger, &self.log.times),
            (&head.method, path),
            Some(read.pattern.text),
            response.status(),
            response.headers_mut(),
        );
        Some(response.set_body(CountedBody::new(body, answered)))
    }
}
