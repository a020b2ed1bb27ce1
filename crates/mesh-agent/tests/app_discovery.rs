//! Dubbo 3 application-level discovery end to end: provider agents registering instances (and, in `all`
//! mode, URL keys too) and serving MetadataService, found by consumer agents in each migration step; an
//! instance leaving under load. Real etcd, the agent binary, the provider simulator; every wait bounded.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::loadgen::run_blocking;
use mesh_testkit::process::{free_port, ChildGuard};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// A consumer agent at `step`, once it answers a call with 200.
fn consumer(etcd: &EtcdServer, step: &str) -> (ChildGuard, u16) {
    let port = free_port().unwrap();
    let agent = consumer_agent(port, &["--etcd", etcd.client_url(), "--migration-step", step]);
    wait_until(&format!("a first answer at {step}"), WAIT, || {
        call(port, IFACE, "x").0 == 200
    });
    (agent, port)
}

fn calls_all_ok(port: u16, n: usize, what: &str) {
    for i in 0..n {
        let (status, body) = call(port, IFACE, &format!("p{i}"));
        assert_eq!(status, 200, "{what}: call {i}: {body}");
    }
}

#[test]
fn a_provider_agent_in_all_mode_is_found_in_each_migration_step() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A: Dubbo 3's default `all` (instance + URL key); B: interface-level only (a Dubbo 2.7 provider).
    let (_agent_a, mut sim_a, port_a) = provider_in_mode(&etcd, &dir, "orders", "all", 2);
    let dir_b = tempfile::tempdir().unwrap();
    let (mut agent_b, mut sim_b, _port_b) = provider_in_mode(&etcd, &dir_b, "legacy", "interface", 2);
    wait_until("A's instance, both URL keys, A's mapping", WAIT, || {
        etcd_keys(&etcd, &format!("/services/orders/127.0.0.1:{port_a}")).len() == 1
            && etcd_keys(&etcd, &format!("/dubbo/{IFACE}/providers/")).len() == 2
            && !etcd_keys(&etcd, &format!("/dubbo/mapping/{IFACE}")).is_empty()
    });

    // FORCE_APPLICATION: only A's instance, never B (B has no instance), warm-up calls included.
    let (mut c, port) = consumer(&etcd, "FORCE_APPLICATION");
    calls_all_ok(port, 40, "FORCE_APPLICATION");
    c.terminate().unwrap();
    agent_b.terminate().unwrap();
    assert_eq!(
        served(&mut sim_b),
        0,
        "FORCE_APPLICATION never calls an interface-only provider"
    );

    // APPLICATION_FIRST (interface-level until the application-level addresses are there, then those) and
    // FORCE_INTERFACE (A's URL key) find A too.
    for step in ["APPLICATION_FIRST", "FORCE_INTERFACE"] {
        let (mut c, port) = consumer(&etcd, step);
        calls_all_ok(port, 40, step);
        c.terminate().unwrap();
    }
    assert!(served(&mut sim_a) >= 120, "A served every step");
}

#[test]
fn an_instance_leaving_under_load_fails_no_request() {
    let etcd = EtcdServer::start().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut agent_a, mut sim_a, _) = provider_in_mode(&etcd, &dir_a, "orders", "instance", 2);
    let (_agent_b, mut sim_b, _) = provider_in_mode(&etcd, &dir_b, "orders", "instance", 2);
    wait_until("both instances", WAIT, || {
        etcd_keys(&etcd, "/services/orders/").len() == 2
    });
    assert!(
        etcd_keys(&etcd, &format!("/dubbo/{IFACE}/providers/")).is_empty(),
        "instance mode: no URL key"
    );
    let (_consumer, port) = consumer(&etcd, "FORCE_APPLICATION");

    let cfg = http_load(port, 16, 6);
    let load = std::thread::spawn(move || run_blocking(cfg, 1).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    // Planned stop of A under load: its instance is deleted first, then it drains.
    let done = agent_a.terminate().unwrap();
    assert!(done.status.success(), "{:?}", done.status);
    wait_until("A's instance gone", WAIT, || {
        etcd_keys(&etcd, "/services/orders/").len() == 1
    });

    let s = load.join().unwrap();
    assert_eq!(
        s.error_count(),
        0,
        "requests failed while an instance left: {:?}",
        s.errors
    );
    assert!(s.ok > 200, "{s:?}");
    let (a, b) = (served(&mut sim_a), served(&mut sim_b));
    assert!(a > 0 && b > 0, "both instances served before A left: {a} / {b}");
}
