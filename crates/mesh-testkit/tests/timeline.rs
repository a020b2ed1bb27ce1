//! loadgen's timeline (`timeline_ms`): a simulator stopped and restarted on the same port mid-run shows up
//! as failures in the windows of the outage and as a gap without successes; the summary and the binary's
//! JSON carry the timeline fields. Bounded in time; nothing about speed is asserted.

use std::process::Command;
use std::time::{Duration, Instant};

use mesh_testkit::loadgen::{self, LoadConfig, Summary};
use mesh_testkit::process::ChildGuard;
use mesh_testkit::sim::{self, SimConfig};

fn sim_cfg() -> SimConfig {
    SimConfig {
        name: "tl".into(),
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    }
}

/// The timeline accounts for every counted call exactly once.
fn check_sums(s: &Summary) {
    let r = s.timeline.as_ref().expect("timeline");
    let t = &r.timeline;
    assert_eq!(t.ok.len(), t.failed.len());
    assert_eq!(t.ok.len(), t.failed_kinds.len());
    assert_eq!(t.ok.iter().sum::<u64>(), s.ok, "{s:?}");
    assert_eq!(t.failed.iter().sum::<u64>(), s.error_count(), "{s:?}");
    for (i, kinds) in t.failed_kinds.iter().enumerate() {
        assert_eq!(kinds.values().sum::<u64>(), t.failed[i]);
    }
    for (kind, n) in &s.errors {
        let in_windows: u64 = t.failed_kinds.iter().filter_map(|k| k.get(kind)).sum();
        assert_eq!(in_windows, *n, "{kind}");
    }
    assert!(t.ok.len() as f64 * t.window_ms as f64 >= s.duration_s * 1000.0 - t.window_ms as f64);
    assert!(r.longest_gap_ms >= 0.0 && r.longest_gap_ms <= s.duration_s * 1000.0 + 1.0);
    assert!(t
        .gaps
        .iter()
        .all(|g| g[1] >= t.gap_min_ms && g[1] <= r.longest_gap_ms));
}

#[test]
fn outage_shows_as_failures_and_a_gap() {
    let first = sim::spawn_on(sim_cfg(), 0, 1).expect("sim");
    let port = first.port();
    let mut cfg = LoadConfig::new(format!("dubbo://127.0.0.1:{port}").parse().expect("target"));
    cfg.connections = 4;
    cfg.concurrency = 16;
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(2500);
    cfg.timeout = Duration::from_millis(1000);
    cfg.seed = Some(7);
    cfg.timeline_ms = 100;
    // Down from ~500 ms to ~900 ms after the start.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        first.stop();
        std::thread::sleep(Duration::from_millis(400));
        sim::spawn_on(sim_cfg(), port, 1).expect("restart the sim on the same port")
    });
    let t0 = Instant::now();
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    let second = restarter.join().expect("restarter");
    second.stop();

    check_sums(&s);
    let r = s.timeline.as_ref().expect("timeline");
    let t = &r.timeline;
    assert!(s.error_count() > 0, "the outage failed calls: {s:?}");
    let first_fail = r.first_failure_ms.expect("a failure");
    let last_fail = r.last_failure_ms.expect("a failure");
    assert!(first_fail >= 300.0 && first_fail <= last_fail, "{r:?}");
    // Successes before the outage, and after it once the connections were re-opened.
    assert!(t.ok[..4].iter().sum::<u64>() > 0, "{t:?}");
    let after = (last_fail / t.window_ms as f64) as usize + 1;
    assert!(
        t.ok[after..].iter().sum::<u64>() > 0,
        "no success after the last failure: {t:?}"
    );
    // No success while the simulator was down (~400 ms): the longest gap covers it, and it is listed.
    assert!(r.longest_gap_ms >= 300.0, "{r:?}");
    assert!(
        t.gaps
            .iter()
            .any(|g| g[1] == r.longest_gap_ms && g[0] >= 300.0 && g[0] <= first_fail),
        "{r:?}"
    );
}

#[test]
fn no_timeline_by_default_and_in_the_binary_json_with_the_flag() {
    let sim = sim::spawn(sim_cfg()).expect("sim");
    let mut cfg = LoadConfig::new(
        format!("dubbo://127.0.0.1:{}", sim.port())
            .parse()
            .expect("target"),
    );
    cfg.connections = 2;
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(300);
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert!(s.timeline.is_none());
    sim.stop();

    let mut sim = ChildGuard::spawn(Command::new(env!("CARGO_BIN_EXE_provider-sim")).args([
        "--latency-ms",
        "2",
        "--workers",
        "1",
        "--name",
        "tl",
    ]))
    .expect("spawn provider-sim");
    let port = sim.listening_port(Duration::from_secs(10)).expect("LISTENING");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--target",
            &format!("dubbo://127.0.0.1:{port}"),
            "--connections",
            "2",
            "--duration",
            "700ms",
            "--warmup",
            "100ms",
            "--workers",
            "1",
            "--timeline-ms",
            "50",
        ])
        .output()
        .expect("run loadgen");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(v["timeline"]["window_ms"], 50);
    for key in ["ok", "failed", "failed_kinds", "gaps"] {
        assert!(v["timeline"][key].is_array(), "timeline.{key} in {v}");
    }
    assert!(v["longest_gap_ms"].is_number(), "{v}");
    assert!(
        v["first_failure_ms"].is_null() && v["last_failure_ms"].is_null(),
        "{v}"
    );
    let s: Summary = serde_json::from_str(stdout.trim()).expect("Summary");
    assert_eq!(s.error_count(), 0, "{s:?}");
    check_sums(&s);
    let done = sim.terminate().expect("terminate");
    assert!(done.status.success());
}
