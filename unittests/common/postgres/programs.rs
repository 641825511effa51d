//! Finding the PostgreSQL package's programs and running them: as the `postgres` user
//! when the tests run as root, and tied to the test binary's life by a parent-death
//! signal.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;

/// The package's programs the harness runs.
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub psql: PathBuf,
}

/// The user the package's programs run as when the tests run as root (initdb and
/// postgres refuse root): the `postgres` user the package creates.
#[derive(Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Binaries {
    /// Debian's layout first (the highest version under /usr/lib/postgresql), then PATH.
    pub fn find() -> Option<Binaries> {
        let debian = debian_bin_dir();
        let find = |name: &str| {
            debian
                .as_ref()
                .map(|dir| dir.join(name))
                .filter(|path| path.is_file())
                .or_else(|| on_path(name))
        };
        Some(Binaries {
            initdb: find("initdb")?,
            postgres: find("postgres")?,
            psql: find("psql")?,
        })
    }
}

/// `/usr/lib/postgresql/<version>/bin` of the highest version that has an initdb.
fn debian_bin_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            // "15", or "9.6" before PostgreSQL 10.
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

impl Owner {
    /// `None` when the tests do not run as root: the programs then run as the tests do.
    pub fn for_current_user() -> Option<Owner> {
        // SAFETY: a plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let id = |flag: &str| {
            let output = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("id runs");
            assert!(
                output.status.success(),
                "the tests run as root, where initdb refuses to run, and there is no \
                 postgres user to run it as (apt-get install postgresql creates it): {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<u32>()
                .expect("id prints a number")
        };
        Some(Owner {
            uid: id("-u"),
            gid: id("-g"),
        })
    }
}

/// A command for one of the package's programs, run in `dir` as `owner`, and sent
/// SIGQUIT (postgres's immediate shutdown) when the thread that spawned it ends.
pub fn owned_command(program: &Path, dir: &Path, owner: Option<Owner>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).stdin(Stdio::null());
    if let Some(owner) = owner {
        command.uid(owner.uid).gid(owner.gid);
    }
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe system calls are made, and
    // nothing is allocated.
    unsafe {
        command.pre_exec(move || quit_with_parent(parent));
    }
    command
}

/// Runs in the forked child, after std has switched it to the server's owner (a change
/// of user clears the parent-death signal, so it is set after).
fn quit_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: plain system calls.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the prctl, and then no signal would come.
        if libc::getppid() as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from a thread that lasts as long as the test binary. The
/// parent-death signal follows the thread that forked, not the process: a postmaster
/// spawned from a test's own thread would be shut down when that test ends.
pub fn spawn_from_lasting_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("postgres-spawner".to_owned())
            .spawn(move || {
                for (mut command, answer) in incoming {
                    let _ = answer.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        requests
    });
    let (answer, child) = mpsc::channel();
    spawner
        .send((command, answer))
        .expect("the spawner thread lasts as long as the binary");
    child
        .recv()
        .expect("the spawner thread answers every request")
}
