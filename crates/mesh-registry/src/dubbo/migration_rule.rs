//! Dubbo 3's dynamic migration rule, pure: the YAML a config center holds under key `<application>.migration`,
//! group `DUBBO_SERVICEDISCOVERY_MIGRATION` (on etcd `/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/
//! <application>.migration`), and which step and threshold it gives one service key.
//!
//! Sources: apache/dubbo `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/client/
//! migration/model/MigrationRule.java` (`parse`: SnakeYAML into a map; `parseFromMap`: `step` through
//! `MigrationStep.valueOf(toString())`, `threshold` through `Float.valueOf(toString())`, `proportion` and
//! `delay` through `Integer.valueOf`, `force` through `Boolean.valueOf`; `interfaces` and `applications`
//! read only when they are lists; `getValue`: the interface entry whose `serviceKey` is the consumer URL's
//! `getDisplayServiceKey()` (`interface:version`, or `interface` without a version) first, then the entry of
//! each application the interface maps to, then the rule's own field) and `.../model/SubMigrationRule.java`
//! (the same fields plus `serviceKey`); `.../migration/MigrationRuleListener.java` (an empty value is "no
//! rule": the consumer's own step and threshold).
//!
//! Differences, on purpose: a field with the wrong type (a step that is no `MigrationStep` name, a threshold
//! that is no number) refuses the whole rule, as Java's `valueOf` throws out of `parse` (the caller keeps
//! the rule in force before, and logs why). `force` and `delay` are acted on by the consumer
//! (`app_discovery/chosen/`, `migration::switch_allowed`, `migration::switch_timing`), and so is
//! `proportion` (a per-call split, `app_discovery/chosen/` and `Snapshot::split`; see `docs/dubbo3-discovery.md`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::app_error::{excerpt, AppDiscoveryError};
use super::migration::MigrationStep;

/// The config-center group of migration rules (`MigrationRuleHandler.DUBBO_SERVICEDISCOVERY_MIGRATION`).
pub const MIGRATION_GROUP: &str = "DUBBO_SERVICEDISCOVERY_MIGRATION";

/// The config key's suffix after the consumer's application name (`MigrationRuleListener`: `appName +
/// ".migration"`).
pub const MIGRATION_KEY_SUFFIX: &str = ".migration";

/// The longest rule text read (bytes).
pub const MAX_MIGRATION_RULE_BYTES: usize = 1 << 20;

/// The most `interfaces` plus `applications` entries one rule may have.
pub const MAX_SUB_RULES: usize = 10_000;

/// The fields a rule and each of its entries share (`MigrationRule` / `SubMigrationRule`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MigrationSettings {
    /// `step`.
    pub step: Option<MigrationStep>,
    /// `threshold` (application-level / interface-level address count that APPLICATION_FIRST needs).
    pub threshold: Option<f32>,
    /// `proportion`: under APPLICATION_FIRST, the percentage of calls on the preferred addresses, the
    /// rest on interface-level (the consumer shard draws the list per call: `Snapshot::split`).
    pub proportion: Option<i32>,
    /// `delay`: seconds before a switch to a `FORCE_*` step is checked.
    pub delay: Option<i32>,
    /// `force`: a switch to a `FORCE_*` step skips the address check.
    pub force: Option<bool>,
}

/// A parsed migration rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MigrationRule {
    /// `key` (the consumer application, informative).
    pub key: Option<String>,
    /// The rule's own fields.
    pub settings: MigrationSettings,
    /// `interfaces`: by `serviceKey` (`interface:version`); a later entry with the same key wins, as Java's
    /// `HashMap.put` does.
    pub interfaces: HashMap<String, MigrationSettings>,
    /// `applications`: by `serviceKey` (an application name).
    pub applications: HashMap<String, MigrationSettings>,
}

impl MigrationRule {
    /// Parses a rule value. Empty (or white space only) text is `Ok(None)`: no rule, as Java's listener
    /// treats it.
    pub fn parse(text: &str) -> Result<Option<MigrationRule>, AppDiscoveryError> {
        if text.len() > MAX_MIGRATION_RULE_BYTES {
            return Err(AppDiscoveryError::TooLong {
                what: "migration rule",
                len: text.len(),
                max: MAX_MIGRATION_RULE_BYTES,
            });
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_depth: 16,
                max_nodes: 100_000,
                max_aliases: 1_000,
                max_anchors: 1_000,
                max_documents: 1,
            },
            duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
            with_snippet: false,
        };
        let value: Value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| bad(e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")))?;
        let map = match value {
            Value::Null => return Ok(None),
            Value::Object(map) => map,
            _ => return Err(bad("not a YAML mapping".into())),
        };
        let mut rule = MigrationRule {
            key: text_field(&map, "key"),
            settings: settings(&map, "")?,
            ..MigrationRule::default()
        };
        let mut entries = 0usize;
        for (list, into) in [
            ("interfaces", &mut rule.interfaces),
            ("applications", &mut rule.applications),
        ] {
            let Some(Value::Array(items)) = map.get(list) else {
                continue; // Java reads the entries only from a list
            };
            for (i, item) in items.iter().enumerate() {
                entries += 1;
                if entries > MAX_SUB_RULES {
                    return Err(AppDiscoveryError::TooLong {
                        what: "migration rule entries",
                        len: entries,
                        max: MAX_SUB_RULES,
                    });
                }
                let Value::Object(entry) = item else {
                    return Err(bad(format!("{list}[{i}] is not a mapping")));
                };
                let at = format!("{list}[{i}].");
                let Some(service_key) = text_field(entry, "serviceKey") else {
                    // Java keys it under null: no service key or application ever finds it.
                    continue;
                };
                into.insert(service_key, settings(entry, &at)?);
            }
        }
        Ok(Some(rule))
    }

    /// The step for a service key (see [`display_service_key`]) whose interface maps to `applications`:
    /// its interface entry's, else the first application entry's that has one, else the rule's; `None`:
    /// the consumer's own.
    pub fn step_for(&self, display_key: &str, applications: &[String]) -> Option<MigrationStep> {
        self.value_for(display_key, applications, |s| s.step)
    }

    /// The threshold, looked up like [`MigrationRule::step_for`]; `None`: the consumer's own.
    pub fn threshold_for(&self, display_key: &str, applications: &[String]) -> Option<f32> {
        self.value_for(display_key, applications, |s| s.threshold)
    }

    /// `force`, looked up like [`MigrationRule::step_for`]; Java's default (`migration.force`) is `false`.
    pub fn force_for(&self, display_key: &str, applications: &[String]) -> bool {
        self.value_for(display_key, applications, |s| s.force)
            .unwrap_or(false)
    }

    /// `delay` in seconds, looked up like [`MigrationRule::step_for`]; Java's default (`migration.delay`)
    /// is 0.
    pub fn delay_for(&self, display_key: &str, applications: &[String]) -> i32 {
        self.value_for(display_key, applications, |s| s.delay)
            .unwrap_or(0)
    }

    /// `proportion`, looked up like [`MigrationRule::step_for`]; Java's default (`migration.promotion`)
    /// is [`crate::dubbo::migration::DEFAULT_PROPORTION`].
    pub fn proportion_for(&self, display_key: &str, applications: &[String]) -> i32 {
        self.value_for(display_key, applications, |s| s.proportion)
            .unwrap_or(crate::dubbo::migration::DEFAULT_PROPORTION)
    }

    /// Whether some part of the rule names a step other than FORCE_INTERFACE (application-level addresses
    /// may be used).
    pub fn may_use_applications(&self) -> bool {
        std::iter::once(&self.settings)
            .chain(self.interfaces.values())
            .chain(self.applications.values())
            .any(|s| s.step.is_some_and(|s| s != MigrationStep::ForceInterface))
    }

    fn value_for<T>(
        &self,
        display_key: &str,
        applications: &[String],
        field: impl Fn(&MigrationSettings) -> Option<T>,
    ) -> Option<T> {
        self.interfaces
            .get(display_key)
            .and_then(&field)
            .or_else(|| {
                applications
                    .iter()
                    .find_map(|app| self.applications.get(app).and_then(&field))
            })
            .or_else(|| field(&self.settings))
    }
}

/// The config key of a consumer application's rule (`<application>.migration`).
pub fn migration_config_key(application: &str) -> String {
    format!("{application}{MIGRATION_KEY_SUFFIX}")
}

/// Java's `URL.getDisplayServiceKey()` of a service key `group/interface:version`: `interface:version`,
/// or `interface` when there is no version (the group is not part of it).
pub fn display_service_key(service_key: &str) -> &str {
    let without_group = service_key.split_once('/').map_or(service_key, |(_, rest)| rest);
    match without_group.split_once(':') {
        Some((interface, "")) => interface,
        _ => without_group,
    }
}

fn bad(reason: String) -> AppDiscoveryError {
    AppDiscoveryError::BadMigrationRule { reason }
}

/// A field read as Java's `toString()` of what SnakeYAML gave (text, a number or a boolean).
fn text_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn settings(map: &Map<String, Value>, at: &str) -> Result<MigrationSettings, AppDiscoveryError> {
    let step = match text_field(map, "step") {
        None => None,
        Some(s) => Some(
            s.parse::<MigrationStep>()
                .map_err(|_| bad(format!("{at}step {:?} is no MigrationStep name", excerpt(&s))))?,
        ),
    };
    let threshold = match text_field(map, "threshold") {
        None => None,
        Some(t) => Some(
            t.trim()
                .parse::<f32>()
                .ok()
                .filter(|t| !t.is_nan())
                .ok_or_else(|| bad(format!("{at}threshold {:?} is no number", excerpt(&t))))?,
        ),
    };
    let int = |key: &str| -> Result<Option<i32>, AppDiscoveryError> {
        match text_field(map, key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i32>()
                .map(Some)
                .map_err(|_| bad(format!("{at}{key} {:?} is no integer", excerpt(&v)))),
        }
    };
    Ok(MigrationSettings {
        step,
        threshold,
        proportion: int("proportion")?,
        delay: int("delay")?,
        // Java `Boolean.valueOf`: "true" in any case is true, anything else false.
        force: text_field(map, "force").map(|f| f.eq_ignore_ascii_case("true")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use MigrationStep::{ApplicationFirst, ForceApplication, ForceInterface};

    /// The example in `MigrationRule.java`'s class comment.
    const JAVA_EXAMPLE: &str = "key: demo-consumer
step: APPLICATION_FIRST
threshold: 1.0
proportion: 60
delay: 60
force: false
interfaces:
  - serviceKey: DemoService:1.0.0
    threshold: 0.5
    proportion: 30
    delay: 30
    force: true
    step: APPLICATION_FIRST
  - serviceKey: GreetingService:1.0.0
    step: FORCE_APPLICATION
applications:
 - serviceKey: TestApplication
   threshold: 0.3
   proportion: 20
   delay: 10
   force: false
   step: FORCE_INTERFACE
";

    #[test]
    fn javas_example_reads_and_resolves_per_service() {
        let rule = MigrationRule::parse(JAVA_EXAMPLE).unwrap().unwrap();
        assert_eq!(rule.key.as_deref(), Some("demo-consumer"));
        assert_eq!(rule.settings.step, Some(ApplicationFirst));
        assert_eq!(rule.settings.threshold, Some(1.0));
        assert_eq!(
            (rule.settings.proportion, rule.settings.delay, rule.settings.force),
            (Some(60), Some(60), Some(false))
        );
        assert_eq!(rule.interfaces.len(), 2);
        let none: [String; 0] = [];
        let test_app = ["TestApplication".to_owned()];
        // interface entry first
        assert_eq!(
            rule.step_for("GreetingService:1.0.0", &test_app),
            Some(ForceApplication)
        );
        assert_eq!(rule.threshold_for("DemoService:1.0.0", &test_app), Some(0.5));
        // no interface entry: the application's, then the rule's
        assert_eq!(rule.step_for("Other:1.0.0", &test_app), Some(ForceInterface));
        assert_eq!(rule.threshold_for("Other:1.0.0", &test_app), Some(0.3));
        assert_eq!(rule.step_for("Other:1.0.0", &none), Some(ApplicationFirst));
        // an interface entry without a threshold falls through to the application's
        assert_eq!(rule.threshold_for("GreetingService:1.0.0", &test_app), Some(0.3));
        assert!(rule.may_use_applications());
        // force, delay and proportion resolve the same way, with Java's defaults at the end
        assert!(rule.force_for("DemoService:1.0.0", &test_app));
        assert!(
            !rule.force_for("GreetingService:1.0.0", &test_app),
            "the application's false"
        );
        assert_eq!(rule.delay_for("DemoService:1.0.0", &none), 30);
        assert_eq!(rule.delay_for("GreetingService:1.0.0", &test_app), 10);
        assert_eq!(rule.delay_for("GreetingService:1.0.0", &none), 60);
        assert_eq!(rule.proportion_for("DemoService:1.0.0", &test_app), 30);
        assert_eq!(rule.proportion_for("Other:1.0.0", &none), 60);
        let bare = MigrationRule::parse("step: FORCE_APPLICATION\n")
            .unwrap()
            .unwrap();
        assert!(!bare.force_for("a.B", &none));
        assert_eq!(bare.delay_for("a.B", &none), 0);
        assert_eq!(bare.proportion_for("a.B", &none), 100);
    }

    #[test]
    fn empty_and_partial_rules() {
        assert_eq!(MigrationRule::parse("").unwrap(), None);
        assert_eq!(MigrationRule::parse("  \n").unwrap(), None);
        assert_eq!(MigrationRule::parse("~").unwrap(), None);
        let rule = MigrationRule::parse("step: FORCE_INTERFACE\n").unwrap().unwrap();
        assert_eq!(rule.step_for("a.B", &[]), Some(ForceInterface));
        assert_eq!(rule.threshold_for("a.B", &[]), None);
        assert!(!rule.may_use_applications());
        // numbers and text are both read as Java's toString() would
        let rule = MigrationRule::parse("threshold: '0.8'\nproportion: \"5\"\nforce: TRUE\n")
            .unwrap()
            .unwrap();
        assert_eq!(rule.settings.threshold, Some(0.8));
        assert_eq!(rule.settings.proportion, Some(5));
        assert_eq!(rule.settings.force, Some(true));
        assert_eq!(
            MigrationRule::parse("threshold: 2\n")
                .unwrap()
                .unwrap()
                .settings
                .threshold,
            Some(2.0)
        );
        // interfaces that are not a list are ignored (Java checks List.class)
        let rule = MigrationRule::parse("interfaces: {a: b}\nstep: FORCE_APPLICATION\n")
            .unwrap()
            .unwrap();
        assert!(rule.interfaces.is_empty());
        // an entry without serviceKey applies to nothing
        let rule = MigrationRule::parse("interfaces:\n  - step: FORCE_APPLICATION\n")
            .unwrap()
            .unwrap();
        assert!(rule.interfaces.is_empty());
        // the same serviceKey twice: the later one
        let rule = MigrationRule::parse(
            "interfaces:\n  - {serviceKey: 'a.B', step: FORCE_INTERFACE}\n  - {serviceKey: 'a.B', step: FORCE_APPLICATION}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(rule.step_for("a.B", &[]), Some(ForceApplication));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (text, needle) in [
            ("step: application_first\n", "step"),
            ("threshold: lots\n", "threshold"),
            ("delay: 1.5\n", "delay"),
            (
                "interfaces:\n  - serviceKey: a.B\n    step: NOPE\n",
                "interfaces[0].step",
            ),
            ("interfaces: [1]\n", "interfaces[0]"),
            ("- a\n- b\n", "mapping"),
            ("step: [\n", ""),
        ] {
            let err = MigrationRule::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let big = "#".repeat(MAX_MIGRATION_RULE_BYTES + 1);
        assert!(MigrationRule::parse(&big).is_err());
    }

    #[test]
    fn display_keys_follow_java() {
        assert_eq!(display_service_key("g/a.B:1.0.0"), "a.B:1.0.0");
        assert_eq!(display_service_key("a.B:1.0.0"), "a.B:1.0.0");
        assert_eq!(display_service_key("a.B"), "a.B");
        assert_eq!(display_service_key("g/a.B"), "a.B");
        assert_eq!(display_service_key("g/a.B:"), "a.B");
        assert_eq!(migration_config_key("shop"), "shop.migration");
    }

    proptest! {
        #[test]
        fn arbitrary_text_does_not_panic(text in "\\PC{0,200}") {
            let _ = MigrationRule::parse(&text);
        }
    }
}
