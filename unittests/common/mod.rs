//! Helpers shared by the integration tests: spawn the real `icewall serve` on port 0
//! with temporary directories, talk HTTP to it, and wait for jobs against a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod postgres;

pub const EXAMPLE_TEXT: &str = "21 25 28\n17\n17 22 17 19 17\n";
pub const EXAMPLE_JSON: &str =
    r#"{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}"#;

/// Runs `command` (an `icewall serve` that is to refuse to start) with its results and
/// logs directories in `dir`, until it exits: its exit code and its stderr.
pub fn refused_start(mut command: Command, dir: &Path) -> (Option<i32>, String) {
    let output = in_dirs_of(&mut command, dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// `command`, an `icewall serve`, with its results and logs directories in `dir`.
pub fn in_dirs_of<'c>(command: &'c mut Command, dir: &Path) -> &'c mut Command {
    command
        .arg("--results-dir")
        .arg(dir.join("results"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
}

/// The one deadline loop: polls `done` every few milliseconds until it holds or
/// `timeout` has passed, and says whether it held.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `done` until it holds; fails the test after 30 s.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(
        poll_until(Duration::from_secs(30), done),
        "{what} never happened"
    );
}

/// Files in `dir` whose name `matches`.
pub fn count_files(dir: &Path, matches: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| matches(&entry.as_ref().unwrap().file_name().to_string_lossy()))
        .count()
}

/// Where a server keeps its jobs: the file store of a node on its own, or a database of
/// its own on the shared PostgreSQL (cluster mode, one node). The API tests take one as
/// their argument and run once on each (see `on_both_stores!`), so the two cannot drift.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    Files,
    Postgres,
}

impl Store {
    /// Whether this store can be tested here: PostgreSQL may be missing on a developer's
    /// machine (`postgres::shared` says so, or fails when it is required).
    pub fn is_available(self) -> bool {
        match self {
            Store::Files => true,
            Store::Postgres => postgres::shared().is_some(),
        }
    }

    /// Starts a server on this store in a temporary directory of its own (its logs, and
    /// its results on the file store); on PostgreSQL with `--database-url` of a fresh
    /// database.
    ///
    /// # Panics
    /// On PostgreSQL when it is not available: `on_both_stores!` skips such a test first.
    pub fn start(self, args: &[&str]) -> Server {
        match self {
            Store::Files => Server::start(args),
            Store::Postgres => {
                let url = postgres::shared()
                    .expect("on_both_stores! runs this test only with PostgreSQL")
                    .create_database();
                Server::start(&[args, &["--database-url", &url]].concat())
            }
        }
    }
}

/// Runs each named test body, `fn name(store: Store)`, as two tests: `files::name` and
/// `postgres::name` in the calling module, so that both run in one `cargo test` and
/// either can be picked by its module (`cargo test api::postgres::`). A body left out
/// of the list is dead code, which clippy refuses.
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod files {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Store::Files);
                }
            )+
        }

        mod postgres {
            $(
                #[test]
                fn $name() {
                    let store = $crate::common::Store::Postgres;
                    if store.is_available() {
                        super::$name(store);
                    }
                }
            )+
        }
    };
}
pub(crate) use on_both_stores;

/// A running server; killed on drop if the test did not stop it.
pub struct Server {
    child: Child,
    /// The server's stdout after its first line, the listening line.
    stdout: Option<BufReader<ChildStdout>>,
    pub listening_line: String,
    pub base: String,
    pub results: PathBuf,
    agent: ureq::Agent,
    /// The temporary directory of a server made by `start`, removed with it.
    _dir: Option<tempfile::TempDir>,
}

/// A response, whatever its status.
pub struct Reply {
    pub status: u16,
    pub replayed: Option<String>,
    pub allow: Option<String>,
    pub www_authenticate: Option<String>,
    pub request_id: Option<String>,
    pub body: String,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub location: Option<String>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.body))
    }

    /// The `reason` of an error body, checking the error shape on the way.
    pub fn reason(&self) -> String {
        let body = self.json();
        assert_eq!(body["status"], "error", "{}", self.body);
        body["reason"].as_str().expect("a reason").to_owned()
    }
}

impl Server {
    /// Starts a server in a temporary directory of its own, removed when it is dropped.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(dir.path(), args);
        server._dir = Some(dir);
        server
    }

    /// Starts a server whose results and logs live under `dir`.
    pub fn start_in(dir: &Path, args: &[&str]) -> Server {
        Server::start_under(&[], dir, args)
    }

    /// Starts a server under `wrapper` (a program and its arguments, before the
    /// server's own; none runs the server itself) whose results and logs live under
    /// `dir`.
    pub fn start_under(wrapper: &[&str], dir: &Path, args: &[&str]) -> Server {
        let mut server = Server::spawn_under(wrapper, dir, args);
        server.wait_listening();
        server
    }

    /// Starts a server as `start` does, on a free port it names, and returns before it
    /// listens: for a test of what it answers while it starts. `wait_listening` waits
    /// for it to listen.
    pub fn starting(args: &[&str]) -> Server {
        let bind = {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap().to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::spawn_under(&[], dir.path(), &[args, &["--bind", &bind]].concat());
        server.base = format!("http://{bind}");
        server._dir = Some(dir);
        server
    }

    /// `start_under` up to the server's spawn: its `base` is known once it listens
    /// (`wait_listening`), unless `args` name the port.
    fn spawn_under(wrapper: &[&str], dir: &Path, args: &[&str]) -> Server {
        let results = dir.join("results");
        // ICEWALL_TEST_BIN runs the same tests against another build (say, the release
        // build's page load in browser.rs, which prints its time).
        let binary = std::env::var("ICEWALL_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_icewall").into());
        let mut command = match wrapper {
            [] => Command::new(binary),
            [program, wrapper_args @ ..] => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(binary);
                command
            }
        };
        command.args(["serve", "--http-workers", "2"]);
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        if !args.contains(&"--workers") {
            command.args(["--workers", "2"]);
        }
        let mut child = command
            .arg("--results-dir")
            .arg(&results)
            .arg("--logs-dir")
            .arg(dir.join("logs"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the icewall binary starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server {
            base: String::new(),
            child,
            stdout: Some(stdout),
            listening_line: String::new(),
            results,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
            _dir: None,
        }
    }

    /// Waits for the server's first line, which says where it listens; fails the test
    /// with its stderr if it says anything else (it stopped).
    pub fn wait_listening(&mut self) {
        let mut line = String::new();
        let stdout = self
            .stdout
            .as_mut()
            .expect("stdout is read before it is taken");
        stdout.read_line(&mut line).unwrap();
        // A plain line, or with `--log-format json --log-target stdout` a JSON record.
        let listening = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|record| record["msg"].as_str().map(str::to_owned))
            .unwrap_or_else(|| line.trim().to_owned());
        let Some(base) = listening.strip_prefix("listening on ") else {
            let mut stderr = String::new();
            self.child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("the server did not start: {line:?} {stderr}");
        };
        // A server bound to every address is reached here on loopback.
        self.base = base.replace("0.0.0.0", "127.0.0.1");
        self.listening_line = line;
    }

    /// Its log so far (`logs/icewall.log`, written behind its work).
    pub fn log(&self) -> String {
        let logs = self.results.with_file_name("logs");
        std::fs::read_to_string(logs.join("icewall.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn reply(&self, result: Result<ureq::Response, ureq::Error>) -> Reply {
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            // What the server was doing, for a reset seen once in a whole run and never
            // again alone.
            Err(error) => {
                let alive = Path::new(&format!("/proc/{}", self.child.id())).exists();
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "no HTTP answer: {error}; the server is {}; its log's last lines, newest \
                     first:\n{}",
                    if alive { "running" } else { "gone" },
                    tail.join("\n")
                )
            }
        };
        Reply {
            status: response.status(),
            content_type: response.content_type().to_owned(),
            retry_after: response.header("retry-after").map(str::to_owned),
            location: response.header("location").map(str::to_owned),
            replayed: response.header("idempotent-replayed").map(str::to_owned),
            allow: response.header("allow").map(str::to_owned),
            www_authenticate: response.header("www-authenticate").map(str::to_owned),
            request_id: response.header("x-request-id").map(str::to_owned),
            body: response.into_string().unwrap(),
        }
    }

    pub fn request(&self, method: &str, path: &str) -> Reply {
        self.reply(self.agent.request(method, &self.url(path)).call())
    }

    /// A request with an `Authorization` header.
    pub fn request_as(&self, method: &str, path: &str, authorization: &str) -> Reply {
        self.reply(
            self.agent
                .request(method, &self.url(path))
                .set("Authorization", authorization)
                .call(),
        )
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.reply(
            self.agent
                .post(&self.url(path))
                .set("Content-Type", content_type)
                .send_bytes(body),
        )
    }

    /// How many jobs `/api/jobs` lists.
    pub fn listed_jobs(&self) -> usize {
        self.get("/api/jobs?limit=1000").json()["data"]
            .as_array()
            .unwrap()
            .len()
    }

    /// A POST with extra headers.
    pub fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.agent.post(&self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        self.reply(request.send_bytes(body))
    }

    pub fn submit_json(&self, body: &str) -> String {
        let reply = self.post("/api/simulate", "application/json", body.as_bytes());
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.json()["job_id"].as_str().unwrap().to_owned()
    }

    /// Submits `wall` as text, with `query` (say `?num_teams=1`, or empty), and returns
    /// its job's id.
    pub fn submit_text(&self, query: &str, wall: &str) -> String {
        let reply = self.post(
            &format!("/api/simulate{query}"),
            "text/plain",
            wall.as_bytes(),
        );
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.json()["job_id"].as_str().unwrap().to_owned()
    }

    /// Polls until the job is done or failed, and returns its result body.
    pub fn wait_finished(&self, id: &str) -> Value {
        let mut result = Value::Null;
        let finished = poll_until(Duration::from_secs(60), || {
            result = self.get(&format!("/api/get_results/{id}")).json();
            result["status"] == "done" || result["status"] == "failed"
        });
        assert!(finished, "job {id} never finished: {result}");
        result
    }

    /// Asks for a graceful shutdown and waits for the process to exit.
    pub fn shutdown(mut self) -> ExitStatus {
        let reply = self.post("/api/graceful_shutdown", "application/json", b"");
        assert_eq!(reply.status, 200, "{}", reply.body);
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        let exited = poll_until(Duration::from_secs(60), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(exited, "the server did not exit");
        status.expect("polled until it exited")
    }

    /// The rest of the server's stdout, to read once it has exited.
    pub fn take_stdout(&mut self) -> BufReader<ChildStdout> {
        self.stdout.take().expect("stdout is taken once")
    }

    /// Its stderr, to read as it comes (`wait_listening` reads it only when the server
    /// did not start).
    pub fn take_stderr(&mut self) -> BufReader<ChildStderr> {
        BufReader::new(self.child.stderr.take().expect("stderr not taken yet"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server a signal, as `kill -TERM` does (`name` is `TERM`, `INT`, `9`).
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A process a test started by hand, killed if the test ends (a failed assertion
/// included) while it still runs, so that no server outlives its test.
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server started with `flags`, and a job of the example wall it has finished: for a
/// test of what is done with a finished job.
pub fn a_done_job(flags: &[&str]) -> (Server, String) {
    finish_a_job(Server::start(flags))
}

/// As `a_done_job`, the server's results and logs under `dir`: for a test that looks at
/// its files, or starts it again on them.
pub fn a_done_job_in(dir: &Path, flags: &[&str]) -> (Server, String) {
    finish_a_job(Server::start_in(dir, flags))
}

fn finish_a_job(server: Server) -> (Server, String) {
    let id = server.submit_json(EXAMPLE_JSON);
    server.wait_finished(&id);
    (server, id)
}

/// A closed gate and a server on the file store with one worker whose jobs wait at it
/// (see `Gate::one_worker`).
pub fn one_worker_behind_a_gate() -> (Gate, Server) {
    let gate = Gate::closed();
    let server = Server::start(&gate.one_worker(&[]));
    (gate, server)
}

/// A gate the server's jobs wait at (the hidden `--debug-job-gate`): closed until the
/// test opens it, so a test holds jobs for exactly as long as it needs, not for a delay
/// it hopes is long enough.
pub struct Gate {
    /// The file the jobs wait for, in a directory of its own.
    path: String,
    _dir: tempfile::TempDir,
}

impl Gate {
    pub fn closed() -> Gate {
        let dir = tempfile::tempdir().unwrap();
        Gate {
            path: dir.path().join("open").to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// `args` and `--debug-job-gate` at this gate: a server started with them holds
    /// its jobs here.
    pub fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(["--debug-job-gate", self.path.as_str()]);
        all
    }

    /// The arguments of a server with one worker whose jobs wait at this gate, and
    /// `args`: the first job holds the worker and the next ones stay queued behind it,
    /// so a test knows which job is in which state until it opens the gate.
    pub fn one_worker<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        self.args(&[&["--workers", "1"], args].concat())
    }

    /// Lets every job waiting at the gate, and every later one, run.
    pub fn open(&self) {
        std::fs::write(&self.path, b"").unwrap();
    }

    /// Holds every job that reaches the gate from now on; a job already past it goes on.
    pub fn close(&self) {
        std::fs::remove_file(&self.path).unwrap();
    }
}

impl Server {
    /// A raw connection to the server, for requests no HTTP client would send; reads
    /// give up after 20 s without a byte.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.base.trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    pub fn exchange(&self, raw: &str) -> String {
        let mut stream = self.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        read_until_closed(&mut stream)
    }
}

/// Reads until the server closes the connection (or a read times out); what it said
/// before closing.
pub fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A finished job of one team on 200,000 sections: a team log of some 10 MB, which a
/// cluster node stores in chunks of 1 MiB apart from the result, and which is more than
/// the socket buffers of a connection's two ends hold.
pub fn a_job_with_a_long_team_log(server: &Server) -> String {
    let profile = vec!["0"; 2000].join(" ");
    let wall: String = (0..100).map(|_| format!("{profile}\n")).collect();
    let id = server.submit_text("?num_teams=1", &wall);
    assert_eq!(server.wait_finished(&id)["status"], "done");
    id
}
