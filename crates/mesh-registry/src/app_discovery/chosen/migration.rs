//! The per-service-key state behind [`super::ChosenAddresses`]'s choice: both address lists, the step in
//! force, the switches a migration rule asked for (waiting for their `delay`, or refused), and the decision
//! made for a key at publication (see the module documentation of `chosen`). Pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{interface_of, InForce, MigrationDefaults};
use crate::app_discovery::app_level::AppLevel;
use crate::dubbo::migration::{
    switch_allowed, switch_timing, which_addresses, AskedStep, Choice, MigrationStates, MigrationStep,
    Source, StepInForce, SwitchTiming, DEFAULT_PROPORTION,
};
use crate::dubbo::migration_rule::{display_service_key, MigrationRule};
use crate::{Endpoint, SnapshotBuilder};

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
pub(super) struct Asked {
    step: MigrationStep,
    threshold: Option<f32>,
    /// When it was first asked (the publication that first saw it).
    since: Instant,
    /// When to decide it again (`None`: refused, until the rule changes).
    pub(super) wake: Option<Instant>,
}

/// Interface-level and application-level lists and the choice between them.
#[derive(Debug)]
pub(super) struct Migration {
    pub(super) defaults: MigrationDefaults,
    pub(super) rule: Option<MigrationRule>,
    pub(super) interface_level: HashMap<Arc<str>, BTreeMap<SocketAddr, Arc<Endpoint>>>,
    pub(super) app_level: AppLevel,
    pub(super) in_force: HashMap<Arc<str>, InForce>,
    /// Service keys whose choice may have changed since the last publication.
    pub(super) dirty: HashSet<Arc<str>>,
    /// Whether some instance's metadata is still on its first fetch: APPLICATION_FIRST does not move a key
    /// from interface-level to application-level then (Java's listener fetches every revision of a change
    /// before it notifies the application-level addresses), so a key does not switch to the first instance
    /// resolved while the others are on their way.
    pub(super) settling: bool,
    /// Keys held on interface-level while settling, decided again when it ends.
    pub(super) held: HashSet<Arc<str>>,
    /// Switches to a `FORCE_*` step waiting for their delay, or refused.
    pub(super) asked: HashMap<Arc<str>, Asked>,
    /// The step in force per key, as the next snapshot carries it.
    pub(super) states: MigrationStates,
    pub(super) states_changed: bool,
    /// The log lines of the last publication (steps that changed), for tests; also printed.
    pub(super) changes: Vec<String>,
    /// The warnings of the last publication (refused switches); also printed.
    pub(super) warnings: Vec<String>,
}

impl Migration {
    /// The shared `Arc` of a service key, when one is held.
    pub(super) fn key_of(&self, service: &str) -> Arc<str> {
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
    pub(super) fn is_split(&self, key: &str) -> bool {
        self.in_force.get(key).is_some_and(|f| f.split.is_some())
    }

    /// The list in force for `key` (interface-level until decided otherwise).
    pub(super) fn source_of(&self, key: &str) -> Source {
        self.in_force
            .get(key)
            .map_or(Source::Interface, |f| f.choice.source)
    }

    /// Whether a change to `key`'s interface-level list leaves its choice as it is, without deciding it
    /// again (the common case, one lookup per map): the consumer's own step (no rule) keeps interface-level
    /// while there is no application-level address (APPLICATION_FIRST, FORCE_INTERFACE), none is known for
    /// `key`, and interface-level on that step is what is in force.
    pub(super) fn stays_interface_level(&self, key: &str) -> bool {
        self.rule.is_none()
            && self.defaults.step != MigrationStep::ForceApplication
            && self
                .in_force
                .get(key)
                .is_some_and(|f| f.step == self.defaults.step && f.choice.source == Source::Interface)
            && self.app_level.count(key) == 0
    }

    pub(super) fn known_keys(&self) -> impl Iterator<Item = Arc<str>> + '_ {
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
    pub(super) fn decide(&mut self, key: &Arc<str>, builder: &mut SnapshotBuilder, now: Instant) {
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
