//! The route table of one service: the providers, every router's precomputed result as bitsets, and the
//! route cache. Built once ([`RouteTable::build`]) and kept in step with the registry change by change
//! ([`RouteTable::apply`]); the request path ([`RouteTable::route`]) evaluates only the request-side
//! matchers and looks the result up.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::bitset::BitSet;
use crate::hash::FxMap;
use crate::pick::CandidateSet;
use crate::rule::{Condition, Key};
use crate::ruleset::RuleSet;
use crate::tag_sets::TagSets;

/// One provider of the service in this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Where calls go (the provider agent).
    pub addr: SocketAddr,
    /// Capacity weight. 0, as in Dubbo: no share while any candidate of the call weighs more (a
    /// provider being drained), equal shares when every candidate weighs 0.
    pub weight: u32,
    /// In-flight cap for this consumer (the caller divides a shared cap between its shards).
    pub max_concurrency: Option<u32>,
    /// Static tag (Dubbo's `dubbo.tag` provider parameter).
    pub tag: Option<String>,
    /// Other parameters condition rules can match (`application`, `version`, `group`, ...). A `warmup`
    /// parameter (milliseconds) overrides the table's default warm-up period for this provider.
    pub params: BTreeMap<String, String>,
    /// Registration time in milliseconds on the clock of the `now_ns` passed to picks; `None` = fully warm.
    pub registered_at_ms: Option<u64>,
}

impl Provider {
    /// A provider at `addr` with weight 100 and nothing else.
    pub fn new(addr: SocketAddr) -> Self {
        Provider {
            addr,
            weight: 100,
            max_concurrency: None,
            tag: None,
            params: BTreeMap::new(),
            registered_at_ms: None,
        }
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the in-flight cap.
    pub fn with_max_concurrency(mut self, cap: u32) -> Self {
        self.max_concurrency = Some(cap);
        self
    }

    /// Sets the static tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets the registration time (enables warm-up).
    pub fn with_registered_at_ms(mut self, ms: u64) -> Self {
        self.registered_at_ms = Some(ms);
        self
    }
}

/// The consumer's own attributes: the when part's `host`, `application`, ... and `$` references resolve
/// against these once per table, not per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer's IP (`host`).
    pub host: String,
    /// The consumer's port (`port`), if it has one.
    pub port: Option<u16>,
    /// Default request tag (Dubbo's consumer-URL `dubbo.tag`) for requests that carry none.
    pub tag: Option<String>,
    /// Other parameters (`application`, ...).
    pub params: BTreeMap<String, String>,
}

impl ConsumerInfo {
    fn value(&self, key: &Key) -> Option<String> {
        match key {
            Key::Host => Some(self.host.clone()),
            Key::Port => self.port.map(|p| p.to_string()),
            Key::Address => self.port.map(|p| format!("{}:{p}", self.host)),
            Key::Param(k) => self.lookup(k),
            Key::Method | Key::Argument(_) | Key::Attachment(_) => None,
        }
    }

    fn lookup(&self, k: &str) -> Option<String> {
        match k {
            "host" => Some(self.host.clone()),
            "port" => self.port.map(|p| p.to_string()),
            "tag" | "dubbo.tag" => self.tag.clone(),
            _ => self.params.get(k).cloned(),
        }
    }
}

/// What the routers see of one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The invoked method.
    pub method: &'a str,
    /// The `dubbo.tag` attachment, if any (empty = none).
    pub tag: Option<&'a str>,
    /// The `dubbo.force.tag` attachment: never fall back from a requested tag to untagged providers.
    pub force_tag: bool,
    /// The arguments as text, for `arguments[i]` conditions and consistent hashing.
    pub arguments: &'a [&'a str],
    /// Other attachments, for `attachments[name]` conditions.
    pub attachments: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    /// A request for `method` with nothing else.
    pub fn new(method: &'a str) -> Self {
        Request {
            method,
            ..Default::default()
        }
    }

    fn value(&self, key: &Key) -> Option<&'a str> {
        match key {
            Key::Method => Some(self.method),
            Key::Argument(i) => self.arguments.get(*i).copied(),
            Key::Attachment(k) => self.attachments.iter().find(|(n, _)| n == k).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Tuning of a table; the defaults suit the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Warm-up period for providers with a registration time and no `warmup` param (Dubbo: 10 min).
    pub default_warmup_ms: u64,
    /// While a candidate set has warming providers, its weights are recomputed at most this often.
    pub warmup_refresh_ms: u64,
    /// Candidate sets larger than this pick in groups (least-active, shortest-response, round robin).
    pub group_threshold: usize,
    /// Group size for least-active and shortest-response (round robin uses about `sqrt(n)`).
    pub group_size: usize,
    /// Virtual nodes per provider on the consistent-hash ring (Dubbo: 160); fewer on very large sets so a
    /// ring stays under 2^20 points.
    pub hash_replicas: u32,
    /// Most distinct routes cached; beyond, the cache starts over.
    pub max_cached_routes: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            default_warmup_ms: 600_000,
            warmup_refresh_ms: 1_000,
            group_threshold: 64,
            group_size: 32,
            hash_replicas: 160,
            max_cached_routes: 256,
        }
    }
}

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

/// One change of a service's provider list, for [`RouteTable::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The provider at this address left (no-op when it is not in the table).
    Remove(SocketAddr),
    /// A provider joined, or the one at its address changed (weight, cap, tag, parameters, registration
    /// time).
    Upsert(Provider),
}

/// What [`RouteTable::apply`] did to one provider index (for [`LiveState::apply`](crate::LiveState::apply)
/// and the caller's own per-index state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// A new provider took this index (a free one or a new one at the end): fresh per-index state.
    Added(usize),
    /// The provider at this index left; the index is free (never picked, may be taken by a later `Added`).
    Removed(usize),
    /// The provider at this index changed (same address): keep its live state, refresh its cap.
    Updated(usize),
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

const FRONT_SLOTS: usize = 1024;
const FRONT_ROUTES: usize = 4;

#[derive(Debug, Clone)]
struct FrontEntry {
    hash: u64,
    force_tag: bool,
    tag: Box<str>,
    method: Box<str>,
    tag_set: u32,
    method_mask: u64,
    routes: [(u64, u32); FRONT_ROUTES],
    n: u8,
    next: u8,
}

/// Open-addressing map (force_tag, tag, method) -> [`FrontEntry`], hashed and compared in place (no key
/// is built per request). Half full at most; starts over when it would be fuller.
#[derive(Debug, Clone, Default)]
struct Front {
    slots: Vec<Option<FrontEntry>>,
    len: usize,
}

impl Front {
    fn hash(force_tag: bool, tag: &str, method: &str) -> u64 {
        use std::hash::Hasher;
        let mut h = crate::hash::FxHasher::default();
        h.write_u8(u8::from(force_tag));
        h.write(tag.as_bytes());
        h.write_u8(0xff);
        h.write(method.as_bytes());
        crate::hash::mix64(h.finish())
    }

    /// Slot index of the entry, or of the empty slot where it would go.
    #[inline]
    fn find(&self, hash: u64, force_tag: bool, tag: &str, method: &str) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match &self.slots[i] {
                None => return i,
                Some(e)
                    if e.hash == hash
                        && e.force_tag == force_tag
                        && *e.tag == *tag
                        && *e.method == *method =>
                {
                    return i
                }
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: usize) -> SocketAddr {
        format!("10.0.{}.{}:20880", i / 250, i % 250 + 1).parse().unwrap()
    }

    fn members(t: &mut RouteTable, req: &Request<'_>) -> Vec<usize> {
        let r = t.route(req);
        t.candidates(r).iter().collect()
    }

    fn table(ps: Vec<Provider>, rules: &str) -> RouteTable {
        let rs = RuleSet::from_json(rules).unwrap();
        let consumer = ConsumerInfo {
            host: "192.168.0.7".into(),
            params: [("application".to_string(), "web".to_string())].into(),
            ..Default::default()
        };
        RouteTable::build(1, ps, &rs, &consumer, TableOptions::default())
    }

    #[test]
    fn static_tags_follow_dubbo() {
        let ps = vec![
            Provider::new(addr(0)),
            Provider::new(addr(1)).with_tag("gray"),
            Provider::new(addr(2)).with_tag("blue"),
            Provider::new(addr(3)),
        ];
        let mut t = table(ps, "{}");
        assert_eq!(t.len(), 4);
        let req = |tag| Request {
            tag,
            ..Request::new("m")
        };
        assert_eq!(members(&mut t, &req(None)), [0, 3]);
        assert_eq!(members(&mut t, &req(Some(""))), [0, 3]);
        assert_eq!(members(&mut t, &req(Some("gray"))), [1]);
        assert_eq!(
            members(&mut t, &req(Some("red"))),
            [0, 3],
            "unknown tag falls back to untagged"
        );
        let forced = Request {
            force_tag: true,
            ..req(Some("red"))
        };
        assert_eq!(members(&mut t, &forced), Vec::<usize>::new());
        // all tagged: an untagged request gets nothing (Dubbo has no fallback to tagged providers)
        let mut t = table(vec![Provider::new(addr(0)).with_tag("a")], "{}");
        assert_eq!(members(&mut t, &req(None)), Vec::<usize>::new());
    }

    #[test]
    fn dynamic_tag_rule_follows_dubbo() {
        let ps = vec![
            Provider::new(addr(0)),
            Provider::new(addr(1)),
            Provider::new(addr(2)).with_tag("blue"),
            Provider::new(addr(3)).with_tag("gray"),
        ];
        let rule = format!(
            r#"{{"tag":{{"tags":[{{"name":"gray","addresses":["{}"]}},{{"name":"none","addresses":["1.1.1.1"]}},{{"name":"empty"}}]}}}}"#,
            addr(1)
        );
        let mut t = table(ps.clone(), &rule);
        let req = |tag| Request {
            tag,
            ..Request::new("m")
        };
        assert_eq!(
            members(&mut t, &req(Some("gray"))),
            [1],
            "group by address, not the static tag"
        );
        // group matches nothing, rule not forced: static tag "none" -> nobody -> failover (untagged, not in a group)
        assert_eq!(members(&mut t, &req(Some("none"))), [0]);
        assert_eq!(members(&mut t, &req(Some("blue"))), [2], "no group: static tag");
        assert_eq!(
            members(&mut t, &req(Some("empty"))),
            [0],
            "empty group: static tag, then failover"
        );
        // no tag: not in a group, and static tag not one of the rule's names (blue is not a rule name)
        assert_eq!(members(&mut t, &req(None)), [0, 2]);
        let forced = rule.replace(r#""tag":{"#, r#""tag":{"force":true,"#);
        let mut t = table(ps, &forced);
        assert_eq!(members(&mut t, &req(Some("none"))), Vec::<usize>::new());
    }

    #[test]
    fn condition_rules_follow_dubbo() {
        let ps: Vec<Provider> = (0..6)
            .map(|i| Provider::new(addr(i)).with_param("version", if i < 3 { "1.0" } else { "2.0" }))
            .collect();
        let rules = r#"{"conditions":[
            {"rule":"method = find* => version = 2.*", "priority": 1},
            {"rule":"method = get => host = 10.0.0.1,10.0.0.2"},
            {"rule":"method = none => host = 9.9.9.9"},
            {"rule":"method = forced => host = 9.9.9.9", "force": true},
            {"rule":"method = black => false"},
            {"rule":"application = other & method = get => false"},
            {"rule":"application = web & arguments[0] = 1~10 => version = 1.0"}
        ]}"#;
        let mut t = table(ps, rules);
        assert_eq!(t.active_rules(), 6, "rule for another application folded away");
        assert_eq!(members(&mut t, &Request::new("findAll")), [3, 4, 5]);
        assert_eq!(members(&mut t, &Request::new("get")), [0, 1]);
        assert_eq!(
            members(&mut t, &Request::new("none")),
            [0, 1, 2, 3, 4, 5],
            "empty, not forced: ignored"
        );
        assert_eq!(members(&mut t, &Request::new("forced")), Vec::<usize>::new());
        assert_eq!(members(&mut t, &Request::new("black")), Vec::<usize>::new());
        let args = ["5"];
        let req = Request {
            arguments: &args,
            ..Request::new("findX")
        };
        // priority 0 rule (arguments) runs first -> {0,1,2}; then find* -> {} -> not forced, ignored
        assert_eq!(members(&mut t, &req), [0, 1, 2]);
        let args = ["50"];
        let req = Request {
            arguments: &args,
            ..Request::new("findX")
        };
        assert_eq!(members(&mut t, &req), [3, 4, 5]);
        let before = t.cached_sets();
        for _ in 0..10 {
            members(&mut t, &Request::new("findAll"));
            members(&mut t, &Request::new("findOther"));
        }
        assert_eq!(t.cached_sets(), before, "repeat requests hit the cache");
    }

    #[test]
    fn caches_start_over_without_changing_results() {
        let ps: Vec<Provider> = (0..40)
            .map(|i| {
                let p = Provider::new(addr(i)).with_param("version", format!("{}.0", i % 4));
                if i % 5 == 0 {
                    p.with_tag("gray")
                } else {
                    p
                }
            })
            .collect();
        let rules = r#"{"conditions":["method = a* => version = 1.*","method = *b => version != 2.0",
            "arguments[0] = 1 => version = 3.*,1.*"]}"#;
        let mut reference = table(ps.clone(), rules);
        let rs = RuleSet::from_json(rules).unwrap();
        let tiny = TableOptions {
            max_cached_routes: 1,
            ..TableOptions::default()
        };
        let mut t = RouteTable::build(1, ps, &rs, &ConsumerInfo::default(), tiny);
        let long = "a".repeat(300);
        let methods = ["ab", "a", "b", "zz", long.as_str()];
        for round in 0..3 {
            for (k, m) in methods.iter().enumerate() {
                for tag in [None, Some("gray"), Some("nope")] {
                    let args = [if (k + round) % 2 == 0 { "1" } else { "2" }];
                    let req = Request {
                        tag,
                        arguments: &args,
                        ..Request::new(m)
                    };
                    assert_eq!(
                        members(&mut t, &req),
                        members(&mut reference, &req),
                        "{m} {tag:?}"
                    );
                    assert_eq!(t.cached_sets(), 1);
                }
            }
        }
        // 2,000 distinct methods overflow the front map: it starts over and stays correct
        for k in 0..2000 {
            let m = format!("a{k}");
            assert_eq!(
                members(&mut t, &Request::new(&m)),
                members(&mut reference, &Request::new(&m))
            );
        }
    }

    #[test]
    fn changes_keep_indices_and_live_state_where_they_can() {
        use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
        let ps: Vec<Provider> = (0..4).map(|i| Provider::new(addr(i))).collect();
        let mut t = table(ps, "{}");
        let mut live = LiveState::new(&t);
        let all = |t: &mut RouteTable| members(t, &Request::new("m"));
        assert_eq!(all(&mut t), [0, 1, 2, 3]);
        live.on_send(2, 0);
        // weight and cap only: same index, in-flight kept, new cap in force
        let applied = t.apply(
            2,
            [Change::Upsert(
                Provider::new(addr(2)).with_weight(300).with_max_concurrency(1),
            )],
        );
        assert_eq!(applied, [Applied::Updated(2)]);
        live.apply(&t, &applied);
        assert_eq!((live.inflight(2), live.is_available(2), t.epoch()), (1, false, 2));
        // a tag change moves it out of the untagged route, at the same index
        let applied = t.apply(3, [Change::Upsert(Provider::new(addr(2)).with_tag("gray"))]);
        live.apply(&t, &applied);
        assert_eq!(
            (applied.as_slice(), live.inflight(2)),
            ([Applied::Updated(2)].as_slice(), 1)
        );
        assert_eq!(all(&mut t), [0, 1, 3]);
        // a removed index is never picked; the next provider takes it with fresh state
        let applied = t.apply(4, [Change::Remove(addr(1)), Change::Remove(addr(9))]);
        assert_eq!(applied, [Applied::Removed(1)]);
        live.apply(&t, &applied);
        assert_eq!(
            (t.len(), t.slots(), t.provider(1), t.index_of(addr(1))),
            (3, 4, None, None)
        );
        let mut rng = XorShift64::new(1);
        let opts = PickOptions {
            policy: Policy::WeightedRandom,
            ..Default::default()
        };
        for _ in 0..200 {
            assert!(matches!(
                t.route_and_pick(&Request::new("m"), &live, &mut rng, &opts),
                Pick::Provider(0 | 3)
            ));
        }
        let applied = t.apply(5, [Change::Upsert(Provider::new(addr(8)))]);
        assert_eq!(applied, [Applied::Added(1)], "the free index is reused");
        live.apply(&t, &applied);
        assert_eq!((live.inflight(1), t.index_of(addr(8))), (0, Some(1)));
        assert_eq!(all(&mut t), [0, 1, 3]);
        assert_eq!(
            t.apply(6, [Change::Upsert(Provider::new(addr(8)))]),
            [],
            "no change"
        );
    }

    /// Dubbo's weight 0 (a provider being drained): no share while any candidate weighs more, equal
    /// shares (round robin: in turn) when every candidate weighs 0; also through changes.
    #[test]
    fn weight_zero_takes_no_share_while_any_candidate_weighs_more() {
        use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
        let ps: Vec<Provider> = (0..4)
            .map(|i| Provider::new(addr(i)).with_weight(if i == 1 { 0 } else { 100 }))
            .collect();
        let mut t = table(ps, "{}");
        let mut live = LiveState::new(&t);
        let mut rng = XorShift64::new(9);
        let policies = [
            Policy::Adaptive,
            Policy::WeightedRandom,
            Policy::RoundRobin,
            Policy::LeastActive,
            Policy::ShortestResponse,
        ];
        let mut counts = |t: &mut RouteTable, live: &LiveState, policy: Policy, n: usize| {
            let o = PickOptions {
                policy,
                ..Default::default()
            };
            let mut c = vec![0usize; t.slots()];
            for _ in 0..n {
                match t.route_and_pick(&Request::new("m"), live, &mut rng, &o) {
                    Pick::Provider(i) => c[i] += 1,
                    other => panic!("{policy:?}: {other:?}"),
                }
            }
            c
        };
        assert_eq!(t.len(), 4, "weight 0 stays in the table");
        for p in policies {
            assert_eq!(counts(&mut t, &live, p, 300)[1], 0, "{p:?}");
        }
        // the others busy or down: the drained one is still better than nobody
        live.set_down(0, true);
        live.set_down(2, true);
        live.set_down(3, true);
        for p in policies {
            assert_eq!(counts(&mut t, &live, p, 20)[1], 20, "{p:?}");
        }
        // every candidate at 0: equal shares, round robin in turn
        let applied = t.apply(
            2,
            [0, 2, 3].map(|i| Change::Upsert(Provider::new(addr(i)).with_weight(0))),
        );
        assert_eq!(applied.len(), 3);
        live.apply(&t, &applied);
        for i in 0..4 {
            live.set_down(i, false);
        }
        assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 8), [2, 2, 2, 2]);
        for p in [Policy::WeightedRandom, Policy::Adaptive] {
            let c = counts(&mut t, &live, p, 4000);
            assert!(c.iter().all(|&k| k > 850), "{p:?}: {c:?}");
        }
        // one weighs again: it takes everything
        t.apply(3, [Change::Upsert(Provider::new(addr(2)).with_weight(5))]);
        assert_eq!(counts(&mut t, &live, Policy::WeightedRandom, 100), [0, 0, 100, 0]);
        assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 100), [0, 0, 100, 0]);
    }

    #[test]
    fn compaction_is_due_when_most_indices_are_free() {
        let ps: Vec<Provider> = (0..200).map(|i| Provider::new(addr(i))).collect();
        let mut t = table(ps, r#"{"conditions":["method = a => host != 10.0.0.1"]}"#);
        members(&mut t, &Request::new("a"));
        t.apply(2, (0..60).map(|i| Change::Remove(addr(i))));
        assert!(!t.needs_compaction(), "60 free of 200");
        t.apply(3, (60..80).map(|i| Change::Remove(addr(i))));
        assert!(t.needs_compaction(), "80 free of 200");
        let mut c = t.compacted();
        assert_eq!((c.len(), c.slots(), c.epoch()), (120, 120, 3));
        let addrs = |t: &mut RouteTable| -> Vec<SocketAddr> {
            let r = t.route(&Request::new("a"));
            let mut v: Vec<SocketAddr> = t
                .candidates(r)
                .iter()
                .filter_map(|i| t.provider(i))
                .map(|p| p.addr)
                .collect();
            v.sort();
            v
        };
        assert_eq!(addrs(&mut c), addrs(&mut t));
    }

    #[test]
    fn a_provider_that_joins_a_warm_route_warms_up_there() {
        use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
        let ps: Vec<Provider> = (0..2).map(|i| Provider::new(addr(i))).collect();
        let mut t = table(ps, "{}");
        let mut live = LiveState::new(&t);
        let mut rng = XorShift64::new(3);
        let share_of_new = |t: &mut RouteTable, live: &LiveState, rng: &mut XorShift64, now_ms: u64| {
            let opts = PickOptions {
                policy: Policy::WeightedRandom,
                now_ns: now_ms * 1_000_000,
                ..Default::default()
            };
            let n = 30_000;
            let hits = (0..n)
                .filter(|_| t.route_and_pick(&Request::new("m"), live, rng, &opts) == Pick::Provider(2))
                .count();
            hits as f64 / n as f64
        };
        assert_eq!(share_of_new(&mut t, &live, &mut rng, 1_000), 0.0);
        let young = Provider::new(addr(2))
            .with_registered_at_ms(0)
            .with_param("warmup", "100000");
        let applied = t.apply(2, [Change::Upsert(young)]);
        live.apply(&t, &applied);
        // 25 s of 100 s: weight 25 against 100 + 100
        let s = share_of_new(&mut t, &live, &mut rng, 25_000);
        assert!((s - 25.0 / 225.0).abs() < 0.015, "{s}");
        let s = share_of_new(&mut t, &live, &mut rng, 200_000);
        assert!((s - 1.0 / 3.0).abs() < 0.015, "{s}");
    }

    #[test]
    fn a_join_costs_its_own_warm_up_weight_not_a_refresh_of_every_warming_member() {
        use crate::pick::{LiveState, PickOptions, Policy, XorShift64};
        let warming = |i: usize| {
            Provider::new(addr(i))
                .with_registered_at_ms(0)
                .with_param("warmup", "100000")
        };
        let mut t = table((0..3).map(warming).collect(), "{}");
        let mut live = LiveState::new(&t);
        let mut rng = XorShift64::new(3);
        let at = |now_ms: u64| PickOptions {
            policy: Policy::WeightedRandom,
            now_ns: now_ms * 1_000_000,
            ..Default::default()
        };
        t.route_and_pick(&Request::new("m"), &live, &mut rng, &at(10_000));
        let set = |t: &RouteTable| t.sets.iter().find(|s| !s.members.is_empty()).unwrap().clone();
        assert_eq!(set(&t).weights, [10, 10, 10]);
        assert_eq!(set(&t).next_refresh_ms, 11_000);
        // A provider joins 500 ms later (the clock is the latest pick's): its weight is computed for the
        // clock at once; the others keep theirs and the refresh stays where it was.
        let young = Provider::new(addr(3))
            .with_registered_at_ms(5_000)
            .with_param("warmup", "100000");
        let applied = t.apply(2, [Change::Upsert(young)]);
        live.apply(&t, &applied);
        let s = set(&t);
        assert_eq!(s.weights, [10, 10, 10, 5]);
        assert_eq!(s.next_refresh_ms, 11_000);
        // The periodic refresh brings everyone to the pick's time.
        t.route_and_pick(&Request::new("m"), &live, &mut rng, &at(20_000));
        assert_eq!(set(&t).weights, [20, 20, 20, 15]);
        assert_eq!(set(&t).next_refresh_ms, 21_000);
    }

    #[test]
    fn round_robin_keeps_the_weights_through_changes() {
        use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
        for group_threshold in [2, 64] {
            let ps: Vec<Provider> = (0..12)
                .map(|i| Provider::new(addr(i)).with_weight(1 + i as u32 % 3))
                .collect();
            let rs = RuleSet::default();
            let opts = TableOptions {
                group_threshold,
                ..TableOptions::default()
            };
            let mut t = RouteTable::build(1, ps, &rs, &ConsumerInfo::default(), opts);
            let mut live = LiveState::new(&t);
            let mut rng = XorShift64::new(1);
            let o = PickOptions {
                policy: Policy::RoundRobin,
                ..Default::default()
            };
            let mut count = |t: &mut RouteTable, live: &LiveState, picks: usize| {
                let mut c = vec![0usize; t.slots()];
                for _ in 0..picks {
                    match t.route_and_pick(&Request::new("m"), live, &mut rng, &o) {
                        Pick::Provider(i) => c[i] += 1,
                        other => panic!("{other:?}"),
                    }
                }
                c
            };
            count(&mut t, &live, 50);
            let applied = t.apply(
                2,
                [
                    Change::Remove(addr(3)),
                    Change::Upsert(Provider::new(addr(20)).with_weight(5)),
                    Change::Upsert(Provider::new(addr(21)).with_weight(1)),
                    Change::Upsert(Provider::new(addr(0)).with_weight(4)),
                    Change::Remove(addr(7)),
                ],
            );
            live.apply(&t, &applied);
            let total: usize = t.providers().map(|(_, p)| p.weight as usize).sum();
            let cycles = 20;
            let c = count(&mut t, &live, total * cycles);
            for (i, p) in t.providers() {
                let want = p.weight as usize * cycles;
                assert!(
                    c[i].abs_diff(want) <= 2,
                    "threshold {group_threshold}: {i} got {} want {want}: {c:?}",
                    c[i]
                );
            }
        }
    }

    #[test]
    fn references_resolve_against_the_consumer() {
        let ps = vec![
            Provider::new("192.168.0.7:1".parse().unwrap()),
            Provider::new("192.168.0.8:1".parse().unwrap()),
        ];
        let mut t = table(ps, r#"{"conditions":["=> host = $host"]}"#);
        assert_eq!(members(&mut t, &Request::new("x")), [0]);
    }
}

/// Changes applied to a table equal a table built over the resulting providers, and both equal the routers
/// computed naively per call (the tag router as the table computed it before it was kept incrementally).
#[cfg(test)]
mod incremental_tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
    use crate::tag::TagRule;

    mod tag_model {
        use super::*;
        pub(super) fn untagged(p: &Provider) -> bool {
            p.tag.as_deref().is_none_or(str::is_empty)
        }

        /// Providers in no dynamic group and without a static tag (the tag router's failover set).
        pub(super) fn failover(providers: &[Provider], rule: Option<&TagRule>) -> BitSet {
            BitSet::from_fn(providers.len(), |i| {
                let p = &providers[i];
                untagged(p) && !rule.is_some_and(|r| r.in_any_group(p.addr))
            })
        }

        /// Dubbo's tag router over the whole provider list (see the `tag` module docs).
        pub(super) fn tag_result(
            providers: &[Provider],
            rule: Option<&TagRule>,
            tag: Option<&str>,
            force_tag: bool,
        ) -> BitSet {
            let n = providers.len();
            let static_tag = |t: &str| BitSet::from_fn(n, |i| providers[i].tag.as_deref() == Some(t));
            let Some(rule) = rule else {
                return match tag {
                    Some(t) => {
                        let r = static_tag(t);
                        if r.none() && !force_tag {
                            BitSet::from_fn(n, |i| untagged(&providers[i]))
                        } else {
                            r
                        }
                    }
                    None => BitSet::from_fn(n, |i| untagged(&providers[i])),
                };
            };
            match tag {
                Some(t) => {
                    let r = match rule.group(t) {
                        Some(addrs) if !addrs.is_empty() => {
                            let r =
                                BitSet::from_fn(n, |i| addrs.iter().any(|a| a.matches(providers[i].addr)));
                            if !r.none() || rule.force {
                                return r;
                            }
                            r
                        }
                        _ => static_tag(t),
                    };
                    if !r.none() || force_tag {
                        r
                    } else {
                        failover(providers, Some(rule))
                    }
                }
                None => {
                    let any_addresses = rule.groups.iter().any(|(_, a)| !a.is_empty());
                    let r = if any_addresses {
                        let r = BitSet::from_fn(n, |i| !rule.in_any_group(providers[i].addr));
                        if r.none() {
                            return r;
                        }
                        r
                    } else {
                        BitSet::full(n)
                    };
                    let keep = BitSet::from_fn(n, |i| {
                        let p = &providers[i];
                        untagged(p)
                            || !rule
                                .groups
                                .iter()
                                .any(|(name, _)| Some(name.as_str()) == p.tag.as_deref())
                    });
                    r.and(&keep)
                }
            }
        }
    }

    const RULES: [&str; 7] = [
        "method = find* => version = 2.*",
        "method = get => zone != z0",
        "method = find* & arguments[0] = 0~50 => zone = z1,z2",
        "=> host != 10.0.0.3",
        "method = del* => false",
        "method = get => version = 9.*",
        "application = app & method = *User => zone = z3",
    ];
    const METHODS: [&str; 5] = ["findUser", "get", "delete", "ping", "getUser"];
    const TAGS: [Option<&str>; 5] = [Some("gray"), Some("blue"), Some("red"), Some("green"), None];

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, (i + 1) as u8], 20880))
    }

    fn provider(i: usize, (w, tag, version, zone, cap): (u32, usize, usize, usize, Option<u32>)) -> Provider {
        let mut p = Provider::new(addr(i))
            .with_weight(w)
            .with_param("version", ["1.0", "2.0", "2.5"][version])
            .with_param("zone", format!("z{zone}"));
        p.max_concurrency = cap;
        if let Some(t) = TAGS[tag] {
            p = p.with_tag(t);
        }
        p
    }

    fn consumer() -> ConsumerInfo {
        ConsumerInfo {
            host: "10.9.9.9".into(),
            params: [("application".to_string(), "app".to_string())].into(),
            ..Default::default()
        }
    }

    fn rule_set(rules: &[(usize, bool)], tag_rule: u8) -> RuleSet {
        let conds: Vec<String> = rules
            .iter()
            .map(|&(r, force)| format!(r#"{{"rule":"{}","force":{force}}}"#, RULES[r]))
            .collect();
        let tag = match tag_rule {
            0 => String::new(),
            k => format!(
                r#""tag":{{"force":{},"tags":[{{"name":"gray","addresses":["10.0.0.1-6"]}},{{"name":"blue"}},{{"name":"green","addresses":["10.0.0.40"]}}]}},"#,
                k == 2
            ),
        };
        RuleSet::from_json(&format!(r#"{{{tag}"conditions":[{}]}}"#, conds.join(","))).unwrap()
    }

    /// The routers per call over `ps`, as addresses.
    fn model(ps: &[Provider], rules: &RuleSet, req: &Request<'_>) -> BTreeSet<SocketAddr> {
        let c = consumer();
        let tag = req.tag.filter(|t| !t.is_empty());
        let mut cur = tag_model::tag_result(ps, rules.tag.as_ref(), tag, req.force_tag);
        let lookup = |k: &str| c.lookup(k);
        for rule in &rules.conditions {
            let applies = rule.rule.when.iter().all(|cond| {
                let cond = cond.resolve(&lookup);
                if cond.key.is_request_side() {
                    cond.test(req.value(&cond.key))
                } else {
                    cond.test(c.value(&cond.key).as_deref())
                }
            });
            if !applies {
                continue;
            }
            let Some(then) = &rule.rule.then else {
                cur = BitSet::new(ps.len());
                continue;
            };
            let keep = BitSet::from_fn(ps.len(), |i| {
                then.iter()
                    .all(|x| x.test(provider_value(&ps[i], &x.key).as_deref()))
            });
            let next = cur.and(&keep);
            if !next.none() || rule.force {
                cur = next;
            }
        }
        cur.iter().map(|i| ps[i].addr).collect()
    }

    fn requests() -> Vec<(usize, usize, bool, &'static str)> {
        let mut v = Vec::new();
        for m in 0..METHODS.len() {
            for t in 0..TAGS.len() {
                for force in [false, true] {
                    v.push((m, t, force, if (m + t) % 2 == 0 { "7" } else { "70" }));
                }
            }
        }
        v
    }

    fn routed(t: &mut RouteTable, req: &Request<'_>) -> BTreeSet<SocketAddr> {
        let r = t.route(req);
        t.candidates(r)
            .iter()
            .map(|i| t.provider(i).expect("a candidate is a provider").addr)
            .collect()
    }

    type Attrs = (u32, usize, usize, usize, Option<u32>);

    fn attrs() -> impl Strategy<Value = Attrs> {
        (
            0u32..4,
            0usize..5,
            0usize..3,
            0usize..4,
            prop::option::of(1u32..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

        #[test]
        fn changes_equal_a_rebuild_and_the_model(
            initial in prop::collection::vec((0usize..150, attrs()), 0..120),
            ops in prop::collection::vec((0u8..4, 0usize..150, attrs(), 1usize..6), 1..50),
            rules in prop::collection::vec((0..RULES.len(), any::<bool>()), 0..5),
            tag_rule in 0u8..3,
            group_threshold in prop::sample::select(vec![3usize, 64]),
            seed in any::<u64>(),
        ) {
            let rules = rule_set(&rules, tag_rule);
            let opts = TableOptions { group_threshold, group_size: 2, hash_replicas: 8, ..TableOptions::default() };
            let mut ps: Vec<Provider> = Vec::new();
            let upsert = |ps: &mut Vec<Provider>, p: Provider| match ps.iter().position(|q| q.addr == p.addr) {
                Some(k) => ps[k] = p,
                None => ps.push(p),
            };
            for (i, a) in initial {
                upsert(&mut ps, provider(i, a));
            }
            let mut t = RouteTable::build(1, ps.clone(), &rules, &consumer(), opts);
            let mut live = LiveState::new(&t);
            let reqs = requests();
            let mut rng = XorShift64::new(seed);
            let mut batch = Vec::new();
            let last = ops.len() - 1;
            for (step, (kind, i, a, batch_len)) in ops.into_iter().enumerate() {
                let change = match kind {
                    0 => Change::Remove(addr(i)),
                    3 => match ps.iter().find(|p| p.addr == addr(i)) {
                        // weight or cap only
                        Some(p) => Change::Upsert(Provider { max_concurrency: a.4, ..p.clone().with_weight(a.0) }),
                        None => Change::Upsert(provider(i, a)),
                    },
                    _ => Change::Upsert(provider(i, a)),
                };
                match &change {
                    Change::Remove(x) => ps.retain(|p| p.addr != *x),
                    Change::Upsert(p) => upsert(&mut ps, p.clone()),
                }
                batch.push(change);
                if batch.len() < batch_len && step < last {
                    continue;
                }
                let applied = t.apply(step as u64 + 2, batch.drain(..));
                live.apply(&t, &applied);
                prop_assert_eq!(live.len(), t.slots());
                prop_assert_eq!(t.len(), ps.len());
                let mut fresh = RouteTable::build(0, ps.clone(), &rules, &consumer(), opts);
                let fresh_live = LiveState::new(&fresh);
                for &(m, tg, force_tag, arg) in &reqs {
                    let args = [arg];
                    let req = Request { tag: TAGS[tg], force_tag, arguments: &args, ..Request::new(METHODS[m]) };
                    let got = routed(&mut t, &req);
                    prop_assert_eq!(&got, &routed(&mut fresh, &req), "{:?} vs rebuild", req);
                    prop_assert_eq!(&got, &model(&ps, &rules, &req), "{:?} vs model", req);
                    for policy in [Policy::Adaptive, Policy::WeightedRandom, Policy::RoundRobin,
                                   Policy::LeastActive, Policy::ShortestResponse, Policy::ConsistentHash] {
                        let o = PickOptions { policy, now_ns: 1, hash_key: Some(arg.as_bytes()), exclude: &[] };
                        let r = t.route(&req);
                        match t.pick(r, &live, &mut rng, &o) {
                            Pick::Provider(i) => {
                                let a = t.provider(i).map(|p| p.addr);
                                prop_assert!(a.is_some_and(|a| got.contains(&a)), "{:?} picked {:?}", policy, a);
                                if policy == Policy::ConsistentHash {
                                    let fr = fresh.route(&req);
                                    let same = match fresh.pick(fr, &fresh_live, &mut rng, &o) {
                                        Pick::Provider(j) => fresh.provider(j).map(|p| p.addr),
                                        _ => None,
                                    };
                                    prop_assert_eq!(a, same, "hash ring differs from a rebuilt one");
                                }
                            }
                            other => prop_assert!(got.is_empty(), "{:?}: {:?} with candidates", policy, other),
                        }
                    }
                }
                for s in &t.sets {
                    s.check(&t);
                }
            }
            let c = t.compacted();
            prop_assert_eq!(c.slots(), ps.len());
            prop_assert_eq!(c.len(), t.len());
        }
    }
}
