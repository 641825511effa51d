//! `icewall_http_request_duration_seconds`, kept by each HTTP worker in counts only it
//! writes and summed when scraped: a request is timed with plain loads and stores,
//! where a shared histogram took four atomic read-modify-writes, each a full barrier.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::SECONDS_BUCKETS;

const NAME: &str = "icewall_http_request_duration_seconds";
const HELP: &str = "HTTP request latency";

/// The buckets' upper bounds in nanoseconds, in the order of `SECONDS_BUCKETS`.
fn bounds_nanos() -> Vec<u64> {
    SECONDS_BUCKETS
        .iter()
        .map(|seconds| (seconds * 1e9).round() as u64)
        .collect()
}

/// One worker's observations of one route and status: how many fell in each bucket
/// (not cumulative, the last past every bound) and the sum of their seconds, as a
/// prometheus histogram sums them (an `f64`'s bits: nanoseconds in a `u64` would wrap
/// after 584 years of requests, which long polls add up to sooner than one thinks).
///
/// Only the `RequestTimes` that made it writes it, and that is used by one thread
/// at a time (it is not `Sync`): an observation reads and writes each counter, with no
/// read-modify-write. Atomics all the same, so that a scrape on another thread reads
/// whole values.
struct Counts {
    buckets: Box<[AtomicU64]>,
    sum_seconds: AtomicU64,
}

impl Counts {
    fn new(buckets: usize) -> Counts {
        Counts {
            buckets: (0..=buckets).map(|_| AtomicU64::new(0)).collect(),
            sum_seconds: AtomicU64::new(0.0_f64.to_bits()),
        }
    }

    /// By the one thread that writes these counts only. The sum is stored last and
    /// read first (release, acquire), so that a scrape's buckets hold at least the
    /// observations its sum holds.
    fn add_alone(&self, bucket: usize, seconds: f64) {
        let count = &self.buckets[bucket];
        count.store(
            count.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        let sum = f64::from_bits(self.sum_seconds.load(Ordering::Relaxed)) + seconds;
        self.sum_seconds.store(sum.to_bits(), Ordering::Release);
    }

    /// What a scrape reads: each bucket's count, and the sum.
    fn read(&self) -> Observed {
        let sum = f64::from_bits(self.sum_seconds.load(Ordering::Acquire));
        let buckets = (self.buckets.iter())
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        (buckets, sum)
    }
}

/// The histogram of every worker's request times, which `/metrics` renders like any
/// other (it is registered as a collector).
#[derive(Clone)]
pub struct RequestDurations(Arc<Shared>);

struct Shared {
    desc: Desc,
    bounds_nanos: Vec<u64>,
    counts: Mutex<AllCounts>,
}

/// The label pairs of a histogram.
type Labels = (&'static str, StatusCode);

/// Observations read or added up: each bucket's count (not cumulative), and their sum
/// in seconds.
type Observed = (Vec<u64>, f64);

#[derive(Default)]
struct AllCounts {
    /// Every live worker's counts; a label pair has one entry per worker that met it.
    workers: Vec<(Labels, Arc<Counts>)>,
    /// The counts of workers gone (an HTTP worker restarted after a panic), added up
    /// by label pair, so that the list above does not grow with each restart.
    gone: BTreeMap<Labels, Observed>,
}

impl AllCounts {
    /// Moves the counts that no worker holds any more into `gone`.
    fn fold_gone(&mut self) {
        let gone = &mut self.gone;
        self.workers.retain(|(labels, counts)| {
            if Arc::strong_count(counts) > 1 {
                return true;
            }
            add_into(gone, *labels, counts.read());
            false
        });
    }
}

/// Adds `(buckets, sum)` to the totals of `labels`.
fn add_into(totals: &mut BTreeMap<Labels, Observed>, labels: Labels, (buckets, sum): Observed) {
    let (total_buckets, total_sum) = totals
        .entry(labels)
        .or_insert_with(|| (vec![0; buckets.len()], 0.0));
    for (total, count) in total_buckets.iter_mut().zip(buckets) {
        *total += count;
    }
    *total_sum += sum;
}

impl RequestDurations {
    pub fn new() -> RequestDurations {
        let desc = Desc::new(
            NAME.to_owned(),
            HELP.to_owned(),
            vec!["route".to_owned(), "status".to_owned()],
            Default::default(),
        )
        .expect("valid metric");
        RequestDurations(Arc::new(Shared {
            desc,
            bounds_nanos: bounds_nanos(),
            counts: Mutex::new(AllCounts::default()),
        }))
    }

    /// A worker's own way in.
    pub fn for_worker(&self) -> RequestTimes {
        self.0.counts.lock().fold_gone();
        RequestTimes {
            durations: self.clone(),
            own: RefCell::new(Vec::new()),
        }
    }
}

#[cfg(test)]
impl RequestDurations {
    /// Entries of live workers' counts.
    pub(super) fn live_entries(&self) -> usize {
        self.0.counts.lock().workers.len()
    }
}

impl Default for RequestDurations {
    fn default() -> Self {
        RequestDurations::new()
    }
}

/// One HTTP worker's request times: the counts of each route and status it has met,
/// which only it writes. Route and status pairs are bounded (routes are the endpoints'
/// patterns, statuses the few the server answers with), and so is this list.
pub struct RequestTimes {
    durations: RequestDurations,
    own: RefCell<Vec<(Labels, Arc<Counts>)>>,
}

impl RequestTimes {
    /// `route` is the matched pattern (bounded cardinality), not the raw path.
    pub fn observe(&self, route: &'static str, status: StatusCode, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let seconds = took.as_secs_f64();
        let bounds = &self.durations.0.bounds_nanos;
        // Prometheus's buckets are "less than or equal". Most requests fall in the first:
        // one comparison from the start, where a binary search took five.
        let bucket = (bounds.iter())
            .position(|&bound| nanos <= bound)
            .unwrap_or(bounds.len());
        let mut own = self.own.borrow_mut();
        // A route is an endpoint's pattern, the same `&'static str` each time: known by
        // its address, not its bytes. An equal one elsewhere gets counts of its own,
        // which the scrape adds to the others of its labels.
        let known = own.iter().position(|((own_route, own_status), _)| {
            *own_status == status && std::ptr::eq(*own_route, route)
        });
        let index = known.unwrap_or_else(|| {
            let (labels, counts) = ((route, status), Arc::new(Counts::new(bounds.len())));
            (self.durations.0.counts.lock().workers).push((labels, Arc::clone(&counts)));
            own.push((labels, counts));
            own.len() - 1
        });
        own[index].1.add_alone(bucket, seconds);
    }
}

impl Collector for RequestDurations {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let totals = {
            let all = self.0.counts.lock();
            let mut totals = all.gone.clone();
            for (labels, counts) in &all.workers {
                add_into(&mut totals, *labels, counts.read());
            }
            totals
        };
        let metrics = totals
            .into_iter()
            .map(|((route, status), (in_buckets, sum))| metric(route, status, &in_buckets, sum))
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(NAME.to_owned());
        family.set_help(HELP.to_owned());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

/// One route and status's histogram; its count is the sum of its buckets, so that the
/// two agree however the scrape fell among a worker's writes.
fn metric(route: &str, status: StatusCode, in_buckets: &[u64], sum: f64) -> proto::Metric {
    let label = |name: &str, value: &str| {
        let mut pair = proto::LabelPair::default();
        pair.set_name(name.to_owned());
        pair.set_value(value.to_owned());
        pair
    };
    let mut cumulative = 0;
    let buckets = (SECONDS_BUCKETS.iter().zip(in_buckets))
        .map(|(&upper_bound, &count)| {
            cumulative += count;
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(upper_bound);
            bucket.set_cumulative_count(cumulative);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(in_buckets.iter().sum());
    histogram.set_sample_sum(sum);
    histogram.set_bucket(buckets);
    let mut metric = proto::Metric::default();
    metric.set_label(vec![
        label("route", route),
        label("status", status.as_str()),
    ]);
    metric.set_histogram(histogram);
    metric
}
