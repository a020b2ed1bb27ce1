//! Dubbo's router chain for one service as one consumer application sees it: the config-center rules that
//! apply, combined into one [`RuleSet`] for [`crate::RouteTable::build`].
//!
//! Order (apache/dubbo 3.3: state router factories run in ascending `@Activate(order)`, `RouterChain.
//! buildSingleChain` -> `getActivateExtension`; 2.7.x sorts routers by the same numbers as priorities):
//! 1. tag router, order 100 (`router/tag/TagStateRouterFactory.java`): `<providerApp>.tag-router`;
//! 2. service condition router, 140 (`router/condition/config/ServiceStateRouterFactory.java`):
//!    `<interface>:<version>:<group>.condition-router`;
//! 3. provider-application condition router, 145 (`ProviderAppStateRouterFactory.java`, Dubbo >= 3.2):
//!    `<providerApp>.condition-router`, only when the providers' application is not the consumer's;
//! 4. consumer-application condition router, 150 (`AppStateRouterFactory.java`): `<consumerApp>.condition-router`.
//!
//! Each router works on the previous one's result; within a rule the conditions run in document order (see
//! [`super::ConditionRouterRule`]). The route table runs the tag rule first and then the conditions in
//! ascending priority, so the conditions carry their router's order number as their priority.
//!
//! The providers' application: Java reads it from the first provider URL it was given; here it is the
//! application most of the service's providers name (ties: the first name in byte order), so the choice does
//! not depend on the order providers were listed in.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConditionRouterRule, ServiceRuleKey, TagRouterRule};
use crate::ruleset::{RuleError, RuleSet};

/// Dubbo's order number of the service condition router.
pub const SERVICE_ROUTER_ORDER: i32 = 140;
/// Dubbo's order number of the provider-application condition router.
pub const PROVIDER_APP_ROUTER_ORDER: i32 = 145;
/// Dubbo's order number of the consumer-application condition router.
pub const APP_ROUTER_ORDER: i32 = 150;

/// What the chain is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainQuery<'a> {
    /// The service's interface.
    pub interface: &'a str,
    /// The version the consumer asks for (empty: none).
    pub version: &'a str,
    /// The group the consumer asks for (empty: none).
    pub group: &'a str,
    /// The consumer's application, if configured.
    pub consumer_app: Option<&'a str>,
    /// The providers' application (see [`provider_application`]).
    pub provider_app: Option<&'a str>,
}

impl<'a> ChainQuery<'a> {
    /// A query for Dubbo service key `group/interface:version` (group and version optional).
    pub fn for_service_key(service_key: &'a str) -> Self {
        let (group, rest) = match service_key.split_once('/') {
            Some((g, r)) => (g, r),
            None => ("", service_key),
        };
        let (interface, version) = rest.split_once(':').unwrap_or((rest, ""));
        ChainQuery {
            interface,
            version,
            group,
            ..Default::default()
        }
    }
}

/// The routing rules read from the config center, by what they apply to. Immutable; a [`super::RuleStore`]
/// makes a new one on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleIndex {
    pub(crate) epoch: u64,
    pub(crate) app_conditions: BTreeMap<String, Arc<ConditionRouterRule>>,
    pub(crate) service_conditions: BTreeMap<String, Arc<ConditionRouterRule>>,
    pub(crate) tags: BTreeMap<String, Arc<TagRouterRule>>,
}

impl RuleIndex {
    /// Grows by one with every change of the rules (0: none read yet).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// True when no rule is held.
    pub fn is_empty(&self) -> bool {
        self.app_conditions.is_empty() && self.service_conditions.is_empty() && self.tags.is_empty()
    }

    /// True when some rule is keyed by an application (a tag rule, or an application condition rule): only
    /// then does [`ChainQuery::provider_app`] matter.
    pub fn keys_applications(&self) -> bool {
        !self.tags.is_empty() || !self.app_conditions.is_empty()
    }

    /// The rule at `<application>.condition-router`.
    pub fn app_condition(&self, app: &str) -> Option<&ConditionRouterRule> {
        self.app_conditions.get(app).map(|r| &**r)
    }

    /// The rule at `<interface>:<version>:<group>.condition-router`.
    pub fn service_condition(
        &self,
        interface: &str,
        version: &str,
        group: &str,
    ) -> Option<&ConditionRouterRule> {
        self.service_conditions
            .get(&ServiceRuleKey::colon_key(interface, version, group))
            .map(|r| &**r)
    }

    /// The rule at `<application>.tag-router`.
    pub fn tag(&self, app: &str) -> Option<&TagRouterRule> {
        self.tags.get(app).map(|r| &**r)
    }

    /// Dubbo's chain for `q` as one rule set; `None` when no config-center rule applies (the caller may
    /// then use a rule document of its own). Fails only when the rules together have more than
    /// [`crate::MAX_CONDITION_RULES`] enabled conditions.
    pub fn rule_set_for(&self, q: &ChainQuery<'_>) -> Option<Result<RuleSet, RuleError>> {
        let consumer_app = q.consumer_app.filter(|a| !a.is_empty());
        let provider_app = q.provider_app.filter(|a| !a.is_empty());
        let tag = provider_app.and_then(|a| self.tag(a));
        let mut routers: Vec<(&ConditionRouterRule, i32)> = Vec::new();
        if let Some(r) = self.service_condition(q.interface, q.version, q.group) {
            routers.push((r, SERVICE_ROUTER_ORDER));
        }
        if let Some(r) = provider_app
            .filter(|p| Some(*p) != consumer_app)
            .and_then(|a| self.app_condition(a))
        {
            routers.push((r, PROVIDER_APP_ROUTER_ORDER));
        }
        if let Some(r) = consumer_app.and_then(|a| self.app_condition(a)) {
            routers.push((r, APP_ROUTER_ORDER));
        }
        if tag.is_none() && routers.is_empty() {
            return None;
        }
        let conditions = routers.iter().flat_map(|(r, order)| r.compiled(*order)).collect();
        Some(RuleSet::new(tag.and_then(|t| t.tag_rule()).cloned(), conditions))
    }
}

/// The application most providers name (ties: the first in byte order); `None` when none names one.
pub fn provider_application<'a>(apps: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in apps.into_iter().filter(|a| !a.is_empty()) {
        *counts.entry(a).or_default() += 1;
    }
    let mut best: Option<(&str, usize)> = None;
    for (a, n) in counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((a, n));
        }
    }
    best.map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(yaml: &str) -> Arc<ConditionRouterRule> {
        Arc::new(ConditionRouterRule::parse(yaml).unwrap())
    }

    fn index() -> RuleIndex {
        let mut i = RuleIndex::default();
        i.service_conditions.insert(
            "com.foo.Svc::".into(),
            cond("force: true\nconditions: ['=> host = 10.0.0.1', 'method = a => host = 10.0.0.2']\n"),
        );
        i.service_conditions.insert(
            "com.foo.Svc:2.0:g".into(),
            cond("conditions: ['=> host = 10.0.0.9']\n"),
        );
        i.app_conditions
            .insert("web".into(), cond("conditions: ['=> port = 1']\n"));
        i.app_conditions
            .insert("shop".into(), cond("conditions: ['=> port = 2']\n"));
        i.app_conditions.insert(
            "off".into(),
            cond("enabled: false\nconditions: ['=> port = 3']\n"),
        );
        i.tags.insert(
            "shop".into(),
            Arc::new(
                TagRouterRule::parse("force: true\ntags: [{name: gray, addresses: [10.0.0.5]}]\n").unwrap(),
            ),
        );
        i
    }

    fn texts(rs: &RuleSet) -> Vec<(String, i32, bool)> {
        rs.conditions
            .iter()
            .map(|c| (c.rule.to_string(), c.priority, c.force))
            .collect()
    }

    #[test]
    fn combines_in_dubbos_chain_order() {
        let i = index();
        let q = ChainQuery {
            consumer_app: Some("web"),
            provider_app: Some("shop"),
            ..ChainQuery::for_service_key("com.foo.Svc")
        };
        let rs = i.rule_set_for(&q).unwrap().unwrap();
        assert!(rs.tag.as_ref().unwrap().force, "the providers' tag rule");
        assert_eq!(
            texts(&rs),
            [
                ("=> host = 10.0.0.1".to_owned(), 140, true),
                ("method = a => host = 10.0.0.2".to_owned(), 140, true),
                ("=> port = 2".to_owned(), 145, false),
                ("=> port = 1".to_owned(), 150, false),
            ]
        );
        // the providers' app rule is not applied twice when it is the consumer's own
        let same = ChainQuery {
            consumer_app: Some("shop"),
            ..q
        };
        let rs = i.rule_set_for(&same).unwrap().unwrap();
        assert_eq!(texts(&rs).len(), 3);
        assert_eq!(texts(&rs)[2].1, 150);
        // version and group select the service rule; a disabled rule adds nothing
        let q = ChainQuery {
            consumer_app: Some("off"),
            ..ChainQuery::for_service_key("g/com.foo.Svc:2.0")
        };
        assert_eq!(
            texts(&i.rule_set_for(&q).unwrap().unwrap()),
            [("=> host = 10.0.0.9".to_owned(), 140, false)]
        );
        // nothing applies: None (the caller's own document may apply)
        let q = ChainQuery {
            consumer_app: Some("nobody"),
            provider_app: Some("other"),
            ..ChainQuery::for_service_key("com.bar.Svc")
        };
        assert_eq!(i.rule_set_for(&q), None);
        assert_eq!(
            i.rule_set_for(&ChainQuery {
                provider_app: Some(""),
                ..q
            }),
            None
        );
        assert!(i.keys_applications());
        let services_only = RuleIndex {
            service_conditions: i.service_conditions.clone(),
            ..RuleIndex::default()
        };
        assert!(!services_only.keys_applications() && !services_only.is_empty());
    }

    #[test]
    fn too_many_conditions_together_is_an_error() {
        let mut i = RuleIndex::default();
        let many: String = (0..40)
            .map(|n| format!("  - method = m{n} => host = h\n"))
            .collect();
        i.service_conditions
            .insert("s::".into(), cond(&format!("conditions:\n{many}")));
        i.app_conditions
            .insert("web".into(), cond(&format!("conditions:\n{many}")));
        let q = ChainQuery {
            consumer_app: Some("web"),
            ..ChainQuery::for_service_key("s")
        };
        assert_eq!(
            i.rule_set_for(&q),
            Some(Err(RuleError::TooManyRules { count: 80 }))
        );
    }

    #[test]
    fn service_keys_and_provider_application() {
        let q = ChainQuery::for_service_key("grp/com.foo.Svc:1.0.0");
        assert_eq!((q.group, q.interface, q.version), ("grp", "com.foo.Svc", "1.0.0"));
        let q = ChainQuery::for_service_key("com.foo.Svc");
        assert_eq!((q.group, q.interface, q.version), ("", "com.foo.Svc", ""));
        assert_eq!(provider_application(["b", "a", "b", ""]), Some("b"));
        assert_eq!(provider_application(["b", "a"]), Some("a"));
        assert_eq!(provider_application([""]), None);
        assert_eq!(provider_application([]), None);
    }

    /// The YAML rules through a real route table: which providers each call may reach.
    #[test]
    fn yaml_rules_route_like_dubbo() {
        use crate::{ConsumerInfo, Provider, Request, RouteTable, TableOptions};
        let mut store = super::super::RuleStore::default();
        for (k, v) in [
            (
                "shop.tag-router",
                "configVersion: v3.0\nforce: false\ntags:\n  - name: gray\n    match: [{key: env, value: {exact: gray}}]\n\
                 \x20 - name: pinned\n    addresses: ['10.0.0.4:20880']\n",
            ),
            ("com.foo.Svc::.condition-router", "conditions: ['method = del* => false']\n"),
            ("web.condition-router", "force: true\nconditions: ['method = get => host != 10.0.0.1']\n"),
        ] {
            let change = store.put(format!("/dubbo/config/dubbo/{k}").as_bytes(), v.as_bytes());
            assert!(matches!(change, super::super::StoreChange::Changed { .. }), "{k}: {change:?}");
        }
        let providers: Vec<Provider> = (1..=4)
            .map(|i| {
                let p = Provider::new(format!("10.0.0.{i}:20880").parse().unwrap())
                    .with_param("application", "shop");
                if i == 2 {
                    p.with_param("env", "gray")
                } else {
                    p
                }
            })
            .collect();
        let app = provider_application(
            providers
                .iter()
                .filter_map(|p| p.params.get("application").map(String::as_str)),
        );
        let q = ChainQuery {
            consumer_app: Some("web"),
            provider_app: app,
            ..ChainQuery::for_service_key("com.foo.Svc")
        };
        let rules = store.index().rule_set_for(&q).unwrap().unwrap();
        let mut t = RouteTable::build(
            1,
            providers,
            &rules,
            &ConsumerInfo::default(),
            TableOptions::default(),
        );
        let mut reach = |method: &str, tag: Option<&str>| -> Vec<usize> {
            let r = t.route(&Request {
                tag,
                ..Request::new(method)
            });
            t.candidates(r).iter().map(|i| i + 1).collect()
        };
        assert_eq!(reach("find", Some("gray")), [2], "parameter-matched tag group");
        assert_eq!(reach("find", Some("pinned")), [4], "address tag group");
        assert_eq!(reach("find", None), [1, 3], "untagged calls avoid both groups");
        assert_eq!(reach("get", None), [3], "the consumer app's condition");
        assert_eq!(
            reach("get", Some("gray")),
            [2],
            "one provider, not 10.0.0.1: kept"
        );
        assert!(reach("delete", None).is_empty(), "the service blacklist");
    }
}
