//! A bounded provider subset per consumer agent (`consumer.provider_subset`), decided in the registry
//! thread before anything reaches the snapshot. Pure.
//!
//! Without it every consumer agent lists, and its shards dial, every provider of a service: at 5,000
//! providers each joining or leaving provider costs every consumer a snapshot, a route-table change and a
//! TCP dial or close. With a subset of `K`, a consumer lists at most `K` providers per service key, chosen
//! by rendezvous (highest-random-weight) hashing of (consumer identity, provider address): each provider's
//! score is a 64-bit hash of both, and the consumer keeps the `K` best. The choice is deterministic (same
//! input, same subset, on every restart), stable (a provider joining enters only if it beats the `K`-th
//! score, evicting that one; a member leaving promotes the next best; anything else changes nothing), and
//! different per consumer, so that consumers together spread over the providers (each provider is in about
//! `K x consumers / providers` subsets: keep that at a few or more, or providers sit idle).
//!
//! Every provider is listed (no subset) for a service key while any of these holds, because each would
//! route among providers the subset might have dropped:
//! * a provider of it registers a `dubbo.tag` (tag routing);
//! * a routing rule from the config center may apply to it: its service condition rule, the consumer
//!   application's condition rule, or a condition or tag rule of an application its providers name;
//! * it has a routing document in the consumer's own configuration (`consumer.routing`).
//!
//! (A consistent-hashing balancer must see every provider too: the agent does not configure a subset then.)
//! Below `K` providers the subset is every provider anyway.
//!
//! Per service key every provider is kept in a map ordered by score, and the subset is its first `K`
//! entries (the last member's rank is remembered), so a change costs O(log n); switching between the
//! subset and every provider costs O(n) and happens only when a tag or rule appears or goes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;

use mesh_balance::hash::{address_hash, splitmix64};
use mesh_balance::RuleIndex;

use crate::dubbo::ServiceKey;
use crate::Endpoint;

/// The largest subset size accepted.
pub const MAX_PROVIDER_SUBSET: usize = 100_000;

/// What a consumer's provider subset needs to know (all fixed at start).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsetSettings {
    /// Providers kept per service key (`K`); 0: no subset.
    pub size: usize,
    /// This consumer's identity, hashed with each provider's address (e.g.
    /// `<application>@<hostname>/<IP>:<port>`, or a configured seed): consumers with the same identity
    /// pick the same subset.
    pub identity: String,
    /// The consumer's application (`consumer.application`), whose condition rule applies to every service.
    pub consumer_application: Option<String>,
    /// Service keys with a routing document of the consumer's own configuration (`consumer.routing`).
    pub configured_rules: BTreeSet<String>,
}

/// A change the subset makes to what the snapshot lists for one service key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The endpoint is listed (added or changed).
    Listed(Arc<Endpoint>),
    /// The endpoint at this address is no longer listed.
    Unlisted(SocketAddr),
}

/// A provider's place in a service's order: best score first, ties by address.
type Rank = (Reverse<u64>, SocketAddr);

/// One service key's providers, by rank.
#[derive(Debug, Default)]
struct ServiceProviders {
    /// Every provider of the service key, best score first.
    ranked: BTreeMap<Rank, Arc<Endpoint>>,
    /// The rank of the last member of the subset (the first `K` of `ranked`); `None` when empty.
    last_member: Option<Rank>,
    /// Providers with a `dubbo.tag`.
    tagged: usize,
    /// Providers per `application` parameter (the applications whose rules may apply).
    applications: HashMap<String, usize>,
    /// The consumer's configuration has a routing document for this key.
    configured: bool,
    /// A config-center rule may apply (see [`ProviderSubset::rules_apply`]).
    ruled: bool,
    /// What is listed now: every provider (`true`) or the subset.
    whole: bool,
}

impl ServiceProviders {
    fn is_member(&self, rank: &Rank) -> bool {
        self.last_member.is_some_and(|last| *rank <= last)
    }

    fn must_list_all(&self) -> bool {
        self.tagged > 0 || self.configured || self.ruled
    }

    /// `rank` was just inserted: whether it is a member now, and the member it evicted.
    fn admit(&mut self, rank: Rank, size: usize) -> (bool, Option<Rank>) {
        let Some(last) = self.last_member else {
            self.last_member = Some(rank);
            return (true, None);
        };
        if self.ranked.len() <= size {
            self.last_member = Some(last.max(rank));
            (true, None)
        } else if rank < last {
            self.last_member = self.ranked.range(..last).next_back().map(|(r, _)| *r);
            (true, Some(last))
        } else {
            (false, None)
        }
    }

    /// Member `rank` was just removed: the provider promoted in its place, if any.
    fn replace(&mut self, rank: Rank) -> Option<Rank> {
        let last = self.last_member?;
        let next = self
            .ranked
            .range((Bound::Excluded(last), Bound::Unbounded))
            .next()
            .map(|(r, _)| *r);
        match next {
            Some(next) => {
                self.last_member = Some(next);
                Some(next)
            }
            None => {
                if rank == last {
                    self.last_member = self.ranked.range(..last).next_back().map(|(r, _)| *r);
                }
                None
            }
        }
    }

    /// The providers outside the subset.
    fn outsiders(&self) -> impl Iterator<Item = &Arc<Endpoint>> + '_ {
        let from = match self.last_member {
            Some(last) => Bound::Excluded(last),
            None => Bound::Unbounded,
        };
        self.ranked.range((from, Bound::Unbounded)).map(|(_, e)| e)
    }

    fn count(&mut self, endpoint: &Endpoint, by: isize) {
        if endpoint.tag.is_some() {
            self.tagged = self.tagged.saturating_add_signed(by);
        }
        if let Some(app) = endpoint.params.get("application") {
            if by > 0 {
                match self.applications.get_mut(app) {
                    Some(n) => *n += 1,
                    None => {
                        self.applications.insert(app.clone(), 1);
                    }
                }
            } else if let Some(n) = self.applications.get_mut(app) {
                *n -= 1;
                if *n == 0 {
                    self.applications.remove(app);
                }
            }
        }
    }
}

/// The subset stage: every provider per service key in, the listed ones out as [`Listing`]s.
#[derive(Debug)]
pub struct ProviderSubset {
    size: usize,
    seed: u64,
    consumer_application: Option<String>,
    configured_rules: BTreeSet<String>,
    rules: Arc<RuleIndex>,
    services: HashMap<Arc<str>, ServiceProviders>,
}

impl ProviderSubset {
    /// The stage for `settings`; `None` when the size is 0 (no subset: every provider listed).
    pub fn new(settings: &SubsetSettings) -> Option<Self> {
        (settings.size > 0).then(|| ProviderSubset {
            size: settings.size.min(MAX_PROVIDER_SUBSET),
            seed: identity_seed(&settings.identity),
            consumer_application: settings.consumer_application.clone().filter(|a| !a.is_empty()),
            configured_rules: settings.configured_rules.clone(),
            rules: Arc::default(),
            services: HashMap::new(),
        })
    }

    /// The subset size `K`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Provider `endpoint` of `service` is added or changed; what the snapshot must list differently is
    /// pushed to `out`.
    pub fn upsert(&mut self, service: &str, endpoint: Arc<Endpoint>, out: &mut Vec<Listing>) {
        let rank = self.rank(endpoint.addr);
        let service: Arc<str> = match self.services.get_key_value(service) {
            Some((k, _)) => Arc::clone(k),
            None => {
                let key: Arc<str> = Arc::from(service);
                let providers = ServiceProviders {
                    configured: self.configured_rules.contains(service),
                    ..ServiceProviders::default()
                };
                self.services.insert(Arc::clone(&key), providers);
                key
            }
        };
        let size = self.size;
        let Some(s) = self.services.get_mut(&service) else {
            return;
        };
        let apps_before = s.applications.len();
        match s.ranked.insert(rank, Arc::clone(&endpoint)) {
            Some(old) => {
                s.count(&old, -1);
                s.count(&endpoint, 1);
                if s.whole || s.is_member(&rank) {
                    out.push(Listing::Listed(endpoint));
                }
            }
            None => {
                s.count(&endpoint, 1);
                let (entered, evicted) = s.admit(rank, size);
                if s.whole || entered {
                    out.push(Listing::Listed(endpoint));
                }
                if let (false, Some(evicted)) = (s.whole, evicted) {
                    out.push(Listing::Unlisted(evicted.1));
                }
            }
        }
        let apps_changed = s.applications.len() != apps_before;
        self.settle(&service, apps_changed, out);
    }

    /// Provider `addr` of `service` is gone; what the snapshot must list differently is pushed to `out`.
    pub fn remove(&mut self, service: &str, addr: SocketAddr, out: &mut Vec<Listing>) {
        let rank = self.rank(addr);
        let Some(key) = self.services.get_key_value(service).map(|(k, _)| Arc::clone(k)) else {
            return;
        };
        let Some(s) = self.services.get_mut(&key) else {
            return;
        };
        let was_member = s.is_member(&rank);
        let Some(old) = s.ranked.remove(&rank) else {
            return;
        };
        let apps_before = s.applications.len();
        s.count(&old, -1);
        if s.whole || was_member {
            out.push(Listing::Unlisted(addr));
        }
        if was_member {
            if let Some(promoted) = s.replace(rank) {
                if !s.whole {
                    if let Some(e) = s.ranked.get(&promoted) {
                        out.push(Listing::Listed(Arc::clone(e)));
                    }
                }
            }
        }
        let emptied = s.ranked.is_empty();
        let apps_changed = s.applications.len() != apps_before;
        if emptied {
            self.services.remove(&key);
        } else {
            self.settle(&key, apps_changed, out);
        }
    }

    /// The config center's rules changed: every service key whose subset they switch on or off lists its
    /// providers again (pushed to `out` with its key).
    pub fn set_rules(&mut self, rules: Arc<RuleIndex>, out: &mut Vec<(Arc<str>, Listing)>) {
        self.rules = rules;
        let keys: Vec<Arc<str>> = self.services.keys().cloned().collect();
        let mut changes = Vec::new();
        for key in keys {
            self.settle(&key, true, &mut changes);
            out.extend(changes.drain(..).map(|l| (Arc::clone(&key), l)));
        }
    }

    /// The addresses listed for `service` now, best rank first (tests and tools).
    pub fn listed(&self, service: &str) -> Vec<SocketAddr> {
        let Some(s) = self.services.get(service) else {
            return Vec::new();
        };
        let take = if s.whole { usize::MAX } else { self.size };
        s.ranked.keys().take(take).map(|r| r.1).collect()
    }

    /// Whether `service` lists every provider now (a tag or a rule, see the module's text).
    pub fn lists_all(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|s| s.whole)
    }

    /// Re-decides whether `key` lists every provider (`recheck_rules`: whether the rules that may apply
    /// can have changed) and pushes the switch's listings.
    fn settle(&mut self, key: &Arc<str>, recheck_rules: bool, out: &mut Vec<Listing>) {
        if recheck_rules {
            let ruled = self
                .services
                .get(key)
                .is_some_and(|s| self.rules_apply(key, s.applications.keys()));
            if let Some(s) = self.services.get_mut(key) {
                s.ruled = ruled;
            }
        }
        let Some(s) = self.services.get_mut(key) else {
            return;
        };
        let want = s.must_list_all();
        if want == s.whole {
            return;
        }
        s.whole = want;
        let before = out.len();
        if want {
            out.extend(s.outsiders().map(|e| Listing::Listed(Arc::clone(e))));
        } else {
            out.extend(s.outsiders().map(|e| Listing::Unlisted(e.addr)));
        }
        tracing::info!(
            "service {key}: provider subset {} ({} providers listed, {} changed)",
            if want {
                "off: a provider is tagged or a routing rule may apply"
            } else {
                "on"
            },
            if want {
                s.ranked.len()
            } else {
                s.ranked.len().min(self.size)
            },
            out.len() - before,
        );
    }

    /// Whether a config-center rule may apply to service key `key` whose providers name `applications`.
    fn rules_apply<'a>(&self, key: &str, mut applications: impl Iterator<Item = &'a String>) -> bool {
        let rules = &self.rules;
        if rules.is_empty() {
            return false;
        }
        let k = ServiceKey::parse(key);
        rules
            .service_condition(
                &k.interface,
                k.version.as_deref().unwrap_or(""),
                k.group.as_deref().unwrap_or(""),
            )
            .is_some()
            || self
                .consumer_application
                .as_deref()
                .is_some_and(|a| rules.app_condition(a).is_some())
            || applications.any(|a| rules.tag(a).is_some() || rules.app_condition(a).is_some())
    }

    fn rank(&self, addr: SocketAddr) -> Rank {
        (Reverse(score(self.seed, addr)), addr)
    }
}

/// The 64-bit seed of a consumer identity: FNV-1a over its bytes, then mixed.
pub fn identity_seed(identity: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

/// Provider `addr`'s rendezvous score for the consumer of `seed` (higher is better).
pub fn score(seed: u64, addr: SocketAddr) -> u64 {
    splitmix64(address_hash(addr) ^ seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap as Map;

    const SVC: &str = "com.foo.Svc";

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 20880))
    }

    fn settings(size: usize, identity: &str) -> SubsetSettings {
        SubsetSettings {
            size,
            identity: identity.to_owned(),
            ..SubsetSettings::default()
        }
    }

    fn stage(size: usize) -> ProviderSubset {
        ProviderSubset::new(&settings(size, "orders@host-1/10.0.0.1:20000")).unwrap()
    }

    /// Applies listings to what a snapshot lists.
    fn apply(listed: &mut Map<SocketAddr, Arc<Endpoint>>, out: &mut Vec<Listing>) {
        for l in out.drain(..) {
            match l {
                Listing::Listed(e) => {
                    listed.insert(e.addr, e);
                }
                Listing::Unlisted(a) => {
                    listed.remove(&a);
                }
            }
        }
    }

    /// The subset computed from scratch: the `size` best scores, or every provider when one is tagged.
    fn expected(seed: u64, size: usize, all: &Map<SocketAddr, Arc<Endpoint>>) -> BTreeSet<SocketAddr> {
        if all.values().any(|e| e.tag.is_some()) {
            return all.keys().copied().collect();
        }
        let mut ranked: Vec<Rank> = all.keys().map(|a| (Reverse(score(seed, *a)), *a)).collect();
        ranked.sort();
        ranked.into_iter().take(size).map(|r| r.1).collect()
    }

    #[test]
    fn size_zero_is_no_stage() {
        assert!(ProviderSubset::new(&settings(0, "x")).is_none());
        assert_eq!(stage(8).size(), 8);
    }

    #[test]
    fn keeps_the_best_k_and_publishes_nothing_for_joins_outside() {
        let mut s = stage(8);
        let mut out = Vec::new();
        let mut listed = Map::new();
        for i in 0..50 {
            s.upsert(SVC, Arc::new(Endpoint::new(addr(i))), &mut out);
            apply(&mut listed, &mut out);
        }
        assert_eq!(listed.len(), 8);
        assert_eq!(
            listed.keys().copied().collect::<BTreeSet<_>>(),
            s.listed(SVC).into_iter().collect()
        );
        // Joins that do not beat the 8th score change nothing.
        let worst = score(s.seed, *s.listed(SVC).last().unwrap());
        let mut quiet = 0;
        for i in 50..200 {
            if score(s.seed, addr(i)) < worst {
                s.upsert(SVC, Arc::new(Endpoint::new(addr(i))), &mut out);
                assert!(out.is_empty(), "join of {} outside the subset", addr(i));
                quiet += 1;
            }
        }
        assert!(quiet > 100, "{quiet}");
        // A member leaving is replaced by the next best.
        let members = s.listed(SVC);
        s.remove(SVC, members[0], &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        apply(&mut listed, &mut out);
        assert_eq!(listed.len(), 8);
        assert!(!listed.contains_key(&members[0]));
        // An outsider leaving changes nothing; an unknown one neither.
        let outsider = (0..50).map(addr).find(|a| !listed.contains_key(a)).unwrap();
        s.remove(SVC, outsider, &mut out);
        s.remove(SVC, addr(9999), &mut out);
        s.remove("other", addr(1), &mut out);
        assert!(out.is_empty());
        // A member's endpoint changing is listed again; an outsider's is not.
        let member = *listed.keys().next().unwrap();
        s.upsert(SVC, Arc::new(Endpoint::new(member).with_weight(7)), &mut out);
        assert_eq!(
            out,
            [Listing::Listed(Arc::new(Endpoint::new(member).with_weight(7)))]
        );
        out.clear();
        let outsider = (0..50)
            .map(addr)
            .find(|a| !listed.contains_key(a) && *a != outsider)
            .unwrap();
        s.upsert(SVC, Arc::new(Endpoint::new(outsider).with_weight(7)), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_tagged_provider_lists_every_provider_until_it_goes() {
        let mut s = stage(4);
        let mut out = Vec::new();
        let mut listed = Map::new();
        for i in 0..20 {
            s.upsert(SVC, Arc::new(Endpoint::new(addr(i))), &mut out);
        }
        apply(&mut listed, &mut out);
        assert_eq!(listed.len(), 4);
        s.upsert(SVC, Arc::new(Endpoint::new(addr(20)).with_tag("gray")), &mut out);
        apply(&mut listed, &mut out);
        assert_eq!(listed.len(), 21);
        assert!(s.lists_all(SVC));
        s.remove(SVC, addr(3), &mut out);
        apply(&mut listed, &mut out);
        assert_eq!(listed.len(), 20);
        s.remove(SVC, addr(20), &mut out);
        apply(&mut listed, &mut out);
        assert_eq!(listed.len(), 4);
        assert_eq!(
            listed.keys().copied().collect::<BTreeSet<_>>(),
            s.listed(SVC).into_iter().collect()
        );
    }

    #[test]
    fn rules_and_configured_documents_list_every_provider() {
        let mut store = mesh_balance::RuleStore::default();
        let mut s = ProviderSubset::new(&SubsetSettings {
            size: 3,
            identity: "c".into(),
            consumer_application: Some("web".into()),
            configured_rules: [format!("g/{SVC}:1.0")].into(),
        })
        .unwrap();
        let mut out = Vec::new();
        for i in 0..10 {
            let e = Endpoint::new(addr(i)).with_param("application", "shop");
            s.upsert(SVC, Arc::new(e.clone()), &mut out);
            s.upsert(&format!("g/{SVC}:1.0"), Arc::new(e), &mut out);
        }
        assert_eq!(s.listed(SVC).len(), 3);
        assert_eq!(s.listed(&format!("g/{SVC}:1.0")).len(), 10, "configured document");
        let mut keyed = Vec::new();
        for (rule, applies) in [
            (&b"/dubbo/config/dubbo/shop.tag-router"[..], true),
            (b"/dubbo/config/dubbo/shop.condition-router", true),
            (b"/dubbo/config/dubbo/web.condition-router", true),
            (b"/dubbo/config/dubbo/com.foo.Svc::.condition-router", true),
            (b"/dubbo/config/dubbo/other.condition-router", false),
        ] {
            let text: &[u8] = if rule.ends_with(b"tag-router") {
                b"tags: [{name: gray, addresses: [10.1.0.1]}]\n"
            } else {
                b"conditions: ['=> host = 10.1.0.1']\n"
            };
            store.put(rule, text);
            s.set_rules(store.index(), &mut keyed);
            assert_eq!(s.listed(SVC).len(), if applies { 10 } else { 3 }, "{rule:?}");
            assert!(keyed.iter().all(|(k, _)| &**k == SVC));
            assert_eq!(keyed.len(), if applies { 7 } else { 0 });
            store.delete(rule);
            keyed.clear();
            s.set_rules(store.index(), &mut keyed);
            assert_eq!(s.listed(SVC).len(), 3);
            assert_eq!(keyed.len(), if applies { 7 } else { 0 });
            keyed.clear();
        }
    }

    #[test]
    fn consumers_spread_over_the_providers() {
        let providers: Vec<SocketAddr> = (0..200).map(addr).collect();
        let mut per_provider: Map<SocketAddr, usize> = Map::new();
        let consumers = 100;
        for c in 0..consumers {
            let mut s =
                ProviderSubset::new(&settings(20, &format!("app@host-{c}/10.2.0.{c}:20000"))).unwrap();
            let mut out = Vec::new();
            for a in &providers {
                s.upsert(SVC, Arc::new(Endpoint::new(*a)), &mut out);
            }
            for a in s.listed(SVC) {
                *per_provider.entry(a).or_default() += 1;
            }
        }
        // 100 consumers x 20 of 200 providers: 10 each on average, every provider in some subset.
        assert_eq!(per_provider.len(), 200);
        let most = per_provider.values().max().copied().unwrap_or(0);
        assert!(most <= 25, "{most}");
        // Another consumer identity, another subset.
        let pick = |id: &str| {
            let mut s = ProviderSubset::new(&settings(20, id)).unwrap();
            let mut out = Vec::new();
            for a in &providers {
                s.upsert(SVC, Arc::new(Endpoint::new(*a)), &mut out);
            }
            s.listed(SVC)
        };
        assert_ne!(pick("a"), pick("b"));
        assert_eq!(pick("a"), pick("a"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(u32, bool),
        Leave(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u32..40, Just(false)).prop_map(|(a, t)| Op::Join(a, t)),
            1 => (0u32..40, Just(true)).prop_map(|(a, t)| Op::Join(a, t)),
            6 => (0u32..40).prop_map(Op::Leave),
        ]
    }

    proptest! {
        /// Incremental == rebuilt: after every change the listed set is the best `min(K, n)` scores (or
        /// every provider while one is tagged), a plain join or leave changes at most one member besides
        /// itself, and a stage fed the final providers at once lists the same.
        #[test]
        fn incremental_equals_rebuilt(size in 1usize..10, ops in proptest::collection::vec(op(), 1..120)) {
            let mut s = stage(size);
            let mut out = Vec::new();
            let mut listed = Map::new();
            let mut all: Map<SocketAddr, Arc<Endpoint>> = Map::new();
            for op in ops {
                let before: BTreeSet<SocketAddr> = listed.keys().copied().collect();
                let tagged_before = all.values().any(|e| e.tag.is_some());
                let changed = match op {
                    Op::Join(i, tagged) => {
                        let mut e = Endpoint::new(addr(i));
                        if tagged {
                            e = e.with_tag("t");
                        }
                        let e = Arc::new(e);
                        all.insert(e.addr, Arc::clone(&e));
                        s.upsert(SVC, e, &mut out);
                        addr(i)
                    }
                    Op::Leave(i) => {
                        all.remove(&addr(i));
                        s.remove(SVC, addr(i), &mut out);
                        addr(i)
                    }
                };
                apply(&mut listed, &mut out);
                let now: BTreeSet<SocketAddr> = listed.keys().copied().collect();
                prop_assert_eq!(&now, &expected(s.seed, size, &all));
                prop_assert_eq!(now.iter().copied().collect::<BTreeSet<_>>(),
                                s.listed(SVC).into_iter().collect::<BTreeSet<_>>());
                let tagged_after = all.values().any(|e| e.tag.is_some());
                if !tagged_before && !tagged_after {
                    prop_assert_eq!(now.len(), size.min(all.len()));
                    let others = before.symmetric_difference(&now).filter(|a| **a != changed).count();
                    prop_assert!(others <= 1, "{:?} -> {:?}", before, now);
                }
            }
            let mut rebuilt = stage(size);
            for e in all.values() {
                rebuilt.upsert(SVC, Arc::clone(e), &mut out);
            }
            prop_assert_eq!(rebuilt.listed(SVC).into_iter().collect::<BTreeSet<_>>(),
                            listed.keys().copied().collect::<BTreeSet<_>>());
        }
    }
}
