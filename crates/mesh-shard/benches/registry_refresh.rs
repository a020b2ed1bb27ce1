//! What a registry change costs the consumer shards' routing, without connections: two shards of one agent
//! (subsetting on, as the registry benchmark's consumer) hold the route table of one service of `N`
//! providers (Java-2.7-like parameters), then take `CHANGES` snapshots, each one provider joining or one
//! leaving (alternately, as `registry-churn` does), and route `PICKS` calls per change per shard. Reported
//! (thread CPU time): nanoseconds per change in `Upstreams::refresh` (both shards together: the
//! snapshot hand-off, the departed pools, the table's advance, the old snapshot's drop) and per pick. The
//! snapshots are built before the measured loop (the registry thread's work is not counted). Connections
//! are not dialled (no pick sends anything): `upstream_churn` measures those.
//!
//! `cargo bench -p mesh-shard --bench registry_refresh` (env: N=5000 CHANGES=20000 PICKS=10 ROUNDS=5;
//! `-- --test`: a smoke run).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_registry::{Endpoint, Snapshot, SnapshotBuilder};
use mesh_shard::consumer::{Upstreams, UpstreamsOptions};
use mesh_shard::upstream::UpstreamConfig;

const SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

/// CPU time of the calling thread (the scheduler's run time, ns: first field of its schedstat).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .expect("run time");
    Duration::from_nanos(ns)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Instance `i`'s address, as the registry benchmark registers them: 127.1.x.y on one port.
fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 20880))
}

/// A provider as the watcher makes it from a Java 2.7 URL (its parameters but `methods`).
fn endpoint(i: usize, timestamp_ms: u64) -> Endpoint {
    let mut e = Endpoint::new(addr(i))
        .with_id(addr(i).to_string())
        .with_registered_at_ms(timestamp_ms);
    for (k, v) in [
        ("anyhost", "true"),
        ("application", "bench-provider"),
        (
            "bean.name",
            "ServiceBean:com.alibaba.dubbo.performance.demo.provider.IHelloService",
        ),
        ("deprecated", "false"),
        ("dubbo", "2.0.2"),
        ("dynamic", "true"),
        ("generic", "false"),
        ("interface", SERVICE),
        ("pid", "4242"),
        ("release", "2.7.23"),
        (
            "service.name",
            "ServiceBean:/com.alibaba.dubbo.performance.demo.provider.IHelloService",
        ),
        ("side", "provider"),
        ("threads", "200"),
    ] {
        e = e.with_param(k, v);
    }
    e.with_param("timestamp", timestamp_ms.to_string())
}

struct Shard {
    tx: crossbeam_channel::Sender<Arc<Snapshot>>,
    upstreams: Upstreams,
}

fn shard(index: usize) -> Shard {
    let (tx, rx) = crossbeam_channel::unbounded();
    let opts = UpstreamsOptions {
        shards: 2,
        shard: index,
        ..UpstreamsOptions::default()
    };
    let cfg = UpstreamConfig {
        connections: 1,
        ..UpstreamConfig::default()
    };
    Shard {
        tx,
        upstreams: Upstreams::new(rx, cfg, opts),
    }
}

/// One measured round: `changes` snapshots (built first), each taken by both shards, `picks` calls routed
/// per change per shard (after the snapshots: a pick after a change costs what any pick does, the table
/// being current). Returns the refresh nanoseconds per change and the nanoseconds per pick.
fn round(
    shards: &[Shard; 2],
    builder: &mut SnapshotBuilder,
    present: &mut std::collections::VecDeque<usize>,
    next: &mut usize,
    changes: usize,
    picks: usize,
) -> (f64, f64) {
    let mut snaps = Vec::with_capacity(changes);
    for c in 0..changes {
        if c % 2 == 0 {
            let gone = present.pop_front().unwrap();
            builder.remove(SERVICE, addr(gone));
        } else {
            builder.upsert(SERVICE, endpoint(*next, 1_700_000_000_000 + *next as u64));
            present.push_back(*next);
            *next += 1;
        }
        snaps.push(Arc::new(builder.publish(c as i64).unwrap()));
    }
    // CPU time of this thread (not wall time: the box may be shared), refreshes and picks apart.
    let t0 = thread_cpu();
    for snap in snaps {
        for s in shards {
            s.tx.send(snap.clone()).unwrap();
        }
        drop(snap);
        for s in shards {
            s.upstreams.refresh();
        }
    }
    let refresh = thread_cpu() - t0;
    let t1 = thread_cpu();
    for _ in 0..changes * picks {
        for s in shards {
            assert!(s.upstreams.probe(SERVICE, "hash").is_some());
        }
    }
    let pick = thread_cpu() - t1;
    let n = changes as f64;
    let p = (changes * picks * 2).max(1) as f64;
    (refresh.as_nanos() as f64 / n, pick.as_nanos() as f64 / p)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::args().any(|a| a == "--test");
    let (n, changes, picks, rounds) = if quick {
        (500, 200, 2, 1)
    } else {
        (
            env("N", 5000) as usize,
            env("CHANGES", 20_000) as usize,
            env("PICKS", 10) as usize,
            env("ROUNDS", 5),
        )
    };
    let mut builder = SnapshotBuilder::new();
    for i in 0..n {
        builder.upsert(SERVICE, endpoint(i, 1_700_000_000_000));
    }
    let first = Arc::new(builder.publish(0).unwrap());
    let shards = [shard(0), shard(1)];
    for s in &shards {
        s.tx.send(first.clone()).unwrap();
        s.upstreams.refresh();
        assert!(s.upstreams.probe(SERVICE, "hash").is_some());
    }
    drop(first);
    let mut present: std::collections::VecDeque<usize> = (0..n).collect();
    let mut next = n;
    println!(
        "{n} providers, 2 shards (subset), {changes} changes per round, {picks} picks per change per shard"
    );
    let mut per_change = Vec::new();
    for r in 0..rounds {
        let (ns, pick_ns) = round(&shards, &mut builder, &mut present, &mut next, changes, picks);
        println!("round {r}: refresh (both shards) {ns:.0} ns per change; pick {pick_ns:.0} ns");
        per_change.push(ns);
    }
    per_change.sort_by(f64::total_cmp);
    println!(
        "median: {:.0} ns of shard CPU per change in refresh (both shards)",
        per_change[per_change.len() / 2]
    );
}
