//! Answers on the bound listener while the server starts (recovering a large results
//! directory, or connecting to its database), before the HTTP server takes it over:
//! `/healthz` 200, anything else 503 with `Retry-After`. Without it every request,
//! probes included, waited unanswered in the listen queue for the whole start, and a
//! liveness probe's timeout had the server killed for being slow to recover.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the listener is looked at for a connection: a probe waits at most this
/// long on top of its answer.
const ACCEPT_INTERVAL: Duration = Duration::from_millis(10);

/// How long one connection may take to send its request head and take its answer: a
/// client kept waiting for its turn to run on a loaded machine must not find its
/// connection closed before it could send a request.
const CONNECTION_TIME: Duration = Duration::from_secs(5);

/// Connections answered at once, each on a thread of its own so that a slow one holds
/// up no probe; more are closed unanswered.
const MOST_CONNECTIONS: usize = 16;

/// A request head longer than this is answered as it is (probes send a few hundred
/// bytes).
const HEAD_BYTES: usize = 8 * 1024;

/// What the answers say while the server starts.
const STARTING: &str = "the server is starting: it takes requests once it has recovered its \
     jobs (in cluster mode, reached its database)";

/// The thread answering; dropping it stops it, leaving the listener (and the
/// connections not yet accepted) to the HTTP server.
pub struct StartingAnswers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StartingAnswers {
    /// Answers on `listener` until dropped.
    ///
    /// # Errors
    /// When the listener cannot be shared with the thread or its thread not started.
    pub fn start(listener: &TcpListener) -> io::Result<StartingAnswers> {
        let listener = listener.try_clone()?;
        // The HTTP server sets it too: it polls the listener as this thread does.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let connections = Arc::new(AtomicUsize::new(0));
        let thread = thread::Builder::new()
            .name("icewall-starting".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => answer_apart(stream, &connections),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(ACCEPT_INTERVAL);
                        }
                        // Out of descriptors, a connection reset before it was taken:
                        // the next look may do better.
                        Err(_) => thread::sleep(ACCEPT_INTERVAL),
                    }
                }
            })?;
        Ok(StartingAnswers {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StartingAnswers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers `stream` on a thread of its own, unless [`MOST_CONNECTIONS`] are being
/// answered already: then it is closed. The thread outlives the answers' end by at most
/// [`CONNECTION_TIME`], holding that connection alone.
fn answer_apart(stream: TcpStream, connections: &Arc<AtomicUsize>) {
    if connections.fetch_add(1, Ordering::AcqRel) >= MOST_CONNECTIONS {
        connections.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let answered = Arc::clone(connections);
    let spawned = thread::Builder::new()
        .name("icewall-starting-answer".to_owned())
        .spawn(move || {
            answer(stream);
            answered.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the request head (within [`CONNECTION_TIME`]) and answers it, closing the
/// connection after: whatever follows is the HTTP server's to answer, on a new one.
fn answer(mut stream: TcpStream) {
    let deadline = Instant::now() + CONNECTION_TIME;
    let _ = stream.set_nonblocking(false);
    let mut head = Vec::new();
    let mut piece = [0; 1024];
    while !head.windows(4).any(|end| end == b"\r\n\r\n") && head.len() < HEAD_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut piece) {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&piece[..read]),
        }
    }
    let mut request_line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    request_line = request_line
        .strip_suffix(b" HTTP/1.1")
        .unwrap_or(request_line);
    request_line = request_line
        .strip_suffix(b" HTTP/1.0")
        .unwrap_or(request_line);
    let (method, path) = match request_line.split(|&byte| byte == b' ').collect::<Vec<_>>()[..] {
        [method, target] => (method, target),
        _ => (&b""[..], &b""[..]),
    };
    let path = path.split(|&byte| byte == b'?').next().unwrap_or_default();
    let alive = path == b"/healthz" && (method == b"GET" || method == b"HEAD");
    let (status, extra, body) = if alive {
        ("200 OK", "", r#"{"status":"ok"}"#.to_owned())
    } else {
        (
            "503 Service Unavailable",
            "retry-after: 1\r\n",
            format!(r#"{{"reason":"{STARTING}","status":"error"}}"#),
        )
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    );
    if method != b"HEAD" {
        answer.push_str(&body);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() && stream.set_write_timeout(Some(left)).is_ok() {
        let _ = stream.write_all(answer.as_bytes());
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
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
        let head = exchange(&listener, "HEAD /healthz?full=1 HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        for request in [
            "GET /readyz HTTP/1.1\r\n\r\n",
            "POST /api/simulate HTTP/1.1\r\nContent-Length: 3\r\n\r\n1 2",
            "GET /healthzz HTTP/1.1\r\n\r\n",
            "DELETE /healthz HTTP/1.1\r\n\r\n",
            "nonsense\r\n\r\n",
        ] {
            let refused = exchange(&listener, request);
            assert!(
                refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{request}: {refused}"
            );
            assert!(refused.contains("\r\nretry-after: 1\r\n"), "{refused}");
            assert!(refused.contains(STARTING), "{refused}");
        }
        // A client that sends nothing holds up no other.
        let _silent = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        let alive = exchange(&listener, "GET /healthz HTTP/1.1\r\n\r\n");
        assert!(alive.starts_with("HTTP/1.1 200 OK\r\n"), "{alive}");
        assert!(started.elapsed() < CONNECTION_TIME, "the probe waited");
        drop(answers);
        // Left to whoever takes the listener next.
        let _waiting = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        assert!(listener.accept().is_ok());
    }
}
