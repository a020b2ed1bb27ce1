//! The addresses the snapshot holds per service key: interface-level, or application-level when Dubbo 3's
//! migration says so, fed into the [`SnapshotBuilder`] as upserts and removes of the difference. Pure.
//!
//! [`ChosenAddresses`] has the builder's methods (`upsert`, `remove`, `set_dubbo_rules`, `publish`), so the
//! interface-level watcher feeds it as it fed the builder. Without application-level discovery it passes
//! everything straight through. With it, it keeps both lists per service key and, per key, the list in
//! force (`migration::which_addresses` with the step and threshold of the consumer, or of the config
//! center's migration rule): changes to the list in force go to the builder at once; when a key switches
//! lists at publication, the builder gets the new list's endpoints and loses only the addresses that are
//! not in it, so an address in both lists keeps its connections and the calls in flight on them.
//!
//! A known service key asked by the rule to switch to a `FORCE_*` step switches as Java's
//! `MigrationInvoker` does: after the rule's `delay` (a schedule: [`ChosenAddresses::next_wake`] tells the
//! watcher when to publish again, nothing sleeps), then only with `force: true` or when the new list passes
//! Dubbo's address check; a refused switch keeps the step in force until the rule changes
//! (`MigrationRuleHandler.refreshInvoker`). The step in force per key travels with each snapshot
//! ([`crate::Snapshot::migration`]) for `/metrics` and `/registry`.
//!
//! The rule's `proportion` as Java 3.3 applies it (apache/dubbo branch `3.3` at 324c6255,
//! `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/client/migration/`):
//! `MigrationInvoker.invoke` (lines 284-297) sends a call, under `APPLICATION_FIRST` only, to the
//! interface-level invoker when `promotion < 100 && ThreadLocalRandom.current().nextDouble(100) > promotion`,
//! else to `decideInvoker()`, the preferred one (`calcPreferredInvoker`, 499-519: application-level when
//! `DefaultMigrationAddressComparator.shouldMigrate` passes, i.e. the threshold). `promotion` starts at 100
//! (line 69) and is `rule.getProportion(consumerUrl)` (`setMigrationRule`, 427-431), set only when the rule
//! is applied successfully (`MigrationRuleHandler.doMigrate`, 71-74: a refused `FORCE_*` switch keeps the
//! proportion of the rule in force); `MigrationRule.getProportion` (213-220) reads the interface entry, then
//! the applications' entries (`getValue`, 260-287), then the rule's own field, else `migration.promotion`
//! (100). So with the application-level list preferred, p% of the calls go to it and (100 - p)% to the
//! interface-level list; with the interface-level list preferred every call goes there; `FORCE_*` steps
//! ignore it. Here: such a key carries both lists in the snapshot ([`crate::Split`]: the chosen
//! application-level list as the key's list, the interface-level list and p beside it) and the consumer
//! shard draws the list per call. One difference: the split is carried only when the interface-level list
//! has addresses; where Java would send (100 - p)% of the calls to an empty interface-level invoker (and
//! fail them with "No provider available"), every call goes to the application-level list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mesh_balance::RuleIndex;

use super::app_level::{AppLevel, Touched};
use crate::dubbo::instance::ServiceInstance;
use crate::dubbo::metadata_info::MetadataInfo;
use crate::dubbo::migration::{Choice, MigrationStates, MigrationStep, Source};
use crate::dubbo::migration_rule::MigrationRule;
use crate::dubbo::ServiceKey;
use crate::{Endpoint, Snapshot, SnapshotBuilder};

mod migration;

use migration::Migration;

/// The consumer's own migration settings (`migration.step`, `migration.threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MigrationDefaults {
    /// The step when no rule says otherwise (Dubbo's default `APPLICATION_FIRST`).
    pub step: MigrationStep,
    /// The threshold when no rule says otherwise (`None`: Dubbo's default, see
    /// [`crate::dubbo::migration::effective_threshold`]).
    pub threshold: Option<f32>,
}

/// The step and list in force for one service key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InForce {
    /// The step.
    pub(crate) step: MigrationStep,
    /// The threshold that came with it (Java keeps the rule of the last successful switch).
    pub(crate) threshold: Option<f32>,
    /// The list used, and why.
    pub(crate) choice: Choice,
    /// The rule's `proportion` that came with the step (Java keeps the one of the last rule applied).
    pub(crate) proportion: i32,
    /// The share of calls on the application-level list when the snapshot splits the key's calls
    /// (APPLICATION_FIRST on application-level addresses, interface-level addresses present, proportion
    /// below 100).
    pub(crate) split: Option<u8>,
}

/// The builder, with or without the choice between interface-level and application-level addresses.
#[derive(Debug)]
pub(crate) struct ChosenAddresses {
    builder: SnapshotBuilder,
    migration: Option<Box<Migration>>,
}

impl ChosenAddresses {
    /// Interface-level addresses only: everything goes straight to the builder.
    pub(crate) fn interface_only() -> Self {
        ChosenAddresses {
            builder: SnapshotBuilder::new(),
            migration: None,
        }
    }

    /// Both lists, chosen per service key; `provided_by` is interface -> applications from the configuration.
    pub(crate) fn migrating(defaults: MigrationDefaults, provided_by: BTreeMap<String, Vec<String>>) -> Self {
        ChosenAddresses {
            builder: SnapshotBuilder::new(),
            migration: Some(Box::new(Migration {
                defaults,
                rule: None,
                interface_level: HashMap::new(),
                app_level: AppLevel::new(provided_by),
                in_force: HashMap::new(),
                dirty: HashSet::new(),
                settling: false,
                held: HashSet::new(),
                asked: HashMap::new(),
                states: MigrationStates::new(),
                states_changed: false,
                changes: Vec::new(),
                warnings: Vec::new(),
            })),
        }
    }

    /// An interface-level endpoint of `service` is added or changed.
    pub(crate) fn upsert(&mut self, service: &str, endpoint: impl Into<Arc<Endpoint>>) {
        let endpoint: Arc<Endpoint> = endpoint.into();
        let Some(m) = self.migration.as_deref_mut() else {
            self.builder.upsert(service, endpoint);
            return;
        };
        let key = m.key_of(service);
        if m.source_of(&key) == Source::Interface {
            self.builder.upsert(&key, Arc::clone(&endpoint));
        }
        if m.is_split(&key) {
            self.builder.split_upsert(&key, Arc::clone(&endpoint));
        }
        m.interface_level
            .entry(Arc::clone(&key))
            .or_default()
            .insert(endpoint.addr, endpoint);
        if !m.stays_interface_level(&key) {
            m.dirty.insert(key);
        }
    }

    /// An interface-level endpoint of `service` is gone.
    pub(crate) fn remove(&mut self, service: &str, addr: SocketAddr) {
        let Some(m) = self.migration.as_deref_mut() else {
            self.builder.remove(service, addr);
            return;
        };
        let Some((key, list)) = m.interface_level.get_key_value(service) else {
            return;
        };
        let key = Arc::clone(key);
        if !list.contains_key(&addr) {
            return;
        }
        if m.source_of(&key) == Source::Interface {
            self.builder.remove(&key, addr);
        }
        if m.is_split(&key) {
            self.builder.split_remove(&key, addr);
        }
        let mut emptied = false;
        if let Some(list) = m.interface_level.get_mut(&key) {
            list.remove(&addr);
            if list.is_empty() {
                m.interface_level.remove(&key);
                emptied = true;
            }
        }
        if emptied || !m.stays_interface_level(&key) {
            m.dirty.insert(key);
        }
    }

    /// Puts the consumer's provider subset in front of the snapshot (before any change).
    pub(crate) fn set_provider_subset(&mut self, subset: Option<crate::ProviderSubset>) {
        self.builder.set_provider_subset(subset);
    }

    /// Dubbo's routing rules changed.
    pub(crate) fn set_dubbo_rules(&mut self, rules: Arc<RuleIndex>) {
        self.builder.set_dubbo_rules(rules);
    }

    /// Whether application-level addresses are kept at all.
    #[cfg(test)]
    fn is_migrating(&self) -> bool {
        self.migration.is_some()
    }

    /// An instance was put at etcd key `key` (usable; `info` when its revision is resolved).
    pub(crate) fn put_instance(
        &mut self,
        key: &[u8],
        instance: ServiceInstance,
        info: Option<Arc<MetadataInfo>>,
    ) {
        self.app_change(|lists, touched| lists.put_instance(key, instance, info, touched));
    }

    /// The instance at etcd key `key` is gone or no longer usable.
    pub(crate) fn remove_instance(&mut self, key: &[u8]) {
        self.app_change(|lists, touched| lists.remove_instance(key, touched));
    }

    /// The instances at `keys` have their revision's metadata.
    pub(crate) fn set_metadata(&mut self, keys: &[Vec<u8>], info: &Arc<MetadataInfo>) {
        self.app_change(|lists, touched| lists.set_metadata(keys, info, touched));
    }

    /// The mapping key of `interface` lists `apps` (empty: gone).
    pub(crate) fn set_mapping(&mut self, interface: &str, apps: Vec<String>) {
        self.app_change(|lists, touched| lists.set_mapping(interface, apps, touched));
        if let Some(m) = self.migration.as_deref_mut() {
            // the rule's application entries depend on the mapping
            let keys: Vec<Arc<str>> = m.known_keys().filter(|k| interface_of(k) == interface).collect();
            m.dirty.extend(keys);
        }
    }

    /// The config center's migration rule for this consumer (`None`: none, or deleted). The same rule
    /// again changes nothing (Java's listener ignores a duplicated rule); another one ends the switches
    /// waiting or refused under the one before, and every key is decided again under it.
    pub(crate) fn set_rule(&mut self, rule: Option<MigrationRule>) {
        if let Some(m) = self.migration.as_deref_mut() {
            if m.rule == rule {
                return;
            }
            m.rule = rule;
            m.asked.clear();
            let keys: Vec<Arc<str>> = m.known_keys().collect();
            m.dirty.extend(keys);
        }
    }

    /// Whether some instance's metadata is still on its first fetch (see `Migration::settling`).
    pub(crate) fn set_settling(&mut self, settling: bool) {
        if let Some(m) = self.migration.as_deref_mut() {
            m.settling = settling;
            if !settling {
                let held: Vec<Arc<str>> = m.held.drain().collect();
                m.dirty.extend(held);
                let waiting: Vec<Arc<str>> = m
                    .asked
                    .iter()
                    .filter(|(_, a)| a.wake.is_some())
                    .map(|(k, _)| Arc::clone(k))
                    .collect();
                m.dirty.extend(waiting);
            }
        }
    }

    /// When a switch waiting for its delay (or the first fetches) is to be decided: the watcher publishes
    /// then ([`ChosenAddresses::publish`]); `None`: nothing waits.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.migration
            .as_deref()?
            .asked
            .values()
            .filter_map(|a| a.wake)
            .min()
    }

    /// The application-level lists (for the key handlers: instance keys known, mapped applications).
    pub(crate) fn app_level(&self) -> Option<&AppLevel> {
        self.migration.as_deref().map(|m| &m.app_level)
    }

    /// The step and list in force for `service` (`None`: interface-level only, or not known).
    #[cfg(test)]
    fn in_force(&self, service: &str) -> Option<InForce> {
        self.migration.as_deref()?.in_force.get(service).copied()
    }

    /// Services skipped in instances since the last call (a count and the first), for one log line.
    pub(crate) fn take_skipped(&mut self) -> Option<(usize, String)> {
        self.migration.as_deref_mut()?.app_level.take_skipped()
    }

    /// Decides the list of every service key that may have changed, then publishes like
    /// [`SnapshotBuilder::publish`]. Each service key whose step or list changed is logged in one line.
    pub(crate) fn publish(&mut self, revision: i64) -> Option<Snapshot> {
        self.publish_at(revision, Instant::now())
    }

    /// [`ChosenAddresses::publish`] at `now` (the clock of the rule's `delay`).
    fn publish_at(&mut self, revision: i64, now: Instant) -> Option<Snapshot> {
        if let Some(m) = self.migration.as_deref_mut() {
            m.changes.clear();
            m.warnings.clear();
            let due: Vec<Arc<str>> = m
                .asked
                .iter()
                .filter(|(_, a)| a.wake.is_some_and(|w| w <= now))
                .map(|(k, _)| Arc::clone(k))
                .collect();
            m.dirty.extend(due);
            let dirty: Vec<Arc<str>> = m.dirty.drain().collect();
            for key in dirty {
                m.decide(&key, &mut self.builder, now);
            }
            for line in &m.changes {
                tracing::info!("{line}");
            }
            for line in &m.warnings {
                tracing::warn!("{line}");
            }
            if m.states_changed {
                m.states_changed = false;
                self.builder.set_migration(m.states.clone());
            }
        }
        self.builder.publish(revision)
    }

    /// The lines the last publication logged (tests).
    #[cfg(test)]
    fn logged(&self) -> &[String] {
        self.migration.as_deref().map_or(&[], |m| &m.changes)
    }

    /// The warnings the last publication logged (tests).
    #[cfg(test)]
    fn warned(&self) -> &[String] {
        self.migration.as_deref().map_or(&[], |m| &m.warnings)
    }

    /// Runs a change of the application-level lists and applies it to the builder where the
    /// application-level list is in force.
    fn app_change(&mut self, change: impl FnOnce(&mut AppLevel, &mut Vec<Touched>)) {
        let Some(m) = self.migration.as_deref_mut() else {
            return;
        };
        let mut touched = Vec::new();
        change(&mut m.app_level, &mut touched);
        for (key, addr) in touched {
            if m.source_of(&key) == Source::Application {
                match m.app_level.endpoint(&key, addr) {
                    Some(e) => self.builder.upsert(&key, Arc::clone(e)),
                    None => self.builder.remove(&key, addr),
                }
            }
            m.dirty.insert(key);
        }
    }
}

/// The interface of a service key `group/interface:version`.
fn interface_of(key: &str) -> String {
    ServiceKey::parse(key).interface
}

#[cfg(test)]
mod tests;
