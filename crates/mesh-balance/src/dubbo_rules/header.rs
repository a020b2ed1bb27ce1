//! The fields every Dubbo router rule document carries, whatever its kind.
//!
//! Source: apache/dubbo 3.3 `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/AbstractRouterRule.java`
//! (`parseFromMap0`): `scope`, `key`, `configVersion` (strings), `enabled` (default true), `force` (default
//! false), `runtime` (default true), `priority` (default 0), `valid`, `dynamic`, `rawRule`. A rule marked
//! `valid: false` is not applied (Dubbo keeps the previous rule); `priority` and `runtime` are read but do not
//! order or change anything (the router's place in Dubbo's chain decides).

use super::yaml::Fields;
use super::DubboRuleError;

/// The keys [`RuleHeader::read`] reads (and `valid`, `dynamic`, `rawRule`, which Dubbo reads and which change
/// nothing here once `valid` is checked).
pub(crate) const HEADER_KEYS: &[&str] = &[
    "scope",
    "key",
    "enabled",
    "force",
    "runtime",
    "priority",
    "configVersion",
    "valid",
    "dynamic",
    "rawRule",
];

/// The common part of a condition or tag router rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHeader {
    /// `scope` as written (`application` or `service`; Dubbo does not check it: the config key decides).
    pub scope: Option<String>,
    /// `key` as written (informational, like in Dubbo).
    pub key: Option<String>,
    /// `configVersion` as written.
    pub config_version: Option<String>,
    /// `enabled` (default true): a disabled rule routes nothing away.
    pub enabled: bool,
    /// `force` (default false): a rule that leaves no provider leaves none instead of being ignored.
    pub force: bool,
    /// `runtime` (default true), read and unused as in Dubbo 3.
    pub runtime: bool,
    /// `priority` (default 0), read and unused as in Dubbo.
    pub priority: i32,
}

impl RuleHeader {
    /// Reads the header fields of a rule document; a rule marked `valid: false` is refused.
    pub(crate) fn read(f: &Fields<'_>) -> Result<RuleHeader, DubboRuleError> {
        if f.flag("valid")? == Some(false) {
            return Err(DubboRuleError::field(
                "valid",
                "a rule marked invalid is not applied (Dubbo keeps the previous rule)",
            ));
        }
        Ok(RuleHeader {
            scope: f.text("scope")?,
            key: f.text("key")?,
            config_version: f.text("configVersion")?,
            enabled: f.flag("enabled")?.unwrap_or(true),
            force: f.flag("force")?.unwrap_or(false),
            runtime: f.flag("runtime")?.unwrap_or(true),
            priority: f.int("priority")?.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse_mapping;
    use super::*;

    fn read(text: &str) -> Result<RuleHeader, DubboRuleError> {
        let map = parse_mapping(text).unwrap();
        RuleHeader::read(&Fields::document(&map, &[]))
    }

    #[test]
    fn defaults_are_dubbos() {
        let h = read("x: 1\n").unwrap();
        assert_eq!(
            h,
            RuleHeader {
                scope: None,
                key: None,
                config_version: None,
                enabled: true,
                force: false,
                runtime: true,
                priority: 0,
            }
        );
    }

    #[test]
    fn reads_every_field_and_refuses_an_invalid_rule() {
        let h = read(
            "scope: service\nkey: com.foo.Svc\nconfigVersion: v3.0\nenabled: false\nforce: \"TRUE\"\n\
             runtime: false\npriority: \"7\"\n",
        )
        .unwrap();
        assert_eq!(h.scope.as_deref(), Some("service"));
        assert_eq!(h.key.as_deref(), Some("com.foo.Svc"));
        assert_eq!(h.config_version.as_deref(), Some("v3.0"));
        assert!(!h.enabled && h.force && !h.runtime);
        assert_eq!(h.priority, 7);
        assert!(read("valid: false\n")
            .unwrap_err()
            .to_string()
            .contains("marked invalid"));
    }

    #[test]
    fn header_keys_are_not_reported_as_unknown() {
        let map = parse_mapping("scope: service\nrawRule: x\ndynamic: true\nother: 1\n").unwrap();
        let f = Fields::document(&map, &["conditions"]);
        assert_eq!(
            f.unknown(),
            vec!["`other` is not a Dubbo rule field here: ignored".to_owned()]
        );
    }
}
