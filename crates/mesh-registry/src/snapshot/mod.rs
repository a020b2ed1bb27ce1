//! The pure model: endpoints, and immutable versioned snapshots of every service key's providers, built
//! incrementally by a [`SnapshotBuilder`]. No IO.
//!
//! Snapshots are persistent (structurally shared) maps: publishing a change copies O(log n) nodes, not the
//! registry, and each service key's provider list carries the snapshot version it last changed in (its
//! `epoch`) and the [`Change`] from the previous epoch, so a consumer shard can update its route table by
//! what changed instead of rebuilding it from the whole list.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::RuleIndex;

use crate::dubbo::{ServiceKey, ANY_VALUE};

mod builder;

pub use builder::SnapshotBuilder;

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
/// `MigrationInvoker.invoke`, see `app_discovery/chosen/`). A key without a split has no entry.
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

#[cfg(test)]
mod tests;
