//! The consumer's provider subset against a real etcd (from mesh-testkit): with K = 8 of 50 providers the
//! snapshots list 8, providers joining outside the subset publish nothing, and a member leaving is replaced
//! by the next best. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mesh_registry::dubbo::{KeyEncoding, ProviderRegistration, RegistryRoot, ServiceKey};
use mesh_registry::provider_subset::{identity_seed, score};
use mesh_registry::{spawn_watcher, EtcdConfig, Snapshot, Source, SubsetSettings};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::etcd_kv::BlockingKv as Kv;

const SERVICE: &str = "com.example.Subset";
const OTHER: &str = "com.example.Other";
const ROOT: &str = "/t/subset";
const IDENTITY: &str = "web@test-host/10.0.0.9:20000";
const K: usize = 8;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The etcd key a provider at `addr` of `service` registers (Java 2.7's encoding).
fn key(service: &str, addr: SocketAddr) -> String {
    let url = ProviderRegistration {
        service: ServiceKey::parse(service),
        addr,
        application: "shop".into(),
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
    RegistryRoot::new(ROOT)
        .unwrap()
        .url_key(&url, KeyEncoding::JavaUrlEncoder)
        .unwrap()
}

fn next(rx: &Receiver<Arc<Snapshot>>, within: Duration) -> Arc<Snapshot> {
    rx.recv_timeout(within)
        .unwrap_or_else(|e| panic!("no snapshot within {within:?}: {e}"))
}

fn listed(snap: &Snapshot, service: &str) -> Vec<SocketAddr> {
    snap.endpoints(service).iter().map(|e| e.addr).collect()
}

/// The `n` best of `addrs` by this consumer's rendezvous score.
fn best(addrs: &[SocketAddr], n: usize) -> Vec<SocketAddr> {
    let seed = identity_seed(IDENTITY);
    let mut ranked = addrs.to_vec();
    ranked.sort_by_key(|a| (std::cmp::Reverse(score(seed, *a)), *a));
    ranked.truncate(n);
    ranked.sort();
    ranked
}

#[test]
fn the_snapshot_lists_the_subset_and_only_its_changes_are_published() {
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    let cfg = EtcdConfig {
        endpoints: vec![etcd.client_url().to_owned()],
        root: ROOT.to_owned(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        retry_backoff_max: Duration::from_millis(500),
        provider_subset: SubsetSettings {
            size: K,
            identity: IDENTITY.to_owned(),
            ..SubsetSettings::default()
        },
        ..EtcdConfig::default()
    };
    let mut present: Vec<SocketAddr> = (30001..=30050).map(addr).collect();
    for a in &present {
        kv.put(&key(SERVICE, *a), "lease");
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let first = next(&rx, Duration::from_secs(10));
    assert_eq!(listed(&first, SERVICE), best(&present, K), "the 8 best of 50");
    let members = listed(&first, SERVICE);
    let epoch = first.providers(SERVICE).unwrap().epoch();

    // 30 providers join, each outside the subset: nothing is published. A change of another service
    // afterwards is the very next snapshot (versions grow by one), and this service's list is untouched.
    let worst_member = best(&present, K)
        .into_iter()
        .map(|a| score(identity_seed(IDENTITY), a))
        .min()
        .unwrap();
    let outside: Vec<SocketAddr> = (30051..=40000)
        .map(addr)
        .filter(|a| score(identity_seed(IDENTITY), *a) < worst_member)
        .take(30)
        .collect();
    assert_eq!(outside.len(), 30);
    for a in &outside {
        kv.put(&key(SERVICE, *a), "lease");
    }
    present.extend(&outside);
    // And 10 providers outside the subset leave.
    let leaving: Vec<SocketAddr> = present
        .iter()
        .copied()
        .filter(|a| !members.contains(a))
        .take(10)
        .collect();
    for a in &leaving {
        kv.delete(&key(SERVICE, *a));
    }
    present.retain(|a| !leaving.contains(a));
    let t = Instant::now();
    kv.put(&key(OTHER, addr(31000)), "lease");
    let marker = next(&rx, Duration::from_secs(5));
    eprintln!("marker snapshot after {:?}", t.elapsed());
    assert_eq!(
        marker.version,
        first.version + 1,
        "no snapshot for the 40 changes outside the subset"
    );
    assert_eq!(listed(&marker, OTHER), [addr(31000)]);
    assert_eq!(listed(&marker, SERVICE), members);
    assert_eq!(marker.providers(SERVICE).unwrap().epoch(), epoch);

    // A member leaves: the next best takes its place, in one snapshot.
    let gone = members[3];
    kv.delete(&key(SERVICE, gone));
    present.retain(|a| *a != gone);
    let after = next(&rx, Duration::from_secs(5));
    assert_eq!(after.version, marker.version + 1);
    let now = listed(&after, SERVICE);
    assert_eq!(now, best(&present, K));
    assert!(!now.contains(&gone));
    assert_eq!(after.departed(), [gone]);
    let change = after.providers(SERVICE).unwrap().change().unwrap();
    assert_eq!(
        (change.removed.as_slice(), change.upserted.len()),
        (&[gone][..], 1)
    );

    // A provider joining with a better score than the last member enters and evicts it.
    let seed = identity_seed(IDENTITY);
    let top = (40001..=50000)
        .map(addr)
        .find(|a| score(seed, *a) > score(seed, best(&present, 1)[0]))
        .unwrap();
    let evicted = *best(&present, K).iter().min_by_key(|a| score(seed, **a)).unwrap();
    kv.put(&key(SERVICE, top), "lease");
    present.push(top);
    let joined = next(&rx, Duration::from_secs(5));
    assert_eq!(listed(&joined, SERVICE), best(&present, K));
    assert!(listed(&joined, SERVICE).contains(&top));
    assert_eq!(joined.departed(), [evicted]);
    watcher.stop().unwrap();
}
