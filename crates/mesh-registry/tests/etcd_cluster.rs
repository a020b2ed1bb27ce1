//! The registry against a real 3-member etcd cluster (mesh-testkit's `EtcdCluster`): members killed one
//! after another (always the leader), the whole cluster stopped and restarted, TLS with client
//! certificates, user/password authentication. The checks look only at what the registrar and the watcher
//! say (`is_registered`, the snapshot's endpoint addresses), not at the key layout. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mesh_registry::dubbo::{ProviderRegistration, ServiceKey};
use mesh_registry::{
    spawn_registrar, spawn_watcher, EtcdAuth, EtcdConfig, EtcdTls, RegistrarHandle, Registration, Snapshot,
    Source, WatcherHandle,
};
use mesh_testkit::etcd_cluster::{one_cluster_at_a_time, EtcdCluster};
use mesh_testkit::process::wait_until;

const SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn config(cluster: &EtcdCluster, root: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: cluster.client_urls(),
        root: root.to_owned(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        retry_backoff_max: Duration::from_millis(500),
        ..EtcdConfig::default()
    }
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn register(cfg: &EtcdConfig, port: u16) -> RegistrarHandle {
    let url = ProviderRegistration {
        service: ServiceKey::parse(SERVICE),
        addr: addr(port),
        application: "cluster-test".into(),
        weight: 100,
        threads: None,
        tag: None,
        warmup_ms: 0,
        timestamp_ms: 1_764_900_000_000,
        token: None,
        methods: vec![],
        params: Default::default(),
    }
    .url();
    let reg = Registration::new(url).with_ttl(Duration::from_secs(4));
    spawn_registrar(cfg.clone(), vec![reg]).unwrap()
}

/// Receives snapshots until one satisfies `pred`; every snapshot on the way must satisfy `always`.
fn recv_until(
    rx: &Receiver<Arc<Snapshot>>,
    within: Duration,
    what: &str,
    always: impl Fn(&Snapshot) -> bool,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let snap = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no snapshot with {what} within {within:?}: {e}"));
        assert!(
            always(&snap),
            "snapshot v{} broke the invariant while waiting for {what}: {snap:?}",
            snap.version
        );
        if pred(&snap) {
            return snap;
        }
    }
}

/// What every test starts from: a watcher on `cfg` and a provider (port 31001) registered through it.
struct Watched {
    rx: Receiver<Arc<Snapshot>>,
    watcher: WatcherHandle,
    provider: RegistrarHandle,
    /// The first snapshot that had the provider.
    first: Arc<Snapshot>,
}

/// Starts a watcher and registers the provider; returns once the watcher has seen it (`what`, within 10 s)
/// and its lease is up (within 5 s).
fn watch_and_register(cfg: &EtcdConfig, what: &str) -> Watched {
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg.clone()), vec![tx]).unwrap();
    let provider = register(cfg, 31001);
    let first = recv_until(
        &rx,
        Duration::from_secs(10),
        what,
        |_| true,
        |s| s.contains_addr(addr(31001)),
    );
    wait_until(Duration::from_secs(5), "registered", || provider.is_registered());
    Watched {
        rx,
        watcher,
        provider,
        first,
    }
}

#[test]
fn leaders_killed_one_after_another_registration_and_watch_go_on() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    let cfg = config(&cluster, "/t/cluster");
    let has_provider = |s: &Snapshot| s.contains_addr(addr(31001));
    let Watched {
        rx,
        watcher,
        provider,
        ..
    } = watch_and_register(&cfg, "the provider");

    // Three rounds, each killing the current leader: every member dies once, so whatever member the
    // watcher's and the registrar's sessions were pinned to, each of them loses it at least once.
    for round in 0..3u16 {
        let leader = cluster.leader().unwrap();
        let killed_at = Instant::now();
        cluster.kill(leader);
        let new_leader = cluster.leader().unwrap();
        let elected = killed_at.elapsed();
        // A later change is seen, and the provider never left any snapshot on the way.
        let port = 32000 + round;
        let joiner = register(&cfg, port);
        let seen = recv_until(
            &rx,
            Duration::from_secs(15),
            "the joining provider",
            has_provider,
            |s| s.contains_addr(addr(port)),
        );
        let visible = killed_at.elapsed();
        let back = wait_until(Duration::from_secs(15), "the provider registered", || {
            provider.is_registered()
        });
        eprintln!(
            "round {round}: killed m{leader}, m{new_leader} elected after {elected:?}; a new provider visible \
             {visible:?} after the kill (v{}); the old one registered (lease {:x?}) {back:?} later",
            seen.version,
            provider.lease_id()
        );
        joiner.deregister(Duration::from_secs(5)).unwrap();
        recv_until(
            &rx,
            Duration::from_secs(10),
            "the joiner gone",
            has_provider,
            |s| !s.contains_addr(addr(port)),
        );
        cluster.restart(leader).unwrap();
    }
    assert!(has_provider(&watcher.latest().unwrap()));
    provider.deregister(Duration::from_secs(5)).unwrap();
    recv_until(
        &rx,
        Duration::from_secs(10),
        "the provider gone",
        |_| true,
        |s| !has_provider(s),
    );
    watcher.stop().unwrap();
}

#[test]
fn members_hung_one_after_another_registration_and_watch_go_on() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    let cfg = config(&cluster, "/t/hung");
    let has_provider = |s: &Snapshot| s.contains_addr(addr(31001));
    let Watched {
        rx,
        watcher,
        provider,
        ..
    } = watch_and_register(&cfg, "the provider");

    // Each member in turn stops answering without closing its sockets (SIGSTOP): whichever member the
    // watcher and the registrar were pinned to hangs once. The watch gives up on it after 3 s without an
    // answer to its progress requests (it took the 6 s + 3 s of HTTP/2 keepalive before), the registrar
    // leaves it after TTL/2 without keepalive answers.
    for member in 0..3u16 {
        let i = usize::from(member);
        let frozen_at = Instant::now();
        cluster.freeze(i).unwrap();
        let port = 32100 + member;
        let joiner = register(&cfg, port);
        let seen = recv_until(
            &rx,
            Duration::from_secs(20),
            "a provider registered while a member hangs",
            has_provider,
            |s| s.contains_addr(addr(port)),
        );
        let visible = frozen_at.elapsed();
        let back = wait_until(Duration::from_secs(15), "the provider registered", || {
            provider.is_registered()
        });
        eprintln!(
            "m{member} hung: a new provider visible {visible:?} later (v{}); the old one registered (lease {:x?})",
            seen.version,
            provider.lease_id()
        );
        let _ = back;
        joiner.deregister(Duration::from_secs(5)).unwrap();
        recv_until(
            &rx,
            Duration::from_secs(15),
            "the joiner gone",
            has_provider,
            |s| !s.contains_addr(addr(port)),
        );
        cluster.thaw(i).unwrap();
        wait_until(Duration::from_secs(15), "the member healthy again", || {
            cluster.is_healthy(i)
        });
    }
    provider.deregister(Duration::from_secs(5)).unwrap();
    watcher.stop().unwrap();
}

#[test]
fn whole_cluster_down_keeps_the_snapshot_and_registration_comes_back() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    let cfg = config(&cluster, "/t/outage");
    let Watched {
        rx,
        watcher,
        provider,
        first: before,
    } = watch_and_register(&cfg, "the provider");

    cluster.stop_all().unwrap();
    // The registrar notices (keepalives fail), the watcher keeps what it had and publishes nothing.
    wait_until(
        Duration::from_secs(10),
        "the registrar to notice the outage",
        || !provider.is_registered(),
    );
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "published during the outage"
    );
    assert_eq!(watcher.latest().unwrap(), before);
    let e = cfg.check_reachable().unwrap_err().to_string();
    assert!(
        e.starts_with("no usable etcd member:")
            && cfg.endpoints.iter().all(|u| e.contains(&format!("{u}: ")))
            && e.contains("Connection refused"),
        "{e}"
    );

    cluster.restart_all().unwrap();
    let t = Instant::now();
    let back = wait_until(Duration::from_secs(15), "registered again", || {
        provider.is_registered()
    });
    let joiner = register(&cfg, 31002);
    recv_until(
        &rx,
        Duration::from_secs(15),
        "a provider registered after the restart",
        |s| s.contains_addr(addr(31001)),
        |s| s.contains_addr(addr(31002)),
    );
    eprintln!(
        "registered again {back:?} after the cluster was healthy; watch caught up {:?}",
        t.elapsed()
    );
    joiner.deregister(Duration::from_secs(5)).unwrap();
    provider.deregister(Duration::from_secs(5)).unwrap();
    watcher.stop().unwrap();
}

#[test]
fn tls_with_client_certificates_and_clear_errors_for_a_wrong_ca_or_no_certificate() {
    let _one_at_a_time = one_cluster_at_a_time();
    let cluster = EtcdCluster::start_tls(3).unwrap();
    let files = cluster.tls().unwrap().clone();
    let mut cfg = config(&cluster, "/t/tls");
    cfg.tls = Some(
        EtcdTls::with_ca(&files.ca_file).with_client_cert(&files.client_cert_file, &files.client_key_file),
    );
    cfg.check_reachable().unwrap();

    let Watched {
        rx: _rx,
        watcher,
        provider,
        ..
    } = watch_and_register(&cfg, "the provider over TLS");

    let mut wrong_ca = cfg.clone();
    wrong_ca.tls = Some(
        EtcdTls::with_ca(&files.wrong_ca_file)
            .with_client_cert(&files.client_cert_file, &files.client_key_file),
    );
    let e = wrong_ca.check_reachable().unwrap_err().to_string();
    eprintln!("wrong CA: {e}");
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");

    let mut no_cert = cfg.clone();
    no_cert.tls = Some(EtcdTls::with_ca(&files.ca_file));
    let e = no_cert.check_reachable().unwrap_err().to_string();
    eprintln!("no client certificate: {e}");
    assert!(e.starts_with("no usable etcd member:"), "{e}");

    let mut plain = cfg.clone();
    plain.tls = None;
    let e = plain.validate().unwrap_err().to_string();
    assert!(e.contains("is https but no CA file"), "{e}");

    provider.deregister(Duration::from_secs(5)).unwrap();
    watcher.stop().unwrap();
}

#[test]
fn user_and_password_work_and_a_wrong_password_is_a_clear_error_without_the_secret() {
    let _one_at_a_time = one_cluster_at_a_time();
    let mut cluster = EtcdCluster::start(3).unwrap();
    cluster
        .enable_auth("root-pw-123", "agent", "agent-pw-456", "/t/auth")
        .unwrap();
    let mut cfg = config(&cluster, "/t/auth");
    cfg.auth = Some(EtcdAuth::new("agent", "agent-pw-456"));
    cfg.check_reachable().unwrap();

    let Watched {
        rx: _rx,
        watcher,
        provider,
        ..
    } = watch_and_register(&cfg, "the provider with auth");
    assert!(!format!("{cfg:?}").contains("agent-pw-456"));

    let mut wrong = cfg.clone();
    wrong.auth = Some(EtcdAuth::new("agent", "not-the-password"));
    let e = wrong.check_reachable().unwrap_err().to_string();
    eprintln!("wrong password: {e}");
    assert!(e.contains("authentication failed"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");

    let mut anonymous = cfg.clone();
    anonymous.auth = None;
    anonymous.check_reachable().unwrap(); // Status needs no user...
    let (tx2, rx2) = crossbeam_channel::unbounded();
    let blind = spawn_watcher(Source::Etcd(anonymous), vec![tx2]).unwrap();
    // ...but reading the registry does: nothing is ever published.
    assert!(rx2.recv_timeout(Duration::from_secs(2)).is_err());
    blind.stop().unwrap();

    provider.deregister(Duration::from_secs(5)).unwrap();
    watcher.stop().unwrap();
}
