//! The pure model: endpoints, and immutable versioned snapshots of every service key's providers, built
//! incrementally by a [`SnapshotBuilder`]. No IO.
//!
//! Snapshots are persistent (structurally shared) maps: publishing a change copies O(log n) nodes, not the
//! registry, and each service key's provider list carries the snapshot version it last changed in (its
//! `epoch`) and the [`Change`] from the previous epoch, so a consumer shard can update its route table by
//! what changed instead of rebuilding it from the whole list.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::RuleIndex;

use crate::dubbo::{ServiceKey, ANY_VALUE};
use crate::provider_subset::{Listing, ProviderSubset};

/// Capacity weight of an endpoint that does not say otherwise.
pub const DEFAULT_WEIGHT: u32 = 100;

/// The service name that matches every service without an entry of its own (used by static lists such as
/// `mesh-agent consumer --provider 127.0.0.1:30000`).
pub const WILDCARD_SERVICE: &str = "*";

/// One provider (a provider agent, or a Dubbo provider called directly) serving a service key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where its agent listens.
    pub addr: SocketAddr,
    /// Capacity weight (default [`DEFAULT_WEIGHT`]); 0 (a drained Dubbo provider) gets no share while a
    /// provider of the same call weighs more.
    pub weight: u32,
    /// The provider's thread cap (Dubbo's `threads`), when known; entries read from etcd are never `Some(0)`.
    pub max_concurrency: Option<u32>,
    /// Unique per agent instance, e.g. `host:port` (a restarted agent may use a new one).
    pub id: String,
    /// Dubbo's `dubbo.tag` of the provider (tag routing), if any.
    pub tag: Option<String>,
    /// The provider URL's parameters (`application`, `version`, `token`, `warmup`, ...): condition routing
    /// matches them, the call path reads `token`, warm-up reads `warmup`.
    pub params: BTreeMap<String, String>,
    /// When the provider started (Unix milliseconds), for warm-up (slow start) of its weight; `None`: warm.
    pub registered_at_ms: Option<u64>,
}

impl Endpoint {
    /// An endpoint with the default weight, no concurrency cap and `addr` as its id.
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            weight: DEFAULT_WEIGHT,
            max_concurrency: None,
            id: addr.to_string(),
            tag: None,
            params: BTreeMap::new(),
            registered_at_ms: None,
        }
    }

    /// The same endpoint with its start time (Unix milliseconds), for warm-up.
    pub fn with_registered_at_ms(mut self, ms: u64) -> Self {
        self.registered_at_ms = Some(ms);
        self
    }

    /// The same endpoint with a routing tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// The same endpoint with one more routing attribute.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The same endpoint with another weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same endpoint with a concurrency cap.
    pub fn with_max_concurrency(mut self, max: u32) -> Self {
        self.max_concurrency = Some(max);
        self
    }

    /// The same endpoint with another id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// The providers of one service key in one snapshot, by address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Providers {
    /// The snapshot version this list last changed in.
    epoch: u64,
    endpoints: imbl::OrdMap<SocketAddr, Arc<Endpoint>>,
    /// What changed from the previous epoch (`None` for a list built whole).
    change: Option<Arc<Change>>,
}

/// How a service key's provider list changed from epoch `base` to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// The epoch the change applies to (0: the service key was not listed).
    pub base: u64,
    /// Addresses gone (may name an address `base` did not have: it came and went between two snapshots).
    pub removed: Vec<SocketAddr>,
    /// Endpoints added or changed (may repeat one `base` had unchanged), sorted by address.
    pub upserted: Vec<Arc<Endpoint>>,
}

impl Providers {
    /// The snapshot version this list last changed in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What changed from the previous epoch, when known.
    pub fn change(&self) -> Option<&Change> {
        self.change.as_deref()
    }

    /// The endpoints, sorted by address.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> + '_ {
        self.endpoints.values()
    }

    /// The endpoint at `addr`, if listed.
    pub fn get(&self, addr: SocketAddr) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(&addr)
    }

    /// How many endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// A service key whose calls Dubbo 3's migration `proportion` splits between two lists (issue 13): under
/// `APPLICATION_FIRST`, with the application-level addresses chosen and interface-level addresses present,
/// [`Split::percent`]% of the calls go to the key's own list ([`Snapshot::providers`]: the application-level
/// addresses) and the others to [`Split::interface_level`], drawn per call (Java 3.3
/// `MigrationInvoker.invoke`, see `app_discovery/chosen.rs`). A key without a split has no entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// 0..=99: the share of calls on the key's own list, in percent.
    percent: u8,
    /// The interface-level list, with its own epoch and change (a shard follows it like a key's list).
    interface_level: Providers,
}

impl Split {
    /// The share of calls on the key's own (application-level) list, in percent (0..=99).
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// The interface-level list the other calls go to.
    pub fn interface_level(&self) -> &Providers {
        &self.interface_level
    }
}

/// An immutable view of every provider, as one registry source saw it at one moment, by service key
/// (`group/interface:version`, [`ServiceKey`]'s text).
///
/// `version` grows by one with every snapshot a watcher publishes (the first one is 1), so a shard can tell
/// a new snapshot from the one it has by comparing versions. Cloning is O(1).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Publication number: 1 for the first snapshot of a watcher, +1 for each later one.
    pub version: u64,
    /// The etcd revision this snapshot reflects (0 for a static list).
    pub revision: i64,
    services: imbl::OrdMap<Arc<str>, Arc<Providers>>,
    /// Interface -> the service keys listing it (for `*` and comma-list requests).
    by_interface: imbl::HashMap<Arc<str>, imbl::OrdSet<Arc<str>>>,
    /// Dubbo's routing rules from the config center (`/dubbo/config/dubbo/*.condition-router`,
    /// `*.tag-router`), parsed, the last good one per key.
    dubbo_rules: Arc<RuleIndex>,
    /// The version the rules last changed in.
    rules_epoch: u64,
    /// Addresses no service key lists any more since the previous version (their pools can go).
    departed: Arc<[SocketAddr]>,
    /// Dubbo 3 migration: the step in force per service key (for the admin side; issue 13).
    migration: crate::dubbo::migration::MigrationStates,
    /// Dubbo 3 migration's `proportion`: the service keys whose calls are split (empty almost always).
    splits: imbl::OrdMap<Arc<str>, Arc<Split>>,
}

impl PartialEq for Snapshot {
    /// Same version, revision, providers and rules (`departed` is history, not content).
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.revision == other.revision && self.same_endpoints(other)
    }
}

impl Snapshot {
    /// Builds a snapshot from `(service key, endpoint)` pairs in any order, every list at epoch `version`.
    /// When a service key lists the same address twice, the later pair wins.
    pub fn new(version: u64, entries: impl IntoIterator<Item = (String, Endpoint)>) -> Self {
        let mut builder = SnapshotBuilder::new();
        for (service, endpoint) in entries {
            builder.upsert(&service, endpoint);
        }
        builder.publish_as(version, 0)
    }

    /// The same snapshot with these routing rules from the config center.
    pub fn with_dubbo_rules(mut self, rules: Arc<RuleIndex>) -> Self {
        self.dubbo_rules = rules;
        self.rules_epoch = self.version;
        self
    }

    /// Dubbo's routing rules from the config center; [`RuleIndex::rule_set_for`] gives a service's chain.
    pub fn dubbo_rules(&self) -> &Arc<RuleIndex> {
        &self.dubbo_rules
    }

    /// The version the routing rules last changed in.
    pub fn rules_epoch(&self) -> u64 {
        self.rules_epoch
    }

    /// The Dubbo 3 migration step in force per service key (empty without application-level discovery).
    pub fn migration(&self) -> &crate::dubbo::migration::MigrationStates {
        &self.migration
    }

    /// The split of `service`'s calls between its list and an interface-level list, when Dubbo 3's
    /// migration `proportion` is in force for it (an exact service key; no wildcard fallback).
    pub fn split(&self, service: &str) -> Option<&Arc<Split>> {
        if self.splits.is_empty() {
            return None;
        }
        self.splits.get(service)
    }

    /// Every split service key, sorted.
    pub fn splits(&self) -> impl Iterator<Item = (&str, &Arc<Split>)> + '_ {
        self.splits.iter().map(|(k, s)| (&**k, s))
    }

    /// A snapshot without any endpoint.
    pub fn empty(version: u64) -> Self {
        Snapshot {
            version,
            ..Snapshot::default()
        }
    }

    /// The providers of `service`: its own entry, else the wildcard [`WILDCARD_SERVICE`] entry (static
    /// lists), else none.
    pub fn providers(&self, service: &str) -> Option<&Arc<Providers>> {
        self.services
            .get(service)
            .or_else(|| self.services.get(WILDCARD_SERVICE))
    }

    /// The endpoints serving `service` (see [`Snapshot::providers`]), sorted by address, copied (for tests
    /// and tools; the data path uses [`Snapshot::providers`]).
    pub fn endpoints(&self, service: &str) -> Vec<Endpoint> {
        self.providers(service)
            .map(|p| p.iter().map(|e| (**e).clone()).collect())
            .unwrap_or_default()
    }

    /// The service keys whose providers a consumer asking for `request` takes, by Dubbo's matching
    /// ([`crate::dubbo::key_matches`]: group `*` or a comma list, version `*`). A concrete request (no `*`,
    /// no comma) is its own key; with no match, the wildcard entry of static lists.
    pub fn matching(&self, request: &ServiceKey) -> Vec<(&str, &Arc<Providers>)> {
        let concrete = request.version.as_deref() != Some(ANY_VALUE)
            && !request
                .group
                .as_deref()
                .is_some_and(|g| g == ANY_VALUE || g.contains(','));
        let mut found = Vec::new();
        if concrete {
            let key = request.to_string();
            if let Some((k, p)) = self.services.get_key_value(key.as_str()) {
                found.push((&**k, p));
            }
        } else if let Some(keys) = self.by_interface.get(request.interface.as_str()) {
            for k in keys {
                if crate::dubbo::key_matches(request, &ServiceKey::parse(k)) {
                    if let Some((k, p)) = self.services.get_key_value(&**k) {
                        found.push((&**k, p));
                    }
                }
            }
        }
        if found.is_empty() {
            if let Some((k, p)) = self.services.get_key_value(WILDCARD_SERVICE) {
                found.push((&**k, p));
            }
        }
        found
    }

    /// Whether any service lists an endpoint at `addr` (O(service keys x log n): for tests and tools; the
    /// shards learn of addresses gone from [`Snapshot::departed`]).
    pub fn contains_addr(&self, addr: SocketAddr) -> bool {
        self.services.values().any(|p| p.endpoints.contains_key(&addr))
            || self
                .splits
                .values()
                .any(|s| s.interface_level.endpoints.contains_key(&addr))
    }

    /// Addresses no service key lists any more since the previous version.
    pub fn departed(&self) -> &[SocketAddr] {
        &self.departed
    }

    /// The service keys with an entry of their own (including `*` when present), sorted.
    pub fn services(&self) -> impl Iterator<Item = &str> + '_ {
        self.services.keys().map(|k| &**k)
    }

    /// Every `(service key, providers)` entry, sorted by service key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Providers>)> + '_ {
        self.services.iter().map(|(s, p)| (&**s, p))
    }

    /// Whether no service has any endpoint.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The number of `(service key, endpoint)` entries.
    pub fn endpoint_count(&self) -> usize {
        self.services.values().map(|p| p.len()).sum()
    }

    /// Whether `other` lists exactly the same endpoints and rules, whatever the versions.
    pub fn same_endpoints(&self, other: &Snapshot) -> bool {
        self.services.len() == other.services.len()
            && self
                .services
                .iter()
                .zip(other.services.iter())
                .all(|((ka, a), (kb, b))| ka == kb && a.endpoints == b.endpoints)
            && (Arc::ptr_eq(&self.dubbo_rules, &other.dubbo_rules) || self.dubbo_rules == other.dubbo_rules)
            && self.splits.len() == other.splits.len()
            && self
                .splits
                .iter()
                .zip(other.splits.iter())
                .all(|((ka, a), (kb, b))| {
                    ka == kb
                        && a.percent == b.percent
                        && a.interface_level.endpoints == b.interface_level.endpoints
                })
    }

    /// The same endpoints under another version.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}

/// What changed in one service key since the last publication.
#[derive(Debug)]
struct Pending {
    /// The epoch of the list at the last publication (0: not listed).
    base: u64,
    /// Net changes by address: `None` removed.
    changes: BTreeMap<SocketAddr, Option<Arc<Endpoint>>>,
}

/// Builds snapshots change by change: each [`SnapshotBuilder::publish`] costs O(changes x log n), and
/// every changed service key's list records its [`Change`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    next: Snapshot,
    /// Every address any service lists, with how many service keys list it (the builder's own: snapshots
    /// carry only the addresses that departed).
    addrs: HashMap<SocketAddr, u32>,
    /// The `departed` of a snapshot where no address departed (shared, not allocated per publication).
    none_departed: Arc<[SocketAddr]>,
    pending: HashMap<Arc<str>, Pending>,
    departing: Vec<SocketAddr>,
    rules_changed: bool,
    migration_changed: bool,
    /// What changed in the splits' interface-level lists since the last publication.
    pending_splits: HashMap<Arc<str>, Pending>,
    /// A split began, ended or changed its percentage since the last publication.
    splits_changed: bool,
    published: bool,
    /// The consumer's provider subset (`provider_subset.rs`): when set, changes go through it and only what
    /// it lists reaches the snapshot.
    subset: Option<Box<ProviderSubset>>,
    /// The subset's listings of the change at hand (kept to reuse its allocation).
    listings: Vec<Listing>,
}

impl SnapshotBuilder {
    /// An empty registry, nothing published.
    pub fn new() -> Self {
        SnapshotBuilder::default()
    }

    /// Puts a provider subset in front of the snapshot (`None`: every provider listed). Before any change.
    pub fn set_provider_subset(&mut self, subset: Option<ProviderSubset>) {
        debug_assert!(
            self.next.services.is_empty(),
            "the subset is set before any change"
        );
        self.subset = subset.map(Box::new);
    }

    /// Adds `endpoint` to `service`, or replaces the one at its address. An identical endpoint is no change.
    /// With a provider subset, the snapshot lists it only if the subset does (and the subset's changes).
    pub fn upsert(&mut self, service: &str, endpoint: impl Into<Arc<Endpoint>>) {
        let endpoint: Arc<Endpoint> = endpoint.into();
        match self.subset.as_deref_mut() {
            Some(subset) => {
                let mut listings = std::mem::take(&mut self.listings);
                subset.upsert(service, endpoint, &mut listings);
                self.apply(service, &mut listings);
                self.listings = listings;
            }
            None => self.list(service, endpoint),
        }
    }

    /// Removes the endpoint at `addr` from `service` (nothing when it is not listed); with a provider
    /// subset, the next best provider may be listed in its place.
    pub fn remove(&mut self, service: &str, addr: SocketAddr) {
        match self.subset.as_deref_mut() {
            Some(subset) => {
                let mut listings = std::mem::take(&mut self.listings);
                subset.remove(service, addr, &mut listings);
                self.apply(service, &mut listings);
                self.listings = listings;
            }
            None => self.unlist(service, addr),
        }
    }

    /// The provider subset's listings for `service`, applied to the next snapshot.
    fn apply(&mut self, service: &str, listings: &mut Vec<Listing>) {
        for listing in listings.drain(..) {
            match listing {
                Listing::Listed(endpoint) => self.list(service, endpoint),
                Listing::Unlisted(addr) => self.unlist(service, addr),
            }
        }
    }

    /// Lists `endpoint` in `service` in the next snapshot.
    fn list(&mut self, service: &str, endpoint: Arc<Endpoint>) {
        let addr = endpoint.addr;
        let (key, base, is_new_addr) = match self.next.services.get_key_value(service) {
            Some((key, providers)) => {
                let listed = providers.endpoints.get(&addr);
                if listed.is_some_and(|e| Arc::ptr_eq(e, &endpoint) || **e == *endpoint) {
                    return;
                }
                (Arc::clone(key), providers.epoch, listed.is_none())
            }
            None => {
                // A new service key: listed under its interface (for `*` and comma-list requests) until
                // its last endpoint goes.
                let key: Arc<str> = Arc::from(service);
                let interface: Arc<str> = Arc::from(ServiceKey::parse(&key).interface);
                self.next
                    .by_interface
                    .entry(interface)
                    .or_default()
                    .insert(Arc::clone(&key));
                (key, 0, true)
            }
        };
        if is_new_addr {
            *self.addrs.entry(addr).or_insert(0) += 1;
        }
        match self.next.services.get_mut(&*key) {
            Some(providers) => {
                Arc::make_mut(providers)
                    .endpoints
                    .insert(addr, Arc::clone(&endpoint));
            }
            None => {
                let providers = Providers {
                    endpoints: imbl::OrdMap::unit(addr, Arc::clone(&endpoint)),
                    ..Providers::default()
                };
                self.next.services.insert(Arc::clone(&key), Arc::new(providers));
            }
        }
        self.record(key, base, addr, Some(endpoint));
    }

    /// Unlists the endpoint at `addr` from `service` in the next snapshot (nothing when it is not listed).
    fn unlist(&mut self, service: &str, addr: SocketAddr) {
        let Some((key, providers)) = self.next.services.get_key_value(service) else {
            return;
        };
        if !providers.endpoints.contains_key(&addr) {
            return;
        }
        let key = Arc::clone(key);
        let base = providers.epoch;
        let emptied = {
            let providers = self.next.services.get_mut(&*key).map(Arc::make_mut);
            providers.is_some_and(|p| {
                p.endpoints.remove(&addr);
                p.endpoints.is_empty()
            })
        };
        if emptied {
            self.next.services.remove(&*key);
            let interface = ServiceKey::parse(&key).interface;
            if let Some(keys) = self.next.by_interface.get_mut(interface.as_str()) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.next.by_interface.remove(interface.as_str());
                }
            }
        }
        self.release(addr);
        self.record(key, base, addr, None);
    }

    /// One listing of `addr` less (it departs with its last one).
    fn release(&mut self, addr: SocketAddr) {
        match self.addrs.get_mut(&addr) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.addrs.remove(&addr);
                self.departing.push(addr);
            }
        }
    }

    /// Splits `service`'s calls: `Some(percent)` (0..=99, clamped) of them on its own list, the others
    /// on an interface-level list filled by [`SnapshotBuilder::split_upsert`] (a new split starts empty);
    /// `None` ends the split (its list is dropped). Dubbo 3 migration's `proportion` (issue 13). The
    /// interface-level list does not go through the provider subset.
    pub fn set_split(&mut self, service: &str, percent: Option<u8>) {
        match percent {
            Some(p) => {
                let p = p.min(99);
                match self.next.splits.get_mut(service) {
                    Some(split) if split.percent == p => return,
                    Some(split) => Arc::make_mut(split).percent = p,
                    None => {
                        let key = self
                            .next
                            .services
                            .get_key_value(service)
                            .map_or_else(|| Arc::from(service), |(k, _)| Arc::clone(k));
                        let split = Split {
                            percent: p,
                            interface_level: Providers::default(),
                        };
                        self.next.splits.insert(key, Arc::new(split));
                    }
                }
            }
            None => {
                let Some(split) = self.next.splits.remove(service) else {
                    return;
                };
                self.pending_splits.remove(service);
                for addr in split.interface_level.endpoints.keys() {
                    self.release(*addr);
                }
            }
        }
        self.splits_changed = true;
    }

    /// Adds `endpoint` to the interface-level list of `service`'s split, or replaces the one at its address
    /// (nothing without a split).
    pub fn split_upsert(&mut self, service: &str, endpoint: impl Into<Arc<Endpoint>>) {
        let endpoint: Arc<Endpoint> = endpoint.into();
        let addr = endpoint.addr;
        let Some((key, split)) = self.next.splits.get_key_value(service) else {
            return;
        };
        let listed = split.interface_level.endpoints.get(&addr);
        if listed.is_some_and(|e| Arc::ptr_eq(e, &endpoint) || **e == *endpoint) {
            return;
        }
        let (key, base, is_new_addr) = (Arc::clone(key), split.interface_level.epoch, listed.is_none());
        if is_new_addr {
            *self.addrs.entry(addr).or_insert(0) += 1;
        }
        if let Some(split) = self.next.splits.get_mut(&*key) {
            Arc::make_mut(split)
                .interface_level
                .endpoints
                .insert(addr, Arc::clone(&endpoint));
        }
        record_in(&mut self.pending_splits, key, base, addr, Some(endpoint));
    }

    /// Removes the endpoint at `addr` from the interface-level list of `service`'s split (nothing when it
    /// is not listed; the split stays, possibly empty, until [`SnapshotBuilder::set_split`] ends it).
    pub fn split_remove(&mut self, service: &str, addr: SocketAddr) {
        let Some((key, split)) = self.next.splits.get_key_value(service) else {
            return;
        };
        if !split.interface_level.endpoints.contains_key(&addr) {
            return;
        }
        let (key, base) = (Arc::clone(key), split.interface_level.epoch);
        if let Some(split) = self.next.splits.get_mut(&*key) {
            Arc::make_mut(split).interface_level.endpoints.remove(&addr);
        }
        self.release(addr);
        record_in(&mut self.pending_splits, key, base, addr, None);
    }

    /// Notes the change at `addr` of service `key` (whose epoch at the last publication was `base`).
    fn record(&mut self, key: Arc<str>, base: u64, addr: SocketAddr, endpoint: Option<Arc<Endpoint>>) {
        record_in(&mut self.pending, key, base, addr, endpoint);
    }

    /// Replaces the routing rules (a [`mesh_balance::RuleStore`]'s index after a change); with a provider
    /// subset, service keys the rules switch the subset on or off for list their providers again.
    pub fn set_dubbo_rules(&mut self, rules: Arc<RuleIndex>) {
        if Arc::ptr_eq(&self.next.dubbo_rules, &rules) || *self.next.dubbo_rules == *rules {
            return;
        }
        if let Some(subset) = self.subset.as_deref_mut() {
            let mut keyed = Vec::new();
            subset.set_rules(Arc::clone(&rules), &mut keyed);
            for (service, listing) in keyed {
                match listing {
                    Listing::Listed(endpoint) => self.list(&service, endpoint),
                    Listing::Unlisted(addr) => self.unlist(&service, addr),
                }
            }
        }
        self.next.dubbo_rules = rules;
        self.rules_changed = true;
    }

    /// Replaces the migration steps in force (published with the next snapshot, even without other change).
    pub fn set_migration(&mut self, states: crate::dubbo::migration::MigrationStates) {
        self.next.migration = states;
        self.migration_changed = true;
    }

    /// The next snapshot, reflecting etcd `revision`, when anything changed since the last one (the first
    /// call always publishes, possibly an empty registry).
    pub fn publish(&mut self, revision: i64) -> Option<Snapshot> {
        let migration_changed = std::mem::take(&mut self.migration_changed);
        let splits_changed = std::mem::take(&mut self.splits_changed) || !self.pending_splits.is_empty();
        if self.published
            && self.pending.is_empty()
            && !self.rules_changed
            && !migration_changed
            && !splits_changed
        {
            return None;
        }
        Some(self.publish_as(self.next.version + 1, revision))
    }

    fn publish_as(&mut self, version: u64, revision: i64) -> Snapshot {
        self.next.version = version;
        self.next.revision = revision;
        for (key, pending) in self.pending.drain() {
            let Some(providers) = self.next.services.get_mut(&*key) else {
                continue; // emptied: gone from the snapshot
            };
            stamp(Arc::make_mut(providers), version, pending);
        }
        for (key, pending) in self.pending_splits.drain() {
            if let Some(split) = self.next.splits.get_mut(&*key) {
                stamp(&mut Arc::make_mut(split).interface_level, version, pending);
            }
        }
        if self.rules_changed {
            self.next.rules_epoch = version;
            self.rules_changed = false;
        }
        let mut departed: Vec<SocketAddr> = self
            .departing
            .drain(..)
            .filter(|a| !self.addrs.contains_key(a))
            .collect();
        departed.sort_unstable();
        departed.dedup();
        self.next.departed = if departed.is_empty() {
            Arc::clone(&self.none_departed)
        } else {
            departed.into()
        };
        self.published = true;
        let snapshot = self.next.clone();
        self.next.departed = Arc::clone(&self.none_departed);
        snapshot
    }
}

/// Notes the change at `addr` of list `key` (whose epoch at the last publication was `base`) in `pending`.
fn record_in(
    pending: &mut HashMap<Arc<str>, Pending>,
    key: Arc<str>,
    base: u64,
    addr: SocketAddr,
    endpoint: Option<Arc<Endpoint>>,
) {
    pending
        .entry(key)
        .or_insert_with(|| Pending {
            base,
            changes: BTreeMap::new(),
        })
        .changes
        .insert(addr, endpoint);
}

/// Marks `providers` as changed in `version` by `pending`.
fn stamp(providers: &mut Providers, version: u64, pending: Pending) {
    providers.epoch = version;
    let mut change = Change {
        base: pending.base,
        ..Change::default()
    };
    for (addr, endpoint) in pending.changes {
        match endpoint {
            Some(e) => change.upserted.push(e),
            None => change.removed.push(addr),
        }
    }
    providers.change = Some(Arc::new(change));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::new(s.parse().unwrap())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn snapshot_sorts_and_dedups_by_addr_later_wins() {
        let snap = Snapshot::new(
            3,
            [
                ("svc".to_string(), ep("10.0.0.2:20880")),
                ("svc".to_string(), ep("10.0.0.1:20880").with_weight(1)),
                ("svc".to_string(), ep("10.0.0.1:20880").with_weight(7)),
                ("other".to_string(), ep("10.0.0.3:1")),
            ],
        );
        assert_eq!(snap.version, 3);
        let svc = snap.endpoints("svc");
        assert_eq!(svc.len(), 2);
        assert_eq!(svc[0].addr, addr("10.0.0.1:20880"));
        assert_eq!(svc[0].weight, 7);
        assert_eq!(svc[1].addr, addr("10.0.0.2:20880"));
        assert_eq!(snap.services().collect::<Vec<_>>(), ["other", "svc"]);
        assert_eq!(snap.endpoint_count(), 3);
        assert!(!snap.is_empty());
        assert_eq!(snap.providers("svc").unwrap().epoch(), 3);
    }

    #[test]
    fn wildcard_matches_services_without_their_own_entry() {
        let snap = Snapshot::new(
            1,
            [
                ("*".to_string(), ep("127.0.0.1:30000")),
                ("own".to_string(), ep("127.0.0.1:30001")),
            ],
        );
        assert_eq!(snap.endpoints("anything")[0].addr.port(), 30000);
        assert_eq!(snap.endpoints("own").len(), 1);
        assert_eq!(snap.endpoints("own")[0].addr.port(), 30001);
        let no_wildcard = Snapshot::new(1, [("own".to_string(), ep("127.0.0.1:30001"))]);
        assert!(no_wildcard.endpoints("anything").is_empty());
        assert_eq!(snap.matching(&ServiceKey::parse("x.Y")).len(), 1);
        assert!(no_wildcard.matching(&ServiceKey::parse("x.Y")).is_empty());
    }

    #[test]
    fn requests_match_service_keys_by_dubbos_rules() {
        let snap = Snapshot::new(
            1,
            [
                ("a/com.S:1.0".to_string(), ep("10.0.0.1:1")),
                ("b/com.S:1.0".to_string(), ep("10.0.0.2:1")),
                ("a/com.S:2.0".to_string(), ep("10.0.0.3:1")),
                ("com.S".to_string(), ep("10.0.0.4:1")),
                ("com.T".to_string(), ep("10.0.0.5:1")),
            ],
        );
        let keys = |req: &str| -> Vec<String> {
            snap.matching(&ServiceKey::parse(req))
                .into_iter()
                .map(|(k, _)| k.to_owned())
                .collect()
        };
        assert_eq!(keys("a/com.S:1.0"), ["a/com.S:1.0"]);
        assert_eq!(keys("com.S"), ["com.S"]);
        assert!(keys("c/com.S:1.0").is_empty());
        assert!(keys("a/com.S").is_empty(), "no version matches only no version");
        assert_eq!(keys("*/com.S:1.0"), ["a/com.S:1.0", "b/com.S:1.0"]);
        assert_eq!(keys("a/com.S:*"), ["a/com.S:1.0", "a/com.S:2.0"]);
        assert_eq!(keys("b,a/com.S:1.0"), ["a/com.S:1.0", "b/com.S:1.0"]);
        assert_eq!(keys("*/com.S:*").len(), 4);
    }

    #[test]
    fn address_index_counts_every_service() {
        let mut b = SnapshotBuilder::new();
        b.upsert("a", ep("10.0.0.1:1"));
        b.upsert("b", ep("10.0.0.1:1"));
        b.upsert("b", ep("10.0.0.2:2"));
        let s1 = b.publish(5).unwrap();
        assert_eq!((s1.version, s1.revision), (1, 5));
        assert!(s1.contains_addr(addr("10.0.0.1:1")));
        assert!(s1.departed().is_empty());
        b.remove("a", addr("10.0.0.1:1"));
        let s2 = b.publish(6).unwrap();
        assert!(s2.contains_addr(addr("10.0.0.1:1")), "b still lists it");
        assert!(s2.departed().is_empty());
        assert!(s2.providers("a").is_none(), "an emptied service key is gone");
        b.remove("b", addr("10.0.0.1:1"));
        b.remove("b", addr("10.0.0.2:2"));
        let s3 = b.publish(7).unwrap();
        assert_eq!(s3.departed(), [addr("10.0.0.1:1"), addr("10.0.0.2:2")]);
        assert!(!s3.contains_addr(addr("10.0.0.1:1")));
        assert!(s3.is_empty());
        // The older snapshots are untouched by later changes.
        assert_eq!(s1.endpoint_count(), 3);
        assert_eq!(s2.endpoint_count(), 2);
    }

    #[test]
    fn each_change_is_recorded_against_the_previous_epoch() {
        let mut b = SnapshotBuilder::new();
        assert!(b.publish(1).is_some(), "the first publication is always made");
        assert!(b.publish(1).is_none(), "nothing changed");
        b.upsert("s", ep("10.0.0.1:1"));
        b.upsert("s", ep("10.0.0.2:1"));
        b.upsert("t", ep("10.0.0.9:1"));
        let v2 = b.publish(2).unwrap();
        let s = v2.providers("s").unwrap();
        assert_eq!((s.epoch(), s.change().unwrap().base), (2, 0));
        // The same endpoint again is no change at all.
        b.upsert("s", ep("10.0.0.1:1"));
        assert!(b.publish(3).is_none());
        b.upsert("s", ep("10.0.0.1:1").with_weight(5));
        b.remove("s", addr("10.0.0.2:1"));
        b.upsert("s", ep("10.0.0.3:1"));
        b.remove("s", addr("10.0.0.3:1"));
        let v3 = b.publish(4).unwrap();
        let s = v3.providers("s").unwrap();
        let change = s.change().unwrap();
        assert_eq!((s.epoch(), change.base), (3, 2));
        assert_eq!(change.removed, [addr("10.0.0.2:1"), addr("10.0.0.3:1")]);
        assert_eq!(change.upserted.len(), 1);
        assert_eq!(change.upserted[0].weight, 5);
        // `t` did not change: same epoch, same shared list.
        let t3 = v3.providers("t").unwrap();
        assert_eq!(t3.epoch(), 2);
        assert!(Arc::ptr_eq(t3, v2.providers("t").unwrap()));
    }

    #[test]
    fn rules_change_their_own_epoch() {
        let mut store = mesh_balance::RuleStore::default();
        let key = b"/dubbo/config/dubbo/s.tag-router";
        store.put(key, b"tags: [{name: gray, addresses: [10.0.0.1]}]\n");
        let mut b = SnapshotBuilder::new();
        b.upsert("s", ep("10.0.0.1:1"));
        b.set_dubbo_rules(store.index());
        let v1 = b.publish(1).unwrap();
        assert!(v1.dubbo_rules().tag("s").is_some());
        assert_eq!(v1.rules_epoch(), 1);
        b.set_dubbo_rules(store.index());
        assert!(b.publish(2).is_none(), "the same rules: nothing to publish");
        store.delete(key);
        b.set_dubbo_rules(store.index());
        let v2 = b.publish(2).unwrap();
        assert!(v2.dubbo_rules().is_empty());
        assert_eq!(v2.rules_epoch(), 2);
        assert_eq!(v2.providers("s").unwrap().epoch(), 1);
    }

    #[test]
    fn empty_and_same_endpoints() {
        let a = Snapshot::empty(1);
        assert!(a.is_empty());
        assert_eq!(a.endpoint_count(), 0);
        assert!(a.endpoints("x").is_empty());
        let b = Snapshot::new(2, [("s".to_string(), ep("1.2.3.4:5"))]);
        let c = Snapshot::new(9, [("s".to_string(), ep("1.2.3.4:5"))]);
        assert!(b.same_endpoints(&c));
        assert!(!a.same_endpoints(&b));
        assert_eq!(b.clone().with_version(9), c);
        assert_eq!(b.iter().count(), 1);
        let mut store = mesh_balance::RuleStore::default();
        store.put(
            b"/dubbo/config/dubbo/x.condition-router",
            b"conditions: ['=> host = 1.2.3.4']",
        );
        let ruled = b.clone().with_dubbo_rules(store.index());
        assert!(ruled.dubbo_rules().app_condition("x").is_some());
        assert!(!ruled.same_endpoints(&b));
    }

    #[test]
    fn a_split_carries_a_second_list_with_its_own_epochs_and_counts_its_addresses() {
        let mut b = SnapshotBuilder::new();
        b.upsert("s", ep("10.0.0.1:1"));
        let s1 = b.publish(1).unwrap();
        assert!(s1.split("s").is_none(), "no split: nothing extra");
        b.set_split("s", Some(30));
        b.split_upsert("s", ep("10.0.0.1:1"));
        b.split_upsert("s", ep("10.0.0.2:1"));
        let s2 = b.publish(2).unwrap();
        let split = s2.split("s").unwrap();
        assert_eq!(split.percent(), 30);
        let iface = split.interface_level();
        assert_eq!(iface.len(), 2);
        assert_eq!((iface.epoch(), iface.change().unwrap().base), (2, 0));
        assert!(Arc::ptr_eq(
            s1.providers("s").unwrap(),
            s2.providers("s").unwrap()
        ));
        assert!(s2.contains_addr(addr("10.0.0.2:1")));
        assert_eq!(s2.splits().count(), 1);
        // the percentage alone is news; the same one is not
        b.set_split("s", Some(30));
        assert!(b.publish(3).is_none());
        b.set_split("s", Some(120));
        let s3 = b.publish(3).unwrap();
        assert_eq!(s3.split("s").unwrap().percent(), 99, "clamped: 100 is no split");
        assert_eq!(s3.split("s").unwrap().interface_level().epoch(), 2);
        // changes to the second list are recorded against its epoch
        b.split_remove("s", addr("10.0.0.2:1"));
        let s4 = b.publish(4).unwrap();
        let iface = s4.split("s").unwrap().interface_level();
        assert_eq!((iface.epoch(), iface.change().unwrap().base), (4, 2));
        assert_eq!(iface.change().unwrap().removed, [addr("10.0.0.2:1")]);
        assert_eq!(s4.departed(), [addr("10.0.0.2:1")], "listed nowhere else");
        // an address in both lists departs with its last listing only
        b.split_upsert("s", ep("10.0.0.3:1"));
        b.publish(5).unwrap();
        b.set_split("s", None);
        let s6 = b.publish(6).unwrap();
        assert!(s6.split("s").is_none());
        assert_eq!(s6.departed(), [addr("10.0.0.3:1")]);
        assert!(s6.contains_addr(addr("10.0.0.1:1")));
        assert!(!s6.same_endpoints(&s4));
        // no split: its changes are ignored
        b.split_upsert("s", ep("10.0.0.4:1"));
        b.split_remove("s", addr("10.0.0.1:1"));
        assert!(b.publish(7).is_none());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8, u32),
        Del(u8, u8),
        Publish,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..6, 1u32..4).prop_map(|(s, a, w)| Op::Put(s, a, w)),
            (0u8..3, 0u8..6).prop_map(|(s, a)| Op::Del(s, a)),
            Just(Op::Publish),
        ]
    }

    proptest! {
        /// Applying each published change to the list of its base epoch gives the published list, and the
        /// snapshot equals one built whole from the same model.
        #[test]
        fn changes_replay_to_the_published_lists(ops in proptest::collection::vec(op(), 1..60)) {
            let mut b = SnapshotBuilder::new();
            let mut model: BTreeMap<String, BTreeMap<SocketAddr, u32>> = BTreeMap::new();
            // What a shard holds: per service key, (epoch, endpoints).
            let mut shard: HashMap<String, (u64, BTreeMap<SocketAddr, u32>)> = HashMap::new();
            let mut ops = ops;
            ops.push(Op::Publish);
            for op in ops {
                match op {
                    Op::Put(s, a, w) => {
                        let (s, a) = (format!("s{s}"), addr(&format!("10.0.0.{a}:1")));
                        b.upsert(&s, Endpoint::new(a).with_weight(w));
                        model.entry(s).or_default().insert(a, w);
                    }
                    Op::Del(s, a) => {
                        let (s, a) = (format!("s{s}"), addr(&format!("10.0.0.{a}:1")));
                        b.remove(&s, a);
                        if let Some(m) = model.get_mut(&s) {
                            m.remove(&a);
                            if m.is_empty() {
                                model.remove(&s);
                            }
                        }
                    }
                    Op::Publish => {
                        let Some(snap) = b.publish(0) else { continue };
                        for (key, providers) in snap.iter() {
                            let held = shard.entry(key.to_owned()).or_default();
                            if held.0 != providers.epoch() {
                                let change = providers.change().unwrap();
                                if held.0 != change.base {
                                    held.1.clear();
                                }
                                for a in &change.removed {
                                    held.1.remove(a);
                                }
                                for e in &change.upserted {
                                    held.1.insert(e.addr, e.weight);
                                }
                                held.0 = providers.epoch();
                            }
                            let listed: BTreeMap<SocketAddr, u32> =
                                providers.iter().map(|e| (e.addr, e.weight)).collect();
                            prop_assert_eq!(&held.1, &listed);
                        }
                        shard.retain(|k, _| snap.providers(k).is_some());
                        let whole = Snapshot::new(
                            snap.version,
                            model.iter().flat_map(|(s, m)| {
                                m.iter().map(|(a, w)| (s.clone(), Endpoint::new(*a).with_weight(*w)))
                            }),
                        );
                        prop_assert!(snap.same_endpoints(&whole));
                        for a in snap.departed() {
                            prop_assert!(!snap.contains_addr(*a));
                        }
                    }
                }
            }
        }
    }
}
