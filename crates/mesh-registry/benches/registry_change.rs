//! What one registry change costs the watcher thread in our code, at 5,000 provider instances of one
//! interface written as Java 2.7 writes them: reading the etcd key (decode, parse, `discover`), and applying
//! it to the snapshot (`SnapshotBuilder::upsert`/`remove` + `publish`). etcd-client's own decoding and the
//! channel hand-off are not included.

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a broken bench

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mesh_registry::dubbo::{discover, Discovered, DubboUrl, KeyEncoding, RegistryKey, RegistryRoot};
use mesh_registry::SnapshotBuilder;

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

/// The key of instance `i` (127.1.x.y:20880), with a Java 2.7 provider's parameters.
fn java_key(root: &RegistryRoot, i: u32, timestamp: u64) -> String {
    let url = DubboUrl::parse(&format!(
        "dubbo://127.1.{}.{}:20880/{IFACE}?anyhost=true&application=demo-provider&deprecated=false\
         &dubbo=2.0.2&dynamic=true&generic=false&interface={IFACE}&methods=hash,sayHello,sayHelloAsync\
         &pid=4242&release=2.7.23&side=provider&timestamp={timestamp}",
        i / 250,
        i % 250 + 1
    ))
    .unwrap();
    root.url_key(&url, KeyEncoding::JavaUrlEncoder).unwrap()
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

fn bench(c: &mut Criterion) {
    let root = RegistryRoot::default();
    let keys: Vec<String> = (0..5_000)
        .map(|i| java_key(&root, i, 1_764_900_000_000))
        .collect();
    let mut builder = SnapshotBuilder::new();
    for k in &keys {
        let (service, endpoint) = read(&root, k);
        builder.upsert(&service, endpoint);
    }
    // A published snapshot held elsewhere (as the shards do): changes must copy what they share.
    let mut held = builder.publish(1);
    let mut g = c.benchmark_group("registry change at 5,000 instances");
    g.bench_function("read one key (decode, parse, discover)", |b| {
        b.iter(|| black_box(read(&root, black_box(&keys[1234]))))
    });
    let (service, endpoint) = read(&root, &keys[1234]);
    let addr = endpoint.addr;
    g.bench_function("leave + publish, join + publish", |b| {
        b.iter(|| {
            builder.remove(&service, addr);
            held = builder.publish(2);
            builder.upsert(&service, endpoint.clone());
            held = builder.publish(3);
        })
    });
    g.finish();
    black_box(held);
}

criterion_group!(benches, bench);
criterion_main!(benches);
