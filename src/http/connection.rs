//! One accepted TCP connection: its stream is wrapped so that every request's headers,
//! not only the first's (all actix-http times), must arrive within `--request-timeout`,
//! and an idle keep-alive connection closes after `--keep-alive`, both on one timer; its
//! shared state lets the request gate refuse the rest of a connection that sent an
//! ambiguously framed request, and skip the `Host` check it made already.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use super::bodies::ErrorBody;
use super::{RequestId, RequestTag};
use crate::jobs::JobId;
use actix_web::http::header::{self, HeaderMap};
use actix_web::rt::net::TcpStream;
use rustix::io::Errno;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::coarse_clock;

/// What a connection is waiting for, and since when. Times are milliseconds of the
/// coarse monotonic clock (`coarse_clock`): the limits are seconds long, and every
/// request reads the clock twice here (when its answer is sent, and when the stream
/// next waits for bytes), where a precise read cost as much as the rest of this timing.
#[derive(Clone, Copy)]
enum Wait {
    /// A request is being answered: nothing is timed.
    Answer,
    /// The next request's headers, since the connection opened or the previous answer
    /// was sent. `idle` after an answer until a byte of the next request comes: then
    /// `--keep-alive` may end the connection first.
    Request { since: u64, idle: bool },
}

/// What happens to a connection when its deadline passes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expiry {
    /// An idle keep-alive connection: closed without a word, as a client expects.
    Close,
    /// Headers not in on time: a JSON 408, then closed.
    TimeOut,
}

/// What the stream and the requests of one connection share (it lives in the
/// connection's `conn_data`, so every request on it can reach it).
pub struct Connection {
    request_timeout: Duration,
    /// actix-http's own keep-alive is off (`KeepAlive::Os`): it sets and clears a timer
    /// of its own for every answer, where the stream's one timer serves both limits.
    keep_alive: Duration,
    /// The two limits in milliseconds, as `Wait` counts time.
    request_timeout_ms: u64,
    keep_alive_ms: u64,
    wait: Cell<Wait>,
    /// Why requests already read on the connection are refused, not run: once it sent
    /// a request whose framing a proxy could read otherwise, or one that closed it.
    refused: Cell<Option<Refused>>,
    /// The `Host` of the connection's last request that the gate let through: a client
    /// sends the same one on every request of a connection, and it is not checked again.
    allowed_host: RefCell<Option<Box<[u8]>>>,
    request_tag: RequestTag,
    /// The request body a handler is reading, if one is (see [`BodyOnConnection`]).
    body: Cell<Option<BodyRead>>,
    /// The client's end of the stream has been let through to the server.
    client_ended: Cell<bool>,
}

/// Why a connection's further requests are refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refused {
    /// A request whose framing a proxy could read otherwise (request smuggling).
    AmbiguousFraming,
    /// An answered request that closed the connection (`Connection: close`, or HTTP/1.0
    /// without keep-alive): RFC 9112 (9.6) has the server process nothing after it.
    Closed,
}

/// How far a handler has read a request body, and whether it was cut short.
#[derive(Clone, Copy)]
struct BodyRead {
    /// Bytes the handler has taken so far.
    taken: u64,
    /// The client's end of the stream came while the handler still waited for more,
    /// or before the handler began (behind a request still answered on the connection):
    /// in both, actix-http may have ended a body that was not whole.
    cut: bool,
}

impl Connection {
    /// Marks a request's headers as received, and tags it with its `id`; the clock for
    /// the next request starts when the returned guard is dropped (its answer is sent,
    /// or abandoned), and when the request `closes` the connection, every request after
    /// it is refused from then on.
    pub fn request_started(self: &Rc<Self>, id: RequestId, closes: bool) -> RequestOnConnection {
        self.wait.set(Wait::Answer);
        self.request_tag.begin(id);
        RequestOnConnection {
            connection: Rc::clone(self),
            closes,
        }
    }

    /// Marks a request body as being read by its handler until the guard is dropped:
    /// the stream then learns whether the client's end of the stream came before the
    /// body's (actix-http reads both as the body's end).
    pub fn body_started(self: &Rc<Self>) -> BodyOnConnection {
        self.body.set(Some(BodyRead {
            taken: 0,
            cut: self.client_ended.get(),
        }));
        BodyOnConnection(Rc::clone(self))
    }

    /// The tag of the request being answered.
    pub fn request_tag(&self) -> &RequestTag {
        &self.request_tag
    }

    pub fn refuse_further_requests(&self, why: Refused) {
        if self.refused.get().is_none() {
            self.refused.set(Some(why));
        }
    }

    pub fn refused(&self) -> Option<Refused> {
        self.refused.get()
    }

    /// Whether `headers` hold one `Host`, the one last let through on this connection.
    pub fn has_allowed_host(&self, headers: &HeaderMap) -> bool {
        let mut hosts = headers.get_all(header::HOST);
        match (hosts.next(), hosts.next(), &*self.allowed_host.borrow()) {
            (Some(host), None, Some(allowed)) => host.as_bytes() == &allowed[..],
            _ => false,
        }
    }

    /// Notes the `Host` of a request the gate let through.
    pub fn allow_host(&self, headers: &HeaderMap) {
        if let Some(host) = headers.get(header::HOST) {
            *self.allowed_host.borrow_mut() = Some(host.as_bytes().into());
        }
    }

    /// Bytes came in: an idle connection's next request has begun.
    fn bytes_came(&self) {
        if let Wait::Request { since, idle: true } = self.wait.get() {
            self.wait.set(Wait::Request { since, idle: false });
        }
    }

    /// The shortest wait a connection can have, in milliseconds.
    fn shortest_wait_ms(&self) -> u64 {
        if self.keep_alive.is_zero() {
            // actix-http closes the connection after its answer.
            self.request_timeout_ms
        } else {
            self.keep_alive_ms.min(self.request_timeout_ms)
        }
    }

    /// When the connection's wait ends (on the coarse clock), and how; `None` while a
    /// request is answered. An idle connection closes at `--keep-alive` when that comes
    /// first (or together); the headers of a request are timed from the previous answer
    /// either way.
    fn deadline(&self) -> Option<(u64, Expiry)> {
        match self.wait.get() {
            Wait::Answer => None,
            Wait::Request { since, idle } => {
                if idle && self.keep_alive <= self.request_timeout {
                    Some((since.saturating_add(self.keep_alive_ms), Expiry::Close))
                } else {
                    Some((
                        since.saturating_add(self.request_timeout_ms),
                        Expiry::TimeOut,
                    ))
                }
            }
        }
    }
}

/// A request body being read on its connection (see [`Connection::body_started`]).
pub struct BodyOnConnection(Rc<Connection>);

impl BodyOnConnection {
    /// The handler took `bytes` more of the body.
    pub fn took(&self, bytes: usize) {
        if let Some(read) = self.0.body.get() {
            self.0.body.set(Some(BodyRead {
                taken: read.taken.saturating_add(bytes as u64),
                ..read
            }));
        }
    }

    /// Whether the client's end of the stream came before the body's end could be told
    /// apart from it: a body that may be broken off, which must not be taken for a
    /// whole one. A declared length tells it better.
    pub fn was_cut(&self) -> bool {
        self.0.body.get().is_some_and(|read| read.cut)
    }
}

impl Drop for BodyOnConnection {
    fn drop(&mut self) {
        self.0.body.set(None);
    }
}

/// A request being answered on its connection (see [`Connection::request_started`]).
pub struct RequestOnConnection {
    connection: Rc<Connection>,
    closes: bool,
}

impl RequestOnConnection {
    /// The endpoint that took the request and the job it made, as its handlers tagged it.
    pub fn tagged(&self) -> (Option<&'static str>, Option<JobId>) {
        self.connection.request_tag.tagged()
    }
}

impl Drop for RequestOnConnection {
    fn drop(&mut self) {
        if self.closes {
            // actix-http still answers requests read behind this one.
            self.connection.refuse_further_requests(Refused::Closed);
        }
        self.connection.wait.set(Wait::Request {
            since: coarse_clock::monotonic_millis(),
            idle: true,
        });
    }
}

/// An accepted stream that ends (reads as closed) when its connection's deadline passes:
/// silently for an idle keep-alive connection, and with a JSON 408 before it shuts down
/// for headers not in on time. Bytes already waiting in the socket are in, however late
/// the server looks.
pub struct TimedStream {
    stream: TcpStream,
    connection: Rc<Connection>,
    /// Boxed once per connection: `Sleep` cannot move, the stream must.
    timer: Pin<Box<Sleep>>,
    /// When the timer fires, on the coarse clock: never later than the connection's
    /// deadline.
    timer_set_for: u64,
    /// The waker the timer wakes; polling the timer again only registers the same one.
    timer_waker: Option<Waker>,
    /// Bytes were read since the stream last had nothing to give: they may complete the
    /// awaited headers, which the server parses only once it has read all there is.
    unparsed_bytes: bool,
    /// Set once the deadline ended the stream: it reads as closed from then on.
    ended: bool,
    /// The 408 still to write once the server shuts the connection; set on time-out.
    unsent_answer: Option<(Vec<u8>, usize)>,
    /// How much of the body being read its handler had taken when the client's end of
    /// the stream was last held back (see `end_must_wait`).
    body_taken_at_end: Option<u64>,
}

impl TimedStream {
    /// The clock for the first request's headers starts now.
    pub fn new(stream: TcpStream, request_timeout: Duration, keep_alive: Duration) -> TimedStream {
        let (request_timeout_ms, keep_alive_ms) = (millis(request_timeout), millis(keep_alive));
        let now = coarse_clock::monotonic_millis();
        TimedStream {
            stream,
            connection: Rc::new(Connection {
                request_timeout,
                keep_alive,
                request_timeout_ms,
                keep_alive_ms,
                wait: Cell::new(Wait::Request {
                    since: now,
                    idle: false,
                }),
                refused: Cell::new(None),
                allowed_host: RefCell::new(None),
                request_tag: RequestTag::default(),
                body: Cell::new(None),
                client_ended: Cell::new(false),
            }),
            timer: Box::pin(tokio::time::sleep(request_timeout)),
            timer_set_for: now.saturating_add(request_timeout_ms),
            timer_waker: None,
            unparsed_bytes: false,
            ended: false,
            unsent_answer: None,
            body_taken_at_end: None,
        }
    }

    pub fn connection(&self) -> Rc<Connection> {
        Rc::clone(&self.connection)
    }

    /// How the connection ends once its deadline has passed; until then the timer will
    /// wake the connection by then.
    fn past_deadline(&mut self, context: &mut Context<'_>) -> Option<Expiry> {
        let now = coarse_clock::monotonic_millis();
        let deadline = self.connection.deadline();
        if let Some((deadline, expiry)) = deadline
            && now >= deadline
        {
            return Some(expiry);
        }
        // An answer can be sent any moment, and the wait after it can end sooner than
        // this one: the timer wakes the connection by then too. It is left alone while
        // it is set sooner than needed, as every answer moves the deadline on.
        let soonest = now.saturating_add(self.connection.shortest_wait_ms());
        let wake_at = deadline.map_or(soonest, |(deadline, _)| deadline.min(soonest));
        if self.timer_set_for > wake_at || self.timer.is_elapsed() {
            // The timer runs on tokio's precise clock, set for what the coarse one says
            // is left. The coarse clock may lag it by a tick: a timer that fires before
            // the coarse deadline is set again for the rest, at least a millisecond on.
            let left = Duration::from_millis(wake_at - now);
            self.timer.as_mut().reset(Instant::now() + left);
            self.timer_set_for = wake_at;
            self.timer_waker = None;
        }
        let registered =
            (self.timer_waker.as_ref()).is_some_and(|waker| waker.will_wake(context.waker()));
        if !registered {
            if self.timer.as_mut().poll(context).is_ready() {
                // Due within the timer's last tick: it wakes no one, so look again soon.
                context.waker().wake_by_ref();
            } else if tokio::task::coop::has_budget_remaining() {
                // The timer took the waker; with the task's budget spent, it would have
                // answered without taking it (and it is polled again next time).
                self.timer_waker = Some(context.waker().clone());
            }
        }
        None
    }

    /// Whether the client's end of the stream, just read, must wait for the server to
    /// take what came before it. actix-http ends a request body that is still coming at
    /// the end of the stream as if the body were whole, so the end is held back (the
    /// stream reads as empty and wakes itself) while the server has bytes to parse, and
    /// while a handler reading a body still takes more of it. A handler that has taken
    /// nothing since the end was last held back waits for bytes that will never come:
    /// its body is cut, and the end is let through.
    fn end_must_wait(&mut self) -> bool {
        if std::mem::take(&mut self.unparsed_bytes) {
            return true;
        }
        let Some(read) = self.connection.body.get() else {
            return false;
        };
        if self.body_taken_at_end == Some(read.taken) {
            self.connection
                .body
                .set(Some(BodyRead { cut: true, ..read }));
            return false;
        }
        self.body_taken_at_end = Some(read.taken);
        true
    }

    fn time_out(&mut self) {
        let body = serde_json::to_string(&ErrorBody::new(format!(
            "the request headers were not received within {}",
            humantime::format_duration(self.connection.request_timeout)
        )))
        .expect("an error body serializes");
        let answer = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        self.unsent_answer = Some((answer.into_bytes(), 0));
    }
}

/// `duration` in milliseconds, rounded up: a limit under a millisecond (`500us`) is
/// one, not none, as it was when the clock counted nanoseconds.
fn millis(duration: Duration) -> u64 {
    let rounded_up = duration.saturating_add(Duration::from_nanos(999_999));
    u64::try_from(rounded_up.as_millis()).unwrap_or(u64::MAX)
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        // What has arrived is read before the deadline is looked at: on a loaded machine
        // the server can get to headers long after they came, and that lateness is its
        // own, not the client's.
        let filled = buffer.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(context, buffer);
        match read {
            Poll::Ready(Ok(())) if buffer.filled().len() > filled => {
                this.unparsed_bytes = true;
                this.connection.bytes_came();
                read
            }
            Poll::Pending => {
                let unparsed_bytes = std::mem::take(&mut this.unparsed_bytes);
                let Some(expiry) = this.past_deadline(context) else {
                    return Poll::Pending;
                };
                if unparsed_bytes {
                    // Held against the headers only once the server has parsed what it
                    // just read (and so started the request, if they are whole).
                    context.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Tokio can be told of a socket's bytes after its timers: a process
                // stopped and continued has its wait for events cut short, and sees its
                // timers before its sockets. So the socket itself is asked last.
                match rustix::io::read(&this.stream, buffer.initialize_unfilled()) {
                    Ok(read) => {
                        buffer.advance(read);
                        this.unparsed_bytes = read > 0;
                        if read > 0 {
                            this.connection.bytes_came();
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(Errno::AGAIN) => {
                        // Read as the end of the stream: the server then sends what it
                        // still has for earlier requests and shuts the connection down,
                        // where a 408 goes out.
                        this.ended = true;
                        if expiry == Expiry::TimeOut {
                            this.time_out();
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(error) => Poll::Ready(Err(error.into())),
                }
            }
            // The client's end of the stream (a read with room that brought nothing).
            Poll::Ready(Ok(())) if buffer.remaining() > 0 => {
                if this.end_must_wait() {
                    context.waker().wake_by_ref();
                    return Poll::Pending;
                }
                this.connection.client_ended.set(true);
                read
            }
            // An error, or a read with no room.
            Poll::Ready(_) => read,
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((answer, written)) = &mut this.unsent_answer {
            while *written < answer.len() {
                let sent =
                    ready!(Pin::new(&mut this.stream).poll_write(context, &answer[*written..]))?;
                if sent == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += sent;
            }
        }
        Pin::new(&mut this.stream).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_in_whole_milliseconds_rounded_up() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(500)), 1);
        assert_eq!(millis(Duration::from_millis(1)), 1);
        assert_eq!(millis(Duration::from_nanos(1_000_001)), 2);
        assert_eq!(millis(Duration::from_secs(5)), 5000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
