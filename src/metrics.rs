//! The one place metrics live: Prometheus counters, gauges and histograms of jobs, HTTP
//! requests and the process, rendered in the text exposition format for `/metrics`;
//! and the recent past the page's overview shows (`/api/stats`): jobs finished per
//! minute over the last hour, and the latest waits and run times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for job waits and runs, and HTTP latency: 100 us to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The `prometheus` crate's process metrics, but CPU time to the nanosecond: the crate
/// counts it in whole seconds, so a server that had used 0.9 s of CPU said 0, and a
/// `rate()` over it moved in steps of a whole second.
struct ProcessMetrics {
    others: prometheus::process_collector::ProcessCollector,
    cpu: prometheus::Counter,
}

const PROCESS_CPU: &str = "process_cpu_seconds_total";

impl ProcessMetrics {
    fn new() -> ProcessMetrics {
        ProcessMetrics {
            others: prometheus::process_collector::ProcessCollector::for_self(),
            cpu: Self::cpu_counter(),
        }
    }

    fn cpu_counter() -> prometheus::Counter {
        prometheus::Counter::with_opts(Opts::new(
            PROCESS_CPU,
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("valid metric")
    }
}

impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs: Vec<_> = (self.others.desc().into_iter())
            .filter(|desc| desc.fq_name != PROCESS_CPU)
            .collect();
        descs.extend(self.cpu.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families: Vec<_> = (self.others.collect().into_iter())
            .filter(|family| family.name() != PROCESS_CPU)
            .collect();
        if let Ok(spent) = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime)
            .try_into()
            .map(|spent: Duration| spent.as_secs_f64())
        {
            // A counter made anew at each scrape: two scrapes at once cannot add twice.
            let cpu = Self::cpu_counter();
            cpu.inc_by(spent);
            families.extend(cpu.collect());
        }
        families
    }
}

pub struct Metrics {
    registry: Registry,
    jobs: IntCounterVec,
    rejected: IntCounterVec,
    accept_time: Histogram,
    queue_wait: Histogram,
    run_time: HistogramVec,
    http: RequestDurations,
    store_errors: IntCounter,
    store_retries: IntCounter,
    queue_depth: IntGauge,
    queue_bytes: IntGauge,
    in_flight: IntGauge,
    workers: IntGauge,
    running_here: IntGauge,
    claim_time: Histogram,
    heartbeat_time: Histogram,
    node: IntGaugeVec,
    recent: Mutex<RecentJobs>,
    /// The clock of `recent`'s minutes.
    started: Instant,
}

/// The `outcome` labels of `icewall_jobs_total`.
const JOB_OUTCOMES: [&str; 4] = ["accepted", "done", "failed", "cancelled"];

/// Why a submission was refused, as a metric label.
#[derive(Clone, Copy, Debug)]
pub enum Rejection {
    Invalid,
    TooLarge,
    UnsupportedMediaType,
    Timeout,
    QueueFull,
    ShuttingDown,
    Storage,
    Idempotency,
}

impl Rejection {
    /// Every reason, so each series is exported (at 0) from start-up.
    const ALL: [Rejection; 8] = [
        Rejection::Invalid,
        Rejection::TooLarge,
        Rejection::UnsupportedMediaType,
        Rejection::Timeout,
        Rejection::QueueFull,
        Rejection::ShuttingDown,
        Rejection::Storage,
        Rejection::Idempotency,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::TooLarge => "too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::Timeout => "timeout",
            Rejection::QueueFull => "queue_full",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::Storage => "storage",
            Rejection::Idempotency => "idempotency",
        }
    }
}

/// Live values read at scrape time.
pub struct Snapshot {
    pub queue_depth: usize,
    /// Bytes the queued jobs hold, as counted against `--max-queue-bytes`.
    pub queue_bytes: usize,
    pub in_flight: usize,
    pub workers: usize,
    /// Jobs this node runs (cluster mode: claimed and not yet committed).
    pub running_here: usize,
}

impl Metrics {
    /// # Panics
    /// Only if the metric definitions here are inconsistent (a bug caught by any test).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let seconds = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(SECONDS_BUCKETS.to_vec())
        };
        let metrics = Metrics {
            jobs: IntCounterVec::new(
                Opts::new(
                    "icewall_jobs_total",
                    "Jobs by outcome: accepted, done, failed, cancelled",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            rejected: IntCounterVec::new(
                Opts::new(
                    "icewall_jobs_rejected_total",
                    "Submissions refused, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            accept_time: Histogram::with_opts(seconds(
                "icewall_accept_seconds",
                "Time a submission waits for its request to be durable: the journal's \
                 fdatasync on the file store, the database's commit in cluster mode",
            ))
            .expect("valid metric"),
            queue_wait: Histogram::with_opts(seconds(
                "icewall_job_queue_wait_seconds",
                "Time from acceptance to the start of a run",
            ))
            .expect("valid metric"),
            run_time: HistogramVec::new(
                seconds(
                    "icewall_job_run_seconds",
                    "Time from the start of a run to its stored result",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            http: RequestDurations::new(),
            store_errors: IntCounter::new(
                "icewall_store_errors_total",
                "Results that could not be stored",
            )
            .expect("valid metric"),
            store_retries: IntCounter::new(
                "icewall_store_retries_total",
                "Cluster mode: stores of results the database did not take, tried again",
            )
            .expect("valid metric"),
            queue_depth: IntGauge::new("icewall_queue_depth", "Jobs waiting for a worker")
                .expect("valid metric"),
            queue_bytes: IntGauge::new(
                "icewall_queue_bytes",
                "Bytes held by jobs waiting for a worker (see --max-queue-bytes)",
            )
            .expect("valid metric"),
            in_flight: IntGauge::new("icewall_jobs_in_flight", "Jobs queued or running")
                .expect("valid metric"),
            workers: IntGauge::new("icewall_workers", "Live worker threads").expect("valid metric"),
            running_here: IntGauge::new(
                "icewall_node_running_jobs",
                "Jobs this node runs (in cluster mode: claimed, result not yet committed)",
            )
            .expect("valid metric"),
            claim_time: Histogram::with_opts(seconds(
                "icewall_claim_seconds",
                "Cluster mode: time of one claim of queued jobs from the database",
            ))
            .expect("valid metric"),
            heartbeat_time: Histogram::with_opts(seconds(
                "icewall_heartbeat_seconds",
                "Cluster mode: time of one heartbeat extending this node's leases",
            ))
            .expect("valid metric"),
            node: IntGaugeVec::new(
                Opts::new(
                    "icewall_node_info",
                    "Cluster mode: this node's id (value 1)",
                ),
                &["node_id"],
            )
            .expect("valid metric"),
            recent: Mutex::new(RecentJobs::default()),
            started: Instant::now(),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(metrics.jobs.clone()),
            Box::new(metrics.rejected.clone()),
            Box::new(metrics.accept_time.clone()),
            Box::new(metrics.queue_wait.clone()),
            Box::new(metrics.run_time.clone()),
            Box::new(metrics.http.clone()),
            Box::new(metrics.store_errors.clone()),
            Box::new(metrics.store_retries.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.queue_bytes.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.workers.clone()),
            Box::new(metrics.running_here.clone()),
            Box::new(metrics.claim_time.clone()),
            Box::new(metrics.heartbeat_time.clone()),
            Box::new(metrics.node.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        // Rates and alerts need a series before its first event: start each at 0.
        for outcome in JOB_OUTCOMES {
            metrics.jobs.with_label_values(&[outcome]);
        }
        for why in Rejection::ALL {
            metrics.rejected.with_label_values(&[why.label()]);
        }
        // RSS, open fds, CPU time where the platform has them (Linux).
        let _ = metrics.registry.register(Box::new(ProcessMetrics::new()));
        metrics
    }

    /// A new job accepted, its request durable `took` after the submission reached
    /// the job service.
    pub fn job_accepted(&self, took: Duration) {
        self.jobs.with_label_values(&["accepted"]).inc();
        self.accept_time.observe(took.as_secs_f64());
    }

    pub fn job_started(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
        self.recent.lock().waited(waited);
    }

    pub fn job_finished(&self, done: bool, ran: Duration) {
        self.recent.lock().finished(self.minute(), done, ran);
        let outcome = if done { "done" } else { "failed" };
        self.jobs.with_label_values(&[outcome]).inc();
        self.run_time
            .with_label_values(&[outcome])
            .observe(ran.as_secs_f64());
    }

    /// Names this node (cluster mode).
    pub fn set_node(&self, node: &str) {
        self.node.with_label_values(&[node]).set(1);
    }

    pub fn claimed(&self, took: Duration) {
        self.claim_time.observe(took.as_secs_f64());
    }

    pub fn heartbeat(&self, took: Duration) {
        self.heartbeat_time.observe(took.as_secs_f64());
    }

    pub fn job_cancelled(&self) {
        self.jobs.with_label_values(&["cancelled"]).inc();
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn store_retried(&self) {
        self.store_retries.inc();
    }

    pub fn rejected(&self, why: Rejection) {
        self.rejected.with_label_values(&[why.label()]).inc();
    }

    /// An HTTP worker's way into `icewall_http_request_duration_seconds`.
    pub fn request_times(&self) -> RequestTimes {
        self.http.for_worker()
    }

    /// Minutes since the metrics were made: the clock of the throughput intervals.
    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// Jobs finished per minute over the last hour, and the spread of recent waits and
    /// run times.
    pub fn recent(&self) -> Recent {
        self.recent.lock().read(self.started.elapsed())
    }

    /// The text exposition of every metric, after reading the live values.
    pub fn render(&self, now: &Snapshot) -> String {
        self.queue_depth.set(now.queue_depth as i64);
        self.queue_bytes.set(now.queue_bytes as i64);
        self.in_flight.set(now.in_flight as i64);
        self.workers.set(now.workers as i64);
        self.running_here.set(now.running_here as i64);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encoding to memory cannot fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Minutes of throughput kept: the last hour.
const THROUGHPUT_MINUTES: usize = 60;
/// Waits and run times kept for the percentiles: the latest jobs'.
const LATEST_SAMPLES: usize = 1000;

/// Jobs done and failed in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Interval {
    pub done: u64,
    pub failed: u64,
}

/// The 50th and 95th percentiles of the latest samples, in milliseconds; `null` before
/// the first.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Spread {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub samples: usize,
}

/// What `RecentJobs` tells.
#[derive(Clone, Debug, PartialEq)]
pub struct Recent {
    /// Oldest first; the last is the minute under way. The minutes are counted from the
    /// server's start, not the clock's.
    pub throughput: Vec<Interval>,
    /// How much of the minute under way has passed.
    pub current_minute_ms: u64,
    /// The first minutes of `throughput` that came before the server's start: zeros
    /// that counted nothing.
    pub before_start: usize,
    pub queue_wait: Spread,
    pub run_time: Spread,
}

/// A ring of per-minute counts (slot `minute % 60`, stamped with its minute so that a
/// stale slot reads as zero) and the latest waits and run times: fixed memory.
struct RecentJobs {
    slots: [(u64, Interval); THROUGHPUT_MINUTES],
    waits: VecDeque<f64>,
    runs: VecDeque<f64>,
}

fn keep_latest(samples: &mut VecDeque<f64>, sample: Duration) {
    if samples.len() == LATEST_SAMPLES {
        samples.pop_front();
    }
    // Microseconds are the finest grain worth showing.
    samples.push_back((sample.as_secs_f64() * 1e6).round() / 1000.0);
}

fn spread(samples: &VecDeque<f64>) -> Spread {
    let mut sorted: Vec<f64> = samples.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest sample with at least p% of them at or below it.
    let rank = |p: f64| {
        let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    Spread {
        p50_ms: (!sorted.is_empty()).then(|| rank(0.50)),
        p95_ms: (!sorted.is_empty()).then(|| rank(0.95)),
        samples: sorted.len(),
    }
}

impl Default for RecentJobs {
    fn default() -> Self {
        RecentJobs {
            slots: [(0, Interval::default()); THROUGHPUT_MINUTES],
            waits: VecDeque::with_capacity(LATEST_SAMPLES),
            runs: VecDeque::with_capacity(LATEST_SAMPLES),
        }
    }
}

impl RecentJobs {
    fn waited(&mut self, waited: Duration) {
        keep_latest(&mut self.waits, waited);
    }

    fn finished(&mut self, minute: u64, done: bool, ran: Duration) {
        let (stamp, counts) = &mut self.slots[minute as usize % THROUGHPUT_MINUTES];
        if *stamp != minute {
            (*stamp, *counts) = (minute, Interval::default());
        }
        match done {
            true => counts.done += 1,
            false => counts.failed += 1,
        }
        keep_latest(&mut self.runs, ran);
    }

    /// What the ring holds `up` after the server's start.
    fn read(&self, up: Duration) -> Recent {
        let now = up.as_secs() / 60;
        // Always a whole hour: minutes before the server started read as zero.
        let throughput = (0..THROUGHPUT_MINUTES as u64)
            .rev()
            .map(|ago| match now.checked_sub(ago) {
                Some(minute) => {
                    let (stamp, counts) = self.slots[minute as usize % THROUGHPUT_MINUTES];
                    if stamp == minute {
                        counts
                    } else {
                        Interval::default()
                    }
                }
                None => Interval::default(),
            })
            .collect();
        Recent {
            throughput,
            current_minute_ms: (up.as_millis() % 60_000) as u64,
            before_start: (THROUGHPUT_MINUTES as u64 - 1).saturating_sub(now) as usize,
            queue_wait: spread(&self.waits),
            run_time: spread(&self.runs),
        }
    }
}

mod request_durations;

use request_durations::RequestDurations;
pub use request_durations::RequestTimes;

#[cfg(test)]
mod tests;
