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
//! `migrateToForceApplicationInvoker`, `migrateToForceInterfaceInvoker`).

use std::fmt;
use std::str::FromStr;

use super::app_error::{excerpt, AppDiscoveryError};

/// The default threshold (`DefaultMigrationAddressComparator.DEFAULT_THRESHOLD_STRING`, 3.3: `0.0`).
pub const DEFAULT_THRESHOLD: f32 = 0.0;

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
            } else if (app_count as f32) / (iface_count as f32) >= effective_threshold(Some(threshold)) {
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

    proptest! {
        #[test]
        fn application_first_never_picks_an_empty_list_over_a_full_one(app in 0usize..1000, iface in 0usize..1000, t in any::<f32>()) {
            let c = which_addresses(MigrationStep::ApplicationFirst, app, iface, t);
            if app == 0 { prop_assert_eq!(c.source, Source::Interface); }
            if app > 0 && iface == 0 { prop_assert_eq!(c.source, Source::Application); }
        }
    }
}
