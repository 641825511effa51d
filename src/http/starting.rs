//! The HTTP server that answers on the bound listener while the server starts
//! (recovering a large results directory, or reaching its database), until the real one
//! takes the listener over: `/healthz` 200, anything else 503 with `Retry-After`.
//! Without it every request, probes included, waited unanswered in the listen queue for
//! the whole start, and a liveness probe's timeout had the server killed for being slow
//! to recover.

use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_service::{Service, ServiceFactory, map_config};
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use tokio::sync::{Semaphore, oneshot};

use super::request_log::REQUEST_ID;
use super::{ApiError, RequestId, operations};

/// How long one connection may take to send its request head: a client kept waiting
/// for its turn to run on a loaded machine must not find its connection closed before
/// it could send a request.
const REQUEST_HEAD_TIME: Duration = Duration::from_secs(5);

/// Connections served at once; more wait in the listen queue.
const MOST_CONNECTIONS: usize = 16;

/// How long the connections under way when the start-up ends have to be answered.
const LAST_ANSWERS_TIME: Duration = Duration::from_secs(1);

/// What the answers say while the server starts.
const STARTING: &str = "the server is starting: it takes requests once it has recovered its \
     jobs (in cluster mode, reached its database)";

/// The server answering, on a thread of its own (the thread that starts the job service
/// is busy doing so). Dropping it stops it, once the connections it took are answered
/// (a second at most), and leaves the listener, with the connections not yet accepted,
/// to the real server.
///
/// Its own accept loop around actix-http's service, not an actix-server: that one's
/// stop, sent from another thread as the start-up ended, once in a full test run never
/// ended its run, and the start-up waited for it for ever.
pub struct StartingAnswers {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StartingAnswers {
    /// Answers on `listener` until dropped.
    ///
    /// # Errors
    /// When the listener cannot be shared with the server or its thread not started.
    pub fn start(listener: &TcpListener) -> io::Result<StartingAnswers> {
        let listener = listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("icewall-starting".to_owned())
            .spawn(move || {
                let answering = tokio::task::LocalSet::new();
                // Nothing is owed to anyone once stopped: an error ends the answers early,
                // and requests wait for the real server.
                let _ = answering.block_on(&runtime, answer_until(listener, stopped));
            })?;
        Ok(StartingAnswers {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StartingAnswers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections on `listener`, at most [`MOST_CONNECTIONS`] at once, and answers
/// each with [`answer`] until `stopped`; then gives those under way a second to end.
async fn answer_until(listener: TcpListener, mut stopped: oneshot::Receiver<()>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = actix_web::App::new().default_service(answer);
    let service = HttpService::build()
        // Answered and closed: the next request may be the real server's.
        .keep_alive(KeepAlive::Disabled)
        .client_request_timeout(REQUEST_HEAD_TIME)
        .h1(map_config(app, |()| AppConfig::default()))
        .tcp()
        .new_service(())
        .await
        .map_err(|()| io::Error::other("the start-up's HTTP service"))?;
    let service = Rc::new(service);
    let connections = Arc::new(Semaphore::new(MOST_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => break,
            permit = Arc::clone(&connections).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let stream = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, a connection reset before it was taken: the next
                // accept may do better.
                Err(_) => continue,
            },
        };
        let service = Rc::clone(&service);
        tokio::task::spawn_local(async move {
            let _ = service.call(stream).await;
            drop(permit);
        });
    }
    let all = u32::try_from(MOST_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(LAST_ANSWERS_TIME, connections.acquire_many(all)).await;
    Ok(())
}

/// Alive, and not ready; with the request's id as every answer has it, and no log line
/// (a start that is refused leaves no log behind).
async fn answer(request: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let alive =
        request.path() == "/healthz" && matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = if alive {
        operations::healthz().await
    } else {
        actix_web::ResponseError::error_response(&ApiError::Unavailable(STARTING.to_owned()))
    };
    let id = RequestId::from_header(request.headers().get(REQUEST_ID));
    response.headers_mut().insert(REQUEST_ID, id.header_value());
    Ok(request.into_response(response))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    fn exchange(listener: &TcpListener, request: &str) -> String {
        let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn while_starting_the_server_is_alive_and_answers_everything_else_with_a_503() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let answers = StartingAnswers::start(&listener).unwrap();
        let alive = exchange(&listener, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(alive.starts_with("HTTP/1.1 200 OK\r\n"), "{alive}");
        assert!(alive.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{alive}");
        assert!(alive.contains("\r\nx-request-id: "), "{alive}");
        let given = exchange(
            &listener,
            "GET /readyz HTTP/1.1\r\nX-Request-Id: probe-7\r\n\r\n",
        );
        assert!(given.contains("\r\nx-request-id: probe-7\r\n"), "{given}");
        let head = exchange(&listener, "HEAD /healthz?full=1 HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        for request in [
            "GET /readyz HTTP/1.1\r\n\r\n",
            "POST /api/simulate HTTP/1.1\r\nContent-Length: 3\r\n\r\n1 2",
            "GET /healthzz HTTP/1.1\r\n\r\n",
            "DELETE /healthz HTTP/1.1\r\n\r\n",
        ] {
            let refused = exchange(&listener, request);
            assert!(
                refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{request}: {refused}"
            );
            assert!(refused.contains("\r\nretry-after: 1\r\n"), "{refused}");
            assert!(refused.contains(STARTING), "{refused}");
        }
        let nonsense = exchange(&listener, "nonsense\r\n\r\n");
        assert!(nonsense.starts_with("HTTP/1.1 400 "), "{nonsense}");
        // A client that sends nothing holds up no other.
        let _silent = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        let alive = exchange(&listener, "GET /healthz HTTP/1.1\r\n\r\n");
        assert!(alive.starts_with("HTTP/1.1 200 OK\r\n"), "{alive}");
        assert!(started.elapsed() < REQUEST_HEAD_TIME, "the probe waited");
        let stopping = Instant::now();
        drop(answers);
        assert!(
            stopping.elapsed() < Duration::from_secs(3),
            "the silent client held up the stop for {:?}",
            stopping.elapsed()
        );
        // Left to whoever takes the listener next.
        let _waiting = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        assert!(listener.accept().is_ok());
    }
}
