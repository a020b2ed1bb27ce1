//! The consumer shard's routing: for each requested service key, a [`mesh_balance::RouteTable`] (tag and
//! condition routers cached as bitsets) and its [`LiveState`] (in-flight calls and latency per provider),
//! glued to the shard's connection pools. A table follows its service key's provider list change by
//! change ([`Routes::advance`], for every snapshot the shard receives, in order): a list whose change
//! applies to the table's epoch costs O(change), not a rebuild; anything else (a missed step, new rules,
//! a `*` request merging several keys) rebuilds at the next pick, carrying the live state over by address.
//!
//! Dubbo 3 migration's `proportion` ([`split`]): for a service key the snapshot splits, the shard keeps a
//! second table over the split's interface-level list and each call draws which table it is routed in.
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
use mesh_balance::{ConsumerInfo, Pick as Drawn, PickOptions, Policy, Request, RuleSet, XorShift64};
use mesh_registry::dubbo::ServiceKey;
use mesh_registry::{Endpoint, Snapshot};

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
    /// The list (table) it was picked in.
    lane: Lane,
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

mod service_routes;
mod split;
mod subset;
#[cfg(test)]
mod tests;

use service_routes::{Built, Inputs, ServiceRoutes};
use split::{draw_lane, Lane};
pub(crate) use subset::Subsetting;

/// The most route tables one shard holds. A table is kept per requested service string, and a request
/// may name a key in many spellings that match (`*`, comma lists of groups in any order): past this many, one
/// held table is dropped (it is a cache, rebuilt at its next pick) before another is added, so clients cannot
/// grow a shard's memory or its work per snapshot without bound.
pub(crate) const MAX_HELD_TABLES: usize = 4096;

/// Routing for every service of one consumer shard.
pub(crate) struct Routes {
    balancer: Balancer,
    consumer: ConsumerInfo,
    /// Rule documents from the configuration, used when the snapshot has none for the service.
    config_rules: HashMap<String, String>,
    /// By requested service (foldhash: looked up on every call; filled from the registry, never by a client).
    services: foldhash::HashMap<String, ServiceRoutes>,
    /// The tables over the interface-level list of split keys (Dubbo 3 migration's `proportion`), by
    /// requested service; empty without splits.
    interface_level: foldhash::HashMap<String, ServiceRoutes>,
    builds: u64,
    rng: XorShift64,
    /// Which providers of a large service are this shard's ([`subset`]); none without shards.
    subsetting: Subsetting,
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
            services: foldhash::HashMap::default(),
            interface_level: foldhash::HashMap::default(),
            builds: 0,
            rng: XorShift64::new(seed | 1),
            subsetting: Subsetting::new(0, 1),
        }
    }

    /// The same routes on shard `shard` of `shards`: large services hold only this shard's providers
    /// (see [`subset`] for the rule).
    pub(crate) fn with_subsetting(mut self, subsetting: Subsetting) -> Self {
        self.subsetting = subsetting;
        self
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
            subsetting: self.subsetting,
        };
        // The key's split, read with the table (no lookup of its own on the request path).
        let (current, mut split_percent) = match self.services.get_mut(call.service) {
            Some(r) => (
                r.advance(snap, call.service, inputs, &pool_of, &mut self.builds),
                r.split,
            ),
            None => (false, None),
        };
        if !current {
            let matched = snap.matching(&ServiceKey::parse(call.service));
            if matched.is_empty() {
                self.services.remove(call.service);
                return Pick::NoService;
            }
            let (built, split) = match matched.as_slice() {
                [(key, providers)] => (
                    Built::Exact {
                        key: (*key).into(),
                        epoch: providers.epoch(),
                    },
                    snap.split(key).map(|s| s.percent()),
                ),
                _ => (
                    Built::Merged {
                        version: snap.version,
                    },
                    None,
                ),
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
            let mut table = self.build(snap, call.service, built, Lane::Own, &eps, caps, &pool_of);
            table.split = split;
            split_percent = split;
            if self.services.len() >= MAX_HELD_TABLES {
                let evicted = self.services.keys().next().cloned();
                if let Some(k) = evicted {
                    self.services.remove(&k);
                    self.interface_level.remove(&k);
                }
            }
            self.services.insert(call.service.to_owned(), table);
        }
        let now_ns = self.now_ns();
        // A split key: this call's list, drawn (Dubbo 3 migration's `proportion`).
        let lane = match split_percent {
            Some(percent) => match draw_lane(&mut self.rng, percent) {
                Lane::InterfaceLevel if self.interface_level_current(snap, call.service, caps, &pool_of) => {
                    Lane::InterfaceLevel
                }
                _ => Lane::Own,
            },
            None => Lane::Own,
        };
        let tables = match lane {
            Lane::Own => &mut self.services,
            Lane::InterfaceLevel => &mut self.interface_level,
        };
        let Some(r) = tables.get_mut(call.service) else {
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
                        lane,
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

    /// Brings the table over the interface-level list of `service`'s split up to `snap` (building it when
    /// it cannot follow); false when the snapshot does not split the key the request matched.
    fn interface_level_current(
        &mut self,
        snap: &Snapshot,
        service: &str,
        caps: Caps,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) -> bool {
        let inputs = Inputs {
            balancer: self.balancer,
            consumer: &self.consumer,
            caps,
            subsetting: self.subsetting,
        };
        if let Some(r) = self.interface_level.get_mut(service) {
            if r.advance(snap, service, inputs, pool_of, &mut self.builds) {
                return true;
            }
        }
        let key = match self.services.get(service).map(|r| &r.built) {
            Some(Built::Exact { key, .. }) => key.clone(),
            _ => return false,
        };
        let Some(split) = snap.split(&key) else {
            self.interface_level.remove(service);
            return false;
        };
        let list = split.interface_level();
        let eps: Vec<&Endpoint> = list.iter().map(|e| &**e).collect();
        let built = Built::Exact {
            key,
            epoch: list.epoch(),
        };
        let table = self.build(snap, service, built, Lane::InterfaceLevel, &eps, caps, pool_of);
        self.interface_level.insert(service.to_owned(), table);
        true
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
                    tracing::warn!(
                        "condition rules of {service} ignored (snapshot {}): {e}",
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
                tracing::warn!("configured routing rules of {service} ignored: {e}");
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
            subsetting: self.subsetting,
        };
        for (service, r) in &mut self.services {
            r.advance(snap, service, inputs, &pool_of, &mut self.builds);
        }
        if !self.interface_level.is_empty() {
            // A split that ended takes its table (and the pools it holds) with it.
            self.interface_level.retain(|_, r| match &r.built {
                Built::Exact { key, .. } => snap.split(key).is_some(),
                Built::Merged { .. } => false,
            });
            for (service, r) in &mut self.interface_level {
                r.advance(snap, service, inputs, &pool_of, &mut self.builds);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        snap: &Snapshot,
        service: &str,
        built: Built,
        lane: Lane,
        eps: &[&Endpoint],
        caps: Caps,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) -> ServiceRoutes {
        let rules = self.rules_for(snap, service, eps);
        let sub = self.subsetting;
        let may_subset = sub.allowed(&rules, eps, self.balancer);
        let home: Vec<&Endpoint> = if may_subset && sub.enters(eps.len()) {
            eps.iter().copied().filter(|e| sub.is_home(e.addr)).collect()
        } else {
            Vec::new()
        };
        // Never a subset too small to balance over (only an unlucky spread of addresses gets there).
        let subset = home.len() >= subset::LEAVE_PER_SHARD / 2;
        let eps = if subset { &home[..] } else { eps };
        self.builds += 1;
        let inputs = Inputs {
            balancer: self.balancer,
            consumer: &self.consumer,
            caps,
            subsetting: self.subsetting,
        };
        let old = match lane {
            Lane::Own => self.services.get(service),
            Lane::InterfaceLevel => self.interface_level.get(service),
        };
        ServiceRoutes::build(
            (self.builds, built, snap.rules_epoch(), snap.version),
            lane,
            (subset, may_subset),
            &rules,
            eps,
            inputs,
            pool_of,
            old,
        )
    }

    /// A call picked by [`Routes::pick`] ended after `latency_ns`: `ok` unless it failed or timed out.
    /// Refreshes the provider's cap (learnt limits change with answers; a probe's outcome ends it).
    pub(crate) fn done(&mut self, service: &str, chosen: &Chosen, latency_ns: u64, ok: bool, caps: Caps) {
        let now_ns = self.now_ns();
        let tables = match chosen.lane {
            Lane::Own => &mut self.services,
            Lane::InterfaceLevel => &mut self.interface_level,
        };
        let Some(r) = tables.get_mut(service) else {
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
