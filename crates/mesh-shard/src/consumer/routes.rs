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
    ConsumerInfo, LiveState, Pick as Drawn, PickOptions, Policy, Provider, Request, RouteTable, RuleSet,
    TableOptions, XorShift64,
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

/// What a table was built from: a service key's provider list (valid while its epoch is), or several
/// merged for a `*` / comma-list request (valid for one snapshot version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Built {
    Exact { epoch: u64 },
    Merged { version: u64 },
}

/// One requested service key's routing state.
struct ServiceRoutes {
    /// Build number (unique per `Routes`): whether a [`Chosen`] was picked in this table.
    build: u64,
    built: Built,
    rules_epoch: u64,
    policy: Policy,
    table: RouteTable,
    live: LiveState,
    /// Per provider index: its pool, its endpoint's announced cap, and until when it is marked down.
    pools: Vec<Rc<Pool>>,
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
        let current = self
            .services
            .get(call.service)
            .is_some_and(|r| r.is_current(snap, call.service));
        if !current {
            let matched = snap.matching(&ServiceKey::parse(call.service));
            if matched.is_empty() {
                self.services.remove(call.service);
                return Pick::NoService;
            }
            let built = match matched.as_slice() {
                [(_, providers)] => Built::Exact {
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
                    if r.mark_if_unusable(i, now) {
                        continue;
                    }
                    r.live.on_send(i, now_ns);
                    return Pick::Chosen(Chosen {
                        pool: r.pools[i].clone(),
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
        let pools: Vec<Rc<Pool>> = eps.iter().map(|e| pool_of(e.addr)).collect();
        let providers: Vec<Provider> = eps
            .iter()
            .zip(&pools)
            .map(|(e, pool)| Provider {
                addr: e.addr,
                weight: e.weight.max(1),
                max_concurrency: Some(caps.of(e.max_concurrency, pool)),
                tag: e.tag.clone(),
                params: e.params.clone(),
                registered_at_ms: e.registered_at_ms,
            })
            .collect();
        let policy = match self.balancer {
            Balancer::Fixed(p) => p,
            Balancer::Auto if eps.iter().any(|e| e.weight != eps[0].weight) => Policy::RoundRobin,
            Balancer::Auto => Policy::Adaptive,
        };
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
        let table = RouteTable::build(
            snap.version,
            providers,
            &rules,
            &self.consumer,
            TableOptions::default(),
        );
        let live = match self.services.get(service) {
            Some(old) => old.live.carry_over(&old.table, &table),
            None => LiveState::new(&table),
        };
        // `build` keeps the providers' order, so indices match `eps`.
        let announced = eps.iter().map(|e| e.max_concurrency).collect();
        let tokens = eps
            .iter()
            .map(|e| {
                e.params
                    .get("token")
                    .filter(|t| !t.is_empty())
                    .map(|t| Rc::from(t.as_str()))
            })
            .collect();
        let n = table.len();
        self.builds += 1;
        ServiceRoutes {
            build: self.builds,
            built,
            rules_epoch: snap.rules_epoch(),
            policy,
            table,
            live,
            pools,
            tokens,
            announced,
            down: vec![None; n],
            downs: 0,
            review_at: None,
        }
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

impl ServiceRoutes {
    /// Whether this table still routes `service` as `snap` lists it (its providers' epoch and the rules'
    /// epoch unchanged).
    fn is_current(&self, snap: &Snapshot, service: &str) -> bool {
        let providers = match self.built {
            Built::Exact { epoch } => snap.providers(service).is_some_and(|p| p.epoch() == epoch),
            Built::Merged { version } => version == snap.version,
        };
        providers && self.rules_epoch == snap.rules_epoch()
    }

    /// The cap provider `idx` has now: one call at a time while probing after an ejection.
    fn refresh_cap(&mut self, idx: usize, now: Instant, caps: Caps) {
        let pool = &self.pools[idx];
        let cap = match pool.health(now) {
            HealthState::Probing => 1,
            _ => caps.of(self.announced[idx], pool),
        };
        self.live.set_cap(idx, Some(cap));
    }

    /// Marks `idx` down when its pool is backing off or it is ejected (never the last usable provider of
    /// the service: ejection does not empty a service). Returns whether it was marked.
    fn mark_if_unusable(&mut self, idx: usize, now: Instant) -> bool {
        let pool = &self.pools[idx];
        let until = match (pool.backoff_until(now), pool.health(now)) {
            (Some(t), _) => t,
            (None, HealthState::Ejected(t)) if self.downs + 1 < self.down.len() => t,
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
}
