//! The last good rule of every config-center key, for the watcher: it feeds puts and deletes in, logs what
//! is rejected, and publishes [`RuleStore::index`] with its next snapshot.
//!
//! A value that cannot be used (too large, not UTF-8, not YAML, a rule that does not parse or that the model
//! cannot express) is rejected with its key and the rule read before from that key stays in force, as in
//! Dubbo: `ListenableStateRouter.process` and `TagStateRouter.process` (apache/dubbo 3.3
//! `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/`) catch the parse error, log it and keep
//! their routers; a delete removes the rule.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::chain::RuleIndex;
use super::config_key::{rule_text, ConfigLayout, RuleKey};
use super::{ConditionRouterRule, DubboRuleError, TagRouterRule};

/// What one put or delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// The rules changed: publish [`RuleStore::index`]. `warnings`: fields of the new rule that were ignored.
    Changed {
        /// Fields Dubbo does not read, ignored (for the log).
        warnings: Vec<String>,
    },
    /// The same rule as before (or a delete of a key without one).
    Unchanged,
    /// Not a routing rule key of this layout: nothing to do.
    NotARule,
    /// The value cannot be used; the rules did not change.
    Rejected(RuleRejected),
}

/// A rejected rule: where, why, and whether an earlier rule of that key stays in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRejected {
    /// The etcd key.
    pub key: String,
    /// Why.
    pub error: DubboRuleError,
    /// True when the key had a good rule, which stays in force.
    pub kept_previous: bool,
}

impl fmt::Display for RuleRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "routing rule {} rejected: {}; ", self.key, self.error)?;
        f.write_str(if self.kept_previous {
            "the previous rule of this key stays in force"
        } else {
            "no rule of this key is in force"
        })
    }
}

impl std::error::Error for RuleRejected {}

#[derive(Debug, Clone)]
enum Parsed {
    ConditionApp(String, Arc<ConditionRouterRule>),
    ConditionService(String, Arc<ConditionRouterRule>),
    Tag(String, Arc<TagRouterRule>),
}

#[derive(Debug, Clone)]
struct Entry {
    text: String,
    parsed: Parsed,
}

/// The last good rule per key and the index built from them.
#[derive(Debug, Clone)]
pub struct RuleStore {
    layout: ConfigLayout,
    entries: BTreeMap<String, Entry>,
    rejected: BTreeMap<String, DubboRuleError>,
    epoch: u64,
    index: Arc<RuleIndex>,
}

impl Default for RuleStore {
    fn default() -> Self {
        RuleStore::new(ConfigLayout::default())
    }
}

impl RuleStore {
    /// An empty store for keys under `layout`.
    pub fn new(layout: ConfigLayout) -> Self {
        RuleStore {
            layout,
            entries: BTreeMap::new(),
            rejected: BTreeMap::new(),
            epoch: 0,
            index: Arc::new(RuleIndex::default()),
        }
    }

    /// Where the keys are.
    pub fn layout(&self) -> &ConfigLayout {
        &self.layout
    }

    /// The rules now in force (cheap: built once per change).
    pub fn index(&self) -> Arc<RuleIndex> {
        self.index.clone()
    }

    /// Keys whose latest value was rejected, with why (a later good value or a delete clears them).
    pub fn rejected(&self) -> impl Iterator<Item = (&str, &DubboRuleError)> {
        self.rejected.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// An etcd put of `value` at `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> StoreChange {
        let Some((etcd_key, rule_key)) = self.rule_key(key) else {
            return StoreChange::NotARule;
        };
        let parsed = rule_text(value).and_then(|text| {
            if self.entries.get(&etcd_key).is_some_and(|e| e.text == text) {
                return Ok(None);
            }
            parse(&rule_key, text).map(|p| Some((text.to_owned(), p)))
        });
        match parsed {
            Ok(None) => {
                self.rejected.remove(&etcd_key);
                StoreChange::Unchanged
            }
            Ok(Some((text, (parsed, warnings)))) => {
                self.rejected.remove(&etcd_key);
                self.entries.insert(etcd_key, Entry { text, parsed });
                self.rebuild();
                StoreChange::Changed { warnings }
            }
            Err(error) => {
                self.rejected.insert(etcd_key.clone(), error.clone());
                StoreChange::Rejected(RuleRejected {
                    kept_previous: self.entries.contains_key(&etcd_key),
                    key: etcd_key,
                    error,
                })
            }
        }
    }

    /// An etcd delete of `key`.
    pub fn delete(&mut self, key: &[u8]) -> StoreChange {
        let Some((etcd_key, _)) = self.rule_key(key) else {
            return StoreChange::NotARule;
        };
        self.rejected.remove(&etcd_key);
        if self.entries.remove(&etcd_key).is_some() {
            self.rebuild();
            StoreChange::Changed { warnings: Vec::new() }
        } else {
            StoreChange::Unchanged
        }
    }

    /// A full listing of the rules prefix (after a watch was lost): every key in it is put, every held key
    /// not in it is deleted. Returns what each key did (rule keys only), in key order.
    pub fn replace_all<K, V>(
        &mut self,
        listing: impl IntoIterator<Item = (K, V)>,
    ) -> Vec<(String, StoreChange)>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (k, v) in listing {
            let k = k.as_ref();
            let change = self.put(k, v.as_ref());
            if change != StoreChange::NotARule {
                let name = String::from_utf8_lossy(k).into_owned();
                seen.insert(name.clone());
                out.push((name, change));
            }
        }
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            let change = self.delete(k.as_bytes());
            out.push((k, change));
        }
        self.rejected.retain(|k, _| seen.contains(k));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn rule_key(&self, key: &[u8]) -> Option<(String, RuleKey)> {
        let key = std::str::from_utf8(key).ok()?;
        let rule_key = RuleKey::classify(self.layout.config_key(key)?);
        (rule_key != RuleKey::Other).then(|| (key.to_owned(), rule_key))
    }

    fn rebuild(&mut self) {
        self.epoch += 1;
        let mut index = RuleIndex {
            epoch: self.epoch,
            ..RuleIndex::default()
        };
        for e in self.entries.values() {
            match &e.parsed {
                Parsed::ConditionApp(app, r) => {
                    index.app_conditions.insert(app.clone(), r.clone());
                }
                Parsed::ConditionService(key, r) => {
                    index.service_conditions.insert(key.clone(), r.clone());
                }
                Parsed::Tag(app, r) => {
                    index.tags.insert(app.clone(), r.clone());
                }
            }
        }
        self.index = Arc::new(index);
    }
}

fn parse(key: &RuleKey, text: &str) -> Result<(Parsed, Vec<String>), DubboRuleError> {
    Ok(match key {
        RuleKey::ConditionApp(app) => {
            let r = ConditionRouterRule::parse(text)?;
            let w = r.warnings.clone();
            (Parsed::ConditionApp(app.clone(), Arc::new(r)), w)
        }
        RuleKey::ConditionService(s) => {
            let r = ConditionRouterRule::parse(text)?;
            let w = r.warnings.clone();
            (Parsed::ConditionService(s.to_string(), Arc::new(r)), w)
        }
        RuleKey::TagApp(app) => {
            let r = TagRouterRule::parse(text)?;
            let w = r.warnings.clone();
            (Parsed::Tag(app.clone(), Arc::new(r)), w)
        }
        RuleKey::Other => return Err(DubboRuleError::Unsupported("not a routing rule key".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo_rules::ChainQuery;

    const APP: &str = "/dubbo/config/dubbo/web.condition-router";
    const SVC: &str = "/dubbo/config/dubbo/com.foo.Svc::.condition-router";
    const TAG: &str = "/dubbo/config/dubbo/shop.tag-router";

    fn rules_for(store: &RuleStore) -> Vec<String> {
        let q = ChainQuery {
            consumer_app: Some("web"),
            provider_app: Some("shop"),
            ..ChainQuery::for_service_key("com.foo.Svc")
        };
        match store.index().rule_set_for(&q) {
            None => vec![],
            Some(rs) => rs
                .unwrap()
                .conditions
                .iter()
                .map(|c| c.rule.to_string())
                .collect(),
        }
    }

    #[test]
    fn a_bad_rule_keeps_the_previous_one() {
        let mut s = RuleStore::default();
        assert_eq!(
            s.put(APP.as_bytes(), b"conditions: ['=> host = 10.0.0.1']\nnote: x\n"),
            StoreChange::Changed {
                warnings: vec!["`note` is not a Dubbo rule field here: ignored".into()]
            }
        );
        assert_eq!(s.index().epoch(), 1);
        assert_eq!(rules_for(&s), ["=> host = 10.0.0.1"]);
        // same text again: nothing to publish
        assert_eq!(
            s.put(APP.as_bytes(), b"conditions: ['=> host = 10.0.0.1']\nnote: x\n"),
            StoreChange::Unchanged
        );
        // a bad YAML: rejected with its key, the previous rule stays
        let StoreChange::Rejected(r) = s.put(APP.as_bytes(), b"conditions: [=> host = ") else {
            panic!("not rejected")
        };
        assert_eq!(r.key, APP);
        assert!(r.kept_previous);
        assert!(r
            .to_string()
            .starts_with("routing rule /dubbo/config/dubbo/web.condition-router rejected: not a YAML rule:"));
        assert!(r
            .to_string()
            .ends_with("the previous rule of this key stays in force"));
        assert_eq!(s.index().epoch(), 1);
        assert_eq!(rules_for(&s), ["=> host = 10.0.0.1"]);
        assert_eq!(s.rejected().count(), 1);
        // a rule that does not parse, on a key that had none: nothing in force
        let StoreChange::Rejected(r) = s.put(SVC.as_bytes(), b"conditions: ['host = a b']\n") else {
            panic!("not rejected")
        };
        assert!(!r.kept_previous && r.to_string().ends_with("no rule of this key is in force"));
        // a good value clears the rejection; a delete removes the rule
        assert!(matches!(
            s.put(SVC.as_bytes(), b"conditions: ['=> port = 1']\n"),
            StoreChange::Changed { .. }
        ));
        assert_eq!(rules_for(&s), ["=> port = 1", "=> host = 10.0.0.1"]);
        assert_eq!(s.rejected().map(|(k, _)| k).collect::<Vec<_>>(), [APP]);
        assert!(matches!(s.delete(APP.as_bytes()), StoreChange::Changed { .. }));
        assert_eq!(s.rejected().count(), 0);
        assert_eq!(rules_for(&s), ["=> port = 1"]);
        assert_eq!(s.delete(APP.as_bytes()), StoreChange::Unchanged);
        assert_eq!(s.index().epoch(), 3);
    }

    #[test]
    fn other_keys_and_bad_values() {
        let mut s = RuleStore::default();
        for k in [
            "/dubbo/config/dubbo/web.configurators",
            "/dubbo/config/mapping/com.foo.Svc",
            "/dubbo/com.foo.Svc/providers/x",
            "/dubbo/config/dubbo/a/b.tag-router",
        ] {
            assert_eq!(s.put(k.as_bytes(), b"x"), StoreChange::NotARule, "{k}");
        }
        assert_eq!(s.put(&[0xff], b"x"), StoreChange::NotARule);
        let StoreChange::Rejected(r) = s.put(TAG.as_bytes(), &[0xff, 0xfe]) else {
            panic!()
        };
        assert_eq!(r.error, DubboRuleError::NotUtf8);
        let big = vec![b' '; super::super::MAX_RULE_BYTES + 1];
        let StoreChange::Rejected(r) = s.put(TAG.as_bytes(), &big) else {
            panic!()
        };
        assert!(matches!(r.error, DubboRuleError::TooLarge { .. }));
        assert!(s.index().is_empty());
        assert!(matches!(
            s.put(TAG.as_bytes(), b"tags: [{name: gray, addresses: [10.0.0.5]}]\n"),
            StoreChange::Changed { .. }
        ));
        assert!(s.index().tag("shop").is_some());
        let other = RuleStore::new(ConfigLayout {
            namespace: "prod".into(),
            ..Default::default()
        });
        assert_eq!(
            other.clone().put(TAG.as_bytes(), b"tags: []"),
            StoreChange::NotARule
        );
        assert_eq!(other.layout().rules_prefix(), "/prod/config/dubbo/");
    }

    #[test]
    fn a_full_listing_replaces_everything() {
        let mut s = RuleStore::default();
        s.put(APP.as_bytes(), b"conditions: ['=> host = 10.0.0.1']\n");
        s.put(SVC.as_bytes(), b"conditions: ['=> port = 1']\n");
        s.put(TAG.as_bytes(), b"tags: [");
        let out = s.replace_all([
            (SVC, "conditions: ['=> port = 2']\n"),
            ("/dubbo/config/dubbo/x.configurators", "whatever"),
        ]);
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [SVC, APP]);
        assert_eq!(rules_for(&s), ["=> port = 2"]);
        assert_eq!(s.rejected().count(), 0, "the rejected key is gone from etcd");
    }
}
