//! Tests of the metrics: the exposition text and the throughput ring buffer.

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
    metrics.http_request(
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

#[test]
fn a_workers_request_times_reach_the_shared_histograms_kept_or_not() {
    let metrics = Arc::new(Metrics::new());
    let times = RequestTimes::new(Arc::clone(&metrics));
    // More label pairs than a worker keeps handles for: the last are looked up each time.
    let routes: Vec<&'static str> = (0..KEPT_REQUEST_HISTOGRAMS + 2)
        .map(|n| &*format!("/route/{n}").leak())
        .collect();
    for _ in 0..3 {
        for route in &routes {
            times.observe(route, StatusCode::OK, Duration::from_millis(1));
        }
        times.observe(
            "/api/simulate",
            StatusCode::ACCEPTED,
            Duration::from_millis(2),
        );
    }
    metrics.http_request(
        "/api/simulate",
        StatusCode::ACCEPTED,
        Duration::from_millis(1),
    );
    let text = metrics.render(&Snapshot {
        queue_depth: 0,
        queue_bytes: 0,
        in_flight: 0,
        workers: 1,
        running_here: 0,
    });
    let count = |route: &str, status: &str| {
        let prefix = format!(
            "icewall_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    assert_eq!(count("/route/0", "200"), "3");
    assert_eq!(count(routes.last().unwrap(), "200"), "3");
    assert_eq!(count("/api/simulate", "202"), "4");
    assert_eq!(times.kept.borrow().len(), KEPT_REQUEST_HISTOGRAMS);
}
