//! The shard's providers: the newest registry snapshot, the connection pools to provider agents, the
//! route tables picking among them, and the queue of calls waiting for a provider with room.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mesh_registry::Snapshot;

use super::routes::{Balancer, Call, Caps, Chosen, Pick, Routes, Subsetting};
use crate::health::{AdaptiveLimit, EjectionConfig};
use crate::sync::WaitQueue;
use crate::upstream::{Pool, UpstreamConfig};

/// How a consumer shard balances and protects its providers.
#[derive(Debug, Clone)]
pub struct UpstreamsOptions {
    /// Shards of this consumer agent: a provider's announced cap is split evenly over them.
    pub shards: usize,
    /// Which of them this is (0-based): a large service's providers are subset over the shards, each
    /// provider to one shard (`consumer/routes/subset.rs`).
    pub shard: usize,
    /// Outlier ejection of providers that keep failing.
    pub ejection: EjectionConfig,
    /// Calls sent to a provider beyond its announced cap, as a fraction of it (0.05 = 5% more). Its agent
    /// queues them and refills the provider's freed threads at once, instead of letting each thread idle
    /// for the answer's way back and the next call's way out. 0 never sends more than the cap.
    pub cap_headroom: f64,
    /// The balancer among routed candidates.
    pub balancer: Balancer,
    /// Routing rule documents (JSON) by service, used when the registry has none for the service.
    pub rules: HashMap<String, String>,
    /// Who this consumer is to condition rules (`host`, `application`, ...): from the configuration.
    pub consumer: mesh_balance::ConsumerInfo,
}

impl Default for UpstreamsOptions {
    fn default() -> Self {
        UpstreamsOptions {
            shards: 1,
            shard: 0,
            ejection: EjectionConfig::default(),
            cap_headroom: 0.0,
            balancer: Balancer::default(),
            rules: HashMap::new(),
            consumer: mesh_balance::ConsumerInfo::default(),
        }
    }
}

/// The shard's view of the registry, its routing tables and its connection pools to provider agents.
pub struct Upstreams {
    snapshot: RefCell<Arc<Snapshot>>,
    rx: crossbeam_channel::Receiver<Arc<Snapshot>>,
    pools: RefCell<foldhash::HashMap<SocketAddr, Rc<Pool>>>,
    cfg: UpstreamConfig,
    routes: RefCell<Routes>,
    caps: Caps,
    shards: u32,
    /// Calls waiting for a provider below its cap, oldest first; woken as calls complete.
    pub(super) queue: Rc<WaitQueue>,
    ejection: EjectionConfig,
    /// `MESH_TRACE_SNAPSHOTS=1`: a `snapshot-applied` line on stderr per snapshot taken (scale benchmark).
    trace: Option<RefCell<TraceLines>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstreams(snapshot v{})", self.snapshot.borrow().version)
    }
}

/// Dubbo's default provider thread pool: the starting limit for a provider that announces no cap.
const DEFAULT_THREADS: u32 = 200;

impl Upstreams {
    pub fn new(
        rx: crossbeam_channel::Receiver<Arc<Snapshot>>,
        cfg: UpstreamConfig,
        opts: UpstreamsOptions,
    ) -> Self {
        let shards = u32::try_from(opts.shards.max(1)).unwrap_or(u32::MAX);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Upstreams {
            snapshot: RefCell::new(Arc::new(Snapshot::default())),
            rx,
            pools: RefCell::new(foldhash::HashMap::default()),
            cfg,
            routes: RefCell::new(
                Routes::new(opts.balancer, opts.rules, opts.consumer, seed)
                    .with_subsetting(Subsetting::new(opts.shard, opts.shards)),
            ),
            caps: Caps {
                shards,
                headroom: opts.cap_headroom.max(0.0),
            },
            shards,
            queue: Rc::new(WaitQueue::new()),
            ejection: opts.ejection,
            trace: std::env::var_os("MESH_TRACE_SNAPSHOTS")
                .is_some_and(|v| v == "1")
                .then(|| RefCell::new(TraceLines::default())),
        }
    }

    /// Takes the newest snapshot the registry thread has published, if any (between requests).
    pub fn refresh(&self) {
        let mut newest = None;
        while let Ok(s) = self.rx.try_recv() {
            // Every snapshot says which addresses left with it: their pools go, in O(departed).
            drop_departed(&mut self.pools.borrow_mut(), &s);
            // And how each service key's list changed: the tables follow, in O(change).
            self.routes
                .borrow_mut()
                .advance(&s, self.caps, |addr| self.pool(addr));
            newest = Some(s);
        }
        if let Some(s) = newest {
            *self.snapshot.borrow_mut() = s;
            // New providers may have room for calls that wait: start the chain of wake-ups.
            self.queue.wake_one();
            if let Some(trace) = &self.trace {
                trace.borrow_mut().applied(&self.snapshot.borrow());
            }
        } else if let Some(trace) = &self.trace {
            trace.borrow_mut().flush_if_due();
        }
    }

    fn pool(&self, addr: SocketAddr) -> Rc<Pool> {
        self.pools
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                // A provider that does not announce its cap is assumed to have Dubbo's default pool of
                // 200 threads (this shard's share of it) until its answers say otherwise.
                Rc::new(Pool::with_health(
                    addr,
                    self.cfg.clone(),
                    self.ejection,
                    AdaptiveLimit::new(DEFAULT_THREADS.div_ceil(self.shards), 10_000),
                ))
            })
            .clone()
    }

    /// Routes and picks a provider for `call`, none of `call.exclude`. A chosen provider counts the call
    /// in flight until [`Upstreams::done`].
    pub(super) fn pick(&self, call: &Call<'_>) -> Pick {
        let snap = self.snapshot.borrow().clone();
        self.routes
            .borrow_mut()
            .pick(&snap, call, self.caps, |addr| self.pool(addr))
    }

    /// Routes a call of `method` to `service` (no tag, arguments or attachments) as a request would, and
    /// ends it at once as answered: the provider picked, if any. The pick builds the service's route table
    /// when it has none (tools and benchmarks: what a first request does, without sending anything).
    pub fn probe(&self, service: &str, method: &str) -> Option<SocketAddr> {
        let call = Call {
            service,
            method,
            tag: None,
            force_tag: false,
            args: &[],
            attachments: &[],
            exclude: &[],
        };
        match self.pick(&call) {
            Pick::Chosen(chosen) => {
                self.done(service, &chosen, Instant::now(), true);
                Some(chosen.pool.addr())
            }
            _ => None,
        }
    }

    /// A call sent to `chosen` ended: the provider's in-flight count, latency and cap are updated and the
    /// oldest waiting call is woken (there may be room now). `ok`: a good sample for the balancer.
    pub(super) fn done(&self, service: &str, chosen: &Chosen, started: Instant, ok: bool) {
        let latency = started.elapsed().as_nanos() as u64;
        self.routes
            .borrow_mut()
            .done(service, chosen, latency, ok, self.caps);
        self.queue.wake_one();
    }
}

/// The scale benchmark's propagation probe (benches/registry.py): one `snapshot-applied` line per snapshot a
/// shard takes, with the time it took it. Lines are written to stderr in batches (at most every 200 ms or
/// 16 KiB) so that the probe does not add a write per change to the CPU per change the benchmark measures.
#[derive(Debug)]
struct TraceLines {
    text: String,
    flushed: Instant,
}

impl Default for TraceLines {
    fn default() -> Self {
        TraceLines {
            text: String::new(),
            flushed: Instant::now(),
        }
    }
}

impl TraceLines {
    const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
    const FLUSH_BYTES: usize = 16 * 1024;

    /// This shard routes by `snap` (the etcd state at `snap.revision`) from now on.
    fn applied(&mut self, snap: &Snapshot) {
        use std::fmt::Write;
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let shard = std::thread::current();
        let _ = writeln!(
            self.text,
            "snapshot-applied shard={} version={} revision={} unix_ns={unix_ns}",
            shard.name().unwrap_or("?"),
            snap.version,
            snap.revision
        );
        if self.text.len() >= Self::FLUSH_BYTES {
            self.flush();
        } else {
            self.flush_if_due();
        }
    }

    /// Writes what waits if the last write is [`Self::FLUSH_EVERY`] old (called between requests).
    fn flush_if_due(&mut self) {
        if !self.text.is_empty() && self.flushed.elapsed() >= Self::FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(self.text.as_bytes());
        self.text.clear();
        self.flushed = Instant::now();
    }
}

impl Drop for TraceLines {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Drops the pools of the providers `snap` says left (no service key lists them any more), in
/// O(departed) (calls in flight keep their connection alive).
fn drop_departed<P>(pools: &mut foldhash::HashMap<SocketAddr, P>, snap: &Snapshot) {
    for addr in snap.departed() {
        pools.remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_registry::Endpoint;

    #[test]
    fn pools_of_departed_providers_are_dropped() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:1".parse().unwrap();
        let mut builder = mesh_registry::SnapshotBuilder::new();
        for (service, addr) in [("S", a), ("T", b), ("S", c)] {
            builder.upsert(service, Endpoint::new(addr));
        }
        builder.publish(1).unwrap();
        let mut pools: foldhash::HashMap<SocketAddr, ()> = [(a, ()), (b, ()), (c, ())].into_iter().collect();
        // b moved from T to S (it stays), c left.
        builder.remove("T", b);
        builder.upsert("S", Endpoint::new(b));
        builder.remove("S", c);
        let snap = builder.publish(2).unwrap();
        drop_departed(&mut pools, &snap);
        let mut left: Vec<_> = pools.into_keys().collect();
        left.sort();
        assert_eq!(left, [a, b]);
    }
}
