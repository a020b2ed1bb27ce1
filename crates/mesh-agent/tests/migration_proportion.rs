//! Dubbo 3 migration rule `proportion` end to end: provider agent A in `all` mode (an instance and a URL
//! key) and provider agent B with a URL key only (interface-level, a Dubbo 2.7 style provider); a consumer
//! agent (`consumer.application = web`, Dubbo's default APPLICATION_FIRST, round robin) prefers the
//! application-level list {A}. The rule `/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration`
//! with `proportion: 30` sends 30% of the calls to {A} and 70% to the interface-level list {A, B} (so B
//! takes about 35%); `proportion: 100` and the rule deleted send every call to {A} again. Calls are
//! counted per provider from the consumer's `mesh_upstream_attempts_total`, under a steady load that must
//! see no failed call through the switches. Real etcd, the agent binary, the provider simulator; every
//! wait bounded.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::loadgen::run_blocking;
use mesh_testkit::process::free_port;

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const RULE_KEY: &str = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration";

/// Attempts per provider port so far (every result), from the consumer's `/metrics`.
fn attempts(admin: u16) -> HashMap<u16, u64> {
    let (status, metrics) = admin_get(admin, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    let mut out = HashMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("mesh_upstream_attempts_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let provider = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("provider=\""))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_default();
        let Some(port) = provider.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) else {
            continue;
        };
        *out.entry(port).or_insert(0) += value.parse::<f64>().unwrap() as u64;
    }
    out
}

/// The attempts per provider port during `window`.
fn counted(admin: u16, window: Duration) -> HashMap<u16, u64> {
    let before = attempts(admin);
    std::thread::sleep(window);
    let mut after = attempts(admin);
    for (port, n) in &mut after {
        *n -= before.get(port).copied().unwrap_or(0);
    }
    after
}

/// `/registry`'s `snapshot.migration` object.
fn migration_json(admin: u16) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/registry");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["snapshot"]["migration"].clone()
}

/// The proportion `/registry` shows for the one service key (`None`: its calls are not split).
fn proportion(admin: u16) -> Option<u64> {
    let m = migration_json(admin);
    let (_, state) = m.as_object()?.iter().find(|(k, _)| k.contains(IFACE))?;
    state["proportion"].as_u64()
}

#[test]
fn a_proportion_splits_calls_between_application_and_interface_level_without_failed_calls() {
    let etcd = EtcdServer::start().unwrap();
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_agent_a, _sim_a, port_a) = provider_in_mode(&etcd, &dir_a, "orders", "all", 1);
    let (_agent_b, _sim_b, port_b) = provider_in_mode(&etcd, &dir_b, "legacy", "interface", 1);
    wait_until("A's instance, both URL keys, A's mapping", WAIT, || {
        etcd_keys(&etcd, &format!("/services/orders/127.0.0.1:{port_a}")).len() == 1
            && etcd_keys(&etcd, &format!("/dubbo/{IFACE}/providers/")).len() == 2
            && !etcd_keys(&etcd, &format!("/dubbo/mapping/{IFACE}")).is_empty()
    });
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let cfg = config_file(
        &dir_c,
        &format!(
            "[consumer]\napplication = \"web\"\nbalancer = \"round_robin\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [etcd]\nendpoints = [\"{}\"]\n",
            etcd.client_url()
        ),
    );
    let _consumer = consumer_agent(port, &["--config", &cfg]);
    wait_until("APPLICATION_FIRST on application-level addresses", WAIT, || {
        let m = migration_json(admin);
        m.as_object()
            .is_some_and(|o| o.values().any(|s| s["model"] == "application"))
            && call(port, IFACE, "x").0 == 200
    });

    // A steady load through every switch below: no call may fail.
    let load = std::thread::spawn(move || run_blocking(http_load(port, 8, 16), 1).unwrap());
    std::thread::sleep(Duration::from_millis(800));
    let window = Duration::from_millis(1500);
    let settle = Duration::from_millis(300);

    let c = counted(admin, window);
    assert!(c.get(&port_a).copied().unwrap_or(0) > 50, "A serves: {c:?}");
    assert_eq!(
        c.get(&port_b).copied().unwrap_or(0),
        0,
        "no rule: every call application-level: {c:?}"
    );

    etcdctl(
        &etcd,
        &[
            "put",
            RULE_KEY,
            "key: web\nstep: APPLICATION_FIRST\nproportion: 30\n",
        ],
    );
    wait_until("proportion 30 in /registry", WAIT, || {
        proportion(admin) == Some(30)
    });
    std::thread::sleep(settle);
    let c = counted(admin, Duration::from_millis(3000));
    let (a, b) = (
        c.get(&port_a).copied().unwrap_or(0),
        c.get(&port_b).copied().unwrap_or(0),
    );
    assert!(a + b > 300, "too few calls to judge: {c:?}");
    // B takes 70% x 1/2 of the calls; A the rest (30% + 70% x 1/2)
    let b_share = b as f64 / (a + b) as f64;
    eprintln!("proportion 30: A {a}, B {b}: B's share {b_share:.3}");
    assert!(
        (b_share - 0.35).abs() < 0.08,
        "B's share {b_share:.3} (want 0.35): {c:?}"
    );
    let m = migration_json(admin);
    let state = m.as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(state["step"], "APPLICATION_FIRST", "{m}");
    assert_eq!(state["model"], "application", "{m}");
    let (_, metrics) = admin_get(admin, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mesh_registry_migration_proportion{")
                && l.contains(IFACE)
                && l.ends_with("} 30")),
        "{metrics}"
    );
    promtool_passes(&metrics);

    etcdctl(
        &etcd,
        &[
            "put",
            RULE_KEY,
            "key: web\nstep: APPLICATION_FIRST\nproportion: 100\n",
        ],
    );
    wait_until("proportion 100: no split", WAIT, || proportion(admin).is_none());
    std::thread::sleep(settle);
    let c = counted(admin, window);
    assert!(c.get(&port_a).copied().unwrap_or(0) > 50, "{c:?}");
    assert_eq!(c.get(&port_b).copied().unwrap_or(0), 0, "proportion 100: {c:?}");

    etcdctl(
        &etcd,
        &[
            "put",
            RULE_KEY,
            "key: web\nstep: APPLICATION_FIRST\nproportion: 0\n",
        ],
    );
    wait_until("proportion 0", WAIT, || proportion(admin) == Some(0));
    std::thread::sleep(settle);
    let c = counted(admin, window);
    let (a, b) = (
        c.get(&port_a).copied().unwrap_or(0),
        c.get(&port_b).copied().unwrap_or(0),
    );
    let b_share = b as f64 / (a + b).max(1) as f64;
    eprintln!("proportion 0: A {a}, B {b}: B's share {b_share:.3}");
    assert!(
        (b_share - 0.5).abs() < 0.08,
        "proportion 0: round robin over {{A, B}}: {c:?}"
    );

    etcdctl(&etcd, &["del", RULE_KEY]);
    wait_until("the rule deleted: no split", WAIT, || proportion(admin).is_none());
    std::thread::sleep(settle);
    let c = counted(admin, window);
    assert_eq!(c.get(&port_b).copied().unwrap_or(0), 0, "no rule: {c:?}");

    let s = load.join().unwrap();
    assert_eq!(
        s.error_count(),
        0,
        "calls failed across the switches: {:?}",
        s.errors
    );
    assert!(s.ok > 1000, "{s:?}");
}
