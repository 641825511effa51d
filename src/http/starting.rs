//! The HTTP server that answers on the bound listener while the server starts
//! (recovering a large results directory, or reaching its database), until the real one
//! takes the listener over: `/healthz` 200, anything else 503 with `Retry-After`.
//! Without it every request, probes included, waited unanswered in the listen queue for
//! the whole start, and a liveness probe's timeout had the server killed for being slow
//! to recover.

use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_service::{Service, ServiceFactory, map_config};
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::rt::net::TcpListener as AsyncListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::request_log::REQUEST_ID;
use super::{ApiError, RequestId, operations};

/// How long one connection may take to send its request head: a client kept waiting
/// for its turn to run on a loaded machine must not find its connection closed before
/// it could send a request.
const REQUEST_HEAD_TIME: Duration = Duration::from_secs(5);

/// Connections served at once; more wait in the listen queue.
const MOST_CONNECTIONS: usize = 16;

/// How long the connections taken may still take to be answered once the answers stop.
const STOP_TIME: Duration = Duration::from_secs(1);

/// How long the accepting pauses after an error (out of file descriptors, say).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What the answers say while the server starts.
const STARTING: &str = "the server is starting: it takes requests once it has recovered its \
     jobs (in cluster mode, reached its database)";

/// The server answering, on a thread of its own (the thread that starts the job service
/// is busy doing so). Dropping it stops it, once the connections it took are answered
/// (one second at most), and leaves the listener, with the connections not yet
/// accepted, to the real server.
///
/// It accepts its connections on its own thread and hands each to actix-http there, so
/// a connection is either taken, and answered, or left in the listen queue. (An
/// actix-server, whose accept thread hands connections over to a worker, drops those
/// still on their way to it when it stops: their clients got a reset, not an answer.
/// And its stop, sent from another thread, once in a full test run never ended its
/// run: the start-up waited for it for ever.)
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
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("icewall-starting".to_owned())
            .spawn(move || actix_web::rt::System::new().block_on(serve(listener, stopped)))?;
        Ok(StartingAnswers {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StartingAnswers {
    fn drop(&mut self) {
        // Sent at once; the thread ends when the connections taken are answered.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes connections from `listener` and answers them until `stop` (sent or dropped),
/// then gives the connections taken `STOP_TIME` to be answered.
async fn serve(listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    let app = actix_web::App::new().default_service(answer);
    let factory = HttpService::build()
        // Answered and closed: the next request may be the real server's.
        .keep_alive(KeepAlive::Disabled)
        .client_request_timeout(REQUEST_HEAD_TIME)
        .h1(map_config(app, |()| AppConfig::default()))
        .tcp();
    let (Ok(listener), Ok(service)) = (
        AsyncListener::from_std(listener),
        factory.new_service(()).await,
    ) else {
        // Then nothing answers before the real server: requests wait in the listen queue.
        return;
    };
    let service = Rc::new(service);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let full = connections.len() >= MOST_CONNECTIONS;
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = connections.join_next(), if full => {}
            accepted = listener.accept(), if !full => match accepted {
                Ok((stream, _)) => {
                    let service = Rc::clone(&service);
                    connections.spawn_local(async move {
                        let _ = service.call(stream).await;
                    });
                }
                Err(_) => actix_web::rt::time::sleep(ACCEPT_PAUSE).await,
            },
        }
    }
    // The connections not taken stay in the listen queue, for the real server.
    drop(listener);
    let answered = async { while connections.join_next().await.is_some() {} };
    // Past it, the rest are closed as `connections` is dropped.
    let _ = actix_web::rt::time::timeout(STOP_TIME, answered).await;
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
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

    /// Answers what `listener` accepts next, as the real server would once it has the
    /// listener: the request head read, then a 200.
    fn answer_as_the_next_server(listener: &TcpListener) {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
    }

    /// Requests on connections of their own, one after another until `done`: the answers
    /// are counted, 503s (the starting answers') in `starting`; anything that is no
    /// answer is returned.
    fn ask_until(address: SocketAddr, done: &AtomicBool, starting: &AtomicUsize) -> Vec<String> {
        let mut failures = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let mut stream = TcpStream::connect(address).unwrap();
            let mut answer = String::new();
            let exchanged = stream
                .write_all(b"GET /readyz HTTP/1.1\r\n\r\n")
                .and_then(|()| stream.read_to_string(&mut answer));
            match exchanged {
                Ok(_) if answer.starts_with("HTTP/1.1 503 ") => {
                    starting.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) if answer.starts_with("HTTP/1.1 200 ") => {}
                Ok(_) => failures.push(format!("answered {answer:?}")),
                Err(error) => failures.push(error.to_string()),
            }
        }
        failures
    }

    #[test]
    fn through_the_handover_every_connection_is_answered_by_one_server_or_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let starting = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (done, starting) = (done.clone(), starting.clone());
                thread::spawn(move || ask_until(address, &done, &starting))
            })
            .collect();
        // Handovers while the clients ask: the starting answers stopped with requests on
        // their way, then a few connections taken by the next server, which leaves the
        // listener to the next round's starting answers.
        for _ in 0..20 {
            let answers = StartingAnswers::start(&listener).unwrap();
            let before = starting.load(Ordering::SeqCst);
            while starting.load(Ordering::SeqCst) < before + 8 {
                thread::yield_now();
            }
            drop(answers);
            // Shared with the listener the starting answers took, which made it so.
            listener.set_nonblocking(false).unwrap();
            for _ in 0..8 {
                answer_as_the_next_server(&listener);
            }
        }
        // The clients' last requests, answered by starting answers again.
        let answers = StartingAnswers::start(&listener).unwrap();
        done.store(true, Ordering::SeqCst);
        let failures: Vec<String> = clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect();
        drop(answers);
        assert!(
            failures.is_empty(),
            "connections not answered: {failures:?}"
        );
    }
}
