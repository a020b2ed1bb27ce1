//! The route table of one service: the providers, every router's precomputed result as bitsets, and the
//! route cache. Built once ([`RouteTable::build`]) and kept in step with the registry change by change
//! ([`RouteTable::apply`]); the request path ([`RouteTable::route`]) evaluates only the request-side
//! matchers and looks the result up.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::bitset::BitSet;
use crate::hash::FxMap;
use crate::pick::CandidateSet;
use crate::rule::{Condition, Key};
use crate::ruleset::RuleSet;
use crate::tag_sets::TagSets;

mod front;
#[cfg(test)]
mod incremental_tests;
mod inputs;
#[cfg(test)]
mod tests;

use front::{Front, FrontEntry, FRONT_ROUTES, FRONT_SLOTS};
pub use inputs::{Applied, Change, ConsumerInfo, Provider, Request, TableOptions};

/// The result of [`RouteTable::route`]: a cached candidate set, valid until the next `route` call on the
/// same table (the cache may start over when it is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub(crate) u32);

#[derive(Debug, Clone)]
struct ActiveRule {
    /// Request-side conditions (consumer-side ones were folded at build).
    when: Vec<Condition>,
    /// The then part, resolved against the consumer; `None` = blacklist.
    then_conds: Option<Vec<Condition>>,
    /// Providers the then part keeps (kept in step with the providers); `None` = blacklist.
    then: Option<BitSet>,
    force: bool,
}

impl ActiveRule {
    fn applies(&self, req: &Request<'_>) -> bool {
        self.when.iter().all(|c| c.test(req.value(&c.key)))
    }

    fn keeps(&self, p: &Provider) -> bool {
        self.then_conds
            .as_ref()
            .is_some_and(|cs| cs.iter().all(|x| x.test(provider_value(p, &x.key).as_deref())))
    }
}

/// How one cached route (tag base set, matched rules) was computed: per matched rule, the number of
/// providers its then part kept out of the route so far. Dubbo's routers skip a non-forced rule that keeps
/// nobody, so a provider joining or leaving changes a route by itself alone unless one of these counts
/// moves between 0 and 1 (then the route is recomputed).
#[derive(Debug, Clone)]
struct Route {
    set: u32,
    kept: Vec<u32>,
}

/// Routers, route cache and candidate sets of one service. Owned by one thread (`route` and `pick` take
/// `&mut self` to fill caches); build one per shard, or clone a built one.
///
/// Provider indices are stable: a provider that leaves frees its index (a tombstone: in no route, never
/// picked), a joining one takes a free index or a new one at the end, so a change touches only that index
/// in every cached route ([`RouteTable::apply`]). [`RouteTable::compacted`] renumbers.
#[derive(Debug, Clone)]
pub struct RouteTable {
    epoch: u64,
    /// Some change was applied since `build` (a tag rule with parameter groups then needs a rebuild).
    changed_since_build: bool,
    /// Per index: the provider, or `None` for a free index.
    slots: Vec<Option<Provider>>,
    free: Vec<u32>,
    present: usize,
    index: HashMap<SocketAddr, usize>,
    rule_set: RuleSet,
    consumer: ConsumerInfo,
    pub(crate) opts: TableOptions,
    /// Per index: the registered weight (0 when free).
    weights: Vec<u32>,
    /// Per index: (registered_at_ms, warmup_ms) when it has a registration time.
    pub(crate) warm: Vec<Option<(u64, u64)>>,
    /// The `now` (ms) of the latest pick: a provider joining a set gets its warm-up weight for this time at
    /// once, without recomputing the other warming members (0 before the first pick).
    pub(crate) clock_ms: u64,
    pub(crate) addr_text: Vec<String>,
    default_tag: Option<std::sync::Arc<str>>,
    tags: TagSets,
    rules: Vec<ActiveRule>,
    /// Rules whose request-side conditions only look at the method (or at nothing).
    method_only_mask: u64,
    /// Rules evaluated per request.
    other_rules: Vec<usize>,
    /// (force_tag, tag, method) -> tag base set, method-only rule mask and the last routes seen per
    /// per-request rule mask: the steady state is one hash lookup.
    front: Front,
    /// (tag base set, matched rules) -> route.
    cache: FxMap<(u32, u64), Route>,
    /// Candidate sets by members, to share one between routes with the same result (only for sets built
    /// since the last change).
    by_bits: HashMap<BitSet, u32>,
    pub(crate) sets: Vec<CandidateSet>,
}

impl RouteTable {
    /// Precomputes every router's result for these providers. They get indices in input order (a repeated
    /// address updates the earlier entry).
    pub fn build(
        epoch: u64,
        providers: Vec<Provider>,
        rules: &RuleSet,
        consumer: &ConsumerInfo,
        opts: TableOptions,
    ) -> RouteTable {
        let n = providers.len();
        // Condition rules: fold the consumer-side conditions, resolve the then part.
        let lookup = |k: &str| consumer.lookup(k);
        let mut active = Vec::new();
        for c in &rules.conditions {
            let mut when = Vec::new();
            let mut applies = true;
            for cond in &c.rule.when {
                let cond = cond.resolve(&lookup);
                if cond.key.is_request_side() {
                    when.push(cond);
                } else if !cond.test(consumer.value(&cond.key).as_deref()) {
                    applies = false;
                }
            }
            if !applies {
                continue;
            }
            let then_conds = c.rule.then.as_ref().map(|conds| {
                conds
                    .iter()
                    .map(|x| x.resolve(&lookup))
                    .collect::<Vec<Condition>>()
            });
            active.push(ActiveRule {
                when,
                then: then_conds.as_ref().map(|_| BitSet::new(0)),
                then_conds,
                force: c.force,
            });
        }
        let mut method_only_mask = 0u64;
        let mut other_rules = Vec::new();
        for (j, r) in active.iter().enumerate() {
            if r.when.iter().all(|c| c.key == Key::Method) {
                method_only_mask |= 1 << j;
            } else {
                other_rules.push(j);
            }
        }
        let mut t = RouteTable {
            epoch,
            changed_since_build: false,
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            present: 0,
            index: HashMap::with_capacity(n),
            rule_set: rules.clone(),
            consumer: consumer.clone(),
            opts,
            weights: Vec::with_capacity(n),
            warm: Vec::with_capacity(n),
            clock_ms: 0,
            addr_text: Vec::with_capacity(n),
            default_tag: consumer.tag.as_deref().filter(|t| !t.is_empty()).map(Into::into),
            // Dubbo 3 parameter groups of the tag rule become address groups of these providers (a
            // table whose rule has them is rebuilt after a change: see `needs_compaction`).
            tags: TagSets::new(
                rules
                    .tag
                    .as_ref()
                    .map(|t| t.for_providers(&providers).into_owned()),
                0,
            ),
            rules: active,
            method_only_mask,
            other_rules,
            front: Front::default(),
            cache: FxMap::default(),
            by_bits: HashMap::new(),
            sets: Vec::new(),
        };
        for p in providers {
            t.upsert(p, &mut Vec::new());
        }
        t
    }

    /// Applies changes of the provider list in order and moves the table to `epoch`. Each costs
    /// O(cached routes x matched rules + tag names + log n), not O(n): the provider's index joins or leaves
    /// every cached route and candidate set. Rarely a route must be recomputed (a change made a router's
    /// fallback flip: a forced-off rule or tag set went from nobody to somebody or back); those are
    /// dropped and refilled at their next request. Returns what happened to which index.
    pub fn apply(&mut self, epoch: u64, changes: impl IntoIterator<Item = Change>) -> Vec<Applied> {
        self.epoch = epoch;
        let mut out = Vec::new();
        for c in changes {
            match c {
                Change::Remove(addr) => {
                    if let Some(idx) = self.index_of(addr) {
                        self.remove_at(idx);
                        self.free.push(idx as u32);
                        out.push(Applied::Removed(idx));
                    }
                }
                Change::Upsert(p) => self.upsert(p, &mut out),
            }
        }
        if !out.is_empty() {
            self.changed_since_build = true;
            // Sets changed: their members no longer key them.
            self.by_bits.clear();
        }
        out
    }

    fn upsert(&mut self, p: Provider, out: &mut Vec<Applied>) {
        match self.index_of(p.addr) {
            Some(idx) => {
                let Some(old) = self.slots[idx].as_ref() else {
                    return;
                };
                if *old == p {
                    return;
                }
                if old.tag == p.tag && old.params == p.params && old.registered_at_ms == p.registered_at_ms {
                    // Weight or cap only: no router looks at them.
                    let reweigh = old.weight != p.weight;
                    self.weights[idx] = p.weight;
                    self.slots[idx] = Some(p);
                    if reweigh {
                        let mut sets = std::mem::take(&mut self.sets);
                        for s in &mut sets {
                            s.reweigh(idx, self);
                        }
                        self.sets = sets;
                    }
                } else {
                    self.remove_at(idx);
                    self.add_at(idx, p);
                }
                out.push(Applied::Updated(idx));
            }
            None => {
                let idx = match self.free.pop() {
                    Some(i) => i as usize,
                    None => self.push_index(),
                };
                self.add_at(idx, p);
                out.push(Applied::Added(idx));
            }
        }
    }

    /// A new free index at the end; every bitset grows by one.
    fn push_index(&mut self) -> usize {
        let idx = self.slots.len();
        let universe = idx + 1;
        self.slots.push(None);
        self.weights.push(0);
        self.warm.push(None);
        self.addr_text.push(String::new());
        self.tags.grow(universe);
        for r in &mut self.rules {
            if let Some(b) = &mut r.then {
                b.grow(universe);
            }
        }
        for s in &mut self.sets {
            s.grow(universe);
        }
        idx
    }

    fn add_at(&mut self, idx: usize, p: Provider) {
        self.index.insert(p.addr, idx);
        self.present += 1;
        self.weights[idx] = p.weight;
        self.warm[idx] = p.registered_at_ms.map(|at| {
            let w = p
                .params
                .get("warmup")
                .and_then(|w| w.parse().ok())
                .unwrap_or(self.opts.default_warmup_ms);
            (at, w)
        });
        self.addr_text[idx] = p.addr.to_string();
        if self.tags.add(idx, &p) {
            self.front.clear();
        }
        for r in &mut self.rules {
            let keep = r.keeps(&p);
            if let Some(b) = &mut r.then {
                b.set(idx, keep);
            }
        }
        self.slots[idx] = Some(p);
        self.routes_join(idx);
    }

    /// Takes the provider at `idx` out of everything (the caller frees or reuses the index).
    fn remove_at(&mut self, idx: usize) {
        let Some(p) = self.slots[idx].take() else { return };
        self.routes_leave(idx, &p);
        if self.tags.remove(idx, &p) {
            self.front.clear();
        }
        for r in &mut self.rules {
            if let Some(b) = &mut r.then {
                b.remove(idx);
            }
        }
        self.index.remove(&p.addr);
        self.present -= 1;
        self.weights[idx] = 0;
        self.warm[idx] = None;
    }

    /// Walks route `key`'s routers for provider `idx`, counting it in (`+1`) or out (`-1`) of each
    /// matched rule's kept providers. Returns whether it is in the route, or `None` when a rule's count
    /// moved between 0 and 1 (the route must be recomputed).
    fn walk(&self, key: (u32, u64), kept: &mut [u32], idx: usize, delta: i32) -> Option<bool> {
        let (base, mask) = key;
        let mut inside = self.tags.base(base).contains(idx);
        let mut step = 0;
        for (j, r) in self.rules.iter().enumerate() {
            if mask & (1 << j) == 0 {
                continue;
            }
            match &r.then {
                None => inside = false,
                Some(then) => {
                    let before = kept[step];
                    let counted = inside && then.contains(idx);
                    if counted {
                        kept[step] = before.checked_add_signed(delta)?;
                    }
                    let taken = before > 0 || r.force;
                    if taken != (kept[step] > 0 || r.force) {
                        return None;
                    }
                    if taken {
                        inside = counted;
                    }
                }
            }
            step += 1;
        }
        Some(inside)
    }

    /// Provider `idx` (already in the tag sets and rule sets) joins every cached route it belongs to.
    fn routes_join(&mut self, idx: usize) {
        if self.cache.is_empty() {
            return;
        }
        let mut cache = std::mem::take(&mut self.cache);
        let mut inside: FxMap<u32, (bool, bool)> = FxMap::default();
        let mut keys = Vec::with_capacity(cache.len());
        for (&key, route) in cache.iter_mut() {
            let Some(m) = self.walk(key, &mut route.kept, idx, 1) else {
                self.clear_routes();
                return;
            };
            let e = inside.entry(route.set).or_insert((false, false));
            if m {
                e.0 = true;
            } else {
                e.1 = true;
            }
            keys.push((key, route.set, m));
        }
        // Routes that shared a set by chance may now differ: the ones the provider joins get their own
        // set at their next request.
        let mut split = false;
        for (key, set, m) in keys {
            if m && inside.get(&set).is_some_and(|e| e.1) {
                cache.remove(&key);
                split = true;
            }
        }
        if split {
            self.front.clear();
        }
        self.cache = cache;
        let mut sets = std::mem::take(&mut self.sets);
        for (&set, &(joins, stays_out)) in &inside {
            if joins && !stays_out {
                sets[set as usize].insert(idx, self);
            }
        }
        self.sets = sets;
    }

    /// Provider `idx` (still in the tag sets and rule sets) leaves every cached route.
    fn routes_leave(&mut self, idx: usize, _p: &Provider) {
        let mut cache = std::mem::take(&mut self.cache);
        for (&key, route) in cache.iter_mut() {
            if self.walk(key, &mut route.kept, idx, -1).is_none() {
                self.clear_routes();
                return;
            }
        }
        self.cache = cache;
        let mut sets = std::mem::take(&mut self.sets);
        for s in &mut sets {
            s.remove(idx, self);
        }
        self.sets = sets;
    }

    /// Forgets every cached route (they refill at their next request).
    fn clear_routes(&mut self) {
        self.sets.clear();
        self.cache.clear();
        self.by_bits.clear();
        self.front.clear();
    }

    /// True when more than a third of the indices are free, or a change was applied under a tag rule with
    /// Dubbo 3 parameter groups (their members are resolved at build): time for [`RouteTable::compacted`] (the
    /// caller maps its per-index state by address, e.g. [`LiveState::carry_over`](crate::LiveState::carry_over)).
    pub fn needs_compaction(&self) -> bool {
        let param_groups_moved = self.changed_since_build
            && self
                .rule_set
                .tag
                .as_ref()
                .is_some_and(|t| !t.param_groups.is_empty());
        param_groups_moved || (self.free.len() > 32 && self.free.len() * 2 > self.present)
    }

    /// The same providers, rules and options rebuilt with indices `0..len()` (in index order).
    pub fn compacted(&self) -> RouteTable {
        RouteTable::build(
            self.epoch,
            self.providers().map(|(_, p)| p.clone()).collect(),
            &self.rule_set,
            &self.consumer,
            self.opts,
        )
    }

    /// The snapshot epoch this table was built or last changed for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The providers with their indices, in index order (free indices skipped).
    pub fn providers(&self) -> impl Iterator<Item = (usize, &Provider)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    /// Number of providers.
    pub fn len(&self) -> usize {
        self.present
    }

    /// Number of indices, free ones included: per-index state must have this many entries.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// True when the table has no provider.
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// The provider at `idx` (`None` for a free index).
    pub fn provider(&self, idx: usize) -> Option<&Provider> {
        self.slots.get(idx).and_then(Option::as_ref)
    }

    /// The registered weight at `idx` (0 for a free index too).
    pub(crate) fn weight_at(&self, idx: usize) -> u32 {
        self.weights[idx]
    }

    /// Index of the provider at `addr` (to map an answer that outlived its epoch).
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.index.get(&addr).copied()
    }

    /// Number of enabled condition rules that can apply to this consumer.
    pub fn active_rules(&self) -> usize {
        self.rules.len()
    }

    /// Routes a request: O(#rules) request-side matching and one hash lookup in the steady state; the
    /// first request of a new (tag, matched rules) combination ANDs the cached bitsets (O(n/64)).
    pub fn route(&mut self, req: &Request<'_>) -> RouteId {
        let default_tag = match req.tag {
            Some(t) if !t.is_empty() => None,
            _ => self.default_tag.clone(),
        };
        let tag = match req.tag {
            Some(t) if !t.is_empty() => Some(t),
            _ => default_tag.as_deref(),
        };
        let mut other = 0u64;
        for &j in &self.other_rules {
            if self.rules[j].applies(req) {
                other |= 1 << j;
            }
        }
        let tag_str = tag.unwrap_or("");
        if self.front.slots.is_empty() {
            self.front.slots = vec![None; FRONT_SLOTS];
        }
        let hash = Front::hash(req.force_tag, tag_str, req.method);
        let slot = self.front.find(hash, req.force_tag, tag_str, req.method);
        let (tag_set, method_mask) = match &self.front.slots[slot] {
            Some(e) => {
                if let Some(&(_, id)) = e.routes[..usize::from(e.n)].iter().find(|(m, _)| *m == other) {
                    return RouteId(id);
                }
                (e.tag_set, e.method_mask)
            }
            None => (self.tag_set(tag, req.force_tag), self.method_mask(req.method)),
        };
        let id = self.lookup(tag_set, method_mask | other);
        // `lookup` may have started the caches over; find the slot again.
        if self.front.slots.is_empty() || self.front.len * 2 >= FRONT_SLOTS {
            self.front.clear();
            self.front.slots = vec![None; FRONT_SLOTS];
        }
        let slot = self.front.find(hash, req.force_tag, tag_str, req.method);
        let e = match &mut self.front.slots[slot] {
            Some(e) => e,
            empty @ None => {
                self.front.len += 1;
                empty.insert(FrontEntry {
                    hash,
                    force_tag: req.force_tag,
                    tag: tag_str.into(),
                    method: req.method.into(),
                    tag_set,
                    method_mask,
                    routes: [(0, 0); FRONT_ROUTES],
                    n: 0,
                    next: 0,
                })
            }
        };
        if usize::from(e.n) < FRONT_ROUTES {
            e.routes[usize::from(e.n)] = (other, id.0);
            e.n += 1;
        } else {
            e.routes[usize::from(e.next)] = (other, id.0);
            e.next = (e.next + 1) % FRONT_ROUTES as u8;
        }
        id
    }

    fn tag_set(&self, tag: Option<&str>, force_tag: bool) -> u32 {
        self.tags.choice(self.tags.class(tag), force_tag)
    }

    fn method_mask(&self, method: &str) -> u64 {
        let mut m = 0u64;
        for (j, r) in self.rules.iter().enumerate() {
            if self.method_only_mask & (1 << j) != 0 && r.when.iter().all(|c| c.test(Some(method))) {
                m |= 1 << j;
            }
        }
        m
    }

    fn lookup(&mut self, tag_set: u32, mask: u64) -> RouteId {
        match self.cache.get(&(tag_set, mask)) {
            Some(r) => RouteId(r.set),
            None => self.fill(tag_set, mask),
        }
    }

    fn fill(&mut self, tag_set: u32, mask: u64) -> RouteId {
        let mut cur = self.tags.base(tag_set).clone();
        let mut kept = Vec::new();
        for (j, r) in self.rules.iter().enumerate() {
            if mask & (1 << j) == 0 {
                continue;
            }
            // Dubbo's ConditionStateRouter on the output of the routers before it.
            match &r.then {
                None => {
                    cur = BitSet::new(cur.universe());
                    kept.push(0);
                }
                Some(then) => {
                    let next = cur.and(then);
                    let count = next.count() as u32;
                    kept.push(count);
                    if count > 0 || r.force {
                        cur = next;
                    }
                }
            }
        }
        if self.sets.len() >= self.opts.max_cached_routes.max(1) {
            self.sets.clear();
            self.cache.clear();
            self.by_bits.clear();
            self.front.clear();
        }
        let id = match self.by_bits.get(&cur) {
            Some(&id) => id,
            None => {
                let id = self.sets.len() as u32;
                self.sets.push(CandidateSet::new(cur.clone(), self));
                self.by_bits.insert(cur, id);
                id
            }
        };
        self.cache.insert((tag_set, mask), Route { set: id, kept });
        RouteId(id)
    }

    /// The candidate providers of a route, as a bitset over [`RouteTable::providers`].
    pub fn candidates(&self, route: RouteId) -> &BitSet {
        &self.sets[route.0 as usize].bits
    }

    /// Number of distinct candidate sets built so far (for tests and metrics).
    pub fn cached_sets(&self) -> usize {
        self.sets.len()
    }
}

fn provider_value(p: &Provider, key: &Key) -> Option<String> {
    match key {
        Key::Host => Some(p.addr.ip().to_string()),
        Key::Port => Some(p.addr.port().to_string()),
        Key::Address => Some(p.addr.to_string()),
        Key::Method => p.params.get("method").cloned(),
        Key::Param(k) if k == "tag" || k == "dubbo.tag" => p.tag.clone(),
        Key::Param(k) => p.params.get(k).cloned(),
        Key::Argument(_) | Key::Attachment(_) => None,
    }
}
