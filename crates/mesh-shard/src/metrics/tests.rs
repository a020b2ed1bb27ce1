use std::time::{Duration, Instant};

use mesh_admin::Exposition;

use super::*;

fn exported(shards: &[Arc<ShardMetrics>], now: Instant) -> Exposition {
    let mut e = Exposition::new();
    for s in shards {
        s.export(&mut e, now).unwrap();
    }
    e
}

#[test]
fn calls_count_per_service_and_method_and_shards_add_up() {
    let shards = ShardMetrics::for_shards(2);
    let (a, b) = (Recorder::new(shards[0].clone()), Recorder::new(shards[1].clone()));
    let begun = Instant::now();
    a.call_ended(Some("g/S:1"), "get", begun, None);
    a.call_ended(Some("g/S:1"), "get", begun, Some(4));
    b.call_ended(Some("g/S:1"), "get", begun, None);
    b.call_ended(Some("g/S:1"), "put", begun, None);
    b.call_ended(None, "anything", begun, Some(1));
    let e = exported(&shards, Instant::now());
    let get = [("method", "get"), ("service", "g/S:1")];
    assert_eq!(e.value("mesh_requests_total", &get), Some(3.0));
    assert_eq!(
        e.value(
            "mesh_request_errors_total",
            &[get[0], get[1], ("reason", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value("mesh_requests_total", &[("method", "put"), ("service", "g/S:1")]),
        Some(1.0)
    );
    assert_eq!(
        e.value("mesh_requests_total", &[("method", OTHER), ("service", OTHER)]),
        Some(1.0)
    );
    let text = e.render();
    assert!(
        text.contains("mesh_request_duration_seconds_count{method=\"get\",service=\"g/S:1\"} 3\n"),
        "{text}"
    );
}

#[test]
fn label_values_beyond_the_cap_fold_into_other() {
    let shards = ShardMetrics::for_shards(1);
    let r = Recorder::new(shards[0].clone());
    let begun = Instant::now();
    for i in 0..MAX_CALL_SERIES + 10 {
        r.call_ended(Some("S"), &format!("m{i}"), begun, None);
    }
    for i in 0..MAX_PROVIDER_SERIES + 3 {
        let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 1));
        r.attempt(addr, report(AttemptResult::Success));
    }
    let e = exported(&shards, Instant::now());
    assert_eq!(
        e.value("mesh_requests_total", &[("method", OTHER), ("service", OTHER)]),
        Some(10.0)
    );
    let text = e.render();
    let series = text
        .lines()
        .filter(|l| l.starts_with("mesh_requests_total{"))
        .count();
    assert_eq!(series, MAX_CALL_SERIES + 1);
    let providers = text
        .lines()
        .filter(|l| l.starts_with("mesh_upstream_retries_total{"))
        .count();
    assert_eq!(providers, MAX_PROVIDER_SERIES + 1);
    assert_eq!(
        e.value(
            "mesh_upstream_attempts_total",
            &[("provider", OTHER), ("result", "success")]
        ),
        Some(3.0)
    );
}

use std::net::SocketAddr;

fn report(result: AttemptResult) -> AttemptReport {
    AttemptReport {
        result,
        ejected: false,
        ejected_until: None,
        retried: false,
        inflight: 0,
        learnt_limit: 0,
    }
}

#[test]
fn ejections_and_their_state() {
    let shards = ShardMetrics::for_shards(1);
    let r = Recorder::new(shards[0].clone());
    let addr: SocketAddr = "10.0.0.1:30000".parse().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    r.attempt(
        addr,
        AttemptReport {
            ejected: true,
            ejected_until: Some(until),
            retried: true,
            inflight: 3,
            learnt_limit: 40,
            ..report(AttemptResult::Failure)
        },
    );
    r.attempt(addr, report(AttemptResult::Overload));
    let p = [("provider", "10.0.0.1:30000")];
    let e = exported(&shards, Instant::now());
    assert_eq!(e.value("mesh_upstream_ejections_total", &p), Some(1.0));
    assert_eq!(e.value("mesh_upstream_retries_total", &p), Some(1.0));
    assert_eq!(
        e.value("mesh_rejections_total", &[("reason", "provider_full")]),
        Some(1.0)
    );
    // The last attempt's report holds: not ejected any more.
    assert_eq!(e.value("mesh_upstream_ejected_shards", &p), Some(0.0));
    r.attempt(
        addr,
        AttemptReport {
            ejected_until: Some(until),
            ..report(AttemptResult::Failure)
        },
    );
    let e = exported(&shards, Instant::now());
    assert_eq!(e.value("mesh_upstream_ejected_shards", &p), Some(1.0));
    // Once the deadline has passed, no longer ejected.
    let e = exported(&shards, until + Duration::from_millis(5));
    assert_eq!(e.value("mesh_upstream_ejected_shards", &p), Some(0.0));
}

#[test]
fn provider_agent_forwards_and_rejections() {
    let shards = ShardMetrics::for_shards(1);
    let r = Recorder::new(shards[0].clone());
    let begun = Instant::now();
    r.forward_ended(begun, Some(20));
    r.forward_ended(begun, Some(100));
    r.forward_ended(begun, None);
    r.rejected(Rejection::QueueFull);
    r.local_inflight(2);
    r.connections(5);
    let e = exported(&shards, Instant::now());
    assert_eq!(e.value("mesh_forwarded_requests_total", &[]), Some(3.0));
    assert_eq!(
        e.value(
            "mesh_forward_errors_total",
            &[("reason", "provider_threadpool_exhausted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value("mesh_forward_errors_total", &[("reason", "forward_failed")]),
        Some(1.0)
    );
    assert_eq!(
        e.value("mesh_rejections_total", &[("reason", "queue_full")]),
        Some(1.0)
    );
    assert_eq!(e.value("mesh_local_provider_inflight", &[]), Some(2.0));
    assert_eq!(e.value("mesh_connections_open", &[("shard", "0")]), Some(5.0));
}

#[test]
fn counters_written_by_a_shard_thread_are_read_by_another() {
    let shards = ShardMetrics::for_shards(1);
    let shared = shards[0].clone();
    std::thread::spawn(move || {
        let r = Recorder::new(shared);
        for _ in 0..1000 {
            r.call_ended(Some("S"), "m", Instant::now(), None);
        }
    })
    .join()
    .unwrap();
    let e = exported(&shards, Instant::now());
    assert_eq!(
        e.value("mesh_requests_total", &[("method", "m"), ("service", "S")]),
        Some(1000.0)
    );
}

#[test]
fn metrics_off_records_nothing_per_call() {
    let off = Recording {
        metrics: false,
        access_log_every: 0,
    };
    let shards = ShardMetrics::for_shards_recording(1, off);
    let r = Recorder::new(shards[0].clone());
    assert!(!r.is_on());
    let addr = SocketAddr::from(([10, 0, 0, 1], 1));
    r.call_ended(Some("S"), "m", Instant::now(), Some(4));
    r.attempt(addr, report(AttemptResult::Overload));
    r.rejected(Rejection::RateLimited);
    shards[0].rejected(Rejection::QueueFull);
    r.queue_depth(3);
    r.local_inflight(2);
    r.forward_ended(Instant::now(), None);
    let e = exported(&shards, Instant::now());
    assert_eq!(
        e.value("mesh_requests_total", &[("method", "m"), ("service", "S")]),
        None
    );
    assert_eq!(
        e.value("mesh_upstream_retries_total", &[("provider", "10.0.0.1:1")]),
        None
    );
    for reason in REJECTION_REASONS {
        assert_eq!(e.value("mesh_rejections_total", &[("reason", reason)]), Some(0.0));
    }
    assert_eq!(e.value("mesh_queue_depth", &[]), Some(0.0));
    assert_eq!(e.value("mesh_forwarded_requests_total", &[]), Some(0.0));
    // The same calls with metrics on (the default) are counted.
    let on = ShardMetrics::for_shards(1);
    assert_eq!(on[0].recording_of(), Recording::default());
    let r = Recorder::new(on[0].clone());
    r.call_ended(Some("S"), "m", Instant::now(), Some(4));
    let e = exported(&on, Instant::now());
    assert_eq!(
        e.value("mesh_requests_total", &[("method", "m"), ("service", "S")]),
        Some(1.0)
    );
}
