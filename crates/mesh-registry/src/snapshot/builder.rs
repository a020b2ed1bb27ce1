//! [`SnapshotBuilder`]: snapshots built change by change. Each publication costs O(changes x log n): the
//! changes pending per service key since the last publication are applied to persistent maps, each changed
//! list is stamped with the new epoch and its [`Change`], the addresses no key lists any more are the
//! snapshot's `departed`; with a provider subset (`provider_subset.rs`) only what it lists gets here.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::RuleIndex;

use super::{Change, Endpoint, Providers, Snapshot, Split};
use crate::dubbo::ServiceKey;
use crate::provider_subset::{Listing, ProviderSubset};

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

    pub(super) fn publish_as(&mut self, version: u64, revision: i64) -> Snapshot {
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
