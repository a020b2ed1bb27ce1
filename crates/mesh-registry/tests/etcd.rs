//! The registry against a real etcd (from mesh-testkit): registration, deregistration, lost leases,
//! deleted keys, outages. Every wait polls against a deadline; every test stays well under 30 s.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mesh_registry::dubbo::{KeyEncoding, ProviderRegistration, RegistryRoot, ServiceKey};
use mesh_registry::{spawn_registrar, spawn_watcher, Endpoint, EtcdConfig, Registration, Snapshot, Source};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::etcd_kv::BlockingKv as Kv;
use mesh_testkit::process::wait_until;

const SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn config(etcd: &EtcdServer, root: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.client_url().to_owned()],
        root: root.to_owned(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        retry_backoff_max: Duration::from_millis(500),
        ..EtcdConfig::default()
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint::new(([127, 0, 0, 1], port).into())
}

/// The provider URL registration of `ep` serving `service`, as the provider agent makes it.
fn reg(service: &str, ep: &Endpoint) -> Registration {
    Registration::new(
        ProviderRegistration {
            service: ServiceKey::parse(service),
            addr: ep.addr,
            application: "test".into(),
            weight: ep.weight,
            threads: ep.max_concurrency,
            tag: ep.tag.clone(),
            warmup_ms: 0,
            timestamp_ms: 1_764_900_000_000,
            token: None,
            methods: vec![],
            params: Default::default(),
        }
        .url(),
    )
}

/// The etcd key of that registration under `root`.
fn key_for(root: &str, service: &str, ep: &Endpoint) -> String {
    RegistryRoot::new(root)
        .unwrap()
        .url_key(&reg(service, ep).url, KeyEncoding::JavaUrlEncoder)
        .unwrap()
}

/// What the consumer needs of an endpoint: address, weight, cap.
fn seen(eps: &[Endpoint]) -> Vec<(u16, u32, Option<u32>)> {
    eps.iter()
        .map(|e| (e.addr.port(), e.weight, e.max_concurrency))
        .collect()
}

/// Receives snapshots until one satisfies `pred`; panics after `within`. Checks versions grow by one.
fn recv_until(
    rx: &Receiver<Arc<Snapshot>>,
    within: Duration,
    what: &str,
    mut pred: impl FnMut(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + within;
    let mut last_version = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let snap = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no snapshot with {what} within {within:?}: {e}"));
        if let Some(v) = last_version {
            assert_eq!(snap.version, v + 1, "versions grow by one");
        }
        last_version = Some(snap.version);
        if pred(&snap) {
            return snap;
        }
    }
}

#[test]
fn registration_is_visible_to_the_watcher_with_all_fields() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/visible");
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg.clone()), vec![tx]).unwrap();
    let first = recv_until(&rx, Duration::from_secs(5), "the initial read", |_| true);
    assert_eq!(first.version, 1);
    assert!(first.is_empty());

    let a = endpoint(30001)
        .with_weight(150)
        .with_max_concurrency(200)
        .with_id("host-a:30001");
    let b = endpoint(30002);
    let registrar = spawn_registrar(
        cfg,
        vec![
            reg(SERVICE, &a).with_ttl(Duration::from_secs(2)),
            reg("g/other.Service:1.0", &b),
        ],
    )
    .unwrap();
    let t = Instant::now();
    let snap = recv_until(&rx, Duration::from_secs(5), "the registrations", |s| {
        !s.is_empty()
    });
    eprintln!("visible after {:?}, v{}", t.elapsed(), snap.version);
    // One transaction: both keys arrive in one snapshot.
    assert_eq!((snap.version, snap.endpoint_count()), (2, 2));
    assert_eq!(seen(&snap.endpoints(SERVICE)), [(30001, 150, Some(200))]);
    assert_eq!(seen(&snap.endpoints("g/other.Service:1.0")), [(30002, 100, None)]);
    assert!(
        snap.endpoints("other.Service").is_empty(),
        "a group is part of the service key"
    );
    assert!(snap.endpoints("unknown.Service").is_empty());
    wait_until(Duration::from_secs(2), "is_registered", || {
        registrar.is_registered()
    });
    assert!(registrar.lease_id().is_some());
    assert_eq!(watcher.latest().unwrap().version, snap.version);

    registrar.deregister(Duration::from_secs(2)).unwrap();
    watcher.stop().unwrap();
}

#[test]
fn deregister_removes_the_keys_and_the_watcher_publishes_it() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/deregister");
    let kv = Kv::new(&etcd);
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg.clone()), vec![tx]).unwrap();
    let registrar = spawn_registrar(cfg, vec![reg(SERVICE, &endpoint(30001))]).unwrap();
    recv_until(&rx, Duration::from_secs(5), "the registration", |s| {
        s.endpoints(SERVICE).len() == 1
    });
    wait_until(Duration::from_secs(2), "is_registered", || {
        registrar.is_registered()
    });

    let t = Instant::now();
    registrar.deregister(Duration::from_secs(2)).unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "deregister took {took:?}");
    assert_eq!(kv.count(&format!("/t/deregister/{SERVICE}/providers/")), 0);
    // The parent key Java writes for Dubbo Admin stays (persistent, like Java's).
    assert!(kv.get(&format!("/t/deregister/{SERVICE}")).is_some());
    let snap = recv_until(&rx, Duration::from_secs(5), "the removal", Snapshot::is_empty);
    eprintln!("deregistered in {took:?}; removal published as v{}", snap.version);
    watcher.stop().unwrap();
}

#[test]
fn lease_revoked_from_outside_is_replaced_within_the_ttl() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/revoked");
    let kv = Kv::new(&etcd);
    let key = key_for("/t/revoked", SERVICE, &endpoint(30001));
    let reg = reg(SERVICE, &endpoint(30001)).with_ttl(Duration::from_secs(2));
    let registrar = spawn_registrar(cfg, vec![reg]).unwrap();
    wait_until(Duration::from_secs(5), "the key", || kv.get(&key).is_some());
    let (_, old_lease) = kv.get(&key).unwrap();
    assert_ne!(old_lease, 0);

    kv.revoke(old_lease);
    let took = wait_until(Duration::from_secs(3), "a new lease", || {
        kv.get(&key)
            .is_some_and(|(_, lease)| lease != old_lease && lease != 0)
    });
    eprintln!("re-registered {took:?} after the revocation");
    wait_until(Duration::from_secs(2), "is_registered", || {
        registrar.is_registered()
    });
    assert_eq!(kv.lease_ttl(old_lease), -1);
    assert_eq!(registrar.lease_id(), kv.get(&key).map(|(_, l)| l));
    registrar.deregister(Duration::from_secs(2)).unwrap();
    assert!(kv.get(&key).is_none());
}

#[test]
fn key_deleted_from_outside_is_put_back() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/deleted");
    let kv = Kv::new(&etcd);
    let ep = endpoint(30001).with_weight(7);
    let key = key_for("/t/deleted", SERVICE, &ep);
    let registrar = spawn_registrar(cfg, vec![reg(SERVICE, &ep)]).unwrap();
    wait_until(Duration::from_secs(5), "the key", || kv.get(&key).is_some());
    let (value, lease) = kv.get(&key).unwrap();

    kv.delete(&key);
    let took = wait_until(Duration::from_secs(2), "the key back", || kv.get(&key).is_some());
    eprintln!("put back {took:?} after the delete");
    assert_eq!(
        kv.get(&key).unwrap(),
        (value.clone(), lease),
        "same value, same lease"
    );
    assert_eq!(value, lease.to_string(), "Java's value: the lease id");
    // Someone else's key is none of its business.
    let foreign = key_for("/t/deleted", SERVICE, &endpoint(30009));
    kv.put(&foreign, "");
    kv.delete(&foreign);
    assert!(registrar.is_registered());
    registrar.deregister(Duration::from_secs(2)).unwrap();
}

#[test]
fn only_callable_provider_urls_are_listed_and_the_watch_goes_on() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/bad");
    let kv = Kv::new(&etcd);
    // Parent keys (Java's hash values, Go's empty ones), other categories, the config center, a URL with
    // an unencoded `/` (Java skips it too), another protocol, a disabled provider: none is a provider.
    kv.put("/t/bad", "");
    kv.put("/t/bad/svc", "12345");
    kv.put("/t/bad/svc/providers", "");
    kv.put(
        "/t/bad/svc/consumers/consumer%3A%2F%2F127.0.0.1%2Fsvc%3Fcategory%3Dconsumers",
        "",
    );
    kv.put(
        "/t/bad/svc/routers/route%3A%2F%2F0.0.0.0%2Fsvc%3Fcategory%3Drouters",
        "",
    );
    kv.put("/t/bad/config/dubbo/svc::.condition-router", "conditions: []");
    kv.put("/t/bad/svc/providers/dubbo://127.0.0.1:1/svc", "1");
    kv.put("/t/bad/svc/providers/tri%3A%2F%2F127.0.0.1%3A3%2Fsvc", "1");
    kv.put(
        "/t/bad/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A4%2Fsvc%3Fenabled%3Dfalse",
        "1",
    );
    kv.put(
        "/t/bad/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A2%2Fsvc%3Fweight%3D5",
        "1",
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let snap = recv_until(&rx, Duration::from_secs(5), "the initial read", |_| true);
    assert_eq!(seen(&snap.endpoints("svc")), [(2, 5, None)]);
    assert_eq!(snap.endpoint_count(), 1);

    // dubbo-go's encoding (QueryEscape: `*` escaped) of a provider with a group is read too.
    kv.put(
        "/t/bad/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A5%2Fsvc%3Fgroup%3Dg%26methods%3D%2A%26timestamp%3D1700000000",
        "",
    );
    let snap = recv_until(&rx, Duration::from_secs(5), "the Go key", |s| {
        !s.endpoints("g/svc").is_empty()
    });
    assert_eq!(
        snap.endpoints("g/svc")[0].registered_at_ms,
        Some(1_700_000_000_000)
    );
    // A provider going away is removed; a disabled one enabled appears.
    kv.delete("/t/bad/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A2%2Fsvc%3Fweight%3D5");
    recv_until(&rx, Duration::from_secs(5), "the removal", |s| {
        s.endpoints("svc").is_empty()
    });
    kv.put(
        "/t/bad/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A4%2Fsvc%3Fenabled%3Dtrue",
        "1",
    );
    let snap = recv_until(&rx, Duration::from_secs(5), "the enabled one", |s| {
        !s.endpoints("svc").is_empty()
    });
    assert_eq!(snap.endpoints("svc")[0].addr.port(), 4);
    // Outside the root (but sharing its first characters): not ours.
    kv.put("/t/badness/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A6%2Fsvc", "1");
    // More of what is not a provider: no new snapshot.
    kv.put("/t/bad/svc/consumers/consumer%3A%2F%2F127.0.0.2%2Fsvc", "");
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    watcher.stop().unwrap();
}

#[test]
fn changes_within_the_publish_interval_go_out_together() {
    let etcd = EtcdServer::start().unwrap();
    let root = "/t/paced";
    let interval = Duration::from_millis(400);
    let cfg = EtcdConfig {
        publish_interval: interval,
        ..config(&etcd, root)
    };
    let kv = Kv::new(&etcd);
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let first = recv_until(&rx, Duration::from_secs(5), "the initial read", |_| true);
    assert_eq!(first.version, 1);
    // Ten providers register one after the other, each in its own etcd request.
    let start = Instant::now();
    for port in 1..=10 {
        kv.put(&key_for(root, SERVICE, &endpoint(port)), "1");
    }
    let puts_took = start.elapsed();
    let all = recv_until(&rx, Duration::from_secs(10), "all ten", |s| {
        s.endpoints(SERVICE).len() == 10
    });
    // At most one publication per interval: the first change at once, then one at the end of each
    // interval in which changes came.
    let publications = all.version - first.version;
    let bound = 2 + (puts_took.as_nanos() / interval.as_nanos()) as u64;
    eprintln!("10 puts in {puts_took:?}: {publications} publications (at most {bound})");
    assert!(
        (1..=bound).contains(&publications),
        "{publications} publications of 10 changes made in {puts_took:?}"
    );
    // Everything went out: nothing is left to publish.
    assert!(rx.recv_timeout(interval * 2).is_err());
    assert_eq!(watcher.latest().unwrap().version, all.version);
    // After a quiet period a lone change is published on its own, and the next one within the interval
    // waits for it: both arrive, in at most two snapshots.
    kv.delete(&key_for(root, SERVICE, &endpoint(1)));
    kv.delete(&key_for(root, SERVICE, &endpoint(2)));
    let fewer = recv_until(&rx, Duration::from_secs(5), "two gone", |s| {
        s.endpoints(SERVICE).len() == 8
    });
    assert!(
        fewer.version - all.version <= 2,
        "v{} after v{}",
        fewer.version,
        all.version
    );
    watcher.stop().unwrap();
}

#[test]
fn a_provider_registered_twice_stays_until_its_last_key_goes() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/twice");
    let kv = Kv::new(&etcd);
    // A Java provider restarted before its old lease ran out: a second URL (new timestamp) for the same
    // address.
    let old = "/t/twice/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A7%2Fsvc%3Ftimestamp%3D1%26weight%3D10";
    let new = "/t/twice/svc/providers/dubbo%3A%2F%2F127.0.0.1%3A7%2Fsvc%3Ftimestamp%3D2%26weight%3D20";
    kv.put(old, "1");
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    recv_until(&rx, Duration::from_secs(5), "the old key", |s| {
        seen(&s.endpoints("svc")) == [(7, 10, None)]
    });
    kv.put(new, "2");
    recv_until(&rx, Duration::from_secs(5), "the newer key wins", |s| {
        seen(&s.endpoints("svc")) == [(7, 20, None)]
    });
    kv.delete(old);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the old lease running out changes nothing"
    );
    kv.put(old, "1");
    kv.delete(new);
    recv_until(&rx, Duration::from_secs(5), "the remaining key", |s| {
        seen(&s.endpoints("svc")) == [(7, 10, None)]
    });
    kv.delete(old);
    recv_until(&rx, Duration::from_secs(5), "gone", Snapshot::is_empty);
    watcher.stop().unwrap();
}

#[test]
fn watcher_keeps_its_snapshot_while_etcd_is_down_and_catches_up() {
    let mut etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/outage");
    let kv = Kv::new(&etcd);
    let k1 = key_for("/t/outage", SERVICE, &endpoint(30001));
    let k2 = key_for("/t/outage", SERVICE, &endpoint(30002));
    kv.put(&k1, "");
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let before = recv_until(&rx, Duration::from_secs(5), "k1", |s| s.endpoint_count() == 1);

    etcd.stop().unwrap();
    // Down for 2 s: nothing is published, the last snapshot stays.
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "published during the outage"
    );
    assert_eq!(watcher.latest().unwrap(), before);

    etcd.restart().unwrap();
    let t = Instant::now();
    kv.put(&k2, "");
    kv.delete(&k1);
    let after = recv_until(&rx, Duration::from_secs(5), "k2 only", |s| {
        s.endpoints(SERVICE)
            .iter()
            .map(|e| e.addr.port())
            .collect::<Vec<_>>()
            == [30002]
    });
    eprintln!(
        "caught up {:?} after the restart, v{} -> v{}",
        t.elapsed(),
        before.version,
        after.version
    );
    assert!(after.version > before.version);
    watcher.stop().unwrap();
}

#[test]
fn watcher_started_while_etcd_is_down_publishes_once_it_is_up() {
    let mut etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/late");
    etcd.stop().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "published without etcd"
    );
    assert!(watcher.latest().is_none());
    etcd.restart().unwrap();
    let snap = recv_until(&rx, Duration::from_secs(5), "the first read", |_| true);
    assert_eq!(snap.version, 1);
    let t = Instant::now();
    watcher.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn registrar_registers_again_after_an_outage_longer_than_the_ttl() {
    let mut etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/long-outage");
    let kv = Kv::new(&etcd);
    let key = key_for("/t/long-outage", SERVICE, &endpoint(30001));
    let reg = reg(SERVICE, &endpoint(30001)).with_ttl(Duration::from_secs(2));
    let registrar = spawn_registrar(cfg.clone(), vec![reg]).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    recv_until(&rx, Duration::from_secs(5), "the registration", |s| {
        s.endpoint_count() == 1
    });
    wait_until(Duration::from_secs(2), "is_registered", || {
        registrar.is_registered()
    });
    let (_, old_lease) = kv.get(&key).unwrap();

    etcd.stop().unwrap();
    let noticed = wait_until(Duration::from_secs(3), "the loss noticed", || {
        !registrar.is_registered()
    });
    // Down for 3 s, longer than the 2 s TTL.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(noticed));
    etcd.restart().unwrap();
    let took = wait_until(Duration::from_secs(5), "registered again", || {
        registrar.is_registered()
    });
    // etcd restores the old lease on restart with a fresh TTL: the registrar keeps it alive (or, had it
    // expired, registers on a new one). Either way the key outlives the old TTL on a live lease.
    std::thread::sleep(Duration::from_secs(3));
    let (_, lease) = kv.get(&key).expect("the key went away after the restart");
    assert!(
        lease != 0 && kv.lease_ttl(lease) > 0,
        "lease {lease:x} is not alive"
    );
    let kept = if lease == old_lease { "kept" } else { "replaced" };
    // The consumer never saw the provider disappear.
    for snap in rx.try_iter() {
        assert_eq!(snap.endpoint_count(), 1, "v{} lost the provider", snap.version);
    }
    assert_eq!(watcher.latest().unwrap().endpoint_count(), 1);
    eprintln!("loss noticed in {noticed:?}; registered {took:?} after the restart; lease {kept}");
    registrar.deregister(Duration::from_secs(2)).unwrap();
    recv_until(&rx, Duration::from_secs(5), "the removal", Snapshot::is_empty);
    watcher.stop().unwrap();
}

#[test]
fn registrar_waits_for_etcd_that_is_not_there_yet_and_deregister_is_bounded() {
    let mut etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/absent");
    etcd.stop().unwrap();
    let registrar = spawn_registrar(cfg, vec![reg(SERVICE, &endpoint(30001))]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!registrar.is_registered());
    etcd.restart().unwrap();
    wait_until(Duration::from_secs(5), "is_registered", || {
        registrar.is_registered()
    });
    etcd.stop().unwrap();
    let t = Instant::now();
    let result = registrar.deregister(Duration::from_millis(500));
    assert!(
        result.is_err(),
        "revoking without etcd cannot succeed: {result:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "deregister took {:?}",
        t.elapsed()
    );
}

#[test]
fn static_source_publishes_once() {
    let (tx1, rx1) = crossbeam_channel::unbounded();
    let (tx2, rx2) = crossbeam_channel::unbounded();
    let list = vec![
        ("*".to_owned(), endpoint(30000)),
        (SERVICE.to_owned(), endpoint(30001)),
    ];
    let watcher = spawn_watcher(Source::Static(list), vec![tx1, tx2]).unwrap();
    for rx in [&rx1, &rx2] {
        let snap = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(snap.version, 1);
        assert_eq!(snap.endpoints("any.Service")[0].addr.port(), 30000);
        assert_eq!(snap.endpoints(SERVICE)[0].addr.port(), 30001);
    }
    assert!(rx1.recv_timeout(Duration::from_millis(300)).is_err());
    watcher.stop().unwrap();
}
