//! Dubbo 3 consumer migration between interface-level and application-level addresses: the step
//! (`MigrationStep`) and, for `APPLICATION_FIRST`, the threshold rule that picks one of the two address
//! lists.
//!
//! Sources: apache/dubbo `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/client/
//! migration/model/MigrationStep.java` (the names), `.../migration/model/MigrationRule.java` (`getStep`:
//! `Enum.valueOf`, case-sensitive; default `APPLICATION_FIRST`; `getThreshold`: the rule's, else the
//! `migration.threshold` URL parameter, else -1), `.../migration/DefaultMigrationAddressComparator.java`
//! (`shouldMigrate`: a negative threshold falls back to `dubbo.application.migration.threshold`, default
//! `0.0`), `.../migration/MigrationInvoker.java` (`calcPreferredInvoker`, `decideInvoker`,
//! `migrateToForceApplicationInvoker`, `migrateToForceInterfaceInvoker`, `waitAddressNotify`),
//! `.../migration/MigrationRuleHandler.java` (`refreshInvoker`: a refused switch keeps the step in force).
//!
//! Also here: what a switch of a known service key to a `FORCE_*` step needs ([`switch_allowed`], the
//! rule's `force`), when it is decided ([`switch_timing`], the rule's `delay`), and the step in force per
//! service key as the snapshot carries it for the admin side ([`StepInForce`], [`MigrationStates`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::app_error::{excerpt, AppDiscoveryError};

/// The default threshold (`DefaultMigrationAddressComparator.DEFAULT_THRESHOLD_STRING`, 3.3: `0.0`).
pub const DEFAULT_THRESHOLD: f32 = 0.0;

/// The rule's `proportion` when none is given (`MigrationRule.getProportion`: the `migration.promotion`
/// URL parameter, default 100: every call on the preferred addresses).
pub const DEFAULT_PROPORTION: i32 = 100;

/// How long a switch whose `delay` has passed still waits for the first MetadataService answers of the
/// application-level addresses (at least; a longer `delay` waits that long, as Java's
/// `latch.await(delay)` does). The agent's own figure: Java's subscription fetches the metadata before
/// it returns, the agent's resolver does it in the background (each call bounded by 3 s).
pub const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

/// Which addresses a consumer uses (`MigrationStep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MigrationStep {
    /// `FORCE_INTERFACE`: interface-level addresses only.
    ForceInterface,
    /// `APPLICATION_FIRST` (the default): application-level when they exist and pass the threshold.
    #[default]
    ApplicationFirst,
    /// `FORCE_APPLICATION`: application-level addresses only.
    ForceApplication,
}

impl MigrationStep {
    /// Dubbo's name of the step.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStep::ForceInterface => "FORCE_INTERFACE",
            MigrationStep::ApplicationFirst => "APPLICATION_FIRST",
            MigrationStep::ForceApplication => "FORCE_APPLICATION",
        }
    }
}

impl fmt::Display for MigrationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigrationStep {
    type Err = AppDiscoveryError;

    /// Dubbo's names exactly (`Enum.valueOf(MigrationStep.class, ..)` is case-sensitive; anything else is
    /// an error there too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "FORCE_INTERFACE" => Ok(MigrationStep::ForceInterface),
            "APPLICATION_FIRST" => Ok(MigrationStep::ApplicationFirst),
            "FORCE_APPLICATION" => Ok(MigrationStep::ForceApplication),
            other => Err(AppDiscoveryError::UnknownMigrationStep { step: excerpt(other) }),
        }
    }
}

/// The threshold in force: a configured one when it is a number >= 0, else [`DEFAULT_THRESHOLD`]
/// (`DefaultMigrationAddressComparator.shouldMigrate`: `rule.getThreshold(url) >= 0`, else the global
/// property, else `0.0`; an unparsable value logs an error and counts as `0`).
pub fn effective_threshold(configured: Option<f32>) -> f32 {
    configured
        .filter(|t| t.is_finite() && *t >= 0.0)
        .unwrap_or(DEFAULT_THRESHOLD)
}

/// The address list a consumer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Interface-level (`/dubbo/<interface>/providers/...`).
    Interface,
    /// Application-level (`/services/<app>/...` + MetadataService).
    Application,
}

/// Which addresses, and why (for the log line that shows the step in force per service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The list used.
    pub source: Source,
    /// Why.
    pub reason: &'static str,
}

/// Java's `DefaultMigrationAddressComparator.shouldMigrate(new, old, rule)` on address counts: no new
/// address -> no; no old address -> yes; else `new / old >= threshold` (as `float`; see
/// [`effective_threshold`] for a negative or missing one).
pub fn should_migrate(new_count: usize, old_count: usize, threshold: f32) -> bool {
    if new_count == 0 {
        return false;
    }
    if old_count == 0 {
        return true;
    }
    (new_count as f32) / (old_count as f32) >= effective_threshold(Some(threshold))
}

/// Whether a known service key may switch to a `FORCE_*` step whose list holds `new_count` addresses,
/// from the other list with `old_count` (`MigrationInvoker.migrateToForceApplicationInvoker` /
/// `migrateToForceInterfaceInvoker` once both invokers exist): always when the rule says `force: true`
/// ("force migrate, ignore threshold check"), else when [`should_migrate`] says so. When it may not, Java's
/// `MigrationRuleHandler.refreshInvoker` keeps the step in force and its rule ("Migrate to .. mode failed.
/// Probably not satisfy the threshold you set"), and tries again only when a new rule arrives.
pub fn switch_allowed(force: bool, new_count: usize, old_count: usize, threshold: f32) -> bool {
    force || should_migrate(new_count, old_count, threshold)
}

/// When a switch to a `FORCE_*` step asked for at `asked_at` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchTiming {
    /// Not yet: decide again at this instant (or earlier, when the first fetches end).
    WaitUntil(Instant),
    /// Now.
    Now,
}

/// The rule's `delay` (seconds) as a schedule (`MigrationInvoker.waitAddressNotify`:
/// `Thread.sleep(delay * 1000)` when `delay > 0`, then `latch.await(delay, SECONDS)` for the first
/// address notification of the list just subscribed; a `delay` of 0 or less waits for nothing). Here: not
/// before `asked_at + delay`; after that, while the application-level list is still `settling` (some
/// instance's first MetadataService answer outstanding, the agent's equivalent of Java's notification),
/// up to `max(delay, FIRST_FETCH_WAIT)` more. Pure: the watcher thread wakes at the instant returned,
/// nothing sleeps.
pub fn switch_timing(asked_at: Instant, delay_s: i32, settling: bool, now: Instant) -> SwitchTiming {
    let delay = Duration::from_secs(u64::try_from(delay_s).unwrap_or(0));
    let due = asked_at + delay;
    if now < due {
        return SwitchTiming::WaitUntil(due);
    }
    let settled_by = due + delay.max(FIRST_FETCH_WAIT);
    if settling && now < settled_by {
        return SwitchTiming::WaitUntil(settled_by);
    }
    SwitchTiming::Now
}

/// A step the migration rule asks for that is not in force for a service key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskedStep {
    /// The step asked for.
    pub step: MigrationStep,
    /// `false`: waiting for the rule's `delay` (or the first fetches); `true`: refused (no `force`, and
    /// its list did not pass the check); it stays refused until the rule changes.
    pub refused: bool,
}

/// The step in force for one service key, and the list it uses: what `/metrics` and `/registry` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInForce {
    /// The step in force.
    pub step: MigrationStep,
    /// The address model in use.
    pub source: Source,
    /// A different step the rule asks for, when there is one.
    pub asked: Option<AskedStep>,
}

/// The step in force per service key (a persistent map: cloned in O(1) with every snapshot). Empty for a
/// consumer without application-level discovery (every key on interface-level addresses then).
pub type MigrationStates = imbl::OrdMap<Arc<str>, StepInForce>;

/// The addresses a consumer at `step` uses, with `app_count` application-level and `iface_count`
/// interface-level addresses and `threshold` (see [`effective_threshold`]).
///
/// * `FORCE_INTERFACE` / `FORCE_APPLICATION`: that list, whatever it holds (`MigrationInvoker.invoke`
///   calls `currentAvailableInvoker`; at start the other invoker does not exist and the threshold check is
///   skipped: `migrateToForce*Invoker`, "invoker is absent, ignore threshold check").
/// * `APPLICATION_FIRST` (`calcPreferredInvoker` -> `DefaultMigrationAddressComparator.shouldMigrate(new =
///   application, old = interface)`, then `decideInvoker`): no application-level address -> interface; no
///   interface-level address -> application; else application iff `app / iface >= threshold` (as `float`).
pub fn which_addresses(step: MigrationStep, app_count: usize, iface_count: usize, threshold: f32) -> Choice {
    match step {
        MigrationStep::ForceInterface => Choice {
            source: Source::Interface,
            reason: "FORCE_INTERFACE",
        },
        MigrationStep::ForceApplication => Choice {
            source: Source::Application,
            reason: "FORCE_APPLICATION",
        },
        MigrationStep::ApplicationFirst => {
            if app_count == 0 {
                Choice {
                    source: Source::Interface,
                    reason: "APPLICATION_FIRST: no application-level address",
                }
            } else if iface_count == 0 {
                Choice {
                    source: Source::Application,
                    reason: "APPLICATION_FIRST: no interface-level address",
                }
            } else if should_migrate(app_count, iface_count, threshold) {
                Choice {
                    source: Source::Application,
                    reason: "APPLICATION_FIRST: application/interface address ratio >= threshold",
                }
            } else {
                Choice {
                    source: Source::Interface,
                    reason: "APPLICATION_FIRST: application/interface address ratio < threshold",
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_exactly() {
        for step in [
            MigrationStep::ForceInterface,
            MigrationStep::ApplicationFirst,
            MigrationStep::ForceApplication,
        ] {
            assert_eq!(step.as_str().parse::<MigrationStep>().unwrap(), step);
        }
        assert_eq!(MigrationStep::default(), MigrationStep::ApplicationFirst);
        for bad in ["application_first", "FORCE_APP", "", " FORCE_INTERFACE"] {
            assert!(bad.parse::<MigrationStep>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn application_first_follows_dubbos_comparator() {
        use MigrationStep::ApplicationFirst as AF;
        assert_eq!(which_addresses(AF, 0, 0, 0.0).source, Source::Interface);
        assert_eq!(which_addresses(AF, 0, 5, 0.0).source, Source::Interface);
        assert_eq!(which_addresses(AF, 3, 0, 5.0).source, Source::Application);
        // default threshold 0.0: any application-level address wins
        assert_eq!(which_addresses(AF, 1, 100, 0.0).source, Source::Application);
        assert_eq!(which_addresses(AF, 4, 5, 0.8).source, Source::Application);
        assert_eq!(which_addresses(AF, 3, 5, 0.8).source, Source::Interface);
        // a negative threshold is "not configured": the default 0.0
        assert_eq!(which_addresses(AF, 1, 100, -1.0).source, Source::Application);
        assert_eq!(which_addresses(AF, 1, 100, f32::NAN).source, Source::Application);
        assert_eq!(
            which_addresses(MigrationStep::ForceApplication, 0, 9, 0.0).source,
            Source::Application
        );
        assert_eq!(
            which_addresses(MigrationStep::ForceInterface, 9, 0, 0.0).source,
            Source::Interface
        );
        assert_eq!(effective_threshold(None), 0.0);
        assert_eq!(effective_threshold(Some(1.5)), 1.5);
    }

    #[test]
    fn a_forced_switch_ignores_the_check_an_unforced_one_follows_it() {
        // no address in the new list: refused unless forced
        assert!(!switch_allowed(false, 0, 5, 0.0));
        assert!(switch_allowed(true, 0, 5, 0.0));
        // no address in the old list: allowed
        assert!(switch_allowed(false, 3, 0, 9.0));
        // the threshold
        assert!(!switch_allowed(false, 3, 5, 0.8));
        assert!(switch_allowed(false, 4, 5, 0.8));
        assert!(switch_allowed(true, 3, 5, 0.8));
        // nothing anywhere: refused (Java: "No instance address available, stop compare")
        assert!(!switch_allowed(false, 0, 0, 0.0));
    }

    #[test]
    fn delay_is_a_schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // no delay, nothing settling: now
        assert_eq!(switch_timing(t0, 0, false, t0), SwitchTiming::Now);
        assert_eq!(switch_timing(t0, -3, false, t0), SwitchTiming::Now);
        // delay 10 s: not before
        assert_eq!(
            switch_timing(t0, 10, false, t0),
            SwitchTiming::WaitUntil(t0 + s(10))
        );
        assert_eq!(
            switch_timing(t0, 10, false, t0 + s(9)),
            SwitchTiming::WaitUntil(t0 + s(10))
        );
        assert_eq!(switch_timing(t0, 10, false, t0 + s(10)), SwitchTiming::Now);
        // first fetches outstanding: up to max(delay, FIRST_FETCH_WAIT) more
        assert_eq!(
            switch_timing(t0, 0, true, t0),
            SwitchTiming::WaitUntil(t0 + FIRST_FETCH_WAIT)
        );
        assert_eq!(
            switch_timing(t0, 0, true, t0 + FIRST_FETCH_WAIT),
            SwitchTiming::Now
        );
        assert_eq!(
            switch_timing(t0, 10, true, t0 + s(12)),
            SwitchTiming::WaitUntil(t0 + s(20))
        );
        assert_eq!(switch_timing(t0, 10, false, t0 + s(12)), SwitchTiming::Now);
    }

    proptest! {
        #[test]
        fn a_switch_is_never_decided_before_its_delay_and_always_by_its_bound(
            delay in -5i32..100, settling: bool, after_ms in 0u64..300_000,
        ) {
            let t0 = Instant::now();
            let now = t0 + Duration::from_millis(after_ms);
            let delay_d = Duration::from_secs(u64::try_from(delay).unwrap_or(0));
            match switch_timing(t0, delay, settling, now) {
                SwitchTiming::Now => prop_assert!(now >= t0 + delay_d),
                SwitchTiming::WaitUntil(at) => {
                    prop_assert!(at > now);
                    prop_assert!(at <= t0 + delay_d + delay_d.max(FIRST_FETCH_WAIT));
                }
            }
            let bound = t0 + delay_d + delay_d.max(FIRST_FETCH_WAIT);
            prop_assert_eq!(switch_timing(t0, delay, settling, bound), SwitchTiming::Now);
        }

        #[test]
        fn unforced_switches_follow_should_migrate(new in 0usize..50, old in 0usize..50, t in -1.0f32..3.0) {
            prop_assert_eq!(switch_allowed(false, new, old, t), should_migrate(new, old, t));
            prop_assert!(switch_allowed(true, new, old, t));
            if new == 0 { prop_assert!(!should_migrate(new, old, t)); }
        }

        #[test]
        fn application_first_never_picks_an_empty_list_over_a_full_one(app in 0usize..1000, iface in 0usize..1000, t in any::<f32>()) {
            let c = which_addresses(MigrationStep::ApplicationFirst, app, iface, t);
            if app == 0 { prop_assert_eq!(c.source, Source::Interface); }
            if app > 0 && iface == 0 { prop_assert_eq!(c.source, Source::Application); }
        }
    }
}
