//! What one registry change costs the watcher thread in our code, with provider keys written as Java 2.7
//! writes them (`mesh_testkit::dubbo_writers::java27_provider`, as the scale benchmark's `registry-churn`
//! does), at 5,000 instances of one interface and at 10 interfaces x 500:
//!
//! * `read one key`: decode, parse and `discover` one key;
//! * `builder`: `SnapshotBuilder::remove`/`upsert` + `publish` alone;
//! * `watcher path`: the whole of it as the watcher thread runs it, per change: an instance leaves (its key
//!   deleted) or joins again (its key put with a fresh `timestamp`, as `registry-churn` does), through
//!   [`WatchedKeys`] (key index, parse, `discover`, builder), `publish`, the snapshot wrapped in the `Arc`
//!   the shards receive, and the previous snapshot dropped (the shards hold it until then).
//!
//! The `cold` variants evict the caches (a 6 MiB walk, untimed) before every change, as the real watcher
//! thread sleeps between changes while the shards run: its data is no longer cached when the next change
//! comes. They time each change on its own in thread CPU time, which includes the clock's own cost: the
//! `cold: empty step` bench measures it, to subtract.
//!
//! The `app-first` variants run the same path with application-level discovery on and the consumer's
//! default step (APPLICATION_FIRST, as `mesh-agent consumer` runs by default), with no application-level
//! address anywhere: the interface-level lists go through `ChosenAddresses`.
//!
//! Before the timings, the heap allocations per change of the watcher path are counted (a counting global
//! allocator, `stats_alloc`, for the whole bench: it adds an atomic add per allocation to every timing, in
//! every build alike) and printed per kind of change (leave, join).
//!
//! etcd-client's own decoding (prost, tonic, h2) and the channel hand-off are not included. Times are the
//! bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: other processes on a busy machine
//! do not count (their cache pollution still does).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // bench: a failed unwrap is a broken bench

use std::alloc::System;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use mesh_registry::dubbo::{discover, Discovered, RegistryKey, RegistryRoot};
use mesh_registry::{AppDiscoveryConfig, Skips, Snapshot, SnapshotBuilder, SubsetSettings, WatchedKeys};
use mesh_testkit::dubbo_writers::{java27_provider, Provider};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

/// The key of instance `i` of interface `k` (127.1.x.y:20880) as a Java 2.7 provider writes it.
fn java_key(k: u32, i: u32, timestamp_ms: u64) -> String {
    let interface = if k == 0 {
        IFACE.to_owned()
    } else {
        format!("{IFACE}{k}")
    };
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 1)) + i);
    let mut p = Provider::new(&interface, &ip.to_string(), 20880);
    p.application = "demo-provider".to_owned();
    p.timestamp_ms = timestamp_ms;
    java27_provider("/dubbo", &p).key
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Times `step` in thread CPU time.
fn cpu_iter(b: &mut Bencher<'_>, mut step: impl FnMut()) {
    b.iter_custom(|iters| {
        let start = thread_cpu();
        for _ in 0..iters {
            step();
        }
        thread_cpu() - start
    })
}

/// Bytes walked to evict the caches (L2 is 1 MiB per core here; most of a shared L3 slice too).
const EVICT_BYTES: usize = 6 << 20;

/// Times `step` in thread CPU time, with the caches evicted before each call.
fn cold_iter(b: &mut Bencher<'_>, evict: &mut [u8], mut step: impl FnMut()) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            for line in evict.chunks_mut(64) {
                line[0] = line[0].wrapping_add(1);
            }
            black_box(&mut *evict);
            let start = thread_cpu();
            step();
            total += thread_cpu() - start;
        }
        total
    })
}

fn read(root: &RegistryRoot, key: &str) -> (String, mesh_registry::Endpoint) {
    match root.parse_key(key.as_bytes()) {
        Ok(RegistryKey::Url(u)) => match discover(&u) {
            Discovered::Provider { service, endpoint } => (service, endpoint),
            Discovered::Skipped(why) => panic!("{why}"),
        },
        other => panic!("{other:?}"),
    }
}

/// An estate of `interfaces` x `instances`: every instance's key under two timestamps (it leaves under one
/// and joins again under the other).
struct Estate {
    keys: Vec<[String; 2]>,
}

impl Estate {
    fn new(interfaces: u32, instances: u32) -> Self {
        let keys = (0..interfaces)
            .flat_map(|k| {
                (0..instances).map(move |i| {
                    [
                        java_key(k, i, 1_764_900_000_000),
                        java_key(k, i, 1_764_900_000_001),
                    ]
                })
            })
            .collect();
        Estate { keys }
    }
}

/// The watcher's key index with every instance of `estate` registered, interface-level only or (`apps`)
/// with application-level discovery on the consumer's default step, as the agent runs it; listing at most
/// `subset` providers per service key (`consumer.provider_subset`; 0: all).
fn registered(estate: &Estate, apps: bool, subset: usize, skips: &mut Skips) -> WatchedKeys {
    let config = AppDiscoveryConfig::default();
    let settings = SubsetSettings {
        size: subset,
        identity: "bench-consumer@host/10.0.0.1:20000".to_owned(),
        ..SubsetSettings::default()
    };
    let mut keys = WatchedKeys::with_apps(RegistryRoot::default(), apps.then_some(&config))
        .with_provider_subset(&settings);
    for k in &estate.keys {
        keys.put(k[0].as_bytes(), b"7587887961384501762", skips);
    }
    keys
}

/// Leave/join changes through the watcher's whole path, cycling over the instances.
struct Churn<'a> {
    estate: &'a Estate,
    keys: WatchedKeys,
    skips: Skips,
    /// The shards hold the last snapshot: every change must leave it untouched.
    held: Arc<Snapshot>,
    /// Changes that published a snapshot (with a subset, a change outside it publishes none).
    published: usize,
    /// Per instance: which of its two keys is registered, and whether it is present.
    state: Vec<(usize, bool)>,
    next: usize,
    revision: i64,
}

impl<'a> Churn<'a> {
    fn new(estate: &'a Estate, apps: bool, subset: usize) -> Self {
        let mut skips = Skips::default();
        let mut keys = registered(estate, apps, subset, &mut skips);
        let held = Arc::new(keys.publish(1).unwrap());
        Churn {
            estate,
            keys,
            skips,
            held,
            published: 0,
            state: vec![(0, true); estate.keys.len()],
            next: 0,
            revision: 1,
        }
    }

    /// One change: instance `next` leaves (when present) or joins under its other timestamp; published.
    /// Whether it was a join.
    fn step(&mut self) -> bool {
        let i = self.next;
        let (which, present) = self.state[i];
        if present {
            self.keys.delete(self.estate.keys[i][which].as_bytes());
            self.state[i] = (which, false);
        } else {
            let other = 1 - which;
            self.keys.put(
                self.estate.keys[i][other].as_bytes(),
                b"7587887961384501762",
                &mut self.skips,
            );
            self.state[i] = (other, true);
            // Two changes per instance (leave, join), then the next one (7919 is prime: spread).
            self.next = (self.next + 7919) % self.estate.keys.len();
        }
        self.revision += 1;
        if let Some(snapshot) = self.keys.publish(self.revision) {
            self.held = Arc::new(snapshot);
            self.published += 1;
        }
        !present
    }
}

/// Times leave/join changes through the watcher's whole path (`subset`: `consumer.provider_subset`).
fn watcher_path(c: &mut Criterion, name: &str, estate: &Estate, (apps, subset): (bool, usize), cold: bool) {
    let mut churn = Churn::new(estate, apps, subset);
    let mut evict = vec![0u8; EVICT_BYTES];
    c.bench_function(name, |b| {
        let step = || {
            churn.step();
        };
        if cold {
            cold_iter(b, &mut evict, step);
        } else {
            cpu_iter(b, step);
        }
    });
    churn.skips.report("bench");
    black_box(churn.held);
}

/// Prints the heap allocations (and bytes) per leave and per join of the watcher path, and the share of
/// changes that published a snapshot.
fn allocations(name: &str, estate: &Estate, apps: bool, subset: usize) {
    let mut churn = Churn::new(estate, apps, subset);
    // (allocations, bytes, changes) per kind: leave, join.
    let mut counts = [(0usize, 0usize, 0usize); 2];
    for _ in 0..2_000 {
        let region = Region::new(GLOBAL);
        let joined = churn.step();
        let stats = region.change();
        let c = &mut counts[usize::from(joined)];
        c.0 += stats.allocations + stats.reallocations;
        c.1 += stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize;
        c.2 += 1;
    }
    for (kind, (allocs, bytes, n)) in ["leave", "join"].iter().zip(counts) {
        println!(
            "allocations {name}, {kind}: {:.1} per change, {:.0} bytes",
            allocs as f64 / n as f64,
            bytes as f64 / n as f64
        );
    }
    println!(
        "snapshots published {name}: {:.3} per change",
        churn.published as f64 / 2_000.0
    );
    churn.skips.report("bench");
}

fn bench(c: &mut Criterion) {
    let root = RegistryRoot::default();
    let one = Estate::new(1, 5_000);
    let ten = Estate::new(10, 500);
    allocations("1x5000", &one, false, 0);
    allocations("1x5000 app-first", &one, true, 0);
    allocations("1x5000 app-first K=64", &one, true, 64);
    allocations("10x500", &ten, false, 0);
    c.bench_function("read one key (decode, parse, discover)", |b| {
        cpu_iter(b, || {
            black_box(read(&root, black_box(&one.keys[1234][0])));
        })
    });

    let mut builder = SnapshotBuilder::new();
    for k in &one.keys {
        let (service, endpoint) = read(&root, &k[0]);
        builder.upsert(&service, endpoint);
    }
    // A published snapshot held elsewhere (as the shards do): changes must copy what they share.
    let mut held = builder.publish(1);
    let (service, endpoint) = read(&root, &one.keys[1234][0]);
    let addr = endpoint.addr;
    c.bench_function("builder 1x5000: leave + publish, join + publish", |b| {
        cpu_iter(b, || {
            builder.remove(&service, addr);
            held = builder.publish(2);
            builder.upsert(&service, endpoint.clone());
            held = builder.publish(3);
        })
    });
    black_box(held);

    watcher_path(c, "watcher path 1x5000: one change", &one, (false, 0), false);
    watcher_path(
        c,
        "watcher path 1x5000 app-first: one change",
        &one,
        (true, 0),
        false,
    );
    watcher_path(c, "watcher path 10x500: one change", &ten, (false, 0), false);
    let mut evict = vec![0u8; EVICT_BYTES];
    c.bench_function("cold: empty step (the clock's cost)", |b| {
        cold_iter(b, &mut evict, || {})
    });
    watcher_path(c, "watcher path 1x5000: one change, cold", &one, (false, 0), true);
    watcher_path(
        c,
        "watcher path 1x5000 app-first: one change, cold",
        &one,
        (true, 0),
        true,
    );
    // With a provider subset of 64 (`consumer.provider_subset`): most changes are outside it and publish
    // nothing (the key index, parse, `discover` and the subset's rank check only).
    watcher_path(
        c,
        "watcher path 1x5000 app-first K=64: one change, cold",
        &one,
        (true, 64),
        true,
    );
    watcher_path(c, "watcher path 10x500: one change, cold", &ten, (false, 0), true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
