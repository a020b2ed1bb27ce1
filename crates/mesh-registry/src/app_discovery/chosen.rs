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
use crate::dubbo::migration::{
    switch_allowed, switch_timing, which_addresses, AskedStep, Choice, MigrationStates, MigrationStep,
    Source, StepInForce, SwitchTiming, DEFAULT_PROPORTION,
};
use crate::dubbo::migration_rule::{display_service_key, MigrationRule};
use crate::dubbo::ServiceKey;
use crate::{Endpoint, Snapshot, SnapshotBuilder};

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

/// What the rule (or the consumer's defaults) asks for one service key.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Wanted {
    step: MigrationStep,
    threshold: Option<f32>,
    force: bool,
    delay_s: i32,
    proportion: i32,
}

/// A switch of a known key to a `FORCE_*` step that is not in force: waiting, or refused.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Asked {
    step: MigrationStep,
    threshold: Option<f32>,
    /// When it was first asked (the publication that first saw it).
    since: Instant,
    /// When to decide it again (`None`: refused, until the rule changes).
    wake: Option<Instant>,
}

/// Interface-level and application-level lists and the choice between them.
#[derive(Debug)]
struct Migration {
    defaults: MigrationDefaults,
    rule: Option<MigrationRule>,
    interface_level: HashMap<Arc<str>, BTreeMap<SocketAddr, Arc<Endpoint>>>,
    app_level: AppLevel,
    in_force: HashMap<Arc<str>, InForce>,
    /// Service keys whose choice may have changed since the last publication.
    dirty: HashSet<Arc<str>>,
    /// Whether some instance's metadata is still on its first fetch: APPLICATION_FIRST does not move a key
    /// from interface-level to application-level then (Java's listener fetches every revision of a change
    /// before it notifies the application-level addresses), so a key does not switch to the first instance
    /// resolved while the others are on their way.
    settling: bool,
    /// Keys held on interface-level while settling, decided again when it ends.
    held: HashSet<Arc<str>>,
    /// Switches to a `FORCE_*` step waiting for their delay, or refused.
    asked: HashMap<Arc<str>, Asked>,
    /// The step in force per key, as the next snapshot carries it.
    states: MigrationStates,
    states_changed: bool,
    /// The log lines of the last publication (steps that changed), for tests; also printed.
    changes: Vec<String>,
    /// The warnings of the last publication (refused switches); also printed.
    warnings: Vec<String>,
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

impl Migration {
    /// The shared `Arc` of a service key, when one is held.
    fn key_of(&self, service: &str) -> Arc<str> {
        self.in_force
            .get_key_value(service)
            .map(|(k, _)| Arc::clone(k))
            .or_else(|| {
                self.interface_level
                    .get_key_value(service)
                    .map(|(k, _)| Arc::clone(k))
            })
            .unwrap_or_else(|| Arc::from(service))
    }

    /// Whether the snapshot splits `key`'s calls (its interface-level list goes to the builder's split too).
    fn is_split(&self, key: &str) -> bool {
        self.in_force.get(key).is_some_and(|f| f.split.is_some())
    }

    /// The list in force for `key` (interface-level until decided otherwise).
    fn source_of(&self, key: &str) -> Source {
        self.in_force
            .get(key)
            .map_or(Source::Interface, |f| f.choice.source)
    }

    /// Whether a change to `key`'s interface-level list leaves its choice as it is, without deciding it
    /// again (the common case, one lookup per map): the consumer's own step (no rule) keeps interface-level
    /// while there is no application-level address (APPLICATION_FIRST, FORCE_INTERFACE), none is known for
    /// `key`, and interface-level on that step is what is in force.
    fn stays_interface_level(&self, key: &str) -> bool {
        self.rule.is_none()
            && self.defaults.step != MigrationStep::ForceApplication
            && self
                .in_force
                .get(key)
                .is_some_and(|f| f.step == self.defaults.step && f.choice.source == Source::Interface)
            && self.app_level.count(key) == 0
    }

    fn known_keys(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.interface_level
            .keys()
            .chain(self.app_level.services())
            .chain(self.in_force.keys())
            .cloned()
    }

    /// What the rule (interface entry, application entry, the rule's own) or else the consumer asks for
    /// `key`.
    fn wanted(&self, key: &str) -> Wanted {
        let Some(rule) = &self.rule else {
            return Wanted {
                step: self.defaults.step,
                threshold: self.defaults.threshold,
                force: false,
                delay_s: 0,
                proportion: DEFAULT_PROPORTION,
            };
        };
        let display = display_service_key(key);
        let apps = self.app_level.applications(&interface_of(key));
        Wanted {
            step: rule.step_for(display, apps).unwrap_or(self.defaults.step),
            threshold: rule.threshold_for(display, apps).or(self.defaults.threshold),
            force: rule.force_for(display, apps),
            delay_s: rule.delay_for(display, apps),
            proportion: rule.proportion_for(display, apps),
        }
    }

    /// Whether a known key on `was` switches now to the `FORCE_*` step `want` asks for (Java's
    /// `migrateToForce*Invoker` once both invokers exist): after the delay, with `force` or when the new
    /// list passes the check. Else the switch waits (its wake-up is recorded) or is refused (logged; it
    /// stays refused until the rule changes).
    fn forced_switch(
        &mut self,
        key: &Arc<str>,
        was: InForce,
        want: Wanted,
        counts: (usize, usize),
        now: Instant,
    ) -> bool {
        let (app_count, iface_count) = counts;
        let before = self
            .asked
            .get(&**key)
            .filter(|a| a.step == want.step && a.threshold == want.threshold)
            .copied();
        let since = match before {
            Some(a) if a.wake.is_none() => return false, // refused under this rule
            Some(a) => a.since,
            None => now,
        };
        let mut asked = Asked {
            step: want.step,
            threshold: want.threshold,
            since,
            wake: None,
        };
        // The first fetches matter to a switch to application-level addresses only (the interface-level
        // list is always current).
        let settling = self.settling && want.step == MigrationStep::ForceApplication;
        if let SwitchTiming::WaitUntil(at) = switch_timing(since, want.delay_s, settling, now) {
            asked.wake = Some(at);
            self.asked.insert(Arc::clone(key), asked);
            return false;
        }
        let (new_count, old_count) = match want.step {
            MigrationStep::ForceApplication => (app_count, iface_count),
            _ => (iface_count, app_count),
        };
        if switch_allowed(want.force, new_count, old_count, want.threshold.unwrap_or(-1.0)) {
            self.asked.remove(&**key);
            return true;
        }
        self.asked.insert(Arc::clone(key), asked);
        self.warnings.push(format!(
            "service {key}: migration to {} refused, {} stays in force ({} {} address(es), {} {} \
             address(es), threshold {}; no force): publish a changed rule to try again",
            want.step,
            was.step,
            new_count,
            model_name(want.step),
            old_count,
            model_name(match want.step {
                MigrationStep::ForceApplication => MigrationStep::ForceInterface,
                _ => MigrationStep::ForceApplication,
            }),
            want.threshold
                .map_or_else(|| "default".to_owned(), |t| t.to_string()),
        ));
        false
    }

    /// Records `key`'s state for the snapshot (and forgets it with `None`).
    fn record_state(&mut self, key: &Arc<str>, state: Option<StepInForce>) {
        let changed = match state {
            Some(s) => self.states.insert(Arc::clone(key), s) != Some(s),
            None => self.states.remove(&**key).is_some(),
        };
        self.states_changed |= changed;
    }

    /// Decides `key`'s list; on a switch, gives the builder the difference.
    fn decide(&mut self, key: &Arc<str>, builder: &mut SnapshotBuilder, now: Instant) {
        let app_count = self.app_level.count(key);
        let iface_count = self.interface_level.get(&**key).map_or(0, BTreeMap::len);
        let was = self.in_force.get(&**key).copied();
        if app_count == 0 && iface_count == 0 {
            // Nothing in either list: the builder holds nothing for it either.
            self.asked.remove(&**key);
            self.record_state(key, None);
            if let Some(was) = self.in_force.remove(&**key) {
                if was.split.is_some() {
                    builder.set_split(key, None);
                }
                if was.choice.source == Source::Application || was.step != self.defaults.step {
                    self.changes
                        .push(format!("service {key}: no address left in either list"));
                }
            }
            return;
        }
        let want = self.wanted(key);
        let (step, threshold, proportion) = match was {
            // First seen (Java: at refer, the other invoker does not exist: no check), the same step
            // (a new threshold applies at once), or APPLICATION_FIRST (never checked nor delayed).
            Some(w) if w.step != want.step && want.step != MigrationStep::ApplicationFirst => {
                if self.forced_switch(key, w, want, (app_count, iface_count), now) {
                    (want.step, want.threshold, want.proportion)
                } else {
                    (w.step, w.threshold, w.proportion)
                }
            }
            _ => {
                self.asked.remove(&**key);
                (want.step, want.threshold, want.proportion)
            }
        };
        let choice = which_addresses(step, app_count, iface_count, threshold.unwrap_or(-1.0));
        let next = InForce {
            step,
            threshold,
            choice,
            proportion,
            split: split_percent(step, choice.source, iface_count, proportion),
        };
        let old_source = was.map_or(Source::Interface, |w| w.choice.source);
        if self.settling
            && step == MigrationStep::ApplicationFirst
            && old_source == Source::Interface
            && choice.source == Source::Application
            && iface_count > 0
        {
            self.held.insert(Arc::clone(key));
            // still on interface-level (a key first seen: on the step asked)
            let shown = was.unwrap_or(InForce {
                choice: Choice {
                    source: Source::Interface,
                    reason: "held while the first metadata fetches run",
                },
                ..next
            });
            self.record_state(key, self.state_of(key, Some(shown)));
            return;
        }
        if old_source != choice.source {
            let old = self.list(key, old_source);
            let new = self.list(key, choice.source);
            for addr in old.keys().filter(|a| !new.contains_key(a)) {
                builder.remove(key, *addr);
            }
            for endpoint in new.into_values() {
                builder.upsert(key, endpoint);
            }
        }
        let old_split = was.and_then(|w| w.split);
        if old_split != next.split {
            builder.set_split(key, next.split);
            if old_split.is_none() {
                for endpoint in self.list(key, Source::Interface).into_values() {
                    builder.split_upsert(key, endpoint);
                }
            }
            self.changes.push(match next.split {
                Some(p) => format!(
                    "service {key}: migration proportion {p}: {p}% of calls to application-level \
                     addresses, {}% to interface-level ({app_count} application-level, {iface_count} \
                     interface-level)",
                    100 - u32::from(p)
                ),
                None => format!("service {key}: migration proportion no longer splits calls"),
            });
        }
        // Logged when the step or the list changes; a key first seen on the consumer's step and the
        // interface-level list (where every key starts) is not news.
        let news = match was {
            Some(w) => w.step != step || w.choice.source != choice.source,
            None => step != self.defaults.step || choice.source != Source::Interface,
        };
        if news {
            self.changes.push(format!(
                "service {key}: migration step {step}, {} addresses ({}; {app_count} application-level, \
                 {iface_count} interface-level)",
                match choice.source {
                    Source::Application => "application-level",
                    Source::Interface => "interface-level",
                },
                choice.reason
            ));
        }
        self.in_force.insert(Arc::clone(key), next);
        self.record_state(key, self.state_of(key, Some(next)));
    }

    /// What the snapshot shows for `key` on `in_force`.
    fn state_of(&self, key: &str, in_force: Option<InForce>) -> Option<StepInForce> {
        let f = in_force?;
        Some(StepInForce {
            step: f.step,
            source: f.choice.source,
            asked: self.asked.get(key).map(|a| AskedStep {
                step: a.step,
                refused: a.wake.is_none(),
            }),
        })
    }

    fn list(&self, key: &str, source: Source) -> BTreeMap<SocketAddr, Arc<Endpoint>> {
        match source {
            Source::Interface => self.interface_level.get(key).cloned().unwrap_or_default(),
            Source::Application => self.app_level.endpoints(key),
        }
    }
}

/// The share of calls (percent) on the application-level list when `key`'s calls are split: under
/// APPLICATION_FIRST with the application-level list preferred, interface-level addresses present and a
/// `proportion` below 100 (a negative one is 0: Java's `nextDouble(100) > proportion` always holds then).
fn split_percent(step: MigrationStep, source: Source, iface_count: usize, proportion: i32) -> Option<u8> {
    (step == MigrationStep::ApplicationFirst
        && source == Source::Application
        && iface_count > 0
        && proportion < DEFAULT_PROPORTION)
        .then(|| proportion.clamp(0, 99) as u8)
}

/// The address model a `FORCE_*` step uses, for log lines.
fn model_name(step: MigrationStep) -> &'static str {
    match step {
        MigrationStep::ForceApplication => "application-level",
        _ => "interface-level",
    }
}

/// The interface of a service key `group/interface:version`.
fn interface_of(key: &str) -> String {
    ServiceKey::parse(key).interface
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::instance::REVISION_KEY;
    use crate::dubbo::metadata_info::ServiceInfo;
    use crate::dubbo::migration::FIRST_FETCH_WAIT;

    const KEY: &str = "a.Cart:1.0.0";

    fn ep(addr: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(addr.parse().unwrap()))
    }

    fn info() -> Arc<MetadataInfo> {
        Arc::new(MetadataInfo::new(
            "shop",
            [ServiceInfo {
                name: "a.Cart".into(),
                group: None,
                version: Some("1.0.0".into()),
                protocol: Some("dubbo".into()),
                port: -1,
                path: Some("a.Cart".into()),
                params: [("weight".to_owned(), "7".to_owned())].into(),
            }],
        ))
    }

    fn instance(host: &str) -> ServiceInstance {
        let mut i = ServiceInstance::new("shop", host, 20880);
        i.metadata.insert(REVISION_KEY.into(), "r1".into());
        i
    }

    fn migrating(step: MigrationStep, threshold: Option<f32>) -> ChosenAddresses {
        ChosenAddresses::migrating(
            MigrationDefaults { step, threshold },
            [("a.Cart".to_owned(), vec!["shop".to_owned()])].into(),
        )
    }

    /// The addresses and weights the snapshot lists for [`KEY`].
    fn listed(snapshot: &Snapshot) -> Vec<(String, u32)> {
        snapshot
            .providers(KEY)
            .map(|p| p.iter().map(|e| (e.addr.to_string(), e.weight)).collect())
            .unwrap_or_default()
    }

    /// Interface-level 10.0.0.1 and 10.0.0.2 (weight 100); application-level 10.0.0.2 and 10.0.0.3 (weight 7).
    fn both_lists(chosen: &mut ChosenAddresses) {
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.upsert(KEY, ep("10.0.0.2:20880"));
        for host in ["10.0.0.2", "10.0.0.3"] {
            let key = format!("/services/shop/{host}:20880");
            chosen.put_instance(key.as_bytes(), instance(host), Some(info()));
        }
    }

    #[test]
    fn each_step_reaches_its_list() {
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        both_lists(&mut chosen);
        let s = chosen.publish(1).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.1:20880".into(), 100), ("10.0.0.2:20880".into(), 100)]
        );
        assert!(
            chosen.logged().is_empty(),
            "the consumer's step on interface-level is not news"
        );

        let mut chosen = migrating(MigrationStep::ForceApplication, None);
        both_lists(&mut chosen);
        let s = chosen.publish(1).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
        );
        assert_eq!(chosen.logged().len(), 1);
        assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Application);

        // APPLICATION_FIRST, default threshold: application-level as soon as it has an address
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        let s = chosen.publish(1).unwrap();
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        let s = chosen.publish(2).unwrap();
        assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
        assert!(
            chosen.logged()[0].contains("APPLICATION_FIRST"),
            "{:?}",
            chosen.logged()
        );
        // the last application-level address goes: back to interface-level
        chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
        let s = chosen.publish(3).unwrap();
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    }

    #[test]
    fn application_first_threshold_and_changes_in_force_go_straight_through() {
        // threshold 1.0: application-level needs at least as many addresses as interface-level
        let mut chosen = migrating(MigrationStep::ApplicationFirst, Some(1.0));
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.upsert(KEY, ep("10.0.0.2:20880"));
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        let s = chosen.publish(1).unwrap();
        assert_eq!(listed(&s).len(), 2);
        assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Interface);
        // a change to the interface-level list in force shows at once
        chosen.upsert(
            KEY,
            Endpoint::new("10.0.0.1:20880".parse().unwrap()).with_weight(5),
        );
        let s = chosen.publish(2).unwrap();
        assert_eq!(listed(&s)[0], ("10.0.0.1:20880".into(), 5));
        // a second application-level address passes the threshold (2/2 >= 1.0)
        chosen.put_instance(
            b"/services/shop/10.0.0.4:20880",
            instance("10.0.0.4"),
            Some(info()),
        );
        let s = chosen.publish(3).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.3:20880".into(), 7), ("10.0.0.4:20880".into(), 7)]
        );
        // interface-level changes while application-level is in force do not reach the snapshot
        chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
        chosen.upsert(KEY, ep("10.0.0.9:20880"));
        chosen.upsert(KEY, ep("10.0.0.8:20880"));
        let s = chosen.publish(4);
        // 2 application-level vs 3 interface-level: below the threshold, back to interface-level
        let s = s.unwrap();
        assert_eq!(listed(&s).len(), 3);
        assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Interface);
    }

    #[test]
    fn a_switch_keeps_addresses_in_both_lists() {
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        both_lists(&mut chosen);
        chosen.publish(1).unwrap();
        chosen.set_rule(Some(
            MigrationRule::parse("step: FORCE_APPLICATION\n")
                .unwrap()
                .unwrap(),
        ));
        let s = chosen.publish(2).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
        );
        // 10.0.0.2 is in both lists: changed (new weight), not removed; only 10.0.0.1 departs
        assert_eq!(s.departed(), ["10.0.0.1:20880".parse::<SocketAddr>().unwrap()]);
        let change = s.providers(KEY).unwrap().change().unwrap();
        assert_eq!(change.removed, ["10.0.0.1:20880".parse::<SocketAddr>().unwrap()]);
        assert_eq!(chosen.logged().len(), 1);
        assert!(
            chosen.logged()[0].contains("FORCE_APPLICATION"),
            "{:?}",
            chosen.logged()
        );
        // the rule names this interface: FORCE_INTERFACE for it only
        chosen.set_rule(Some(
            MigrationRule::parse(
                "step: FORCE_APPLICATION\ninterfaces:\n  - serviceKey: a.Cart:1.0.0\n    step: FORCE_INTERFACE\n",
            )
            .unwrap()
            .unwrap(),
        ));
        let s = chosen.publish(3).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.1:20880".into(), 100), ("10.0.0.2:20880".into(), 100)]
        );
        // the rule is deleted: the consumer's step again
        chosen.set_rule(None);
        assert!(
            chosen.publish(4).is_none(),
            "FORCE_INTERFACE again: nothing changed"
        );
        assert_eq!(chosen.in_force(KEY).unwrap().step, MigrationStep::ForceInterface);
    }

    #[test]
    fn application_first_waits_for_the_first_fetches_before_switching() {
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.set_settling(true);
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        let s = chosen.publish(1).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.1:20880".into(), 100)],
            "held on interface-level"
        );
        chosen.put_instance(
            b"/services/shop/10.0.0.4:20880",
            instance("10.0.0.4"),
            Some(info()),
        );
        chosen.set_settling(false);
        let s = chosen.publish(2).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.3:20880".into(), 7), ("10.0.0.4:20880".into(), 7)],
            "both instances at once"
        );
        // FORCE_APPLICATION is not held
        let mut chosen = migrating(MigrationStep::ForceApplication, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.set_settling(true);
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        assert_eq!(
            listed(&chosen.publish(1).unwrap()),
            [("10.0.0.3:20880".into(), 7)]
        );
    }

    #[test]
    fn interface_level_changes_without_application_level_addresses_are_not_decided_again() {
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        let dirty = |c: &ChosenAddresses| c.migration.as_deref().map_or(0, |m| m.dirty.len());
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        assert_eq!(dirty(&chosen), 1, "a key first seen is decided");
        chosen.publish(1).unwrap();
        chosen.upsert(KEY, ep("10.0.0.2:20880"));
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        assert_eq!(dirty(&chosen), 0);
        let s = chosen.publish(2).unwrap();
        assert_eq!(listed(&s), [("10.0.0.2:20880".into(), 100)]);
        // An application-level address still switches it, with the interface-level list kept up to date.
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        assert_eq!(
            listed(&chosen.publish(3).unwrap()),
            [("10.0.0.3:20880".into(), 7)]
        );
        chosen.upsert(KEY, ep("10.0.0.4:20880"));
        assert_eq!(dirty(&chosen), 1, "application-level in force: decided again");
        chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
        let s = chosen.publish(4).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 100), ("10.0.0.4:20880".into(), 100)]
        );
        // The last interface-level address goes: decided (forgotten).
        chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
        chosen.remove(KEY, "10.0.0.4:20880".parse().unwrap());
        assert_eq!(dirty(&chosen), 1);
        assert!(chosen.publish(5).unwrap().is_empty());
        assert!(chosen.in_force(KEY).is_none());
        // A rule in force: every change is decided again.
        chosen.set_rule(Some(
            MigrationRule::parse("step: FORCE_INTERFACE\n").unwrap().unwrap(),
        ));
        chosen.upsert(KEY, ep("10.0.0.5:20880"));
        chosen.publish(6).unwrap();
        chosen.upsert(KEY, ep("10.0.0.6:20880"));
        assert_eq!(dirty(&chosen), 1);
    }

    fn rule(text: &str) -> Option<MigrationRule> {
        Some(MigrationRule::parse(text).unwrap().unwrap())
    }

    /// The step shown for [`KEY`] in `snapshot`.
    fn shown(snapshot: &Snapshot) -> Option<StepInForce> {
        snapshot.migration().get(KEY).copied()
    }

    #[test]
    fn an_unforced_switch_without_addresses_keeps_the_step_and_a_forced_one_switches() {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        let s = chosen.publish_at(1, t0).unwrap();
        assert_eq!(
            shown(&s),
            Some(StepInForce {
                step: MigrationStep::ApplicationFirst,
                source: Source::Interface,
                asked: None
            })
        );
        // FORCE_APPLICATION without force, no application-level address: refused, interface-level stays
        chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: false\n"));
        let s = chosen
            .publish_at(2, t0)
            .expect("the refusal is news for the admin side");
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
        assert_eq!(
            shown(&s),
            Some(StepInForce {
                step: MigrationStep::ApplicationFirst,
                source: Source::Interface,
                asked: Some(AskedStep {
                    step: MigrationStep::ForceApplication,
                    refused: true
                })
            })
        );
        assert!(chosen.warned()[0].contains("refused"), "{:?}", chosen.warned());
        assert_eq!(chosen.next_wake(), None, "a refusal waits for nothing");
        // the same rule put again (a resync) changes nothing
        chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: false\n"));
        assert!(chosen.publish_at(3, t0).is_none());
        // application-level addresses arriving later do not retry it (Java: only a new rule does); the
        // APPLICATION_FIRST in force uses them
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        let s = chosen.publish_at(4, t0).unwrap();
        assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
        assert_eq!(shown(&s).unwrap().step, MigrationStep::ApplicationFirst);
        assert_eq!(shown(&s).unwrap().source, Source::Application);
        chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
        chosen.publish_at(5, t0).unwrap();
        // force: true switches, with no address at all on the new side
        chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: true\n"));
        let s = chosen.publish_at(6, t0).unwrap();
        assert!(
            s.providers(KEY).is_none(),
            "FORCE_APPLICATION with no instance lists nothing"
        );
        assert_eq!(
            shown(&s),
            Some(StepInForce {
                step: MigrationStep::ForceApplication,
                source: Source::Application,
                asked: None
            })
        );
        // back to FORCE_INTERFACE without force: the interface-level list has an address, the
        // application-level none: allowed (Java: "No instance address available", old side empty)
        chosen.set_rule(rule("step: FORCE_INTERFACE\n"));
        let s = chosen.publish_at(7, t0).unwrap();
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
        assert_eq!(shown(&s).unwrap().step, MigrationStep::ForceInterface);
    }

    #[test]
    fn the_threshold_decides_an_unforced_switch() {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        both_lists(&mut chosen); // 2 interface-level, 2 application-level
        chosen.upsert(KEY, ep("10.0.0.5:20880"));
        chosen.publish_at(1, t0).unwrap();
        // 2 / 3 < 0.9: refused
        chosen.set_rule(rule("step: FORCE_APPLICATION\nthreshold: 0.9\n"));
        let s = chosen.publish_at(2, t0).unwrap();
        assert_eq!(listed(&s).len(), 3);
        assert!(shown(&s).unwrap().asked.unwrap().refused);
        // 2 / 3 >= 0.5: switches (a changed rule is tried again)
        chosen.set_rule(rule("step: FORCE_APPLICATION\nthreshold: 0.5\n"));
        let s = chosen.publish_at(3, t0).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
        );
        assert_eq!(shown(&s).unwrap().asked, None);
    }

    #[test]
    fn the_delay_is_waited_for_on_the_watchers_clock() {
        let t0 = Instant::now();
        let secs = std::time::Duration::from_secs;
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        both_lists(&mut chosen);
        chosen.publish_at(1, t0).unwrap();
        chosen.set_rule(rule("step: FORCE_APPLICATION\ndelay: 10\n"));
        let s = chosen.publish_at(2, t0).unwrap();
        assert_eq!(listed(&s).len(), 2);
        assert_eq!(listed(&s)[0].1, 100, "still interface-level");
        assert_eq!(
            shown(&s).unwrap().asked,
            Some(AskedStep {
                step: MigrationStep::ForceApplication,
                refused: false
            })
        );
        assert_eq!(chosen.next_wake(), Some(t0 + secs(10)));
        // an address change before the delay does not hurry it
        chosen.upsert(KEY, ep("10.0.0.9:20880"));
        let s = chosen.publish_at(3, t0 + secs(9)).unwrap();
        assert_eq!(listed(&s).len(), 3);
        assert_eq!(chosen.next_wake(), Some(t0 + secs(10)));
        // at the wake-up: decided (2 application-level / 3 interface-level >= 0.0)
        let s = chosen.publish_at(4, t0 + secs(10)).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
        );
        assert_eq!(chosen.next_wake(), None);
        assert_eq!(shown(&s).unwrap().step, MigrationStep::ForceApplication);
        // a new rule while one waits replaces it, its delay counted from now
        chosen.set_rule(rule("step: FORCE_INTERFACE\ndelay: 5\n"));
        chosen.publish_at(5, t0 + secs(20));
        chosen.set_rule(rule("step: FORCE_INTERFACE\ndelay: 3\n"));
        chosen.publish_at(6, t0 + secs(21));
        assert_eq!(chosen.next_wake(), Some(t0 + secs(24)));
        // APPLICATION_FIRST is neither delayed nor checked
        chosen.set_rule(rule("step: APPLICATION_FIRST\ndelay: 30\n"));
        let s = chosen.publish_at(7, t0 + secs(22)).unwrap();
        assert_eq!(shown(&s).unwrap().step, MigrationStep::ApplicationFirst);
        assert_eq!(chosen.next_wake(), None);
    }

    #[test]
    fn a_switch_waits_for_the_first_fetches_then_decides() {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.publish_at(1, t0).unwrap();
        // the rule arrives; the instance is known but its metadata is on its way
        chosen.set_rule(rule("step: FORCE_APPLICATION\n"));
        chosen.put_instance(b"/services/shop/10.0.0.3:20880", instance("10.0.0.3"), None);
        chosen.set_settling(true);
        chosen.publish_at(2, t0);
        assert_eq!(chosen.next_wake(), Some(t0 + FIRST_FETCH_WAIT));
        assert_eq!(chosen.in_force(KEY).unwrap().step, MigrationStep::ForceInterface);
        // the answer: decided at once, and it passes
        chosen.set_metadata(&[b"/services/shop/10.0.0.3:20880".to_vec()], &info());
        chosen.set_settling(false);
        let s = chosen
            .publish_at(3, t0 + std::time::Duration::from_millis(40))
            .unwrap();
        assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
        // fetches that never settle: decided at the bound all the same (here: refused, nothing resolved)
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.publish_at(1, t0).unwrap();
        chosen.set_rule(rule("step: FORCE_APPLICATION\n"));
        chosen.set_settling(true);
        chosen.publish_at(2, t0);
        let s = chosen.publish_at(3, t0 + FIRST_FETCH_WAIT).unwrap();
        assert!(shown(&s).unwrap().asked.unwrap().refused);
        assert_eq!(chosen.next_wake(), None);
    }

    /// The split of [`KEY`] in `snapshot`: percent and the interface-level addresses.
    fn split(snapshot: &Snapshot) -> Option<(u8, Vec<String>)> {
        snapshot.split(KEY).map(|s| {
            let addrs = s.interface_level().iter().map(|e| e.addr.to_string()).collect();
            (s.percent(), addrs)
        })
    }

    #[test]
    fn a_proportion_under_application_first_splits_the_calls_between_both_lists() {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        both_lists(&mut chosen); // interface-level .1 .2, application-level .2 .3
        let s = chosen.publish_at(1, t0).unwrap();
        assert_eq!(split(&s), None, "no rule: proportion 100, no split");
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
        let s = chosen.publish_at(2, t0).unwrap();
        assert_eq!(
            listed(&s),
            [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)],
            "the key's own list stays the application-level one"
        );
        assert_eq!(
            split(&s),
            Some((30, vec!["10.0.0.1:20880".into(), "10.0.0.2:20880".into()]))
        );
        assert!(
            chosen
                .logged()
                .iter()
                .any(|l| l.contains("proportion 30: 30% of calls")),
            "{:?}",
            chosen.logged()
        );
        assert!(chosen.warned().is_empty(), "applied, not warned about");
        // interface-level changes follow into the split's list
        chosen.upsert(KEY, ep("10.0.0.9:20880"));
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        let s = chosen.publish_at(3, t0).unwrap();
        assert_eq!(
            split(&s),
            Some((30, vec!["10.0.0.2:20880".into(), "10.0.0.9:20880".into()]))
        );
        assert_eq!(listed(&s).len(), 2);
        // a new percentage; 0 sends every call to interface-level, still a split
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 0\n"));
        assert_eq!(split(&chosen.publish_at(4, t0).unwrap()).unwrap().0, 0);
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: -5\n"));
        assert!(chosen.publish_at(5, t0).is_none(), "below 0 is 0: nothing new");
        // 100 (or the rule removed): no split, every call on application-level
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 100\n"));
        let s = chosen.publish_at(6, t0).unwrap();
        assert_eq!(split(&s), None);
        assert_eq!(listed(&s).len(), 2);
        assert_eq!(s.departed(), ["10.0.0.9:20880".parse().unwrap()]);
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 40\n"));
        assert_eq!(split(&chosen.publish_at(7, t0).unwrap()).unwrap().0, 40);
        chosen.set_rule(None);
        assert_eq!(split(&chosen.publish_at(8, t0).unwrap()), None);
    }

    #[test]
    fn a_proportion_splits_only_application_first_on_application_level_with_both_lists() {
        let t0 = Instant::now();
        // FORCE_* steps ignore it (Java reads it under APPLICATION_FIRST only)
        for step in ["FORCE_APPLICATION", "FORCE_INTERFACE"] {
            let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
            both_lists(&mut chosen);
            chosen.set_rule(rule(&format!("step: {step}\nproportion: 30\n")));
            assert_eq!(split(&chosen.publish_at(1, t0).unwrap()), None, "{step}");
        }
        // the threshold keeps interface-level preferred: every call there, no split
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        both_lists(&mut chosen);
        chosen.upsert(KEY, ep("10.0.0.5:20880"));
        chosen.set_rule(rule("step: APPLICATION_FIRST\nthreshold: 0.9\nproportion: 30\n"));
        let s = chosen.publish_at(1, t0).unwrap();
        assert_eq!(split(&s), None);
        assert_eq!(listed(&s).len(), 3, "interface-level preferred");
        // no interface-level address: every call on application-level (Java would fail 70% of them)
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        assert_eq!(split(&chosen.publish_at(1, t0).unwrap()), None);
        // the first interface-level address starts the split; the last one ends it
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        let s = chosen.publish_at(2, t0).unwrap();
        assert_eq!(split(&s), Some((30, vec!["10.0.0.1:20880".into()])));
        assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        let s = chosen.publish_at(3, t0).unwrap();
        assert_eq!(split(&s), None);
        assert_eq!(s.departed(), ["10.0.0.1:20880".parse().unwrap()]);
        // the application-level addresses gone: interface-level preferred, no split
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.publish_at(4, t0).unwrap();
        chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
        let s = chosen.publish_at(5, t0).unwrap();
        assert_eq!(split(&s), None);
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
        // both lists emptied: the split and the key forgotten
        chosen.put_instance(
            b"/services/shop/10.0.0.3:20880",
            instance("10.0.0.3"),
            Some(info()),
        );
        assert!(split(&chosen.publish_at(6, t0).unwrap()).is_some());
        chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        let s = chosen.publish_at(7, t0).unwrap();
        assert_eq!(split(&s), None);
        assert!(s.is_empty());
    }

    #[test]
    fn a_refused_switch_keeps_the_proportion_of_the_rule_in_force() {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        both_lists(&mut chosen);
        chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
        assert_eq!(split(&chosen.publish_at(1, t0).unwrap()).unwrap().0, 30);
        // FORCE_INTERFACE refused (threshold: 2 interface-level / 2 application-level < 5): Java keeps the
        // rule in force, and its promotion
        chosen.set_rule(rule("step: FORCE_INTERFACE\nthreshold: 5\nproportion: 80\n"));
        let s = chosen.publish_at(2, t0).unwrap();
        assert!(shown(&s).unwrap().asked.unwrap().refused);
        assert_eq!(split(&s).unwrap().0, 30);
    }

    proptest::proptest! {
        #[test]
        fn an_unforced_switch_happens_iff_dubbos_check_passes(
            apps in 0usize..4, ifaces in 1usize..4, force: bool, threshold in proptest::option::of(0.0f32..2.0),
        ) {
            let t0 = Instant::now();
            let mut chosen = migrating(MigrationStep::ForceInterface, None);
            for i in 0..ifaces {
                chosen.upsert(KEY, ep(&format!("10.0.1.{i}:20880")));
            }
            for i in 0..apps {
                let host = format!("10.0.2.{i}");
                let key = format!("/services/shop/{host}:20880");
                chosen.put_instance(key.as_bytes(), instance(&host), Some(info()));
            }
            chosen.publish_at(1, t0).unwrap();
            let mut text = format!("step: FORCE_APPLICATION\nforce: {force}\n");
            if let Some(t) = threshold {
                text.push_str(&format!("threshold: {t}\n"));
            }
            chosen.set_rule(rule(&text));
            let s = chosen.publish_at(2, t0).unwrap();
            let switched = force || crate::dubbo::migration::should_migrate(apps, ifaces, threshold.unwrap_or(-1.0));
            let state = shown(&s).unwrap();
            proptest::prop_assert_eq!(state.step == MigrationStep::ForceApplication, switched);
            proptest::prop_assert_eq!(state.source == Source::Application, switched);
            proptest::prop_assert_eq!(state.asked.is_some(), !switched);
            // the snapshot lists the list in force
            proptest::prop_assert_eq!(listed(&s).len(), if switched { apps } else { ifaces });
        }
    }

    #[derive(Debug, Clone)]
    enum SplitOp {
        Iface(u8, bool),
        Instance(u8, bool),
        Proportion(Option<i32>),
        Publish,
    }

    fn split_op() -> impl proptest::strategy::Strategy<Value = SplitOp> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..4, any::<bool>()).prop_map(|(i, up)| SplitOp::Iface(i, up)),
            (0u8..3, any::<bool>()).prop_map(|(i, up)| SplitOp::Instance(i, up)),
            proptest::option::of(prop_oneof![Just(0), Just(30), Just(100), Just(-1)])
                .prop_map(SplitOp::Proportion),
            Just(SplitOp::Publish),
        ]
    }

    proptest::proptest! {
        /// Whatever the order of changes, each snapshot splits the key exactly when Java would split its
        /// calls (APPLICATION_FIRST on application-level addresses, interface-level ones present, a
        /// proportion below 100), its second list is the interface-level list, and its own list the
        /// application-level one.
        #[test]
        fn a_split_always_mirrors_both_lists(ops in proptest::collection::vec(split_op(), 1..50)) {
            let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
            let mut iface: std::collections::BTreeSet<String> = Default::default();
            let mut apps: std::collections::BTreeSet<String> = Default::default();
            let mut proportion: Option<i32> = None;
            let mut ops = ops;
            ops.push(SplitOp::Publish);
            for op in ops {
                match op {
                    SplitOp::Iface(i, true) => {
                        let a = format!("10.0.1.{i}:20880");
                        chosen.upsert(KEY, ep(&a));
                        iface.insert(a);
                    }
                    SplitOp::Iface(i, false) => {
                        let a = format!("10.0.1.{i}:20880");
                        chosen.remove(KEY, a.parse().unwrap());
                        iface.remove(&a);
                    }
                    SplitOp::Instance(i, up) => {
                        let host = format!("10.0.2.{i}");
                        let key = format!("/services/shop/{host}:20880");
                        if up {
                            chosen.put_instance(key.as_bytes(), instance(&host), Some(info()));
                            apps.insert(format!("{host}:20880"));
                        } else {
                            chosen.remove_instance(key.as_bytes());
                            apps.remove(&format!("{host}:20880"));
                        }
                    }
                    SplitOp::Proportion(p) => {
                        proportion = p;
                        chosen.set_rule(p.and_then(|p| rule(&format!("step: APPLICATION_FIRST\nproportion: {p}\n"))));
                    }
                    SplitOp::Publish => {
                        let Some(s) = chosen.publish(0) else { continue };
                        let own: Vec<String> = listed(&s).into_iter().map(|(a, _)| a).collect();
                        let expect_own: Vec<String> = if apps.is_empty() { iface.iter().cloned().collect() } else { apps.iter().cloned().collect() };
                        proptest::prop_assert_eq!(&own, &expect_own);
                        let p = proportion.unwrap_or(100);
                        let want = (!apps.is_empty() && !iface.is_empty() && p < 100)
                            .then(|| (p.clamp(0, 99) as u8, iface.iter().cloned().collect::<Vec<_>>()));
                        proptest::prop_assert_eq!(split(&s), want);
                        for a in s.departed() {
                            proptest::prop_assert!(!s.contains_addr(*a));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn interface_only_passes_through() {
        let mut chosen = ChosenAddresses::interface_only();
        chosen.upsert(KEY, ep("10.0.0.1:20880"));
        chosen.put_instance(b"k", instance("10.0.0.3"), Some(info()));
        let s = chosen.publish(1).unwrap();
        assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
        assert!(!chosen.is_migrating());
        assert!(chosen.in_force(KEY).is_none());
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        assert!(chosen.publish(2).unwrap().is_empty());
    }

    #[test]
    fn a_key_emptied_in_both_lists_is_forgotten() {
        let mut chosen = migrating(MigrationStep::ForceApplication, None);
        both_lists(&mut chosen);
        chosen.publish(1).unwrap();
        for host in ["10.0.0.2", "10.0.0.3"] {
            chosen.remove_instance(format!("/services/shop/{host}:20880").as_bytes());
        }
        chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
        chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
        let s = chosen.publish(2).unwrap();
        assert!(s.providers(KEY).is_none());
        assert!(chosen.in_force(KEY).is_none());
    }
}
