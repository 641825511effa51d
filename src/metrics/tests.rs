//! Tests of the metrics: the exposition text and the throughput ring buffer.

use std::sync::Arc;

use actix_web::http::StatusCode;

use super::*;

#[test]
fn throughput_counts_each_minute_of_the_last_hour_and_forgets_older_ones() {
    let mut recent = RecentJobs::default();
    recent.finished(0, true, Duration::from_millis(1));
    recent.finished(0, false, Duration::from_millis(1));
    recent.finished(3, true, Duration::from_millis(1));
    let now = recent.read(Duration::from_secs(3 * 60)).throughput;
    assert_eq!(now.len(), THROUGHPUT_MINUTES);
    assert_eq!(now[THROUGHPUT_MINUTES - 4], Interval { done: 1, failed: 1 });
    assert_eq!(now[THROUGHPUT_MINUTES - 1], Interval { done: 1, failed: 0 });
    // An hour on, minute 60 reuses minute 0's slot: the old counts are gone.
    recent.finished(60, true, Duration::from_millis(1));
    let later = recent.read(Duration::from_secs(62 * 60)).throughput;
    assert_eq!(later.len(), THROUGHPUT_MINUTES);
    assert_eq!(
        later[THROUGHPUT_MINUTES - 3],
        Interval { done: 1, failed: 0 }
    );
    assert_eq!(later.iter().map(|i| i.done + i.failed).sum::<u64>(), 2);
}

#[test]
fn throughput_says_which_minutes_came_before_the_start_and_how_far_the_last_has_got() {
    let recent = RecentJobs::default();
    let just_started = recent.read(Duration::from_millis(12_345));
    assert_eq!(just_started.before_start, THROUGHPUT_MINUTES - 1);
    assert_eq!(just_started.current_minute_ms, 12_345);
    let later = recent.read(Duration::from_secs(3 * 60 + 5));
    assert_eq!(later.before_start, THROUGHPUT_MINUTES - 4);
    assert_eq!(later.current_minute_ms, 5_000);
    let an_hour_on = recent.read(Duration::from_secs(59 * 60));
    assert_eq!(an_hour_on.before_start, 0);
    assert_eq!(an_hour_on.current_minute_ms, 0);
    assert_eq!(recent.read(Duration::from_secs(600 * 60)).before_start, 0);
}

#[test]
fn percentiles_are_of_the_latest_samples() {
    let mut recent = RecentJobs::default();
    assert_eq!(recent.read(Duration::ZERO).queue_wait.p50_ms, None);
    for ms in 1..=100 {
        recent.waited(Duration::from_millis(ms));
    }
    let wait = recent.read(Duration::ZERO).queue_wait;
    assert_eq!(
        (wait.p50_ms, wait.p95_ms, wait.samples),
        (Some(50.0), Some(95.0), 100)
    );
    for _ in 0..LATEST_SAMPLES {
        recent.waited(Duration::from_millis(7));
    }
    assert_eq!(recent.read(Duration::ZERO).queue_wait.p95_ms, Some(7.0));
}

#[test]
fn every_job_and_rejection_series_starts_at_zero() {
    let text = Metrics::new().render(&Snapshot {
        queue_depth: 0,
        queue_bytes: 0,
        in_flight: 0,
        workers: 0,
        running_here: 0,
    });
    let reasons = Rejection::ALL.map(Rejection::label);
    assert_eq!(reasons.len(), 8);
    for (name, label, value) in JOB_OUTCOMES
        .iter()
        .map(|outcome| ("icewall_jobs_total", "outcome", *outcome))
        .chain(
            reasons
                .iter()
                .map(|reason| ("icewall_jobs_rejected_total", "reason", *reason)),
        )
    {
        let line = format!("{name}{{{label}=\"{value}\"}} 0");
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn counters_and_histograms_render_with_their_labels() {
    let metrics = Metrics::new();
    metrics.job_accepted(Duration::from_millis(2));
    metrics.job_started(Duration::from_millis(2));
    metrics.job_finished(true, Duration::from_millis(3));
    metrics.rejected(Rejection::QueueFull);
    metrics.request_times().observe(
        "/api/simulate",
        StatusCode::ACCEPTED,
        Duration::from_millis(1),
    );
    metrics.claimed(Duration::from_millis(1));
    metrics.set_node("0190a4c2-0000-7000-8000-000000000000");
    let text = metrics.render(&Snapshot {
        queue_depth: 4,
        queue_bytes: 1024,
        in_flight: 5,
        workers: 2,
        running_here: 1,
    });
    for line in [
        "icewall_jobs_total{outcome=\"accepted\"} 1",
        "icewall_jobs_total{outcome=\"done\"} 1",
        "icewall_jobs_rejected_total{reason=\"queue_full\"} 1",
        "icewall_queue_depth 4",
        "icewall_queue_bytes 1024",
        "icewall_jobs_in_flight 5",
        "icewall_workers 2",
        "icewall_node_running_jobs 1",
        "icewall_job_queue_wait_seconds_count 1",
        "icewall_claim_seconds_count 1",
        "icewall_node_info{node_id=\"0190a4c2-0000-7000-8000-000000000000\"} 1",
        "icewall_http_request_duration_seconds_count{route=\"/api/simulate\",status=\"202\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

/// The text exposition of `metrics` with no job queued or running.
fn rendered_idle(metrics: &Metrics) -> String {
    metrics.render(&Snapshot {
        queue_depth: 0,
        queue_bytes: 0,
        in_flight: 0,
        workers: 1,
        running_here: 0,
    })
}

/// The lines of one metric family in the text exposition.
fn family_lines(text: &str, name: &str) -> Vec<String> {
    (text.lines())
        .filter(|line| line.starts_with(name) || line.contains(&format!(" {name} ")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_workers_request_times_render_as_one_prometheus_histogram_would() {
    let metrics = Arc::new(Metrics::new());
    let expected = prometheus::HistogramVec::new(
        HistogramOpts::new(
            "icewall_http_request_duration_seconds",
            "HTTP request latency",
        )
        .buckets(SECONDS_BUCKETS.to_vec()),
        &["route", "status"],
    )
    .expect("valid metric");
    // On a bound, between bounds, past the last and zero; some by a second worker.
    let requests = [
        ("/profiles/overview", StatusCode::OK, 250_000),
        ("/profiles/overview", StatusCode::OK, 250_001),
        ("/profiles/overview", StatusCode::OK, 0),
        ("/api/simulate", StatusCode::ACCEPTED, 1_000_000),
        (
            "/api/simulate",
            StatusCode::SERVICE_UNAVAILABLE,
            31_000_000_000,
        ),
        ("unmatched", StatusCode::NOT_FOUND, 7_777),
    ];
    let first = metrics.request_times();
    for (route, status, nanos) in requests {
        first.observe(route, status, Duration::from_nanos(nanos));
        expected
            .with_label_values(&[route, status.as_str()])
            .observe(nanos as f64 / 1e9);
    }
    let second = metrics.request_times();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (route, status, nanos) in &requests[..4] {
                second.observe(route, *status, Duration::from_nanos(*nanos + 3));
            }
        });
    });
    // The same route at another address is counted under the same labels.
    let elsewhere: &'static str = String::from("/profiles/overview").leak();
    first.observe(elsewhere, StatusCode::OK, Duration::from_nanos(50));
    expected
        .with_label_values(&["/profiles/overview", "200"])
        .observe(50e-9);
    for (route, status, nanos) in &requests[..4] {
        expected
            .with_label_values(&[route, status.as_str()])
            .observe((*nanos + 3) as f64 / 1e9);
    }
    let text = rendered_idle(&metrics);
    let registry = Registry::new();
    registry.register(Box::new(expected)).expect("registered");
    let mut expected_text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut expected_text)
        .expect("encoded");
    let name = "icewall_http_request_duration_seconds";
    let ours = family_lines(&text, name);
    assert!(
        ours.iter()
            .any(|line| line.ends_with("route=\"/profiles/overview\",status=\"200\"} 7")),
        "{ours:#?}"
    );
    // Sums are added as integer nanoseconds here and as f64 seconds by prometheus:
    // the last digits of a sum may differ.
    let rounded = |lines: Vec<String>| -> Vec<String> {
        (lines.into_iter())
            .map(|line| match line.rsplit_once(' ') {
                Some((series, value)) if series.contains("_sum") => {
                    format!("{series} {:.9}", value.parse::<f64>().expect("a number"))
                }
                _ => line,
            })
            .collect()
    };
    assert_eq!(
        rounded(ours),
        rounded(family_lines(
            &String::from_utf8(expected_text).expect("UTF-8"),
            name
        ))
    );
}

#[test]
fn a_gone_workers_request_times_stay_counted_and_its_entries_are_folded() {
    let metrics = Metrics::new();
    let gone = metrics.request_times();
    gone.observe(
        "/profiles/overview",
        StatusCode::OK,
        Duration::from_millis(1),
    );
    drop(gone);
    let mut live = Vec::new();
    for _ in 0..3 {
        let next = metrics.request_times();
        next.observe(
            "/profiles/overview",
            StatusCode::OK,
            Duration::from_millis(2),
        );
        live.push(next);
    }
    assert_eq!(metrics.http.live_entries(), 3);
    drop(live);
    let _last = metrics.request_times();
    assert_eq!(
        metrics.http.live_entries(),
        0,
        "restarts do not grow the list"
    );
    let text = rendered_idle(&metrics);
    let series = "icewall_http_request_duration_seconds";
    let labels = "{route=\"/profiles/overview\",status=\"200\"}";
    for line in [
        format!("{series}_count{labels} 4"),
        format!("{series}_sum{labels} 0.007"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}
