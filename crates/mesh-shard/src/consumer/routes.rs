//! The consumer shard's routing: for each requested service key, a [`mesh_balance::RouteTable`] (tag and
//! condition routers cached as bitsets) and its [`LiveState`] (in-flight calls and latency per provider),
//! glued to the shard's connection pools. A table follows its service key's provider list change by
//! change ([`Routes::advance`], for every snapshot the shard receives, in order): a list whose change
//! applies to the table's epoch costs O(change), not a rebuild; anything else (a missed step, new rules,
//! a `*` request merging several keys) rebuilds at the next pick, carrying the live state over by address.
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

use mesh_balance::dubbo_rules::{provider_application, ChainQuery};
use mesh_balance::{
    Applied, Change, ConsumerInfo, LiveState, Pick as Drawn, PickOptions, Policy, Provider, Request,
    RouteTable, RuleSet, TableOptions, XorShift64,
};
use mesh_registry::dubbo::ServiceKey;
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
    /// The provider URL's `token`, sent as the call's `token` attachment (Dubbo's token check).
    pub(crate) token: Option<Rc<str>>,
    /// The table (build number) and index it was picked in.
    build: u64,
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

/// What a table was built from: the one service key the request matched, at a list epoch (valid while
/// the request still matches only that key and its epoch is that one, or its change applies to it), or
/// several keys merged for a `*` / comma-list request (valid for one snapshot version).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Built {
    Exact { key: Box<str>, epoch: u64 },
    Merged { version: u64 },
}

/// One requested service key's routing state.
struct ServiceRoutes {
    /// Build number (unique per `Routes`, new with every change too): whether a [`Chosen`] was picked in
    /// this table as it is (else its index may have been freed or reused: map it by address).
    build: u64,
    built: Built,
    rules_epoch: u64,
    /// The snapshot version this table was last found current in (the request path then skips the
    /// service-key lookup of [`ServiceRoutes::is_current`]).
    checked: u64,
    policy: Policy,
    /// How many providers registered each weight (the `auto` balancer looks at whether they differ).
    weights: HashMap<u32, usize>,
    table: RouteTable,
    live: LiveState,
    /// Per provider index (free indices: `None`): its pool, token, announced cap, and until when it is
    /// marked down.
    pools: Vec<Option<Rc<Pool>>>,
    tokens: Vec<Option<Rc<str>>>,
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
    builds: u64,
    rng: XorShift64,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Routes({:?}, {} services)", self.balancer, self.services.len())
    }
}

/// What a call asks of the routers.
pub(crate) struct Call<'r> {
    /// The requested service key, `group/interface:version` (group `*` or a comma list and version `*`
    /// match as Dubbo does).
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
            builds: 0,
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
        let inputs = Inputs {
            balancer: self.balancer,
            consumer: &self.consumer,
            caps,
        };
        let current = match self.services.get_mut(call.service) {
            Some(r) => r.advance(snap, call.service, inputs, &pool_of, &mut self.builds),
            None => false,
        };
        if !current {
            let matched = snap.matching(&ServiceKey::parse(call.service));
            if matched.is_empty() {
                self.services.remove(call.service);
                return Pick::NoService;
            }
            let built = match matched.as_slice() {
                [(key, providers)] => Built::Exact {
                    key: (*key).into(),
                    epoch: providers.epoch(),
                },
                _ => Built::Merged {
                    version: snap.version,
                },
            };
            // One list per address: a provider of two matched keys is one provider.
            let mut eps: Vec<&Endpoint> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (_, providers) in &matched {
                for e in providers.iter() {
                    if seen.insert(e.addr) {
                        eps.push(e);
                    }
                }
            }
            let table = self.build(snap, call.service, built, &eps, caps, &pool_of);
            self.services.insert(call.service.to_owned(), table);
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
                        token: r.tokens[i].clone(),
                        build: r.build,
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

    /// The routing rules of `service` (a requested service key): Dubbo's router chain from the config center
    /// when one of its rules applies (the providers' tag rule, the service's and the applications' condition
    /// rules, see [`mesh_balance::dubbo_rules`]), else the configured document of the service, else none.
    fn rules_for(&self, snap: &Snapshot, service: &str, eps: &[&Endpoint]) -> RuleSet {
        let index = snap.dubbo_rules();
        // Without config-center rules (the usual case) this costs nothing; the providers' application is
        // looked for (O(providers)) only when some rule is keyed by an application.
        if !index.is_empty() {
            let key = ServiceKey::parse(service);
            let provider_app = if index.keys_applications() {
                provider_application(
                    eps.iter()
                        .filter_map(|e| e.params.get("application").map(String::as_str)),
                )
            } else {
                None
            };
            let query = ChainQuery {
                interface: &key.interface,
                version: key.version.as_deref().unwrap_or(""),
                group: key.group.as_deref().unwrap_or(""),
                consumer_app: self.consumer.params.get("application").map(String::as_str),
                provider_app,
            };
            match index.rule_set_for(&query) {
                Some(Ok(rules)) => return rules,
                Some(Err(e)) => {
                    // More conditions than a table holds: keep the tag rule, say why.
                    eprintln!(
                        "mesh-agent: condition rules of {service} ignored (snapshot {}): {e}",
                        snap.version
                    );
                    let tag = provider_app
                        .and_then(|a| index.tag(a))
                        .and_then(|t| t.tag_rule())
                        .cloned();
                    return RuleSet {
                        tag,
                        conditions: Vec::new(),
                    };
                }
                None => {}
            }
        }
        match self.config_rules.get(service).map(|d| RuleSet::from_json(d)) {
            None => RuleSet::default(),
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                // A bad document must not take the service down: route without rules, say why.
                eprintln!("mesh-agent: configured routing rules of {service} ignored: {e}");
                RuleSet::default()
            }
        }
    }

    /// Brings every table this shard holds up to `snap` where its service key's change applies to it
    /// (O(held tables) per snapshot, plus O(change) per changed one); the others are rebuilt at their next
    /// pick. Call it for every snapshot received, in order, so that no step is missed.
    pub(crate) fn advance(&mut self, snap: &Snapshot, caps: Caps, pool_of: impl Fn(SocketAddr) -> Rc<Pool>) {
        let inputs = Inputs {
            balancer: self.balancer,
            consumer: &self.consumer,
            caps,
        };
        for (service, r) in &mut self.services {
            r.advance(snap, service, inputs, &pool_of, &mut self.builds);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        snap: &Snapshot,
        service: &str,
        built: Built,
        eps: &[&Endpoint],
        caps: Caps,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) -> ServiceRoutes {
        let rules = self.rules_for(snap, service, eps);
        self.builds += 1;
        let inputs = Inputs {
            balancer: self.balancer,
            consumer: &self.consumer,
            caps,
        };
        ServiceRoutes::build(
            (self.builds, built, snap.rules_epoch(), snap.version),
            &rules,
            eps,
            inputs,
            pool_of,
            self.services.get(service),
        )
    }

    /// A call picked by [`Routes::pick`] ended after `latency_ns`: `ok` unless it failed or timed out.
    /// Refreshes the provider's cap (learnt limits change with answers; a probe's outcome ends it).
    pub(crate) fn done(&mut self, service: &str, chosen: &Chosen, latency_ns: u64, ok: bool, caps: Caps) {
        let now_ns = self.now_ns();
        let Some(r) = self.services.get_mut(service) else {
            return;
        };
        let idx = if r.build == chosen.build {
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
struct Inputs<'a> {
    balancer: Balancer,
    consumer: &'a ConsumerInfo,
    caps: Caps,
}

/// The table's view of endpoint `e` whose pool is `pool`.
fn provider_of(e: &Endpoint, pool: &Pool, caps: Caps) -> Provider {
    Provider {
        addr: e.addr,
        weight: e.weight,
        max_concurrency: Some(caps.of(e.max_concurrency, pool)),
        tag: e.tag.clone(),
        params: e.params.clone(),
        registered_at_ms: e.registered_at_ms,
    }
}

/// The provider URL's `token` (sent as the call's `token` attachment).
fn token_of(e: &Endpoint) -> Option<Rc<str>> {
    e.params
        .get("token")
        .filter(|t| !t.is_empty())
        .map(|t| Rc::from(t.as_str()))
}

fn count_out(weights: &mut HashMap<u32, usize>, w: u32) {
    if let Some(c) = weights.get_mut(&w) {
        *c -= 1;
        if *c == 0 {
            weights.remove(&w);
        }
    }
}

impl ServiceRoutes {
    /// A table over `eps` (O(n)) as build number `build`, from a list `built`, under rules of
    /// `rules_epoch`; the live state of `old` (the service's previous routes) carries over by address.
    fn build(
        (build, built, rules_epoch, checked): (u64, Built, u64, u64),
        rules: &RuleSet,
        eps: &[&Endpoint],
        with: Inputs<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
        old: Option<&ServiceRoutes>,
    ) -> ServiceRoutes {
        let epoch = match built {
            Built::Exact { epoch, .. } => epoch,
            Built::Merged { version } => version,
        };
        let providers: Vec<Provider> = eps
            .iter()
            .map(|e| provider_of(e, &pool_of(e.addr), with.caps))
            .collect();
        let table = RouteTable::build(epoch, providers, rules, with.consumer, TableOptions::default());
        let live = match old {
            Some(old) => old.live.carry_over(&old.table, &table),
            None => LiveState::new(&table),
        };
        let n = table.slots();
        let mut r = ServiceRoutes {
            build,
            built,
            rules_epoch,
            checked,
            policy: Policy::Adaptive,
            weights: HashMap::new(),
            table,
            live,
            pools: vec![None; n],
            tokens: vec![None; n],
            announced: vec![None; n],
            down: vec![None; n],
            downs: 0,
            review_at: None,
        };
        // Indices follow the table (a repeated address is one provider).
        for e in eps {
            if let Some(i) = r.table.index_of(e.addr) {
                r.pools[i] = Some(pool_of(e.addr));
                r.tokens[i] = token_of(e);
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

    /// Brings the table up to `snap` when that takes no rebuild: true when it is current (already, or by
    /// applying `service`'s change, whose base is the table's epoch, in O(change); a new build number).
    fn advance(
        &mut self,
        snap: &Snapshot,
        service: &str,
        with: Inputs<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
        builds: &mut u64,
    ) -> bool {
        if self.checked == snap.version {
            return true;
        }
        if self.rules_epoch != snap.rules_epoch() {
            return false;
        }
        let (key, epoch) = match &self.built {
            Built::Merged { version } => return *version == snap.version,
            Built::Exact { key, epoch } => (key.clone(), *epoch),
        };
        // Once per snapshot version: the request must still match that one key.
        let matched = snap.matching(&ServiceKey::parse(service));
        let [(k, providers)] = matched.as_slice() else {
            return false;
        };
        if *k != &*key {
            return false;
        }
        if providers.epoch() != epoch {
            let Some(change) = providers.change().filter(|c| c.base == epoch) else {
                return false;
            };
            self.apply(
                providers.epoch(),
                &change.removed,
                &change.upserted,
                with,
                pool_of,
            );
            self.built = Built::Exact {
                key,
                epoch: providers.epoch(),
            };
            *builds += 1;
            self.build = *builds;
        }
        self.checked = snap.version;
        true
    }

    /// Moves the table to `epoch` by a change of its provider list (`removed` addresses, `upserted`
    /// endpoints: joined or changed), in O(change) (plus, rarely, a compaction: O(n), amortized O(1)).
    fn apply(
        &mut self,
        epoch: u64,
        removed: &[SocketAddr],
        upserted: &[Arc<Endpoint>],
        with: Inputs<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) {
        let mut changes = Vec::with_capacity(removed.len() + upserted.len());
        for &a in removed {
            if let Some(p) = self.table.index_of(a).and_then(|i| self.table.provider(i)) {
                count_out(&mut self.weights, p.weight);
            }
            changes.push(Change::Remove(a));
        }
        let mut by_addr: HashMap<SocketAddr, &Endpoint> = HashMap::with_capacity(upserted.len());
        for e in upserted {
            let first = by_addr.insert(e.addr, e).is_none();
            if let Some(p) = self.table.index_of(e.addr).and_then(|i| self.table.provider(i)) {
                if first {
                    count_out(&mut self.weights, p.weight);
                }
            }
            changes.push(Change::Upsert(provider_of(e, &pool_of(e.addr), with.caps)));
        }
        let applied = self.table.apply(epoch, changes);
        self.live.apply(&self.table, &applied);
        let n = self.table.slots();
        if self.pools.len() < n {
            self.pools.resize(n, None);
            self.tokens.resize(n, None);
            self.announced.resize(n, None);
            self.down.resize(n, None);
        }
        for a in applied {
            let (i, fresh) = match a {
                Applied::Added(i) => (i, true),
                Applied::Removed(i) => {
                    self.unmark(i);
                    self.pools[i] = None;
                    self.tokens[i] = None;
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
        }
        // What the table does not keep, for every upserted endpoint (the table reports no change when
        // only the announced cap moved and this shard's cap for it stays the same), and the weights of the
        // providers now at those addresses (the ones there before were counted out).
        for (addr, e) in &by_addr {
            if let Some(i) = self.table.index_of(*addr) {
                self.announced[i] = e.max_concurrency;
                self.tokens[i] = token_of(e);
                if let Some(p) = self.table.provider(i) {
                    *self.weights.entry(p.weight).or_insert(0) += 1;
                }
            }
        }
        self.choose_policy(with.balancer);
        if self.table.needs_compaction() {
            self.compact();
        }
    }

    /// Renumbers the table without its free indices; per-index state follows by address.
    fn compact(&mut self) {
        let table = self.table.compacted();
        let n = table.slots();
        let mut pools = vec![None; n];
        let mut tokens = vec![None; n];
        let mut announced = vec![None; n];
        let mut down = vec![None; n];
        for (j, p) in table.providers() {
            if let Some(i) = self.table.index_of(p.addr) {
                pools[j] = self.pools[i].take();
                tokens[j] = self.tokens[i].take();
                announced[j] = self.announced[i];
                down[j] = self.down[i];
            }
        }
        self.live = self.live.carry_over(&self.table, &table);
        self.downs = down.iter().filter(|d| d.is_some()).count();
        self.table = table;
        self.pools = pools;
        self.tokens = tokens;
        self.announced = announced;
        self.down = down;
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

    /// Three providers of application `shop`: 10.0.0.1 tagged `gray`, 10.0.0.2 and 10.0.0.3 untagged.
    fn three_providers(version: u64) -> Snapshot {
        let ep = |a: &str| Endpoint::new(addr(a)).with_param("application", "shop");
        Snapshot::new(
            version,
            [
                (SERVICE.to_string(), ep("10.0.0.1:1").with_tag("gray")),
                (SERVICE.to_string(), ep("10.0.0.2:1")),
                (SERVICE.to_string(), ep("10.0.0.3:1")),
            ],
        )
    }

    /// [`three_providers`], and `rules` as the service's configured document.
    fn routes_and_snapshot(rules: &str) -> (Routes, Arc<Snapshot>) {
        let routes = Routes::new(
            Balancer::Fixed(Policy::RoundRobin),
            HashMap::from([(SERVICE.to_string(), rules.to_string())]),
            ConsumerInfo::default(),
            7,
        );
        (routes, Arc::new(three_providers(1)))
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
        let with = Inputs {
            balancer: Balancer::Auto,
            consumer: &consumer,
            caps,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
        let eps: Vec<Endpoint> = (1..=40).map(ep).collect();
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let built = (
            1,
            Built::Exact {
                key: "k".into(),
                epoch: 1,
            },
            0,
            1,
        );
        let mut r = ServiceRoutes::build(built, &RuleSet::default(), &refs, with, &pool_of, None);
        consistent(&r);
        assert_eq!(r.policy, Policy::Adaptive);
        r.live.on_send(4, 0);
        let now = Instant::now();
        r.down[5] = Some(now);
        r.downs = 1;
        // 10.0.0.6 (index 5, marked down) leaves, 10.0.0.50 joins and takes its index fresh, 10.0.0.5
        // (index 4, one call in flight) registers weight 300 and a cap of 8.
        let token = ep(50).with_param("token", "s3cret");
        r.apply(
            2,
            &[ep(6).addr],
            &[
                Arc::new(token),
                Arc::new(ep(5).with_weight(300).with_max_concurrency(8)),
            ],
            with,
            &pool_of,
        );
        consistent(&r);
        assert_eq!((r.table.epoch(), r.table.len(), r.table.slots()), (2, 40, 40));
        assert_eq!(r.table.index_of(ep(50).addr), Some(5));
        assert_eq!((r.down[5], r.downs), (None, 0), "the new provider is not down");
        assert_eq!(r.tokens[5].as_deref(), Some("s3cret"));
        assert_eq!(
            (r.live.inflight(4), r.announced[4]),
            (1, Some(8)),
            "kept in flight, new cap"
        );
        assert_eq!(r.policy, Policy::RoundRobin, "weights differ now");
        // most leave: the table is compacted, the state follows by address
        let gone: Vec<SocketAddr> = (7..=40).map(|i| ep(i).addr).collect();
        r.apply(3, &gone, &[], with, &pool_of);
        consistent(&r);
        assert_eq!((r.table.len(), r.table.slots()), (6, 6), "compacted");
        let i = r.table.index_of(ep(5).addr).unwrap();
        assert_eq!((r.live.inflight(i), r.announced[i]), (1, Some(8)));
        r.apply(4, &[], &[Arc::new(ep(5))], with, &pool_of);
        consistent(&r);
        assert_eq!(r.policy, Policy::Adaptive);
    }

    #[test]
    fn tables_follow_each_snapshot_change_without_a_rebuild() {
        let caps = Caps {
            shards: 1,
            headroom: 0.0,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
        let mut builder = mesh_registry::SnapshotBuilder::new();
        for i in 1..=3 {
            builder.upsert(SERVICE, ep(i));
        }
        builder.upsert("other/Svc:1.0", ep(7));
        let v1 = Arc::new(builder.publish(1).unwrap());
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 7);
        let c = call(None, false, &[]);
        let Pick::Chosen(first) = routes.pick(&v1, &c, caps, pool_of) else {
            panic!("no pick")
        };
        let table = |routes: &Routes| {
            let r = &routes.services[SERVICE];
            let addrs: Vec<Option<SocketAddr>> = (0..r.table.slots())
                .map(|i| r.table.provider(i).map(|p| p.addr))
                .collect();
            (r.table.epoch(), addrs)
        };
        // v2: 10.0.0.1 leaves, 10.0.0.9 joins (it takes the free index: no rebuild, which would sort).
        builder.remove(SERVICE, ep(1).addr);
        builder.upsert(SERVICE, ep(9));
        let v2 = Arc::new(builder.publish(2).unwrap());
        routes.advance(&v2, caps, pool_of);
        assert_eq!(
            table(&routes),
            (2, vec![Some(ep(9).addr), Some(ep(2).addr), Some(ep(3).addr)])
        );
        // The call picked before the change is still counted against its provider (by address).
        let r = &routes.services[SERVICE];
        let in_flight = r.table.index_of(first.pool.addr()).map(|i| r.live.inflight(i));
        let want = (first.pool.addr() != ep(1).addr).then_some(1);
        assert_eq!(in_flight, want, "picked {}", first.pool.addr());
        routes.done(SERVICE, &first, 1_000, true, caps);
        // v3 changes another key only: nothing to do here.
        builder.upsert("other/Svc:1.0", ep(8));
        let v3 = Arc::new(builder.publish(3).unwrap());
        routes.advance(&v3, caps, pool_of);
        assert_eq!(table(&routes).0, 2, "still the list of epoch 2");
        // v4 and v5 change the key, the shard sees only v5: the step is missed, the next pick rebuilds.
        builder.upsert(SERVICE, ep(4));
        let _v4 = builder.publish(4).unwrap();
        builder.remove(SERVICE, ep(2).addr);
        let v5 = Arc::new(builder.publish(5).unwrap());
        routes.advance(&v5, caps, pool_of);
        assert_eq!(table(&routes).0, 2, "not applied over a missing step");
        assert!(matches!(routes.pick(&v5, &c, caps, pool_of), Pick::Chosen(_)));
        assert_eq!(
            table(&routes),
            (5, vec![Some(ep(3).addr), Some(ep(4).addr), Some(ep(9).addr)]),
            "rebuilt, in address order"
        );
    }

    #[test]
    fn a_wildcard_request_matching_one_key_follows_its_changes_until_a_second_key_matches() {
        let caps = Caps {
            shards: 1,
            headroom: 0.0,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
        let (g1, g2, any) = (
            "g1/com.example.Svc:1.0",
            "g2/com.example.Svc:1.0",
            "*/com.example.Svc:1.0",
        );
        let mut builder = mesh_registry::SnapshotBuilder::new();
        builder.upsert(g1, ep(1));
        builder.upsert(g1, ep(2));
        let v1 = Arc::new(builder.publish(1).unwrap());
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 7);
        let c = Call {
            service: any,
            ..call(None, false, &[])
        };
        assert!(matches!(routes.pick(&v1, &c, caps, pool_of), Pick::Chosen(_)));
        let state = |routes: &Routes| {
            let r = &routes.services[any];
            let addrs: Vec<Option<SocketAddr>> = (0..r.table.slots())
                .map(|i| r.table.provider(i).map(|p| p.addr))
                .collect();
            (r.built.clone(), addrs)
        };
        builder.remove(g1, ep(1).addr);
        builder.upsert(g1, ep(9));
        let v2 = Arc::new(builder.publish(2).unwrap());
        routes.advance(&v2, caps, pool_of);
        assert_eq!(
            state(&routes),
            (
                Built::Exact {
                    key: g1.into(),
                    epoch: 2
                },
                vec![Some(ep(9).addr), Some(ep(2).addr)]
            ),
            "applied in place"
        );
        builder.upsert(g2, ep(5));
        let v3 = Arc::new(builder.publish(3).unwrap());
        routes.advance(&v3, caps, pool_of);
        assert!(matches!(routes.pick(&v3, &c, caps, pool_of), Pick::Chosen(_)));
        assert_eq!(
            state(&routes),
            (
                Built::Merged { version: 3 },
                vec![Some(ep(2).addr), Some(ep(9).addr), Some(ep(5).addr)]
            ),
            "two keys match: merged"
        );
    }

    /// Random changes of one key, snapshot after snapshot (some skipped, so that tables are also rebuilt):
    /// whenever the table is at the key's epoch, its providers and every per-index vector equal the list.
    #[test]
    fn random_changes_keep_every_per_index_vector_in_step_with_the_snapshot() {
        use mesh_balance::Rng;
        let caps = Caps {
            shards: 1,
            headroom: 0.0,
        };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let (mut applied, mut rebuilt) = (0, 0);
        for seed in 1..=12u64 {
            let mut rng = XorShift64::new(seed);
            let endpoint = |rng: &mut XorShift64| {
                let r = rng.next_u64();
                let mut e = Endpoint::new(SocketAddr::from(([10, 0, 0, (r % 60) as u8 + 1], 1)))
                    .with_weight((r >> 8) as u32 % 3 * 100);
                if r >> 16 & 1 == 1 {
                    e = e.with_max_concurrency((r >> 20) as u32 % 50 + 1);
                }
                if r >> 17 & 1 == 1 {
                    e = e.with_param("token", format!("t{}", r >> 30 & 7));
                }
                e
            };
            let mut builder = mesh_registry::SnapshotBuilder::new();
            for _ in 0..30 {
                builder.upsert(SERVICE, endpoint(&mut rng));
            }
            let mut snap = Arc::new(builder.publish(1).unwrap());
            let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), seed);
            let c = call(None, false, &[]);
            assert!(matches!(routes.pick(&snap, &c, caps, pool_of), Pick::Chosen(_)));
            for step in 0..80 {
                for _ in 0..rng.next_u64() % 4 + 1 {
                    if rng.next_u64() % 3 == 0 {
                        let gone = endpoint(&mut rng).addr;
                        builder.remove(SERVICE, gone);
                    } else {
                        builder.upsert(SERVICE, endpoint(&mut rng));
                    }
                }
                let Some(next) = builder.publish(step + 2) else {
                    continue;
                };
                snap = Arc::new(next);
                let before = routes.services.get(SERVICE).map(|r| r.table.slots());
                if step % 9 != 4 {
                    routes.advance(&snap, caps, pool_of);
                }
                let Some(listed) = snap.providers(SERVICE) else {
                    continue;
                };
                if routes.services[SERVICE].table.epoch() == listed.epoch() {
                    applied += 1;
                } else {
                    assert!(matches!(routes.pick(&snap, &c, caps, pool_of), Pick::Chosen(_)));
                    rebuilt += 1;
                }
                let r = &routes.services[SERVICE];
                assert_eq!(r.table.epoch(), listed.epoch());
                consistent(r);
                let mut want: Vec<_> = listed
                    .iter()
                    .map(|e| (e.addr, e.weight, token_of(e), e.max_concurrency))
                    .collect();
                let mut got: Vec<_> = r
                    .table
                    .providers()
                    .map(|(i, p)| (p.addr, p.weight, r.tokens[i].clone(), r.announced[i]))
                    .collect();
                want.sort_by_key(|w| w.0);
                got.sort_by_key(|g| g.0);
                assert_eq!(got, want, "seed {seed} step {step} (slots before: {before:?})");
            }
        }
        assert!(
            applied > 500 && rebuilt > 50,
            "applied {applied}, rebuilt {rebuilt}"
        );
    }

    /// Rules from Dubbo's config center, carried by the snapshot: they replace the configured document, the
    /// consumer's application selects its rule, and a rule change rebuilds the table.
    #[test]
    fn config_center_rules_route_and_follow_changes() {
        let mut store = mesh_balance::RuleStore::default();
        let put = |store: &mut mesh_balance::RuleStore, key: &str, yaml: &str| {
            let change = store.put(format!("/dubbo/config/dubbo/{key}").as_bytes(), yaml.as_bytes());
            assert!(
                matches!(change, mesh_balance::dubbo_rules::StoreChange::Changed { .. }),
                "{change:?}"
            );
        };
        put(
            &mut store,
            &format!("{SERVICE}::.condition-router"),
            "conditions: ['=> host != 10.0.0.3']\n",
        );
        put(
            &mut store,
            "web.condition-router",
            "conditions: ['=> host = 10.0.0.1']\n",
        );
        put(
            &mut store,
            "shop.tag-router",
            "tags: [{name: gray, addresses: ['10.0.0.3']}]\n",
        );
        let consumer = ConsumerInfo {
            params: [("application".to_string(), "web".to_string())].into(),
            ..ConsumerInfo::default()
        };
        let mut routes = Routes::new(
            Balancer::Fixed(Policy::RoundRobin),
            HashMap::from([(
                SERVICE.to_string(),
                r#"{"conditions":["=> host = 10.0.0.3"]}"#.to_string(),
            )]),
            consumer,
            7,
        );
        let snap = Arc::new(three_providers(1).with_dubbo_rules(store.index()));
        // Tag router: untagged calls avoid the dynamic group `gray` (10.0.0.3) and the providers statically
        // tagged with a name the rule uses (10.0.0.1) -> 10.0.0.2; the service rule keeps it; the app rule
        // (host = 10.0.0.1) would leave nobody and is not forced: ignored.
        assert_eq!(
            picked(&mut routes, &snap, &call(None, false, &[])),
            Ok(vec![addr("10.0.0.2:1")])
        );
        // `gray` calls go to the dynamic group, not to the static tag; the condition rules would leave
        // nobody and are ignored.
        assert_eq!(
            picked(&mut routes, &snap, &call(Some("gray"), false, &[])),
            Ok(vec![addr("10.0.0.3:1")])
        );
        // The tag rule goes (same providers, new rules epoch): untagged calls may use 10.0.0.3 again, but
        // the service rule still excludes it.
        store.delete(b"/dubbo/config/dubbo/shop.tag-router");
        let snap = Arc::new(three_providers(1).with_version(2).with_dubbo_rules(store.index()));
        assert_eq!(
            picked(&mut routes, &snap, &call(None, false, &[])),
            Ok(vec![addr("10.0.0.2:1")])
        );
        // No config-center rule applies any more: the configured document does.
        store.delete(format!("/dubbo/config/dubbo/{SERVICE}::.condition-router").as_bytes());
        store.delete(b"/dubbo/config/dubbo/web.condition-router");
        let snap = Arc::new(three_providers(1).with_version(3).with_dubbo_rules(store.index()));
        assert_eq!(
            picked(&mut routes, &snap, &call(None, false, &[])),
            Ok(vec![addr("10.0.0.3:1")])
        );
    }

    fn one_pick(routes: &mut Routes, snap: &Arc<Snapshot>, service: &str) -> Option<Chosen> {
        let caps = Caps {
            shards: 1,
            headroom: 0.0,
        };
        let c = Call {
            service,
            ..call(None, false, &[])
        };
        match routes.pick(snap, &c, caps, |a| {
            Rc::new(Pool::new(a, UpstreamConfig::default()))
        }) {
            Pick::Chosen(chosen) => {
                routes.done(service, &chosen, 1_000, true, caps);
                Some(chosen)
            }
            _ => None,
        }
    }

    #[test]
    fn the_provider_urls_token_goes_with_the_pick() {
        let snap = Arc::new(Snapshot::new(
            1,
            [(
                SERVICE.to_string(),
                Endpoint::new(addr("10.0.0.1:1")).with_param("token", "t0k"),
            )],
        ));
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
        let chosen = one_pick(&mut routes, &snap, SERVICE).unwrap();
        assert_eq!(chosen.token.as_deref(), Some("t0k"));
    }

    #[test]
    fn a_table_lives_as_long_as_its_service_keys_providers_and_rules() {
        let mut builder = mesh_registry::SnapshotBuilder::new();
        builder.upsert(SERVICE, Endpoint::new(addr("10.0.0.1:1")));
        builder.upsert("other", Endpoint::new(addr("10.0.0.9:1")));
        let v1 = Arc::new(builder.publish(1).unwrap());
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
        one_pick(&mut routes, &v1, SERVICE).unwrap();
        let build = |r: &Routes| r.services[SERVICE].build;
        let first = build(&routes);
        // Another service key changed: the table stays.
        builder.upsert("other", Endpoint::new(addr("10.0.0.8:1")));
        let v2 = Arc::new(builder.publish(2).unwrap());
        one_pick(&mut routes, &v2, SERVICE).unwrap();
        assert_eq!(build(&routes), first);
        // Its own providers changed: a new table, with the new provider.
        builder.upsert(SERVICE, Endpoint::new(addr("10.0.0.2:1")));
        let v3 = Arc::new(builder.publish(3).unwrap());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            seen.insert(one_pick(&mut routes, &v3, SERVICE).unwrap().pool.addr());
        }
        assert_ne!(build(&routes), first);
        assert_eq!(seen.len(), 2);
        // Rules changed: rebuilt too.
        let after_providers = build(&routes);
        let mut store = mesh_balance::RuleStore::default();
        store.put(
            b"/dubbo/config/dubbo/web.condition-router",
            b"conditions: ['=> host = 10.0.0.1']",
        );
        builder.set_dubbo_rules(store.index());
        let v4 = Arc::new(builder.publish(4).unwrap());
        one_pick(&mut routes, &v4, SERVICE).unwrap();
        assert_ne!(build(&routes), after_providers);
        // Gone from the registry: no service, and the table goes.
        builder.remove(SERVICE, addr("10.0.0.1:1"));
        builder.remove(SERVICE, addr("10.0.0.2:1"));
        let v5 = Arc::new(builder.publish(5).unwrap());
        assert!(one_pick(&mut routes, &v5, SERVICE).is_none());
        assert!(!routes.services.contains_key(SERVICE));
    }

    #[test]
    fn wildcard_and_group_list_requests_merge_the_matching_keys() {
        let snap = Arc::new(Snapshot::new(
            1,
            [
                ("a/com.S:1".to_string(), Endpoint::new(addr("10.0.0.1:1"))),
                ("b/com.S:1".to_string(), Endpoint::new(addr("10.0.0.2:1"))),
                ("c/com.S:1".to_string(), Endpoint::new(addr("10.0.0.3:1"))),
            ],
        ));
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
        let mut picked = |service: &str| {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..12 {
                if let Some(c) = one_pick(&mut routes, &snap, service) {
                    seen.insert(c.pool.addr().ip().to_string());
                }
            }
            seen.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(picked("a/com.S:1"), ["10.0.0.1"]);
        assert_eq!(picked("*/com.S:1"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(picked("a,c/com.S:1"), ["10.0.0.1", "10.0.0.3"]);
        assert!(picked("a/com.S:2").is_empty());
        assert!(picked("com.S:1").is_empty(), "no group matches only no group");
    }
}
