//! The route table of one service for one snapshot epoch: the providers, every router's precomputed result
//! as bitsets, and the route cache. Built once per epoch ([`RouteTable::build`]); the request path
//! ([`RouteTable::route`]) evaluates only the request-side matchers and looks the result up.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::bitset::BitSet;
use crate::hash::FxMap;
use crate::pick::CandidateSet;
use crate::rule::{Condition, Key};
use crate::ruleset::RuleSet;
use crate::tag::TagRule;

/// One provider of the service in this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Where calls go (the provider agent).
    pub addr: SocketAddr,
    /// Capacity weight; 0 = never route here (the provider is left out of the table).
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
    /// Providers the then part keeps; `None` = blacklist.
    then: Option<BitSet>,
    force: bool,
}

impl ActiveRule {
    fn applies(&self, req: &Request<'_>) -> bool {
        self.when.iter().all(|c| c.test(req.value(&c.key)))
    }
}

/// Routers, route cache and candidate sets of one service in one epoch. Owned by one thread (`route` and
/// `pick` take `&mut self` to fill caches); build one per shard, or clone a built one.
#[derive(Debug, Clone)]
pub struct RouteTable {
    epoch: u64,
    pub(crate) providers: Vec<Provider>,
    index: HashMap<SocketAddr, usize>,
    pub(crate) opts: TableOptions,
    /// Per provider: (registered_at_ms, warmup_ms) when it has a registration time.
    pub(crate) warm: Vec<Option<(u64, u64)>>,
    pub(crate) addr_text: Vec<String>,
    default_tag: Option<std::sync::Arc<str>>,
    tag_class: FxMap<Box<str>, u32>,
    none_class: u32,
    unknown_class: u32,
    /// class -> [bitset id without force_tag, with force_tag]
    tag_sets: Vec<[u32; 2]>,
    tag_bits: Vec<BitSet>,
    rules: Vec<ActiveRule>,
    /// Rules whose request-side conditions only look at the method (or at nothing).
    method_only_mask: u64,
    /// Rules evaluated per request.
    other_rules: Vec<usize>,
    /// (force_tag, tag, method) -> tag result, method-only rule mask and the last routes seen per
    /// per-request rule mask: the steady state is one hash lookup.
    front: Front,
    cache: FxMap<(u32, u64), u32>,
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
    /// Precomputes every router's result for this epoch. Providers with weight 0 are left out; the
    /// others keep their order (indices into [`RouteTable::providers`] are what picks return).
    pub fn build(
        epoch: u64,
        providers: Vec<Provider>,
        rules: &RuleSet,
        consumer: &ConsumerInfo,
        opts: TableOptions,
    ) -> RouteTable {
        let providers: Vec<Provider> = providers.into_iter().filter(|p| p.weight > 0).collect();
        let n = providers.len();
        let index = providers.iter().enumerate().map(|(i, p)| (p.addr, i)).collect();
        let warm = providers
            .iter()
            .map(|p| {
                p.registered_at_ms.map(|at| {
                    let w = p
                        .params
                        .get("warmup")
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(opts.default_warmup_ms);
                    (at, w)
                })
            })
            .collect();
        let addr_text = providers.iter().map(|p| p.addr.to_string()).collect();

        // Dubbo 3 parameter groups of the tag rule become address groups of these providers.
        let tag_rule = rules.tag.as_ref().map(|t| t.for_providers(&providers));
        let tag_rule = tag_rule.as_deref();
        // Tag classes: every tag value the providers or the rule name, plus "no tag" and "unknown tag".
        let mut names: Vec<String> = providers.iter().filter_map(|p| p.tag.clone()).collect();
        if let Some(rule) = tag_rule {
            names.extend(rule.groups.iter().map(|(n, _)| n.clone()));
        }
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        let mut tag_bits: Vec<BitSet> = Vec::new();
        let mut bits_id: HashMap<BitSet, u32> = HashMap::new();
        let mut intern = |b: BitSet| -> u32 {
            let next = bits_id.len() as u32;
            let id = *bits_id.entry(b.clone()).or_insert(next);
            if id == next {
                tag_bits.push(b);
            }
            id
        };
        let mut tag_sets = Vec::new();
        let mut tag_class = FxMap::default();
        for name in &names {
            let c = [false, true].map(|f| intern(tag_result(&providers, tag_rule, Some(name), f)));
            tag_class.insert(name.clone().into_boxed_str(), tag_sets.len() as u32);
            tag_sets.push(c);
        }
        let none_class = tag_sets.len() as u32;
        tag_sets.push([false, true].map(|f| intern(tag_result(&providers, tag_rule, None, f))));
        let unknown_class = tag_sets.len() as u32;
        // A tag nobody has: static(T) and group(T) are empty.
        let unknown = |f: bool| {
            let mut r = BitSet::new(n);
            if !f {
                r = failover(&providers, tag_rule);
            }
            r
        };
        tag_sets.push([false, true].map(|f| intern(unknown(f))));

        // Condition rules: fold the consumer-side conditions, precompute the then part per provider.
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
            let then = c.rule.then.as_ref().map(|conds| {
                let conds: Vec<Condition> = conds.iter().map(|x| x.resolve(&lookup)).collect();
                BitSet::from_fn(n, |i| {
                    conds
                        .iter()
                        .all(|x| x.test(provider_value(&providers[i], &x.key).as_deref()))
                })
            });
            active.push(ActiveRule {
                when,
                then,
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
        RouteTable {
            epoch,
            providers,
            index,
            opts,
            warm,
            addr_text,
            default_tag: consumer.tag.as_deref().filter(|t| !t.is_empty()).map(Into::into),
            tag_class,
            none_class,
            unknown_class,
            tag_sets,
            tag_bits,
            rules: active,
            method_only_mask,
            other_rules,
            front: Front::default(),
            cache: FxMap::default(),
            by_bits: HashMap::new(),
            sets: Vec::new(),
        }
    }

    /// The snapshot epoch this table was built for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The providers (weight > 0), in input order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Number of providers.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// True when the table has no provider.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The provider at `idx`.
    pub fn provider(&self, idx: usize) -> Option<&Provider> {
        self.providers.get(idx)
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
        let class = match tag {
            None => self.none_class,
            Some(t) => self.tag_class.get(t).copied().unwrap_or(self.unknown_class),
        };
        self.tag_sets[class as usize][usize::from(force_tag)]
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
            Some(&id) => RouteId(id),
            None => self.fill(tag_set, mask),
        }
    }

    fn fill(&mut self, tag_set: u32, mask: u64) -> RouteId {
        let mut cur = self.tag_bits[tag_set as usize].clone();
        for (j, r) in self.rules.iter().enumerate() {
            if mask & (1 << j) == 0 {
                continue;
            }
            // Dubbo's ConditionStateRouter on the output of the routers before it.
            match &r.then {
                None => cur = BitSet::new(cur.universe()),
                Some(then) => {
                    let next = cur.and(then);
                    if !next.none() || r.force {
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
        self.cache.insert((tag_set, mask), id);
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

fn untagged(p: &Provider) -> bool {
    p.tag.as_deref().is_none_or(str::is_empty)
}

/// Providers in no dynamic group and without a static tag (the tag router's failover set).
fn failover(providers: &[Provider], rule: Option<&TagRule>) -> BitSet {
    BitSet::from_fn(providers.len(), |i| {
        let p = &providers[i];
        untagged(p) && !rule.is_some_and(|r| r.in_any_group(p.addr))
    })
}

/// Dubbo's tag router over the whole provider list (see the `tag` module docs).
fn tag_result(providers: &[Provider], rule: Option<&TagRule>, tag: Option<&str>, force_tag: bool) -> BitSet {
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
                    let r = BitSet::from_fn(n, |i| addrs.iter().any(|a| a.matches(providers[i].addr)));
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
            Provider::new(addr(4)).with_weight(0),
        ];
        let mut t = table(ps, "{}");
        assert_eq!(t.len(), 4, "weight 0 left out");
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
    fn references_resolve_against_the_consumer() {
        let ps = vec![
            Provider::new("192.168.0.7:1".parse().unwrap()),
            Provider::new("192.168.0.8:1".parse().unwrap()),
        ];
        let mut t = table(ps, r#"{"conditions":["=> host = $host"]}"#);
        assert_eq!(members(&mut t, &Request::new("x")), [0]);
    }
}
