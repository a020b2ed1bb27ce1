//! Why a rule read from Dubbo's config center cannot be used.

use crate::RuleError;

/// A config-center routing rule that cannot be used; the rule that was in force for its key stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DubboRuleError {
    /// The value is larger than [`super::MAX_RULE_BYTES`].
    #[error("rule of {len} bytes, larger than the {max} bytes allowed", max = super::MAX_RULE_BYTES)]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The value is not UTF-8 text.
    #[error("rule is not UTF-8 text")]
    NotUtf8,
    /// Not YAML, or over the parse budget (depth, nodes, aliases).
    #[error("not a YAML rule: {0}")]
    Yaml(String),
    /// The document is empty or is not a mapping.
    #[error("the rule is not a YAML mapping (found {0})")]
    NotAMapping(&'static str),
    /// A field has the wrong type or value.
    #[error("`{field}`: {why}")]
    Field {
        /// Where: `force`, `conditions[2].to`, `tags[0].match[1].value`, ...
        field: String,
        /// What is wrong.
        why: String,
    },
    /// A condition rule without conditions (Dubbo marks it invalid and keeps its previous routers too).
    #[error("no `conditions`")]
    NoConditions,
    /// A `configVersion` this version of Dubbo's rules does not know.
    #[error("configVersion `{0}` is newer than v3.1, the newest condition rule format known")]
    NewerVersion(String),
    /// A Dubbo feature the routing model cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// A condition rule or tag group that does not parse.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl DubboRuleError {
    pub(crate) fn field(field: impl Into<String>, why: impl Into<String>) -> Self {
        DubboRuleError::Field {
            field: field.into(),
            why: why.into(),
        }
    }
}
