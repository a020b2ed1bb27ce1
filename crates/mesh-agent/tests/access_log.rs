//! The consumer's access log end to end (`log.access_every`): a real etcd, a provider agent in front of the
//! provider simulator, and a one-shard consumer agent whose stderr (JSON log lines) goes to a file. The test
//! counts every call it makes and checks that exactly one in N left a `mesh_access` line, the first
//! included, with the facts of the call (service key, method, the provider agent that answered, outcome,
//! Dubbo status, size); a call to a service nobody provides is logged without a provider; an agent started
//! without the key writes no access line.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::{free_port, wait_for_port, ChildGuard};

mod common;
use common::*;

const WAIT: Duration = Duration::from_secs(20);
/// The access log's "one call in N".
const EVERY: u64 = 3;
/// A service no provider offers.
const NOBODY: &str = "com.example.Nobody";

/// A one-shard consumer agent on `port` writing its log lines (JSON) to `log`.
fn consumer_logging_to(port: u16, log: &Path, extra: &[&str]) -> ChildGuard {
    let listen = addr(port).to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-agent"));
    cmd.args(["consumer", "--listen", &listen, "--cores", "0", "--shards", "1"])
        .args(["--log-format", "json"])
        .args(extra)
        .env("MESH_LOG", "info")
        .stderr(File::create(log).unwrap());
    let g = ChildGuard::spawn(&mut cmd)
        .unwrap()
        .with_grace(Duration::from_secs(8));
    wait_for_port(addr(port), Duration::from_secs(10)).unwrap();
    g
}

/// The `fields` of every `mesh_access` line in `log`.
fn access_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "mesh_access")
        .map(|v| v["fields"].clone())
        .collect()
}

#[test]
fn one_call_in_n_is_logged_with_its_provider_and_outcome_and_none_when_off() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let provider_port = free_port().unwrap();
    let _provider = provider_agent(provider_port, sim_port, &["--etcd", etcd.client_url()]);

    let log = dir.path().join("consumer.log");
    let port = free_port().unwrap();
    let every = EVERY.to_string();
    let mut consumer = consumer_logging_to(
        port,
        &log,
        &["--etcd", etcd.client_url(), "--access-log-every", &every],
    );
    // Every call the test makes is a valid form, so each one is a call the shard counts (the probes
    // before the provider is known included).
    let mut calls = 0u64;
    wait_until("a first answer", WAIT, || {
        calls += 1;
        call(port, IFACE, "probe").0 == 200
    });
    for i in 0..20 {
        calls += 1;
        let (status, body) = call(port, IFACE, &format!("a{i}"));
        assert_eq!(status, 200, "call {i}: {body}");
    }
    // Lined up so that the unknown service's call is sampled: the shard's call number `calls` is.
    while !calls.is_multiple_of(EVERY) {
        calls += 1;
        assert_eq!(call(port, IFACE, "pad").0, 200);
    }
    calls += 1;
    let (status, body) = call(port, NOBODY, "x");
    assert!(status == 404 || status == 503, "{status} {body}");
    assert!(body.contains(NOBODY), "the reason names the service: {body}");
    consumer.terminate().unwrap();

    let lines = access_lines(&log);
    assert_eq!(
        lines.len() as u64,
        calls.div_ceil(EVERY),
        "one line per {EVERY} of {calls} calls, the first included: {lines:?}"
    );
    let provider = addr(provider_port).to_string();
    let answered: Vec<&serde_json::Value> = lines.iter().filter(|f| f["outcome"] == "ok").collect();
    assert!(
        answered.len() as u64 >= 20 / EVERY,
        "the answered calls' lines: {lines:?}"
    );
    for f in &answered {
        assert_eq!(f["message"], "call", "{f}");
        assert!(f["service"].as_str().unwrap().contains(IFACE), "{f}");
        assert_eq!(f["method"], "hash", "{f}");
        assert_eq!(f["provider"], provider.as_str(), "{f}");
        assert_eq!(f["status"], 20, "Dubbo's OK: {f}");
        assert!(f["request_bytes"].as_u64().unwrap() > 0, "{f}");
        assert!(f["duration_us"].as_u64().is_some(), "{f}");
        assert_eq!(f["retries"], 0, "{f}");
    }
    let last = lines.last().unwrap();
    assert!(last["service"].as_str().unwrap().contains(NOBODY), "{last}");
    assert_ne!(last["outcome"], "ok", "{last}");
    assert!(
        last.get("provider").is_none_or(|p| p.is_null()),
        "no attempt, no provider: {last}"
    );

    // Off by default: the same calls leave no access line.
    let quiet_log = dir.path().join("quiet.log");
    let quiet_port = free_port().unwrap();
    let mut quiet = consumer_logging_to(quiet_port, &quiet_log, &["--etcd", etcd.client_url()]);
    wait_until("a first answer without the access log", WAIT, || {
        call(quiet_port, IFACE, "probe").0 == 200
    });
    for i in 0..5 {
        assert_eq!(call(quiet_port, IFACE, &format!("q{i}")).0, 200);
    }
    quiet.terminate().unwrap();
    assert!(
        std::fs::metadata(&quiet_log).unwrap().len() > 0,
        "the agent logged its start"
    );
    assert_eq!(access_lines(&quiet_log), Vec::<serde_json::Value>::new());
}
