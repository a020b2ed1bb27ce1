//! The routing rule document of one service (JSON, from an etcd key or from config) and its validated,
//! compiled form [`RuleSet`]. The format is described in the crate docs.

use serde::Deserialize;

use crate::rule::{ConditionRule, ParseError};
use crate::tag::{TagRule, TagRuleSpec};

/// Most enabled condition rules one service may have (the request path keeps a 64-bit match mask).
pub const MAX_CONDITION_RULES: usize = 64;

/// A rule document that cannot be used; says which rule and which token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not JSON, or not the document's shape.
    #[error("routing rules: {0}")]
    Json(String),
    /// A condition rule does not parse.
    #[error("condition rule {index} `{rule}`: {source}")]
    Condition {
        /// 0-based position in `conditions`.
        index: usize,
        /// The rule text.
        rule: String,
        /// What is wrong, where.
        #[source]
        source: ParseError,
    },
    /// A dynamic tag group is invalid.
    #[error("tag rule group {index} `{name}`: {why}")]
    TagGroup {
        /// 0-based position in `tag.tags`.
        index: usize,
        /// The group's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// More enabled condition rules than [`MAX_CONDITION_RULES`].
    #[error("too many enabled condition rules: {count} (at most {MAX_CONDITION_RULES})")]
    TooManyRules {
        /// How many were given.
        count: usize,
    },
}

/// The document as written (see the crate docs for an example).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    /// Dynamic tag rule.
    #[serde(default)]
    pub tag: Option<TagRuleSpec>,
    /// Condition rules: plain strings or objects.
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
    /// Default `force` for conditions that do not say (Dubbo's rule-level `force`; default false).
    #[serde(default)]
    pub force: bool,
    /// Default `enabled` for conditions that do not say (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Default `priority` for conditions that do not say (default 0).
    #[serde(default)]
    pub priority: i32,
    // Dubbo's rule metadata: accepted, ignored.
    #[serde(default, rename = "key")]
    _key: Option<serde_json::Value>,
    #[serde(default, rename = "scope")]
    _scope: Option<serde_json::Value>,
    #[serde(default, rename = "runtime")]
    _runtime: Option<serde_json::Value>,
    #[serde(default, rename = "configVersion")]
    _config_version: Option<serde_json::Value>,
}

/// One entry of `conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ConditionSpec {
    /// `"method = find* => host != 10.1.*"`, with the document's defaults.
    Text(String),
    /// `{"rule": "...", "force": true, "priority": 1, "enabled": true}`.
    Entry(ConditionEntry),
}

/// A condition rule with its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionEntry {
    /// The rule text.
    pub rule: String,
    /// When the rule leaves no provider: true = no provider, false = ignore the rule.
    #[serde(default)]
    pub force: Option<bool>,
    /// Lower runs first (Dubbo sorts routers by ascending priority); ties keep document order.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Disabled rules are validated and skipped.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One enabled condition rule, ready for a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    /// Position in the document.
    pub index: usize,
    /// The parsed rule.
    pub rule: ConditionRule,
    /// Dubbo's `force`.
    pub force: bool,
    /// Dubbo's `priority`.
    pub priority: i32,
}

/// A validated rule document: the input of [`crate::RouteTable::build`]. `RuleSet::default()` routes
/// nothing away (static tags only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    /// The dynamic tag rule, if enabled.
    pub tag: Option<TagRule>,
    /// Enabled condition rules in execution order (ascending priority, then document order).
    pub conditions: Vec<CompiledRule>,
}

impl RuleSet {
    /// Parses and validates a JSON rule document.
    pub fn from_json(text: &str) -> Result<RuleSet, RuleError> {
        let doc: RuleDocument = serde_json::from_str(text).map_err(|e| RuleError::Json(e.to_string()))?;
        RuleSet::from_document(&doc)
    }

    /// Validates a document.
    pub fn from_document(doc: &RuleDocument) -> Result<RuleSet, RuleError> {
        let tag = match &doc.tag {
            Some(spec) => TagRule::from_spec(spec)?,
            None => None,
        };
        let mut conditions = Vec::new();
        for (index, spec) in doc.conditions.iter().enumerate() {
            let (text, force, priority, enabled) = match spec {
                ConditionSpec::Text(t) => (t, None, None, None),
                ConditionSpec::Entry(e) => (&e.rule, e.force, e.priority, e.enabled),
            };
            let rule = ConditionRule::parse(text).map_err(|source| RuleError::Condition {
                index,
                rule: text.clone(),
                source,
            })?;
            if enabled.or(doc.enabled).unwrap_or(true) {
                conditions.push(CompiledRule {
                    index,
                    rule,
                    force: force.unwrap_or(doc.force),
                    priority: priority.unwrap_or(doc.priority),
                });
            }
        }
        RuleSet::new(tag, conditions)
    }

    /// Builds a rule set from parts (sorted by priority here).
    pub fn new(tag: Option<TagRule>, mut conditions: Vec<CompiledRule>) -> Result<RuleSet, RuleError> {
        if conditions.len() > MAX_CONDITION_RULES {
            return Err(RuleError::TooManyRules {
                count: conditions.len(),
            });
        }
        conditions.sort_by_key(|c| c.priority);
        Ok(RuleSet { tag, conditions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let rs = RuleSet::from_json(
            r#"{"tag":{"force":false,"tags":[{"name":"gray","addresses":["127.0.0.1:20880"]}]},
                "conditions":[{"rule":"method = find* => host != 10.1.*","force":false,"priority":2},
                              "=> host != 172.22.3.91",
                              {"rule":"method = x => host = 1.1.1.1","enabled":false}],
                "force": true, "key": "com.example.Svc", "scope": "service"}"#,
        )
        .unwrap();
        let tag = rs.tag.as_ref().unwrap();
        assert!(!tag.force && tag.group("gray").unwrap().len() == 1);
        // disabled rule dropped; priority 0 (document default) before priority 2
        assert_eq!(rs.conditions.len(), 2);
        assert_eq!((rs.conditions[0].index, rs.conditions[0].force), (1, true));
        assert_eq!((rs.conditions[1].index, rs.conditions[1].force), (0, false));
    }

    #[test]
    fn errors_name_the_rule_and_token() {
        let e =
            RuleSet::from_json(r#"{"conditions":["a = 1 => b = 2", "x = 1 => host = a b"]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "condition rule 1 `x = 1 => host = a b`: then part, byte 9: `b` needs `=`, `!=`, `,` or `&` before it"
        );
        let e =
            RuleSet::from_json(r#"{"tag":{"tags":[{"name":"g","addresses":["1.2.3.4:x"]}]}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tag rule group 0 `g`: bad address `1.2.3.4:x`: bad port"
        );
        assert!(matches!(
            RuleSet::from_json(r#"{"tags":[]}"#),
            Err(RuleError::Json(_))
        ));
        assert!(matches!(RuleSet::from_json("nope"), Err(RuleError::Json(_))));
        let many: Vec<String> = (0..65)
            .map(|i| format!("\"method = m{i} => host = h\""))
            .collect();
        let e = RuleSet::from_json(&format!("{{\"conditions\":[{}]}}", many.join(","))).unwrap_err();
        assert_eq!(e, RuleError::TooManyRules { count: 65 });
    }
}
