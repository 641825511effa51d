//! A real PostgreSQL for the tests, from the Debian package (`postgresql`): `initdb` in a
//! temporary directory, then `postgres` itself as a child of the test binary, listening
//! on 127.0.0.1 (a free port) and on a Unix socket in that directory. No Docker, nothing
//! downloaded. Without the binaries the tests that need it skip, saying so, unless
//! `ICEWALL_REQUIRE_POSTGRES=1` (as in CI), where that is a failure.
//!
//! No postgres outlives the test binary, however it ends:
//! - a server of a test's own is shut down when it is dropped, and its directory
//!   removed;
//! - the shared server lives in a static, never dropped: an `atexit` hook shuts it
//!   down and removes its directory when the binary exits (libtest exits through
//!   `exit`, whether the tests passed or not);
//! - when the binary dies without running that hook (SIGKILL, abort), each postmaster
//!   gets SIGQUIT, its immediate shutdown, from its parent-death signal.

mod programs;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::poll_until;
use programs::{Binaries, Owner, owned_command, spawn_from_lasting_thread};

/// Set to 1 (as CI does) to fail instead of skipping when PostgreSQL is missing.
const REQUIRE: &str = "ICEWALL_REQUIRE_POSTGRES";
/// Tests start several nodes, each with a pool of connections, on one database server.
const MAX_CONNECTIONS: &str = "200";
/// How long a start or a shutdown may take before the harness gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A PostgreSQL server of the tests' own: its data, its socket and its log live in one
/// temporary directory, removed when it is dropped.
pub struct PostgresServer {
    binaries: Binaries,
    owner: Option<Owner>,
    port: u16,
    /// The running postmaster, or `None` between `stop` (or `kill`) and `start_again`.
    postmaster: Mutex<Option<Child>>,
    databases_made: AtomicUsize,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Starts a server of the caller's own (for tests that stop or restart it).
    /// `None`, after saying so on stderr, when no PostgreSQL is installed.
    ///
    /// # Panics
    /// When `ICEWALL_REQUIRE_POSTGRES=1` and no PostgreSQL is installed, or when the
    /// server does not start (the panic carries initdb's output or the server's log).
    pub fn start() -> Option<PostgresServer> {
        let Some(binaries) = Binaries::find() else {
            assert!(
                std::env::var(REQUIRE).as_deref() != Ok("1"),
                "{REQUIRE}=1 but PostgreSQL (initdb, postgres, psql) is in neither \
                 /usr/lib/postgresql/*/bin nor PATH: apt-get install postgresql"
            );
            // Straight to the file descriptor: libtest hides what eprintln! says in a
            // test that passes.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: this test needs PostgreSQL and none is installed (initdb, postgres \
                 and psql in neither /usr/lib/postgresql/*/bin nor PATH); apt-get install \
                 postgresql, or set {REQUIRE}=1 to make this a failure"
            );
            return None;
        };
        Some(PostgresServer::start_with(binaries))
    }

    fn start_with(binaries: Binaries) -> PostgresServer {
        let owner = Owner::for_current_user();
        let dir = tempfile::Builder::new()
            .prefix("icewall-postgres-")
            .tempdir()
            .unwrap();
        if let Some(owner) = owner {
            std::os::unix::fs::chown(dir.path(), Some(owner.uid), Some(owner.gid)).unwrap();
        }
        let mut server = PostgresServer {
            binaries,
            owner,
            port: 0,
            postmaster: Mutex::new(None),
            databases_made: AtomicUsize::new(0),
            dir,
        };
        server.initdb();
        // The free port is found by binding it and letting it go: another process may
        // take it in between, and then a new one is tried.
        let mut attempts = 0;
        let child = loop {
            attempts += 1;
            server.port = free_port();
            match server.spawn_postmaster() {
                Ok(child) => break child,
                Err(log) if attempts < 5 && log.contains("Address already in use") => {}
                Err(log) => panic!("PostgreSQL did not start: {log}"),
            }
        };
        *server.postmaster.lock() = Some(child);
        server
    }

    fn initdb(&self) {
        let output = owned_command(&self.binaries.initdb, self.dir.path(), self.owner)
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            // The C locale exists everywhere, whatever LANG the test runs with.
            .args(["--locale=C", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Spawns the postmaster on `self.port` and waits until it accepts connections;
    /// on failure, what its log says.
    fn spawn_postmaster(&self) -> Result<Child, String> {
        let log_path = self.dir.path().join("postgres.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let log_before = log.metadata().unwrap().len() as usize;
        let mut command = owned_command(&self.binaries.postgres, self.dir.path(), self.owner);
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", &format!("max_connections={MAX_CONNECTIONS}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = spawn_from_lasting_thread(command).expect("postgres runs");
        let what_the_log_says = || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.get(log_before..).unwrap_or(&log).to_owned()
        };
        let mut exited = None;
        let ready = poll_until(PATIENCE, || {
            exited = child.try_wait().unwrap();
            exited.is_some() || self.is_ready(child.id())
        });
        if let Some(status) = exited {
            return Err(format!(
                "postgres exited ({status}): {}",
                what_the_log_says()
            ));
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "postgres was not ready after {PATIENCE:?}: {}",
                what_the_log_says()
            ));
        }
        Ok(child)
    }

    /// Whether the postmaster `pid` says it accepts connections: the status line of
    /// its `postmaster.pid` (the file pg_ctl reads), written by that very process.
    fn is_ready(&self, pid: u32) -> bool {
        let Ok(lock_file) = std::fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return false;
        };
        // Line 1 is the pid, line 8 the status.
        let lines: Vec<&str> = lock_file.lines().collect();
        lines.first() == Some(&pid.to_string().as_str())
            && lines.get(7).map(|status| status.trim()) == Some("ready")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The address of `database` on this server, for `--database-url`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a name no other test has, and returns its URL.
    pub fn create_database(&self) -> String {
        let number = self.databases_made.fetch_add(1, Ordering::Relaxed);
        let name = format!("icewall_test_{number}");
        let output = self
            .psql_command()
            .args(["-h", &self.dir.path().to_string_lossy()])
            .args(["-p", &self.port.to_string(), "-d", "postgres"])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "CREATE DATABASE {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.url(&name)
    }

    /// Runs `sql` with psql on the database at `url`; its rows, one a line, columns
    /// separated by `|`, or psql's error.
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, String> {
        let output = self
            .psql_command()
            .args(["-d", url, "-c", sql])
            .output()
            .expect("psql runs");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A psql session kept open on `url`, running what the test writes to its stdin
    /// (for a test that holds a lock while the nodes work). Ends when its stdin closes.
    pub fn psql_session(&self, url: &str) -> std::process::Child {
        self.psql_command()
            .args(["-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql runs")
    }

    fn psql_command(&self) -> Command {
        let mut command = Command::new(&self.binaries.psql);
        // No ~/.psqlrc, stop at the first error, bare rows.
        command
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"])
            .args(["-U", "postgres"])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        command
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): sessions are ended, a checkpoint is
    /// written. Nothing happens if the server is not running.
    pub fn stop(&self) {
        self.shut_down(libc::SIGINT);
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`): no checkpoint, so the next
    /// start recovers from the write-ahead log, as after a crash. Nothing happens if the
    /// server is not running.
    pub fn kill(&self) {
        self.shut_down(libc::SIGQUIT);
    }

    fn shut_down(&self, signal: libc::c_int) {
        let Some(mut child) = self.postmaster.lock().take() else {
            return;
        };
        // SAFETY: a plain system call on the pid of a child not yet waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        // No unwrap: this also runs in the atexit hook, where a panic aborts.
        if !poll_until(PATIENCE, || !matches!(child.try_wait(), Ok(None))) {
            eprintln!("postgres {} ignored signal {signal}: killed", child.id());
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Starts the server again after `stop` or `kill`, on the same data and port.
    ///
    /// # Panics
    /// When it is running, or does not start.
    pub fn start_again(&self) {
        let mut postmaster = self.postmaster.lock();
        assert!(postmaster.is_none(), "PostgreSQL is already running");
        match self.spawn_postmaster() {
            Ok(child) => *postmaster = Some(child),
            Err(log) => panic!("PostgreSQL did not start again: {log}"),
        }
    }

    /// The running postmaster's process id.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.lock().as_ref().map(Child::id)
    }

    /// The temporary directory the server's data, socket and log are in.
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    /// An immediate shutdown: the data is removed next, so a checkpoint would be wasted.
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server shared by every test of the binary, so that a test pays a
/// `CREATE DATABASE` (`create_database`) rather than an `initdb`. Never stop or restart
/// it: other tests are using it; a test that does wants a `PostgresServer::start` of its
/// own. `None` as for `PostgresServer::start`.
pub fn shared() -> Option<&'static PostgresServer> {
    SHARED
        .get_or_init(|| {
            let server = PostgresServer::start()?;
            // SAFETY: registers a function that takes no arguments and does not unwind.
            let registered = unsafe { libc::atexit(stop_shared) };
            assert_eq!(registered, 0, "atexit refused the shared server's clean-up");
            Some(server)
        })
        .as_ref()
}

static SHARED: OnceLock<Option<PostgresServer>> = OnceLock::new();

/// The shared server and a fresh database on it, as a test of cluster mode begins;
/// `None` as for `shared`, where the test is skipped.
pub fn database() -> Option<(&'static PostgresServer, String)> {
    let pg = shared()?;
    Some((pg, pg.create_database()))
}

/// Runs when the test binary exits: statics are never dropped.
extern "C" fn stop_shared() {
    if let Some(Some(server)) = SHARED.get() {
        server.kill();
        let _ = std::fs::remove_dir_all(server.directory());
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
