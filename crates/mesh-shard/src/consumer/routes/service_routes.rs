//! One requested service key's routing state: its route table, live state and per-provider pools, tokens,
//! caps and down marks, built from a snapshot and advanced change by change.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mesh_balance::{
    Applied, Change, ConsumerInfo, LiveState, Policy, Provider, RouteTable, RuleSet, TableOptions,
};
use mesh_registry::dubbo::ServiceKey;
use mesh_registry::{Endpoint, Providers, Snapshot};

use crate::health::State as HealthState;
use crate::upstream::Pool;

use super::split::Lane;
use super::{Balancer, Caps, Subsetting};

/// What a table was built from: the one service key the request matched, at a list epoch (valid while
/// the request still matches only that key and its epoch is that one, or its change applies to it), or
/// several keys merged for a `*` / comma-list request (valid for one snapshot version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Built {
    Exact { key: Box<str>, epoch: u64 },
    Merged { version: u64 },
}

/// One requested service key's routing state.
pub(super) struct ServiceRoutes {
    /// Build number (unique per `Routes`, new with every change too): whether a [`Chosen`] was picked in
    /// this table as it is (else its index may have been freed or reused: map it by address).
    pub(super) build: u64,
    pub(super) built: Built,
    /// Which list of the key it follows (its own, or its split's interface-level list).
    pub(super) lane: Lane,
    /// Dubbo 3 migration's `proportion`: the share of calls (percent) on this table when the snapshot
    /// version `checked` splits the key (set on the own lane of an exact key only; `None`: every call).
    pub(super) split: Option<u8>,
    pub(super) rules_epoch: u64,
    /// The snapshot version this table was last found current in (the request path then skips the
    /// service-key lookup of [`ServiceRoutes::is_current`]).
    pub(super) checked: u64,
    pub(super) policy: Policy,
    /// How many providers registered each weight (the `auto` balancer looks at whether they differ).
    pub(super) weights: HashMap<u32, usize>,
    pub(super) table: RouteTable,
    pub(super) live: LiveState,
    /// Per provider index (free indices: `None`): its pool, token, announced cap, and until when it is
    /// marked down.
    pub(super) pools: Vec<Option<Rc<Pool>>>,
    pub(super) tokens: Vec<Option<Rc<str>>>,
    pub(super) announced: Vec<Option<u32>>,
    pub(super) down: Vec<Option<Instant>>,
    pub(super) downs: usize,
    /// The earliest instant a down mark may be lifted.
    pub(super) review_at: Option<Instant>,
    /// The table holds only this shard's providers of the list (`subset.rs`).
    pub(super) subset: bool,
    /// Nothing routes among the providers (no rule, no tag, no hashing): the table becomes a subset
    /// (rebuilt once) when its list grows large enough.
    pub(super) may_subset: bool,
    /// The providers' parameters the table's rules read (its rules change only with a rebuild).
    pub(super) params: Params,
}

/// What a table is built with besides the providers and rules.
#[derive(Clone, Copy)]
pub(super) struct Inputs<'a> {
    pub(super) balancer: Balancer,
    pub(super) consumer: &'a ConsumerInfo,
    pub(super) caps: Caps,
    pub(super) subsetting: Subsetting,
}

/// The provider parameter that sets its warm-up period: the one parameter a table reads without rules.
const WARMUP_PARAM: &str = "warmup";

/// Which of an endpoint's parameters its table's view keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Params {
    /// Every one: the table's rules (condition rules, a tag rule) match providers by their parameters.
    All,
    /// Only [`WARMUP_PARAM`]: without rules nothing else is read, and a Java provider registers a dozen
    /// or more (cloning them was most of what a joining provider cost a table, and most of its memory).
    WarmupOnly,
}

impl Params {
    /// What a table under `rules` reads.
    pub(super) fn read_by(rules: &RuleSet) -> Params {
        if rules.tag.is_some() || !rules.conditions.is_empty() {
            Params::All
        } else {
            Params::WarmupOnly
        }
    }

    fn of(self, e: &Endpoint) -> BTreeMap<String, String> {
        match self {
            Params::All => e.params.clone(),
            Params::WarmupOnly => e
                .params
                .get_key_value(WARMUP_PARAM)
                .map(|(k, v)| BTreeMap::from([(k.clone(), v.clone())]))
                .unwrap_or_default(),
        }
    }
}

/// The table's view of endpoint `e` whose pool is `pool`, with the parameters `params` says.
fn provider_of(e: &Endpoint, pool: &Pool, caps: Caps, params: Params) -> Provider {
    Provider {
        addr: e.addr,
        weight: e.weight,
        max_concurrency: Some(caps.of(e.max_concurrency, pool)),
        tag: e.tag.clone(),
        params: params.of(e),
        registered_at_ms: e.registered_at_ms,
    }
}

/// The provider URL's `token` (sent as the call's `token` attachment).
pub(super) fn token_of(e: &Endpoint) -> Option<Rc<str>> {
    e.params
        .get("token")
        .filter(|t| !t.is_empty())
        .map(|t| Rc::from(t.as_str()))
}

/// The caps of a table: a provider of a subset table gets calls from this shard only, so this shard takes
/// its whole announced cap instead of a share.
fn caps_of(subset: bool, caps: Caps) -> Caps {
    if subset {
        Caps { shards: 1, ..caps }
    } else {
        caps
    }
}

/// The last of `eps` at each address, in first-listed order: a linear scan for the few endpoints a change
/// usually lists, a map for many.
fn last_per_addr<'e>(eps: impl Iterator<Item = &'e Endpoint>) -> Vec<&'e Endpoint> {
    const SCAN_UP_TO: usize = 16;
    let mut out: Vec<&Endpoint> = Vec::new();
    let mut at: HashMap<SocketAddr, usize> = HashMap::new();
    for e in eps {
        let known = if out.len() <= SCAN_UP_TO {
            out.iter().position(|x| x.addr == e.addr)
        } else {
            if at.is_empty() {
                at.extend(out.iter().enumerate().map(|(i, x)| (x.addr, i)));
            }
            at.get(&e.addr).copied()
        };
        match known {
            Some(i) => out[i] = e,
            None => {
                if !at.is_empty() {
                    at.insert(e.addr, out.len());
                }
                out.push(e);
            }
        }
    }
    out
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        (build, built, rules_epoch, checked): (u64, Built, u64, u64),
        lane: Lane,
        (subset, may_subset): (bool, bool),
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
        let caps = caps_of(subset, with.caps);
        let params = Params::read_by(rules);
        let providers: Vec<Provider> = eps
            .iter()
            .map(|e| provider_of(e, &pool_of(e.addr), caps, params))
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
            lane,
            split: None,
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
            subset,
            may_subset,
            params,
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

    pub(super) fn choose_policy(&mut self, balancer: Balancer) {
        self.policy = match balancer {
            Balancer::Fixed(p) => p,
            Balancer::Auto if self.weights.len() > 1 => Policy::RoundRobin,
            Balancer::Auto => Policy::Adaptive,
        };
    }

    /// Brings the table up to `snap` when that takes no rebuild: true when it is current (already, or by
    /// applying `service`'s change, whose base is the table's epoch, in O(change); a new build number).
    pub(super) fn advance(
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
        let (epoch, providers, split) = match (&self.built, self.lane) {
            (Built::Merged { version }, _) => return *version == snap.version,
            (Built::Exact { key, epoch }, Lane::Own) => {
                // Once per snapshot version: the request must still match that one key.
                let matched = snap.matching(&ServiceKey::parse(service));
                match matched.as_slice() {
                    [(k, providers)] if *k == &**key => {
                        let providers: &Arc<Providers> = providers;
                        let split = snap.split(key).map(|s| s.percent());
                        (*epoch, &**providers, split)
                    }
                    _ => return false,
                }
            }
            (Built::Exact { key, epoch }, Lane::InterfaceLevel) => match snap.split(key) {
                Some(s) => (*epoch, s.interface_level(), None),
                None => return false,
            },
        };
        if providers.epoch() != epoch {
            let Some(change) = providers.change().filter(|c| c.base == epoch) else {
                return false;
            };
            let sub = with.subsetting;
            let tagged = change.upserted.iter().any(|e| e.tag.is_some());
            if self.subset {
                // Back to the whole list when it shrinks or a tag appears (tag routing needs every
                // provider on every shard); also when this shard's subset ran thin.
                if tagged
                    || !sub.stays(providers.len())
                    || self.table.len() < super::subset::LEAVE_PER_SHARD / 2
                {
                    return false;
                }
            } else if self.may_subset {
                self.may_subset = !tagged;
                if !tagged && sub.enters(providers.len()) {
                    // Grown large: rebuilt once, as a subset.
                    return false;
                }
            }
            // A subset table takes only this shard's providers: a change of another shard's costs this
            // one a look at the changed addresses, nothing else.
            let subset = self.subset;
            let ours = |a: SocketAddr| !subset || sub.is_home(a);
            if !subset
                || change.removed.iter().any(|&a| ours(a))
                || change.upserted.iter().any(|e| ours(e.addr))
            {
                self.apply_where(
                    providers.epoch(),
                    &change.removed,
                    &change.upserted,
                    ours,
                    with,
                    pool_of,
                );
                *builds += 1;
                self.build = *builds;
            }
            if let Built::Exact { epoch, .. } = &mut self.built {
                *epoch = providers.epoch();
            }
        }
        self.split = split;
        self.checked = snap.version;
        true
    }

    /// Moves the table to `epoch` by a change of its provider list (`removed` addresses, `upserted`
    /// endpoints: joined or changed), in O(change) (plus, rarely, a compaction: O(n), amortized O(1)).
    #[cfg(test)]
    pub(super) fn apply(
        &mut self,
        epoch: u64,
        removed: &[SocketAddr],
        upserted: &[Arc<Endpoint>],
        with: Inputs<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) {
        self.apply_where(epoch, removed, upserted, |_| true, with, pool_of);
    }

    /// [`ServiceRoutes::apply`] of the part of a change at the addresses `ours` accepts.
    pub(super) fn apply_where(
        &mut self,
        epoch: u64,
        removed: &[SocketAddr],
        upserted: &[Arc<Endpoint>],
        ours: impl Fn(SocketAddr) -> bool,
        with: Inputs<'_>,
        pool_of: &impl Fn(SocketAddr) -> Rc<Pool>,
    ) {
        let caps = caps_of(self.subset, with.caps);
        let mut changes = Vec::with_capacity(removed.len() + upserted.len());
        for &a in removed.iter().filter(|&&a| ours(a)) {
            if let Some(p) = self.table.index_of(a).and_then(|i| self.table.provider(i)) {
                count_out(&mut self.weights, p.weight);
            }
            changes.push(Change::Remove(a));
        }
        // The last endpoint listed per address (a change lists an address once; a repeat is tolerated).
        let latest = last_per_addr(upserted.iter().map(|e| &**e).filter(|e| ours(e.addr)));
        for e in &latest {
            if let Some(p) = self.table.index_of(e.addr).and_then(|i| self.table.provider(i)) {
                count_out(&mut self.weights, p.weight);
            }
        }
        for e in upserted.iter().filter(|e| ours(e.addr)) {
            changes.push(Change::Upsert(provider_of(
                e,
                &pool_of(e.addr),
                caps,
                self.params,
            )));
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
        for e in latest {
            if let Some(i) = self.table.index_of(e.addr) {
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
    pub(super) fn compact(&mut self) {
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
    pub(super) fn unmark(&mut self, idx: usize) {
        if self.down[idx].take().is_some() {
            self.downs -= 1;
        }
    }

    /// The cap provider `idx` has now: one call at a time while probing after an ejection.
    pub(super) fn refresh_cap(&mut self, idx: usize, now: Instant, caps: Caps) {
        let Some(pool) = self.pools.get(idx).and_then(Option::as_ref) else {
            return;
        };
        let cap = match pool.health(now) {
            HealthState::Probing => 1,
            _ => caps_of(self.subset, caps).of(self.announced[idx], pool),
        };
        self.live.set_cap(idx, Some(cap));
    }

    /// Marks `idx` down when its pool is backing off or it is ejected (never the last usable provider of
    /// the service: ejection does not empty a service). Returns whether it was marked.
    pub(super) fn mark_if_unusable(&mut self, idx: usize, now: Instant) -> bool {
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
    pub(super) fn review(&mut self, now: Instant, caps: Caps) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ep(i: u8, weight: u32) -> Endpoint {
        Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1))).with_weight(weight)
    }

    /// What `last_per_addr` must give: the last endpoint per address, in first-listed order.
    fn reference(eps: &[Endpoint]) -> Vec<(SocketAddr, u32)> {
        let mut order: Vec<SocketAddr> = Vec::new();
        let mut last: HashMap<SocketAddr, u32> = HashMap::new();
        for e in eps {
            if last.insert(e.addr, e.weight).is_none() {
                order.push(e.addr);
            }
        }
        order.into_iter().map(|a| (a, last[&a])).collect()
    }

    proptest! {
        #[test]
        fn last_per_addr_keeps_the_last_endpoint_of_each_address_in_first_listed_order(
            picks in proptest::collection::vec((1u8..60, 0u32..1000), 0..80)
        ) {
            let eps: Vec<Endpoint> = picks.iter().map(|&(i, w)| ep(i, w)).collect();
            let got: Vec<(SocketAddr, u32)> =
                last_per_addr(eps.iter()).iter().map(|e| (e.addr, e.weight)).collect();
            prop_assert_eq!(got, reference(&eps));
        }
    }

    #[test]
    fn without_rules_a_provider_keeps_only_its_warmup_parameter() {
        let e = ep(1, 100)
            .with_param("application", "shop")
            .with_param("warmup", "60000")
            .with_param("token", "t");
        let none = RuleSet::default();
        assert_eq!(Params::read_by(&none), Params::WarmupOnly);
        assert_eq!(
            Params::WarmupOnly.of(&e),
            BTreeMap::from([("warmup".to_owned(), "60000".to_owned())])
        );
        assert!(Params::WarmupOnly
            .of(&ep(2, 100).with_param("side", "provider"))
            .is_empty());
        let conditions = RuleSet::from_json(r#"{"conditions":["=> application = shop"]}"#).unwrap();
        assert_eq!(Params::read_by(&conditions), Params::All);
        assert_eq!(Params::All.of(&e), e.params);
        let tag = RuleSet::from_json(
            r#"{"tag":{"force":false,"tags":[{"name":"gray","addresses":["10.0.0.1:1"]}]}}"#,
        )
        .unwrap();
        assert_eq!(Params::read_by(&tag), Params::All);
    }
}
