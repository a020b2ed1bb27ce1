//! The agents on a real 3-member etcd cluster (mesh-testkit's `EtcdCluster`), as production runs etcd:
//! every agent is given all three endpoints. Leaders killed in turn under load, the whole cluster stopped
//! and restarted under load, TLS with client certificates, user/password authentication, and the errors
//! an operator sees for a wrong CA, a missing file or a wrong password. Registration is checked through the
//! registry's own watcher by address only (not by key layout). Loopback only; every wait is bounded;
//! processes are stopped when their guards drop.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_registry::{spawn_watcher, EtcdAuth, EtcdConfig, EtcdTls, Snapshot, Source, WatcherHandle};
use mesh_testkit::etcd_cluster::{one_cluster_at_a_time, EtcdCluster};
use mesh_testkit::loadgen::{run_blocking, Summary};
use mesh_testkit::process::free_port;

mod common;
use common::*;

fn all_answered_without_error(s: &Summary) {
    assert_eq!(s.sent, s.ok + s.error_count(), "{s:?}");
    assert_eq!(s.error_count(), 0, "{s:?}");
}

/// The registry as the test sees it: a watcher over the whole cluster.
fn watch_cluster(cfg: EtcdConfig) -> WatcherHandle {
    let (tx, _rx) = crossbeam_channel::unbounded::<Arc<Snapshot>>();
    spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap()
}

fn has(w: &WatcherHandle, port: u16) -> bool {
    w.latest().is_some_and(|s| s.contains_addr(addr(port)))
}

/// `--etcd` with every member.
fn etcd_flag(cluster: &EtcdCluster) -> String {
    cluster.client_urls().join(",")
}

#[test]
fn leaders_killed_in_turn_under_load_lose_no_request_and_later_changes_are_seen() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    let urls = etcd_flag(&cluster);
    let (_sim_a, port_a) = sim(&["--latency-ms", "5", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "5", "--name", "b"]);
    let (pa, pb, ca) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let _agent_a = provider_agent(pa, port_a, &["--etcd", &urls]);
    let w = watch_cluster(EtcdConfig::with_endpoints(cluster.client_urls()));
    wait_until("provider a registered", Duration::from_secs(10), || has(&w, pa));
    let _consumer = consumer_agent(ca, &["--etcd", &urls]);
    wait_until("consumer serves", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let run = std::thread::spawn(move || run_blocking(http_load(ca, 16, 9), 1).unwrap());
    // Two leaders die in turn (the first comes back before the second dies: a quorum stays).
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader().unwrap();
        cluster.kill(leader);
        let next = cluster.leader().unwrap();
        eprintln!("killed leader m{leader}, m{next} leads");
        std::thread::sleep(Duration::from_millis(1500));
        cluster.restart(leader).unwrap();
    }
    let s = run.join().unwrap();
    all_answered_without_error(&s);
    assert!(s.ok > 500, "{s:?}");
    assert!(has(&w, pa), "provider a left the registry");

    // A change after the kills reaches the consumer: provider b joins and takes calls.
    let _agent_b = provider_agent(pb, port_b, &["--etcd", &urls]);
    wait_until("provider b registered", Duration::from_secs(10), || has(&w, pb));
    // The consumer's watch delivers it in milliseconds; give it a second, then b must take a share.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..100 {
        assert_eq!(call(ca, IFACE, &format!("after-{i}")).0, 200);
    }
    let served_b = sim_served(&mut sim_b);
    eprintln!("provider b served {served_b} of 100 calls after joining");
    assert!(served_b > 0);
}

/// How many calls a provider-sim served (it prints its stats line when terminated).
fn sim_served(sim: &mut mesh_testkit::process::ChildGuard) -> u64 {
    let out = sim.terminate().unwrap().stdout;
    out.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["served"].as_u64())
        .unwrap_or_else(|| panic!("no stats line: {out}"))
}

#[test]
fn whole_cluster_stopped_under_load_is_served_from_the_snapshot_and_registration_returns() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    let urls = etcd_flag(&cluster);
    let (_sim, sim_port) = sim(&["--latency-ms", "5"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // A short lease: it runs out while the cluster is away.
    let cfg = config_file(&dir, "[etcd]\nlease_ttl_s = 2\n");
    let _agent = provider_agent(pa, sim_port, &["--etcd", &urls, "--config", &cfg]);
    let w = watch_cluster(EtcdConfig::with_endpoints(cluster.client_urls()));
    wait_until("provider registered", Duration::from_secs(10), || has(&w, pa));
    let _consumer = consumer_agent(ca, &["--etcd", &urls]);
    wait_until("consumer serves", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let run = std::thread::spawn(move || run_blocking(http_load(ca, 16, 9), 1).unwrap());
    std::thread::sleep(Duration::from_secs(1));
    cluster.stop_all().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart_all().unwrap();
    let s = run.join().unwrap();
    all_answered_without_error(&s);
    // The test's own watcher may hold the pre-outage snapshot: ask a fresh one.
    drop(w);
    let w = watch_cluster(EtcdConfig::with_endpoints(cluster.client_urls()));
    wait_until("provider registered again", Duration::from_secs(15), || {
        has(&w, pa)
    });
    assert_eq!(call(ca, IFACE, "after").0, 200);
}

#[test]
fn tls_with_client_certificates_between_agents_and_etcd() {
    let _one_at_a_time = one_cluster_at_a_time();
    let cluster = EtcdCluster::start_tls(3).unwrap();
    let tls = cluster.tls().unwrap().clone();
    let urls = etcd_flag(&cluster);
    let (ca_file, cert, key) = (
        tls.ca_file.to_string_lossy().into_owned(),
        tls.client_cert_file.to_string_lossy().into_owned(),
        tls.client_key_file.to_string_lossy().into_owned(),
    );
    let tls_flags = [
        "--etcd",
        &urls,
        "--etcd-ca-file",
        &ca_file,
        "--etcd-cert-file",
        &cert,
        "--etcd-key-file",
        &key,
    ];
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _agent = provider_agent(pa, sim_port, &tls_flags);
    let mut test_cfg = EtcdConfig::with_endpoints(cluster.client_urls());
    test_cfg.tls =
        Some(EtcdTls::with_ca(&tls.ca_file).with_client_cert(&tls.client_cert_file, &tls.client_key_file));
    let w = watch_cluster(test_cfg);
    wait_until("provider registered over TLS", Duration::from_secs(10), || {
        has(&w, pa)
    });
    let _consumer = consumer_agent(ca, &tls_flags);
    wait_until("consumer serves", Duration::from_secs(10), || {
        call(ca, IFACE, "tls").0 == 200
    });

    // A wrong CA: the agent runs, and says why it cannot reach etcd.
    let wrong = tls.wrong_ca_file.to_string_lossy().into_owned();
    let log = consumer_log_until(
        &[
            "--etcd",
            &urls,
            "--etcd-ca-file",
            &wrong,
            "--etcd-cert-file",
            &cert,
            "--etcd-key-file",
            &key,
        ],
        &[],
        "no usable etcd member",
    );
    assert!(log.contains("invalid peer certificate: UnknownIssuer"), "{log}");

    // A missing file: refused at start, naming the file.
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-agent"))
        .args([
            "consumer",
            "--listen",
            &addr(free_port().unwrap()).to_string(),
            "--cores",
            "0",
        ])
        .args(["--etcd", &urls, "--etcd-ca-file", "/nonexistent/etcd-ca.pem"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("etcd CA file /nonexistent/etcd-ca.pem: cannot read it"),
        "{stderr}"
    );
}

#[test]
fn user_and_password_from_the_environment_and_a_wrong_one_is_reported_without_the_secret() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    cluster
        // The agents' default registry root (Dubbo's `/dubbo`, config center included).
        .enable_auth("root-secret-1", "agent", "agent-secret-2", "/dubbo")
        .unwrap();
    // And the Dubbo 3 instances (`provider.register_mode` `all`, the default).
    cluster
        .etcdctl(&[
            "role",
            "grant-permission",
            "mesh",
            "--prefix=true",
            "readwrite",
            "/services",
        ])
        .unwrap();
    let urls = etcd_flag(&cluster);
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let env = [("MESH_ETCD_PASSWORD", "agent-secret-2")];
    let _agent = agent_with_env(
        &[
            "provider",
            "--listen",
            &addr(pa).to_string(),
            "--dubbo",
            &addr(sim_port).to_string(),
        ],
        &[
            "--cores",
            "0",
            "--shards",
            "1",
            "--etcd",
            &urls,
            "--etcd-user",
            "agent",
        ],
        &env,
    );
    let mut test_cfg = EtcdConfig::with_endpoints(cluster.client_urls());
    test_cfg.auth = Some(EtcdAuth::new("agent", "agent-secret-2"));
    let w = watch_cluster(test_cfg);
    wait_until("provider registered with a user", Duration::from_secs(10), || {
        has(&w, pa)
    });
    let _consumer = agent_with_env(
        &["consumer", "--listen", &addr(ca).to_string(), "--cores", "0,1"],
        &["--etcd", &urls, "--etcd-user", "agent"],
        &env,
    );
    wait_until("consumer serves", Duration::from_secs(10), || {
        mesh_testkit::process::wait_for_port(addr(ca), Duration::from_millis(100)).is_ok()
            && call(ca, IFACE, "auth").0 == 200
    });

    let log = consumer_log_until(
        &["--etcd", &urls, "--etcd-user", "agent"],
        &[("MESH_ETCD_PASSWORD", "wrong-secret-3")],
        "no usable etcd member",
    );
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("wrong-secret-3"), "{log}");
}

/// A mesh-agent with extra environment variables, stopped when the guard drops.
fn agent_with_env(
    role_args: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> mesh_testkit::process::ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-agent"));
    cmd.args(role_args).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    mesh_testkit::process::ChildGuard::spawn(&mut cmd)
        .unwrap()
        .with_grace(Duration::from_secs(8))
}

/// Runs a consumer agent with `args` until its stderr contains `needle` (at most 15 s), stops it (by its
/// PID) and returns its stderr.
fn consumer_log_until(args: &[&str], env: &[(&str, &str)], needle: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-agent"));
    cmd.args([
        "consumer",
        "--listen",
        &addr(free_port().unwrap()).to_string(),
        "--cores",
        "0",
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut log = String::new();
    while Instant::now() < deadline {
        log.clear();
        std::fs::File::open(&log_path)
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        if log.contains(needle) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().ok();
    child.wait().ok();
    assert!(log.contains(needle), "no {needle:?} within 15 s:\n{log}");
    log
}
