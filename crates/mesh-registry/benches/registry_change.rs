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
//! etcd-client's own decoding (prost, tonic, h2) and the channel hand-off are not included. Times are the
//! bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: other processes on a busy machine
//! do not count (their cache pollution still does).

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a broken bench

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use mesh_registry::dubbo::{discover, Discovered, RegistryKey, RegistryRoot};
use mesh_registry::{Skips, Snapshot, SnapshotBuilder, WatchedKeys};
use mesh_testkit::dubbo_writers::{java27_provider, Provider};

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

/// Times leave/join changes through the watcher's whole path, cycling over the instances.
fn watcher_path(c: &mut Criterion, name: &str, estate: &Estate, cold: bool) {
    let mut keys = WatchedKeys::new(RegistryRoot::default());
    let mut skips = Skips::default();
    for k in &estate.keys {
        keys.put(k[0].as_bytes(), b"7587887961384501762", &mut skips);
    }
    // The shards hold the last snapshot: every change must leave it untouched.
    let mut held: Arc<Snapshot> = Arc::new(keys.publish(1).unwrap());
    // Per instance: which of its two keys is registered, and whether it is present.
    let mut state: Vec<(usize, bool)> = vec![(0, true); estate.keys.len()];
    let mut next = 0usize;
    let mut revision = 1i64;
    let mut evict = vec![0u8; EVICT_BYTES];
    c.bench_function(name, |b| {
        let step = || {
            // Instance `next` leaves (when present) or joins under its other timestamp.
            let i = next;
            let (which, present) = state[i];
            if present {
                keys.delete(estate.keys[i][which].as_bytes());
                state[i] = (which, false);
            } else {
                let other = 1 - which;
                keys.put(
                    estate.keys[i][other].as_bytes(),
                    b"7587887961384501762",
                    &mut skips,
                );
                state[i] = (other, true);
                // Two changes per instance (leave, join), then the next one (7919 is prime: spread).
                next = (next + 7919) % estate.keys.len();
            }
            revision += 1;
            held = Arc::new(keys.publish(revision).unwrap());
        };
        if cold {
            cold_iter(b, &mut evict, step);
        } else {
            cpu_iter(b, step);
        }
    });
    skips.report("bench");
    black_box(held);
}

fn bench(c: &mut Criterion) {
    let root = RegistryRoot::default();
    let one = Estate::new(1, 5_000);
    let ten = Estate::new(10, 500);
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

    watcher_path(c, "watcher path 1x5000: one change", &one, false);
    watcher_path(c, "watcher path 10x500: one change", &ten, false);
    let mut evict = vec![0u8; EVICT_BYTES];
    c.bench_function("cold: empty step (the clock's cost)", |b| {
        cold_iter(b, &mut evict, || {})
    });
    watcher_path(c, "watcher path 1x5000: one change, cold", &one, true);
    watcher_path(c, "watcher path 10x500: one change, cold", &ten, true);
}

criterion_group!(benches, bench);
criterion_main!(benches);
