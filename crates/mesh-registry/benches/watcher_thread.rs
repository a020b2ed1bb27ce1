//! The CPU the registry watcher thread (`mesh-registry-watch`: etcd-client on tokio, our key index and
//! snapshot builder, the hand-off) spends per etcd change, against a real etcd (mesh-testkit), at 5,000
//! provider instances of one interface and at 10 interfaces x 500, keys written as Java 2.7 writes them.
//!
//! Per estate: register every instance, start a watcher (one subscriber thread holds the last snapshot,
//! as a shard does), wait until it lists them all, then measure the watcher thread's CPU time
//! (`/proc/self/task/<tid>/schedstat`) over a quiet period and over a churn of `BENCH_CHANGES` changes
//! (default 600) at `BENCH_RATE` changes/s (default 100; an instance leaves, then joins again with a fresh
//! `timestamp`, as `registry-churn` does). CPU per change = (churn CPU - quiet CPU rate x churn time) /
//! changes. Not a criterion bench: one number per estate, printed.
//!
//! For comparison, a bare etcd-client watch of the same prefix runs alongside on its own thread
//! (`bare-etcd-watch`, a current-thread tokio runtime like the watcher's) and only counts the events: its CPU
//! per change is what etcd-client, tonic, h2, tokio and the kernel cost per event before any of our code.
//! A third thread (`keys-etcd-watch`) runs the same bare watch and feeds every event to a [`WatchedKeys`]
//! and publishes, dropping each snapshot at once (so its builder never has to copy a shared path): that
//! minus the bare watch is our key index, parse and builder in place; the watcher minus that is what
//! holding the previous snapshot costs (persistent-map path copies) plus the rest of the watcher's loop
//! (select, progress timer, the hand-off to the subscriber). The three threads share the machine, so the
//! numbers are higher than each alone would be.
//!
//! Knobs: `BENCH_PUBLISH_INTERVAL_MS` (the watcher's [`EtcdConfig::publish_interval`], default its default;
//! the snapshots the subscriber took per change are printed), `BENCH_APP_FIRST=1` (application-level
//! discovery on the consumer's default step APPLICATION_FIRST, as `mesh-agent consumer` runs by default),
//! `BENCH_ESTATES=1x5000,10x500`.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // bench: a failed unwrap is a broken bench

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use mesh_registry::dubbo::RegistryRoot;
use mesh_registry::{
    spawn_watcher, AppDiscoveryConfig, EtcdConfig, Skips, Snapshot, Source, WatchedKeys,
    DEFAULT_PUBLISH_INTERVAL,
};
use mesh_testkit::dubbo_writers::{java27_provider, Provider};
use mesh_testkit::etcd::EtcdServer;

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn key(root: &str, k: u32, i: u32, timestamp_ms: u64) -> String {
    let interface = if k == 0 {
        IFACE.to_owned()
    } else {
        format!("{IFACE}{k}")
    };
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 1)) + i);
    let mut p = Provider::new(&interface, &ip.to_string(), 20880);
    p.application = "demo-provider".to_owned();
    p.timestamp_ms = timestamp_ms;
    java27_provider(root, &p).key
}

/// Starts a thread that watches `prefix` with a bare etcd-client watch and only counts the events, until
/// `stop` is sent; returns the count.
fn bare_watch(
    url: String,
    prefix: String,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> std::thread::JoinHandle<u64> {
    std::thread::Builder::new()
        .name("bare-etcd-watch".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut client = Client::connect([url], None).await.unwrap();
                let options = etcd_client::WatchOptions::new().with_prefix();
                let mut stream = client.watch(prefix, Some(options)).await.unwrap();
                let mut events = 0u64;
                let count = async {
                    while let Some(r) = stream.message().await.unwrap() {
                        events += r.events().len() as u64;
                    }
                };
                tokio::select! {
                    _ = stop => {}
                    () = count => {}
                }
                events
            })
        })
        .unwrap()
}

/// Like [`bare_watch`], but read first and every event fed to a [`WatchedKeys`] under `root`, published.
fn keys_watch(
    url: String,
    root: String,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> std::thread::JoinHandle<u64> {
    std::thread::Builder::new()
        .name("keys-etcd-watch".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut client = Client::connect([url], None).await.unwrap();
                let prefix = format!("{root}/");
                let got = client
                    .get(
                        prefix.as_str(),
                        Some(etcd_client::GetOptions::new().with_prefix()),
                    )
                    .await
                    .unwrap();
                let revision = got.header().unwrap().revision();
                let mut keys = WatchedKeys::new(RegistryRoot::new(&root).unwrap());
                let mut skips = Skips::default();
                keys.resync(got.kvs().iter().map(|kv| (kv.key(), kv.value())), &mut skips);
                drop(keys.publish(revision));
                let options = etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1);
                let mut stream = client.watch(prefix, Some(options)).await.unwrap();
                let mut events = 0u64;
                let count = async {
                    while let Some(r) = stream.message().await.unwrap() {
                        for e in r.events() {
                            let Some(kv) = e.kv() else { continue };
                            events += 1;
                            match e.event_type() {
                                etcd_client::EventType::Put => keys.put(kv.key(), kv.value(), &mut skips),
                                etcd_client::EventType::Delete => keys.delete(kv.key()),
                            }
                        }
                        drop(keys.publish(r.header().map_or(0, |h| h.revision())));
                    }
                };
                tokio::select! {
                    _ = stop => {}
                    () = count => {}
                }
                events
            })
        })
        .unwrap()
}

/// The CPU time of this process's thread named `name` (its newest one), in ns.
fn thread_cpu_ns(name: &str) -> u64 {
    let mut found = None;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let tid: u64 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            if found.as_ref().is_none_or(|(t, _)| tid > *t) {
                found = Some((tid, path));
            }
        }
    }
    let (_, path) = found.expect("the watcher thread");
    let stat = std::fs::read_to_string(path.join("schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let changes = env_or("BENCH_CHANGES", 600) as u32;
    let rate = env_or("BENCH_RATE", 100);
    let interval = Duration::from_millis(env_or(
        "BENCH_PUBLISH_INTERVAL_MS",
        DEFAULT_PUBLISH_INTERVAL.as_millis() as u64,
    ));
    let app_first = env_or("BENCH_APP_FIRST", 0) == 1;
    let estates = std::env::var("BENCH_ESTATES").unwrap_or_else(|_| "1x5000,10x500".to_owned());
    let etcd = EtcdServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt.block_on(Client::connect([etcd.client_url()], None)).unwrap();
    for (n, (interfaces, instances)) in [(1u32, 5_000u32), (10, 500)].into_iter().enumerate() {
        if !estates
            .split(',')
            .any(|e| e == format!("{interfaces}x{instances}"))
        {
            continue;
        }
        let root = format!("/bench{n}");
        let all: Vec<(u32, u32)> = (0..interfaces)
            .flat_map(|k| (0..instances).map(move |i| (k, i)))
            .collect();
        for chunk in all.chunks(64) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|&(k, i)| TxnOp::put(key(&root, k, i, 1_764_900_000_000), "7587887961384501762", None))
                .collect();
            rt.block_on(client.txn(Txn::new().and_then(ops))).unwrap();
        }
        let cfg = EtcdConfig {
            root: root.clone(),
            publish_interval: interval,
            app_discovery: app_first.then(|| Box::new(AppDiscoveryConfig::default())),
            ..EtcdConfig::with_endpoints([etcd.client_url()])
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<Snapshot>>();
        // Polls like a shard (try_recv, never blocked in recv: a blocked receiver would cost the watcher a
        // futex wake per snapshot, which the shards do not).
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&taken);
        let holder = std::thread::spawn(move || {
            let mut held = None;
            let mut count = 0u64;
            loop {
                match rx.try_recv() {
                    Ok(s) => {
                        held = Some(s);
                        count += 1;
                        counter.store(count, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
            drop(held);
            count
        });
        let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
        let (stop_bare, stopped) = tokio::sync::oneshot::channel();
        let bare = bare_watch(etcd.client_url().to_owned(), format!("{root}/"), stopped);
        let (stop_keys, keys_stopped) = tokio::sync::oneshot::channel();
        let keyed = keys_watch(etcd.client_url().to_owned(), root.clone(), keys_stopped);
        let total = all.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while watcher.latest().is_none_or(|s| s.endpoint_count() < total) {
            assert!(Instant::now() < deadline, "the watcher did not list {total}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        let quiet_for = Duration::from_secs(3);
        let q0 = thread_cpu_ns("mesh-registry-w");
        let bq0 = thread_cpu_ns("bare-etcd-watch");
        let kq0 = thread_cpu_ns("keys-etcd-watch");
        std::thread::sleep(quiet_for);
        let quiet_ns = thread_cpu_ns("mesh-registry-w") - q0;
        let bare_quiet_ns = thread_cpu_ns("bare-etcd-watch") - bq0;
        let keys_quiet_ns = thread_cpu_ns("keys-etcd-watch") - kq0;

        // Churn: instance j leaves, then joins again with a fresh timestamp; instances spread (7919 prime).
        let snapshots0 = taken.load(std::sync::atomic::Ordering::Relaxed);
        let c0 = thread_cpu_ns("mesh-registry-w");
        let bc0 = thread_cpu_ns("bare-etcd-watch");
        let kc0 = thread_cpu_ns("keys-etcd-watch");
        let start = Instant::now();
        let mut last_revision = 0;
        for c in 0..changes {
            let due = start + Duration::from_nanos(u64::from(c) * 1_000_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let j = ((c / 2) as usize * 7919) % all.len();
            let (k, i) = all[j];
            let revision = if c % 2 == 0 {
                let r = rt.block_on(client.delete(key(&root, k, i, 1_764_900_000_000), None));
                r.unwrap().header().unwrap().revision()
            } else {
                let r =
                    rt.block_on(client.put(key(&root, k, i, 1_764_900_000_000), "7587887961384501762", None));
                r.unwrap().header().unwrap().revision()
            };
            last_revision = revision;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while watcher.latest().is_none_or(|s| s.revision < last_revision) {
            assert!(Instant::now() < deadline, "the watcher did not catch up");
            std::thread::sleep(Duration::from_millis(1));
        }
        let churn_time = start.elapsed();
        // The bare watch has seen the last change when the watcher has (or within a few ms).
        std::thread::sleep(Duration::from_millis(50));
        let churn_ns = thread_cpu_ns("mesh-registry-w") - c0;
        let snapshots = taken.load(std::sync::atomic::Ordering::Relaxed) - snapshots0;
        let bare_churn_ns = thread_cpu_ns("bare-etcd-watch") - bc0;
        let keys_churn_ns = thread_cpu_ns("keys-etcd-watch") - kc0;
        let idle = quiet_ns as f64 * churn_time.as_secs_f64() / quiet_for.as_secs_f64();
        println!(
            "watcher thread {interfaces}x{instances}{}, publish interval {interval:?}: {:.1} us CPU per change \
             ({changes} changes at {rate}/s in {:.2} s: {:.1} ms CPU, idle rate {:.2} ms/s; {:.3} snapshots \
             per change)",
            if app_first { " app-first" } else { "" },
            (churn_ns as f64 - idle) / f64::from(changes) / 1e3,
            churn_time.as_secs_f64(),
            churn_ns as f64 / 1e6,
            quiet_ns as f64 / 1e6 / quiet_for.as_secs_f64(),
            snapshots as f64 / f64::from(changes),
        );
        let bare_idle = bare_quiet_ns as f64 * churn_time.as_secs_f64() / quiet_for.as_secs_f64();
        println!(
            "bare etcd-client watch {interfaces}x{instances}: {:.1} us CPU per change (same churn: {:.1} ms CPU)",
            (bare_churn_ns as f64 - bare_idle) / f64::from(changes) / 1e3,
            bare_churn_ns as f64 / 1e6,
        );
        let keys_idle = keys_quiet_ns as f64 * churn_time.as_secs_f64() / quiet_for.as_secs_f64();
        println!(
            "bare watch + WatchedKeys {interfaces}x{instances}: {:.1} us CPU per change (same churn: {:.1} ms CPU)",
            (keys_churn_ns as f64 - keys_idle) / f64::from(changes) / 1e3,
            keys_churn_ns as f64 / 1e6,
        );
        let _ = stop_keys.send(());
        assert!(keyed.join().unwrap() >= u64::from(changes));
        let _ = stop_bare.send(());
        assert!(bare.join().unwrap() >= u64::from(changes));
        watcher.stop().unwrap();
        let snapshots = holder.join().unwrap();
        assert!(snapshots > 1);
    }
}
