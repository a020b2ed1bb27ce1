//! What the consumer's application-level discovery reads, and the consumer's own migration settings.

use std::collections::BTreeMap;

use mesh_balance::dubbo_rules::ConfigLayout;

use super::chosen::MigrationDefaults;
use crate::app_metadata::ResolverConfig;
use crate::dubbo::instance::INSTANCES_ROOT;
use crate::dubbo::mapping::{DEFAULT_MAPPING_ROOT, MAPPING_GROUP};
use crate::dubbo::migration::MigrationStep;
use crate::dubbo::migration_rule::{migration_config_key, MIGRATION_GROUP};
use crate::RegistryError;

/// The default services root (`/services`: Java's `EtcdServiceDiscovery.root`, dubbo-go's `ROOT`).
pub const DEFAULT_SERVICES_ROOT: &str = INSTANCES_ROOT;

/// Application-level discovery for a consumer (part of [`crate::EtcdConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AppDiscoveryConfig {
    /// Instances are `<services_root>/<application>/<host>:<port>` (default [`DEFAULT_SERVICES_ROOT`]).
    pub services_root: String,
    /// Mapping keys are `<mapping_root>/mapping/<interface>` (default `/dubbo`, dubbo-go's metadata report).
    pub mapping_root: String,
    /// Interface -> the applications that provide it (Dubbo's `provided-by`); wins over the mapping key.
    pub provided_by: BTreeMap<String, Vec<String>>,
    /// The consumer's step and threshold (a migration rule in the config center overrides them).
    pub migration: MigrationDefaults,
    /// The consumer's application: its migration rule is `<application>.migration` in group
    /// `DUBBO_SERVICEDISCOVERY_MIGRATION` of the config center (`/dubbo/config/`). `None`: no rule is read.
    pub application: Option<String>,
    /// The MetadataService calls' limits and retries.
    pub metadata: ResolverConfig,
}

// Thresholds are checked finite by `validate`, so equality is an equivalence.
impl Eq for AppDiscoveryConfig {}

impl Default for AppDiscoveryConfig {
    fn default() -> Self {
        AppDiscoveryConfig {
            services_root: DEFAULT_SERVICES_ROOT.to_owned(),
            mapping_root: DEFAULT_MAPPING_ROOT.to_owned(),
            provided_by: BTreeMap::new(),
            migration: MigrationDefaults::default(),
            application: None,
            metadata: ResolverConfig::default(),
        }
    }
}

impl AppDiscoveryConfig {
    /// Checks the roots, the application names and the threshold.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |m: String| Err(RegistryError::Config(m));
        for (what, root) in [
            ("services root", &self.services_root),
            ("mapping root", &self.mapping_root),
        ] {
            if !root.starts_with('/') || root.ends_with('/') || root.contains("//") {
                return bad(format!(
                    "{what} {root:?}: must start with '/', not end with '/', have no empty segment"
                ));
            }
        }
        for (interface, apps) in &self.provided_by {
            if interface.is_empty() || interface.contains('/') || interface.chars().any(char::is_whitespace) {
                return bad(format!("provided_by: bad interface {interface:?}"));
            }
            if apps.is_empty() {
                return bad(format!("provided_by.{interface}: no application"));
            }
            for app in apps {
                if let Err(e) = crate::dubbo::check_application(app) {
                    return bad(format!("provided_by.{interface}: {e}"));
                }
            }
        }
        if let Some(app) = &self.application {
            if let Err(e) = crate::dubbo::check_application(app) {
                return bad(format!("consumer application: {e}"));
            }
        }
        if self
            .migration
            .threshold
            .is_some_and(|t| !t.is_finite() || t < 0.0)
        {
            return bad("migration threshold: must be a number >= 0".into());
        }
        Ok(())
    }

    /// `<services_root>/`.
    pub(crate) fn services_prefix(&self) -> String {
        format!("{}/", self.services_root)
    }

    /// `<mapping_root>/mapping/`.
    pub(crate) fn mapping_prefix(&self) -> String {
        format!("{}/{MAPPING_GROUP}/", self.mapping_root)
    }

    /// The etcd key of the consumer's migration rule, when it has an application name.
    pub(crate) fn rule_key(&self) -> Option<String> {
        let layout = ConfigLayout {
            group: MIGRATION_GROUP.to_owned(),
            ..ConfigLayout::default()
        };
        self.application
            .as_deref()
            .map(|app| layout.etcd_key(&migration_config_key(app)))
    }

    /// Whether the consumer's own step may use application-level addresses.
    pub(crate) fn step_uses_applications(&self) -> bool {
        self.migration.step != MigrationStep::ForceInterface
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_validation() {
        let mut c = AppDiscoveryConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.services_prefix(), "/services/");
        assert_eq!(c.mapping_prefix(), "/dubbo/mapping/");
        assert_eq!(c.rule_key(), None);
        c.application = Some("shop-web".into());
        assert_eq!(
            c.rule_key().as_deref(),
            Some("/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/shop-web.migration")
        );
        assert!(c.step_uses_applications());
        for broken in [
            AppDiscoveryConfig {
                services_root: "services".into(),
                ..c.clone()
            },
            AppDiscoveryConfig {
                mapping_root: "/dubbo/".into(),
                ..c.clone()
            },
            AppDiscoveryConfig {
                provided_by: [("a.B".to_owned(), vec!["x,y".to_owned()])].into(),
                ..c.clone()
            },
            AppDiscoveryConfig {
                provided_by: [("a.B".to_owned(), vec![])].into(),
                ..c.clone()
            },
            AppDiscoveryConfig {
                migration: MigrationDefaults {
                    threshold: Some(f32::NAN),
                    ..MigrationDefaults::default()
                },
                ..c.clone()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }
}
