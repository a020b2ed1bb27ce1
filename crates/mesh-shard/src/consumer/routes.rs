//! The consumer shard's routing: for each service, a [`mesh_balance::RouteTable`] built once per snapshot
//! epoch (tag and condition routers cached as bitsets) and its [`LiveState`] (in-flight calls and latency
//! per provider, carried over from epoch to epoch by address), glued to the shard's connection pools.
//!
//! On the request path a pick is a route-cache lookup and an O(1) balancer draw. Pool health does not
//! make it scan the providers: a picked provider found backing off or ejected is marked down until the
//! instant its state can change and the pick is drawn again; the marks are reviewed only when the earliest
//! of those instants has passed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mesh_balance::{
    Applied, Change, ConsumerInfo, LiveState, Pick as Drawn, PickOptions, Policy, Provider, Request,
    RouteTable, RuleSet, TableOptions, XorShift64,
};
use mesh_registry::{Endpoint, Snapshot};

use crate::health::State as HealthState;
use crate::upstream::Pool;

/// How the balancer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balancer {
    /// By the registered weights (smooth weighted round robin) when a service's providers register
    /// different weights; adaptive (P2C over in-flight and latency) when they do not.
    #[default]
    Auto,
    Fixed(Policy),
}

/// What a pick found.
pub(crate) enum Pick {
    /// No snapshot has arrived yet (the registry has not been read once).
    NoSnapshot,
    NoService,
    /// The routing rules leave no provider for this call.
    NoRoute,
    /// Some candidate could take the call but every one is at its cap: wait for room.
    AllBusy,
    /// Every candidate is excluded (already tried) or backing off after failed dials.
    Unreachable,
    Chosen(Chosen),
}

/// A provider chosen for one call; [`Routes::done`] must be told how the call ended.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub(crate) pool: Rc<Pool>,
    /// The epoch (snapshot version) and index it was picked in.
    version: u64,
    idx: usize,
}

/// How provider caps are derived for a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Consumer shards (a registered cap is split between them).
    pub(crate) shards: u32,
    /// Extra calls beyond a registered cap, as a fraction of it (queued by the provider's agent).
    pub(crate) headroom: f64,
}

impl Caps {
    /// This shard's cap for `ep`: its registered cap split over the shards (plus headroom), else the limit
    /// learnt from the provider's answers.
    pub(crate) fn of(&self, announced: Option<u32>, pool: &Pool) -> u32 {
        match announced {
            Some(c) => {
                let extra = (f64::from(c) * self.headroom).ceil() as u32;
                c.saturating_add(extra).div_ceil(self.shards).max(1)
            }
            None => pool.adaptive_limit(),
        }
    }
}

/// One service's routing state: its table (kept in step with the registry change by change), live state
/// and, per provider index, the shard's pool, the announced cap and the down mark.
struct ServiceRoutes {
    /// The epoch (snapshot version) of the provider list the table is at.
    version: u64,
    /// The rule document the table was built with (another one means a rebuild).
    rules_doc: Option<String>,
    policy: Policy,
    /// How many providers registered each weight (the `auto` balancer looks at whether they differ).
    weights: HashMap<u32, usize>,
    table: RouteTable,
    live: LiveState,
    /// Per provider index (free indices: `None`): its pool, its endpoint's announced cap, and until when
    /// it is marked down.
    pools: Vec<Option<Rc<Pool>>>,
    announced: Vec<Option<u32>>,
    down: Vec<Option<Instant>>,
    downs: usize,
    /// The earliest instant a down mark may be lifted.
    review_at: Option<Instant>,
}

/// Routing for every service of one consumer shard.
pub(crate) struct Routes {
    balancer: Balancer,
    consumer: ConsumerInfo,
    /// Rule documents from the configuration, used when the snapshot has none for the service.
    config_rules: HashMap<String, String>,
    services: HashMap<String, ServiceRoutes>,
    rng: XorShift64,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Routes({:?}, {} services)", self.balancer, self.services.len())
    }
}

/// What a call asks of the routers.
pub(crate) struct Call<'r> {
    pub(crate) service: &'r str,
    pub(crate) method: &'r str,
    pub(crate) tag: Option<&'r str>,
    /// Never fall back from `tag` to untagged providers (Dubbo's `dubbo.force.tag`).
    pub(crate) force_tag: bool,
    pub(crate) args: &'r [&'r str],
    /// The call's Dubbo attachments, for `attachments[name]` conditions.
    pub(crate) attachments: &'r [(&'r str, &'r str)],
    pub(crate) exclude: &'r [SocketAddr],
}

impl Routes {
    pub(crate) fn new(
        balancer: Balancer,
        config_rules: HashMap<String, String>,
        consumer: ConsumerInfo,
        seed: u64,
    ) -> Self {
        Routes {
            balancer,
            consumer,
            config_rules,
            services: HashMap::new(),
            rng: XorShift64::new(seed | 1),
        }
    }

    /// Wall-clock nanoseconds: the clock providers' start times (warm-up) are registered on.
    fn now_ns(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    /// Picks a provider for `call` in `snap`, building the service's table first when the snapshot is
    /// newer than it. `pool_of` gives the shard's pool of an address.
    pub(crate) fn pick(
        &mut self,
        snap: &Arc<Snapshot>,
        call: &Call<'_>,
        caps: Caps,
        pool_of: impl Fn(SocketAddr) -> Rc<Pool>,
    ) -> Pick {
        if snap.version == 0 {
            return Pick::NoSnapshot;
        }
        let eps = snap.endpoints(call.service);
        if eps.is_empty() {
            return Pick::NoService;
        }
        let stale = self
            .services
            .get(call.service)
            .is_none_or(|r| r.version != snap.version);
        if stale {
            let built = self.build(snap, call.service, eps, caps, &pool_of);
            self.services.insert(call.service.to_owned(), built);
        }
        let now_ns = self.now_ns();
        let Some(r) = self.services.get_mut(call.service) else {
            return Pick::NoService;
        };
        let policy = r.policy;
        let now = Instant::now();
        if r.review_at.is_some_and(|t| now >= t) {
            r.review(now, caps);
        }
        let exclude: Vec<usize> = call.exclude.iter().filter_map(|a| r.table.index_of(*a)).collect();
        let req = Request {
            method: call.method,
            tag: call.tag,
            force_tag: call.force_tag,
            arguments: call.args,
            attachments: call.attachments,
        };
        let opts = PickOptions {
            policy,
            now_ns,
            hash_key: call.args.first().map(|a| a.as_bytes()),
            exclude: &exclude,
        };
        // Each round either returns or marks one more provider down: at most n + 1 rounds.
        for _ in 0..=r.table.len() {
            match r.table.route_and_pick(&req, &r.live, &mut self.rng, &opts) {
                Drawn::Provider(i) => {
                    let Some(pool) = r.pools.get(i).cloned().flatten() else {
                        return Pick::Unreachable;
                    };
                    if r.mark_if_unusable(i, now) {
                        continue;
                    }
                    r.live.on_send(i, now_ns);
                    return Pick::Chosen(Chosen {
                        pool,
                        version: r.version,
                        idx: i,
                    });
                }
                Drawn::NoProvider => return Pick::NoRoute,
                Drawn::AllBusy => {
                    // Slow path (the service is saturated or broken): is anyone left who could take the
                    // call once it has room?
                    let route = r.table.route(&req);
                    let waitable = r
                        .table
                        .candidates(route)
                        .iter()
                        .any(|i| !exclude.contains(&i) && r.down[i].is_none());
                    return if waitable {
                        Pick::AllBusy
                    } else {
                        Pick::Unreachable
                    };
                }
            }
        }
        Pick::Unreachable
    }

    fn build(
        &self,
        snap: &Snapshot,
        service: &str,
        eps: &[Endpoint],
        caps: Caps,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) -> ServiceRoutes {
        let doc = snap
            .rules(service)
            .or_else(|| self.config_rules.get(service).map(String::as_str));
        let rules = match doc.map(RuleSet::from_json) {
            None => RuleSet::default(),
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                // A bad document must not take the service down: route without rules, say why.
                eprintln!(
                    "mesh-agent: routing rules of {service} ignored (snapshot {}): {e}",
                    snap.version
                );
                RuleSet::default()
            }
        };
        let old = self.services.get(service);
        ServiceRoutes::build(
            snap.version,
            doc.map(str::to_owned),
            &rules,
            eps,
            Built {
                balancer: self.balancer,
                consumer: &self.consumer,
                caps,
            },
            pool_of,
            old,
        )
    }

    /// A call picked by [`Routes::pick`] ended after `latency_ns`: `ok` unless it failed or timed out.
    /// Refreshes the provider's cap (learnt limits change with answers; a probe's outcome ends it).
    pub(crate) fn done(&mut self, service: &str, chosen: &Chosen, latency_ns: u64, ok: bool, caps: Caps) {
        let now_ns = self.now_ns();
        let Some(r) = self.services.get_mut(service) else {
            return;
        };
        let idx = if r.version == chosen.version {
            Some(chosen.idx)
        } else {
            r.table.index_of(chosen.pool.addr())
        };
        let Some(idx) = idx else { return };
        r.live.on_answer(idx, now_ns, latency_ns, ok);
        r.refresh_cap(idx, Instant::now(), caps);
    }
}

/// What a table is built with besides the providers and rules.
#[derive(Clone, Copy)]
struct Built<'a> {
    balancer: Balancer,
    consumer: &'a ConsumerInfo,
    caps: Caps,
}

/// The table's view of endpoint `e` whose pool is `pool`.
fn provider_of(e: &Endpoint, pool: &Pool, caps: Caps) -> Provider {
    Provider {
        addr: e.addr,
        weight: e.weight.max(1),
        max_concurrency: Some(caps.of(e.max_concurrency, pool)),
        tag: e.tag.clone(),
        params: e.params.clone(),
        registered_at_ms: e.registered_at_ms,
    }
}

impl ServiceRoutes {
    /// A table over `eps` (O(n)); the live state of `old` (the service's previous routes) carries over by
    /// address.
    fn build(
        version: u64,
        rules_doc: Option<String>,
        rules: &RuleSet,
        eps: &[Endpoint],
        with: Built<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
        old: Option<&ServiceRoutes>,
    ) -> ServiceRoutes {
        let providers: Vec<Provider> = eps
            .iter()
            .map(|e| provider_of(e, &pool_of(e.addr), with.caps))
            .collect();
        let table = RouteTable::build(version, providers, rules, with.consumer, TableOptions::default());
        let live = match old {
            Some(old) => old.live.carry_over(&old.table, &table),
            None => LiveState::new(&table),
        };
        let n = table.slots();
        let mut r = ServiceRoutes {
            version,
            rules_doc,
            policy: Policy::Adaptive,
            weights: HashMap::new(),
            table,
            live,
            pools: vec![None; n],
            announced: vec![None; n],
            down: vec![None; n],
            downs: 0,
            review_at: None,
        };
        // Indices follow the table (a repeated address is one provider).
        for e in eps {
            if let Some(i) = r.table.index_of(e.addr) {
                r.pools[i] = Some(pool_of(e.addr));
                r.announced[i] = e.max_concurrency;
            }
        }
        for (_, p) in r.table.providers() {
            *r.weights.entry(p.weight).or_insert(0) += 1;
        }
        r.choose_policy(with.balancer);
        r
    }

    fn choose_policy(&mut self, balancer: Balancer) {
        self.policy = match balancer {
            Balancer::Fixed(p) => p,
            Balancer::Auto if self.weights.len() > 1 => Policy::RoundRobin,
            Balancer::Auto => Policy::Adaptive,
        };
    }

    /// Moves the table to `version` by a change of its provider list (`removed` addresses, `upserted`
    /// endpoints: joined or changed), in O(change) (plus, rarely, a compaction: O(n), amortized O(1)).
    fn apply(
        &mut self,
        version: u64,
        removed: &[SocketAddr],
        upserted: &[Endpoint],
        with: Built<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) {
        let mut changes = Vec::with_capacity(removed.len() + upserted.len());
        for &a in removed {
            if let Some(p) = self.table.index_of(a).and_then(|i| self.table.provider(i)) {
                count_out(&mut self.weights, p.weight);
            }
            changes.push(Change::Remove(a));
        }
        let mut announced: HashMap<SocketAddr, Option<u32>> = HashMap::with_capacity(upserted.len());
        for e in upserted {
            let first = announced.insert(e.addr, e.max_concurrency).is_none();
            if let Some(p) = self.table.index_of(e.addr).and_then(|i| self.table.provider(i)) {
                if first {
                    count_out(&mut self.weights, p.weight);
                }
            }
            changes.push(Change::Upsert(provider_of(e, &pool_of(e.addr), with.caps)));
        }
        let applied = self.table.apply(version, changes);
        self.live.apply(&self.table, &applied);
        let n = self.table.slots();
        if self.pools.len() < n {
            self.pools.resize(n, None);
            self.announced.resize(n, None);
            self.down.resize(n, None);
        }
        for a in applied {
            let (i, fresh) = match a {
                Applied::Added(i) => (i, true),
                Applied::Removed(i) => {
                    self.unmark(i);
                    self.pools[i] = None;
                    self.announced[i] = None;
                    continue;
                }
                Applied::Updated(i) => (i, false),
            };
            let Some(addr) = self.table.provider(i).map(|p| p.addr) else {
                continue;
            };
            if fresh {
                self.unmark(i);
                self.pools[i] = Some(pool_of(addr));
            }
            if let Some(&cap) = announced.get(&addr) {
                self.announced[i] = cap;
            }
        }
        // Weights of the providers now at the changed addresses (the ones that left were counted out).
        for addr in announced.keys() {
            if let Some(p) = self.table.index_of(*addr).and_then(|i| self.table.provider(i)) {
                *self.weights.entry(p.weight).or_insert(0) += 1;
            }
        }
        self.choose_policy(with.balancer);
        self.version = version;
        if self.table.needs_compaction() {
            self.compact();
        }
    }

    /// Renumbers the table without its free indices; per-index state follows by address.
    fn compact(&mut self) {
        let table = self.table.compacted();
        let n = table.slots();
        let (mut pools, mut announced, mut down) = (vec![None; n], vec![None; n], vec![None; n]);
        for (j, p) in table.providers() {
            if let Some(i) = self.table.index_of(p.addr) {
                pools[j] = self.pools[i].take();
                announced[j] = self.announced[i];
                down[j] = self.down[i];
            }
        }
        self.live = self.live.carry_over(&self.table, &table);
        self.downs = down.iter().filter(|d| d.is_some()).count();
        (self.table, self.pools, self.announced, self.down) = (table, pools, announced, down);
    }

    /// Lifts `idx`'s down mark, if any (its index is being freed or reused).
    fn unmark(&mut self, idx: usize) {
        if self.down[idx].take().is_some() {
            self.downs -= 1;
        }
    }

    /// The cap provider `idx` has now: one call at a time while probing after an ejection.
    fn refresh_cap(&mut self, idx: usize, now: Instant, caps: Caps) {
        let Some(pool) = self.pools.get(idx).and_then(Option::as_ref) else {
            return;
        };
        let cap = match pool.health(now) {
            HealthState::Probing => 1,
            _ => caps.of(self.announced[idx], pool),
        };
        self.live.set_cap(idx, Some(cap));
    }

    /// Marks `idx` down when its pool is backing off or it is ejected (never the last usable provider of
    /// the service: ejection does not empty a service). Returns whether it was marked.
    fn mark_if_unusable(&mut self, idx: usize, now: Instant) -> bool {
        let Some(pool) = self.pools.get(idx).and_then(Option::as_ref) else {
            return false;
        };
        let until = match (pool.backoff_until(now), pool.health(now)) {
            (Some(t), _) => t,
            (None, HealthState::Ejected(t)) if self.downs + 1 < self.table.len() => t,
            _ => return false,
        };
        self.down[idx] = Some(until);
        self.downs += 1;
        self.live.set_down(idx, true);
        self.review_at = Some(self.review_at.map_or(until, |r| r.min(until)));
        true
    }

    /// Lifts the down marks whose time has come (the pool may dial again; the ejection became a probe).
    fn review(&mut self, now: Instant, caps: Caps) {
        self.review_at = None;
        for idx in 0..self.down.len() {
            match self.down[idx] {
                Some(t) if t <= now => {
                    self.down[idx] = None;
                    self.downs -= 1;
                    self.live.set_down(idx, false);
                    self.refresh_cap(idx, now, caps);
                }
                Some(t) => self.review_at = Some(self.review_at.map_or(t, |r| r.min(t))),
                None => {}
            }
        }
    }
}

fn count_out(weights: &mut HashMap<u32, usize>, w: u32) {
    if let Some(c) = weights.get_mut(&w) {
        *c -= 1;
        if *c == 0 {
            weights.remove(&w);
        }
    }
}

/// The balancer named in the configuration.
pub fn balancer_named(name: &str) -> Option<Balancer> {
    Some(Balancer::Fixed(match name {
        "auto" => return Some(Balancer::Auto),
        "adaptive" => Policy::Adaptive,
        "weighted_random" => Policy::WeightedRandom,
        "round_robin" => Policy::RoundRobin,
        "least_active" => Policy::LeastActive,
        "shortest_response" => Policy::ShortestResponse,
        "consistent_hash" => Policy::ConsistentHash,
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamConfig;
    use mesh_registry::Endpoint;

    const SERVICE: &str = "com.example.Svc";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Three providers: 10.0.0.1 tagged `gray`, 10.0.0.2 and 10.0.0.3 untagged; `rules` as the service's
    /// document.
    fn routes_and_snapshot(rules: &str) -> (Routes, Arc<Snapshot>) {
        let snap = Snapshot::new(
            1,
            [
                (
                    SERVICE.to_string(),
                    Endpoint::new(addr("10.0.0.1:1")).with_tag("gray"),
                ),
                (SERVICE.to_string(), Endpoint::new(addr("10.0.0.2:1"))),
                (SERVICE.to_string(), Endpoint::new(addr("10.0.0.3:1"))),
            ],
        )
        .with_rules([(SERVICE.to_string(), rules.to_string())]);
        let routes = Routes::new(
            Balancer::Fixed(Policy::RoundRobin),
            HashMap::new(),
            ConsumerInfo::default(),
            7,
        );
        (routes, Arc::new(snap))
    }

    /// The providers `call` can be routed to (many picks, each answered at once).
    fn picked(routes: &mut Routes, snap: &Arc<Snapshot>, call: &Call<'_>) -> Result<Vec<SocketAddr>, String> {
        let caps = Caps {
            shards: 1,
            headroom: 0.0,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let mut seen = Vec::new();
        for _ in 0..8 {
            match routes.pick(snap, call, caps, pool_of) {
                Pick::Chosen(c) => {
                    let a = c.pool.addr();
                    routes.done(call.service, &c, 1_000, true, caps);
                    if !seen.contains(&a) {
                        seen.push(a);
                    }
                }
                Pick::NoRoute => return Err("no route".into()),
                _ => return Err("no pick".into()),
            }
        }
        seen.sort();
        Ok(seen)
    }

    fn call<'r>(tag: Option<&'r str>, force_tag: bool, attachments: &'r [(&'r str, &'r str)]) -> Call<'r> {
        Call {
            service: SERVICE,
            method: "hash",
            tag,
            force_tag,
            args: &["x"],
            attachments,
            exclude: &[],
        }
    }

    #[test]
    fn condition_rules_see_the_call_attachments() {
        let (mut routes, snap) =
            routes_and_snapshot(r#"{"conditions":["attachments[user] = ann => host = 10.0.0.3"]}"#);
        let ann = [("user", "ann")];
        assert_eq!(
            picked(&mut routes, &snap, &call(None, false, &ann)),
            Ok(vec![addr("10.0.0.3:1")])
        );
        let bob = [("user", "bob")];
        assert_eq!(
            picked(&mut routes, &snap, &call(None, false, &bob)),
            Ok(vec![addr("10.0.0.2:1"), addr("10.0.0.3:1")])
        );
    }

    #[test]
    fn a_forced_tag_never_falls_back() {
        let (mut routes, snap) = routes_and_snapshot("{}");
        assert_eq!(
            picked(&mut routes, &snap, &call(Some("gray"), true, &[])),
            Ok(vec![addr("10.0.0.1:1")])
        );
        // An unknown tag falls back to the untagged providers, unless forced.
        assert_eq!(
            picked(&mut routes, &snap, &call(Some("blue"), false, &[])),
            Ok(vec![addr("10.0.0.2:1"), addr("10.0.0.3:1")])
        );
        assert_eq!(
            picked(&mut routes, &snap, &call(Some("blue"), true, &[])),
            Err("no route".into())
        );
    }

    /// Checks every per-index vector against the table.
    fn consistent(r: &ServiceRoutes) {
        let n = r.table.slots();
        assert_eq!((r.pools.len(), r.announced.len(), r.down.len()), (n, n, n));
        for i in 0..n {
            match r.table.provider(i) {
                Some(p) => assert_eq!(r.pools[i].as_ref().map(|p| p.addr()), Some(p.addr)),
                None => assert!(r.pools[i].is_none() && r.down[i].is_none()),
            }
        }
        assert_eq!(r.downs, r.down.iter().filter(|d| d.is_some()).count());
        let mut w: HashMap<u32, usize> = HashMap::new();
        for (_, p) in r.table.providers() {
            *w.entry(p.weight).or_insert(0) += 1;
        }
        assert_eq!(w, r.weights);
    }

    #[test]
    fn changes_apply_in_place_and_keep_per_index_state() {
        let caps = Caps {
            shards: 2,
            headroom: 0.0,
        };
        let consumer = ConsumerInfo::default();
        let with = Built {
            balancer: Balancer::Auto,
            consumer: &consumer,
            caps,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
        let eps: Vec<Endpoint> = (1..=40).map(ep).collect();
        let mut r = ServiceRoutes::build(1, None, &RuleSet::default(), &eps, with, &pool_of, None);
        consistent(&r);
        assert_eq!(r.policy, Policy::Adaptive);
        r.live.on_send(4, 0);
        let now = Instant::now();
        r.down[5] = Some(now);
        r.downs = 1;
        // 10.0.0.6 (index 5, marked down) leaves, 10.0.0.50 joins and takes its index fresh, 10.0.0.5
        // (index 4, one call in flight) registers weight 300 and a cap of 8.
        r.apply(
            2,
            &[ep(6).addr],
            &[ep(50), ep(5).with_weight(300).with_max_concurrency(8)],
            with,
            &pool_of,
        );
        consistent(&r);
        assert_eq!((r.version, r.table.len(), r.table.slots()), (2, 40, 40));
        assert_eq!(r.table.index_of(ep(50).addr), Some(5));
        assert_eq!((r.down[5], r.downs), (None, 0), "the new provider is not down");
        assert_eq!((r.live.inflight(4), r.announced[4]), (1, Some(8)), "kept in flight, new cap");
        assert_eq!(r.policy, Policy::RoundRobin, "weights differ now");
        // most leave: the table is compacted, the state follows by address
        let gone: Vec<SocketAddr> = (7..=40).map(|i| ep(i).addr).collect();
        r.apply(3, &gone, &[], with, &pool_of);
        consistent(&r);
        assert_eq!((r.table.len(), r.table.slots()), (6, 6), "compacted");
        let i = r.table.index_of(ep(5).addr).unwrap();
        assert_eq!((r.live.inflight(i), r.announced[i]), (1, Some(8)));
        r.apply(4, &[], &[ep(5)], with, &pool_of);
        consistent(&r);
        assert_eq!(r.policy, Policy::Adaptive);
    }
}
