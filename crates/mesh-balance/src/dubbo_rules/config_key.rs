//! Where Dubbo's etcd config center keeps routing rules, and which rule a key holds.
//!
//! Layout (apache/dubbo-spi-extensions
//! `dubbo-configcenter-extensions/dubbo-configcenter-etcd/src/main/java/org/apache/dubbo/configcenter/support/etcd/EtcdDynamicConfiguration.java`,
//! the same in apache/dubbo 2.7.x `dubbo-configcenter/dubbo-configcenter-etcd/...`): root
//! `"/" + <config center namespace, default "dubbo"> + "/config"`, then `/<group>/<key>`, the key as is (not
//! URL-encoded); one etcd key per rule, its value the rule text. Routers always read group `dubbo`
//! (`GovernanceRuleRepository.DEFAULT_GROUP`, apache/dubbo 3.3 `dubbo-common/.../configcenter/`), so
//! the rules are at `/dubbo/config/dubbo/<key>`.
//!
//! Rule keys (apache/dubbo 3.3 `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/`):
//! - `<application>.condition-router` (`condition/config/ListenableStateRouter.RULE_SUFFIX`): read by
//!   `AppStateRouter` with the CONSUMER's application (`url.getApplication()` of the consumer URL) and, since
//!   Dubbo 3.2, by `ProviderAppStateRouter` with the PROVIDERS' application (`getRemoteApplication()` of the
//!   first provider URL, skipped when it is the consumer's own application);
//! - `<interface>:<version>:<group>.condition-router`: read by `ServiceStateRouter` with
//!   `DynamicConfiguration.getRuleKey(url)` = `URL.getColonSeparatedKey()` of the consumer URL: the interface,
//!   then `:version` and `:group`, a blank part written as nothing (`com.foo.Svc::`, `com.foo.Svc:1.0.0:`,
//!   `com.foo.Svc::g`) (`dubbo-common/src/main/java/org/apache/dubbo/common/URL.java`, `append`);
//! - `<application>.tag-router` (`tag/TagStateRouter.RULE_SUFFIX`): read with the PROVIDERS' application
//!   (`getRemoteApplication()` of the first provider URL: its `application` parameter).
//!
//! dubbo-go reads the same keys (apache/dubbo-go `common/constant/key.go` suffixes,
//! `cluster/router/condition/dynamic_router.go`: `url.ColonSeparatedKey()` and the application).
//!
//! Other keys of the group (`*.configurators`, `*.script-router`, `dubbo.properties`, ...) are not routing
//! rules of this model and are left alone.

use super::DubboRuleError;

/// Largest rule value read (etcd's default request limit is 1.5 MiB; a rule is a few hundred bytes).
pub const MAX_RULE_BYTES: usize = 1 << 20;

/// Suffix of condition router keys.
pub const CONDITION_ROUTER_SUFFIX: &str = ".condition-router";
/// Suffix of tag router keys.
pub const TAG_ROUTER_SUFFIX: &str = ".tag-router";

/// Where the config center's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLayout {
    /// The config center's namespace (Dubbo's `config-center.namespace`, default `dubbo`).
    pub namespace: String,
    /// The group routers read (`dubbo`).
    pub group: String,
}

impl Default for ConfigLayout {
    fn default() -> Self {
        ConfigLayout {
            namespace: "dubbo".into(),
            group: "dubbo".into(),
        }
    }
}

impl ConfigLayout {
    /// The config root, `/dubbo/config`.
    pub fn root(&self) -> String {
        format!("/{}/config", self.namespace)
    }

    /// The prefix to watch: `/dubbo/config/dubbo/`.
    pub fn rules_prefix(&self) -> String {
        format!("{}/{}/", self.root(), self.group)
    }

    /// The etcd key of config key `key`: `/dubbo/config/dubbo/<key>`.
    pub fn etcd_key(&self, key: &str) -> String {
        format!("{}{key}", self.rules_prefix())
    }

    /// The config key of an etcd key under [`ConfigLayout::rules_prefix`] (`None` for other keys and for
    /// deeper paths, which are no config key of this group).
    pub fn config_key<'k>(&self, etcd_key: &'k str) -> Option<&'k str> {
        let prefix = self.rules_prefix();
        etcd_key
            .strip_prefix(prefix.as_str())
            .filter(|k| !k.is_empty() && !k.contains('/'))
    }
}

/// The rule a config key holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKey {
    /// `<application>.condition-router`.
    ConditionApp(String),
    /// `<interface>:<version>:<group>.condition-router`.
    ConditionService(ServiceRuleKey),
    /// `<application>.tag-router`.
    TagApp(String),
    /// Anything else.
    Other,
}

/// The service part of a service condition router key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRuleKey {
    /// Interface.
    pub interface: String,
    /// Version, empty when none.
    pub version: String,
    /// Group, empty when none.
    pub group: String,
}

impl ServiceRuleKey {
    /// Dubbo's `getColonSeparatedKey`: `interface:version:group` with blank parts as nothing.
    pub fn colon_key(interface: &str, version: &str, group: &str) -> String {
        format!("{interface}:{}:{}", version.trim(), group.trim())
    }
}

impl std::fmt::Display for ServiceRuleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.interface, self.version, self.group)
    }
}

impl RuleKey {
    /// Which rule config key `key` holds.
    ///
    /// A name with a `:` is a service key and needs both colons (Dubbo never reads `com.foo.Svc:1.0`: it
    /// asks for `com.foo.Svc:1.0:`); a group may itself contain `:`. An empty name is no rule.
    pub fn classify(key: &str) -> RuleKey {
        if let Some(name) = key.strip_suffix(CONDITION_ROUTER_SUFFIX) {
            if name.is_empty() {
                return RuleKey::Other;
            }
            if !name.contains(':') {
                return RuleKey::ConditionApp(name.to_owned());
            }
            let mut parts = name.splitn(3, ':');
            return match (parts.next(), parts.next(), parts.next()) {
                (Some(interface), Some(version), Some(group)) if !interface.is_empty() => {
                    RuleKey::ConditionService(ServiceRuleKey {
                        interface: interface.to_owned(),
                        version: version.to_owned(),
                        group: group.to_owned(),
                    })
                }
                _ => RuleKey::Other,
            };
        }
        match key.strip_suffix(TAG_ROUTER_SUFFIX) {
            Some(app) if !app.is_empty() && !app.contains(':') => RuleKey::TagApp(app.to_owned()),
            _ => RuleKey::Other,
        }
    }
}

/// A rule value as text: at most [`MAX_RULE_BYTES`], UTF-8.
pub fn rule_text(value: &[u8]) -> Result<&str, DubboRuleError> {
    if value.len() > MAX_RULE_BYTES {
        return Err(DubboRuleError::TooLarge { len: value.len() });
    }
    std::str::from_utf8(value).map_err(|_| DubboRuleError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_dubbo() {
        let l = ConfigLayout::default();
        assert_eq!(l.root(), "/dubbo/config");
        assert_eq!(
            l.etcd_key("shop.tag-router"),
            "/dubbo/config/dubbo/shop.tag-router"
        );
        assert_eq!(
            l.config_key("/dubbo/config/dubbo/shop.tag-router"),
            Some("shop.tag-router")
        );
        assert_eq!(l.config_key("/dubbo/config/mapping/com.foo.Svc"), None);
        assert_eq!(l.config_key("/dubbo/config/dubbo/a/b"), None);
        assert_eq!(l.config_key("/dubbo/config/dubbo/"), None);
        let other = ConfigLayout {
            namespace: "prod".into(),
            ..Default::default()
        };
        assert_eq!(other.rules_prefix(), "/prod/config/dubbo/");
    }

    #[test]
    fn classifies_keys() {
        assert_eq!(
            RuleKey::classify("shop-web.condition-router"),
            RuleKey::ConditionApp("shop-web".into())
        );
        assert_eq!(
            RuleKey::classify("shop.tag-router"),
            RuleKey::TagApp("shop".into())
        );
        let svc = |i: &str, v: &str, g: &str| {
            RuleKey::ConditionService(ServiceRuleKey {
                interface: i.into(),
                version: v.into(),
                group: g.into(),
            })
        };
        assert_eq!(
            RuleKey::classify("com.foo.Svc::.condition-router"),
            svc("com.foo.Svc", "", "")
        );
        assert_eq!(
            RuleKey::classify("com.foo.Svc:1.0.0:g1.condition-router"),
            svc("com.foo.Svc", "1.0.0", "g1")
        );
        assert_eq!(
            RuleKey::classify("com.foo.Svc::a:b.condition-router"),
            svc("com.foo.Svc", "", "a:b")
        );
        for other in [
            "com.foo.Svc:1.0.condition-router",
            ":1:.condition-router",
            ".condition-router",
            ".tag-router",
            "shop.configurators",
            "com.foo.Svc::.configurators",
            "dubbo.properties",
            "shop.script-router",
        ] {
            assert_eq!(RuleKey::classify(other), RuleKey::Other, "{other}");
        }
        assert_eq!(ServiceRuleKey::colon_key("com.foo.Svc", "", ""), "com.foo.Svc::");
        assert_eq!(
            ServiceRuleKey::colon_key("com.foo.Svc", "1.0", " "),
            "com.foo.Svc:1.0:"
        );
        assert_eq!(
            ServiceRuleKey::colon_key("com.foo.Svc", "", "g"),
            "com.foo.Svc::g"
        );
    }

    #[test]
    fn values_are_bounded_utf8() {
        assert_eq!(rule_text(b"force: true").unwrap(), "force: true");
        assert_eq!(rule_text(&[0xff, 0xfe]), Err(DubboRuleError::NotUtf8));
        let big = vec![b'a'; MAX_RULE_BYTES + 1];
        assert_eq!(
            rule_text(&big),
            Err(DubboRuleError::TooLarge {
                len: MAX_RULE_BYTES + 1
            })
        );
        assert!(rule_text(&big[..MAX_RULE_BYTES]).is_ok());
    }
}
