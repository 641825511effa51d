//! The disk yardstick of `bench/disk-floor.sh`: the file store's durable work per job
//! done by a bare loop, with no server, no HTTP and no simulation, so that what a file
//! system charges for it shows on its own.
//!
//! Each batch does what the file store does for a batch of jobs, with the same system
//! calls: the batch's journal lines written into a preallocated, zero-filled and synced
//! segment and made durable by one `fdatasync`; per job, a result of the same size
//! written under its name; one `syncfs`. With `unnamed`, what earlier versions of the
//! store did instead: each result written into an unnamed file (`O_TMPFILE`), and after
//! the `syncfs` linked into place through `/proc/self/fd`. Left out: the store's new
//! segment every second (made ahead, zero-filled and synced, on a thread of its own)
//! and the removal of the old one, two syncs a second: the floor is that much lower
//! than the store's.
//!
//! Usage: `disk_floor DIR [jobs (100000)] [batch (64)] [result bytes (1145)] [results per
//! sync (the batch)] [pipelined (0)] [unnamed]`: with `pipelined` 1 the results are
//! synced on a thread of their own, as the file store does, beside the journal's; `DIR`
//! must not exist. Prints `key value` lines: jobs per second, the CPU time per job of
//! this process and of the whole machine (`/proc/stat`: the file system's own threads,
//! the writeback and the loop device's included), and the median, 99th percentile and
//! longest of the journal's `fdatasync` and of the results' `syncfs` in milliseconds:
//! a durable accept waits for at least one journal sync, so its p99 bounds what a
//! POST's p99 can be on that disk.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

/// A journal line of the benchmark's job (`bench/post_job.lua`), 122 bytes.
const JOURNAL_LINE: &[u8] = br#"{"job_id":"01a23033-8ea5-77a0-8de1-f2a88c7051fa","request":{"profiles":[[21,25,28],[17],[17,22,17,19,17]],"num_teams":3}}
"#;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| io::Error::other("usage: disk_floor DIR [jobs] [batch] [result bytes]"))?;
    let mut number = |default: usize| -> io::Result<usize> {
        args.next().map_or(Ok(default), |arg| {
            arg.parse()
                .map_err(|_| io::Error::other(format!("not a number: {arg}")))
        })
    };
    let jobs = number(100_000)?;
    let batch = number(64)?.max(1);
    let result = vec![b'r'; number(1145)?];
    let per_sync = number(batch)?.max(1);
    let pipelined = number(0)? != 0;
    let unnamed = args.next().is_some_and(|placement| placement == "unnamed");
    let dir = Path::new(&dir);
    fs::create_dir(dir)?;

    let segment = File::create_new(dir.join("requests-floor.jsonl"))?;
    segment.write_all_at(&vec![0; jobs * JOURNAL_LINE.len()], 0)?;
    segment.sync_all()?;
    rustix::fs::syncfs(File::open(dir)?)?;

    let machine_before = machine_busy_ticks()?;
    let process_before = process_cpu_seconds();
    let started = Instant::now();
    let lines = JOURNAL_LINE.repeat(batch);
    let mut journal_syncs = Vec::with_capacity(jobs / batch + 1);
    let mut results = Results::new(dir, per_sync, pipelined, unnamed)?;
    for first in (0..jobs).step_by(batch) {
        let count = batch.min(jobs - first);
        segment.write_all_at(
            &lines[..count * JOURNAL_LINE.len()],
            (first * JOURNAL_LINE.len()) as u64,
        )?;
        let syncing = Instant::now();
        segment.sync_data()?;
        journal_syncs.push(syncing.elapsed());
        let mut written = Vec::with_capacity(count);
        for job in first..first + count {
            let file = if unnamed {
                let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
                File::from(rustix::fs::openat(
                    CWD,
                    dir,
                    flags,
                    Mode::from_raw_mode(0o644),
                )?)
            } else {
                File::create_new(dir.join(format!("{job:08}-floor.result")))?
            };
            io::Write::write_all(&mut &file, &result)?;
            written.push(file);
        }
        results.add(written)?;
    }
    let mut result_syncs = results.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let process_seconds = process_cpu_seconds() - process_before;
    let machine_seconds = (machine_busy_ticks()? - machine_before) as f64 / ticks_per_second();

    let per_job_us = |seconds: f64| seconds / jobs as f64 * 1e6;
    println!("jobs {jobs}");
    println!("batch {batch}");
    println!("results_per_sync {per_sync}");
    println!("pipelined {}", u8::from(pipelined));
    println!("unnamed {}", u8::from(unnamed));
    println!("jobs_per_second {:.0}", jobs as f64 / seconds);
    println!("process_cpu_us_per_job {:.1}", per_job_us(process_seconds));
    println!("machine_cpu_us_per_job {:.1}", per_job_us(machine_seconds));
    print_spread("journal_sync_ms", &mut journal_syncs);
    print_spread("results_sync_ms", &mut result_syncs);
    Ok(())
}

/// The results' side: files synced by one `syncfs` per `per_sync` of them (unnamed ones
/// then linked into place); on the journal's thread, or on a thread of its own as the file
/// store does (`pipelined`), where a `syncfs` runs while the next batches' journal
/// syncs wait for the disk beside it.
enum Results {
    Inline(ResultSyncs),
    Pipelined {
        batches: mpsc::SyncSender<Vec<File>>,
        thread: thread::JoinHandle<io::Result<Vec<Duration>>>,
    },
}

impl Results {
    fn new(dir: &Path, per_sync: usize, pipelined: bool, unnamed: bool) -> io::Result<Results> {
        let mut syncs = ResultSyncs {
            directory: File::open(dir)?,
            dir: dir.to_owned(),
            per_sync,
            unnamed,
            written: Vec::with_capacity(2 * per_sync),
            linked: 0,
            times: Vec::new(),
        };
        if !pipelined {
            return Ok(Results::Inline(syncs));
        }
        // Few batches ahead, as the store's own hand-over is bounded (and each file
        // is a descriptor until it is linked).
        let (batches, arriving) = mpsc::sync_channel::<Vec<File>>(16);
        let thread = thread::spawn(move || {
            for batch in arriving {
                syncs.add(batch)?;
            }
            syncs.finish()
        });
        Ok(Results::Pipelined { batches, thread })
    }

    fn add(&mut self, batch: Vec<File>) -> io::Result<()> {
        match self {
            Results::Inline(syncs) => syncs.add(batch),
            Results::Pipelined { batches, .. } => batches
                .send(batch)
                .map_err(|_| io::Error::other("the results thread ended")),
        }
    }

    /// The last results synced and linked, and the links made durable as the file
    /// store's release sync does; the times of every `syncfs`.
    fn finish(self) -> io::Result<Vec<Duration>> {
        match self {
            Results::Inline(syncs) => syncs.finish(),
            Results::Pipelined { batches, thread } => {
                drop(batches);
                thread
                    .join()
                    .map_err(|_| io::Error::other("the results thread panicked"))?
            }
        }
    }
}

struct ResultSyncs {
    directory: File,
    dir: std::path::PathBuf,
    per_sync: usize,
    /// The results are unnamed files, linked into place after their sync.
    unnamed: bool,
    written: Vec<File>,
    linked: usize,
    times: Vec<Duration>,
}

impl ResultSyncs {
    fn add(&mut self, batch: Vec<File>) -> io::Result<()> {
        self.written.extend(batch);
        if self.written.len() >= self.per_sync {
            self.sync_and_link()?;
        }
        Ok(())
    }

    fn sync_and_link(&mut self) -> io::Result<()> {
        let syncing = Instant::now();
        rustix::fs::syncfs(&self.directory)?;
        self.times.push(syncing.elapsed());
        if !self.unnamed {
            self.written.clear();
            return Ok(());
        }
        for file in self.written.drain(..) {
            let source = format!("/proc/self/fd/{}", file.as_raw_fd());
            let name = self.dir.join(format!("{:08}-floor.result", self.linked));
            rustix::fs::linkat(CWD, &*source, CWD, &name, AtFlags::SYMLINK_FOLLOW)?;
            self.linked += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<Duration>> {
        if !self.written.is_empty() {
            self.sync_and_link()?;
        }
        rustix::fs::syncfs(&self.directory)?;
        Ok(self.times)
    }
}

/// `<name>_p50`, `<name>_p99` and `<name>_max` of `times`, in milliseconds.
fn print_spread(name: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let at = |fraction: f64| {
        let index = ((times.len() as f64 * fraction).ceil() as usize).clamp(1, times.len());
        times[index - 1].as_secs_f64() * 1e3
    };
    if !times.is_empty() {
        println!("{name}_p50 {:.2}", at(0.50));
        println!("{name}_p99 {:.2}", at(0.99));
        println!("{name}_max {:.2}", at(1.0));
    }
}

/// Clock ticks every CPU spent working since boot: user, nice, system, irq and softirq
/// (not idle, I/O wait, or steal, the time the hypervisor gave other machines), as
/// `bench/load.sh` counts them.
fn machine_busy_ticks() -> io::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .ok_or_else(|| io::Error::other("/proc/stat has no cpu line"))?
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    Ok([0, 1, 2, 5, 6]
        .iter()
        .map(|&at| fields.get(at).copied().unwrap_or(0))
        .sum())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User and system time of this process so far.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
