//! Dubbo 3's parameter matchers (`match: [{key, value: {exact|prefix|regex|wildcard|empty|noempty}}]`), as
//! used by `configVersion: v3.0` tag rules to pick a tag's providers by their URL parameters.
//!
//! Semantics from apache/dubbo 3.3:
//! `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/tag/model/ParamMatch.java` (no value = no
//! match) and `.../router/mesh/rule/virtualservice/match/StringMatch.java`:
//! - `exact`: equal; `prefix`: starts with; `regex`: the whole value matches (Java `String.matches`);
//!   `wildcard`: equal, or the pattern is `*` (nothing else is special); these four never match a missing
//!   parameter;
//! - `empty`: the parameter is missing or empty; `noempty`: present and not empty (their value is ignored).
//!
//! Java checks the fields in that order and the first one set decides, except that a missing parameter skips
//! `exact`..`wildcard` and falls through to `empty`/`noempty`. A value that sets more than one field is
//! refused here instead of reproducing that order. Regexes use the `regex` crate's syntax (no look-around,
//! no back-references: such patterns are refused when the rule is read).

use std::fmt;

/// Most bytes of one `regex` pattern, and of the compiled program (the `regex` crate's size limit).
pub const MAX_REGEX_BYTES: usize = 4096;
const REGEX_PROGRAM_BYTES: usize = 1 << 20;

/// How one parameter value is matched.
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// `exact: v`.
    Exact(String),
    /// `prefix: v`.
    Prefix(String),
    /// `regex: v`, anchored at both ends.
    Regex(regex::Regex),
    /// `wildcard: v`: equal to `v`, or anything when `v` is `*`.
    Wildcard(String),
    /// `empty: ...`: missing or empty.
    Empty,
    /// `noempty: ...`: present and not empty.
    NonEmpty,
}

impl PartialEq for StringMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StringMatch::Exact(a), StringMatch::Exact(b))
            | (StringMatch::Prefix(a), StringMatch::Prefix(b))
            | (StringMatch::Wildcard(a), StringMatch::Wildcard(b)) => a == b,
            (StringMatch::Regex(a), StringMatch::Regex(b)) => a.as_str() == b.as_str(),
            (StringMatch::Empty, StringMatch::Empty) | (StringMatch::NonEmpty, StringMatch::NonEmpty) => true,
            _ => false,
        }
    }
}

impl Eq for StringMatch {}

impl StringMatch {
    /// A `regex` matcher: the whole value must match `pattern`.
    pub fn regex(pattern: &str) -> Result<StringMatch, String> {
        if pattern.len() > MAX_REGEX_BYTES {
            return Err(format!("regex longer than {MAX_REGEX_BYTES} bytes"));
        }
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_PROGRAM_BYTES)
            .build()
            .map(StringMatch::Regex)
            .map_err(|e| format!("regex `{pattern}` is not supported: {e}"))
    }

    /// Whether a parameter value (`None` = the provider has no such parameter) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (StringMatch::Exact(e), Some(v)) => v == e,
            (StringMatch::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (StringMatch::Regex(r), Some(v)) => r.is_match(v),
            (StringMatch::Wildcard(w), Some(v)) => w == "*" || v == w,
            (StringMatch::Empty, v) => v.is_none_or(str::is_empty),
            (StringMatch::NonEmpty, v) => v.is_some_and(|v| !v.is_empty()),
            (_, None) => false,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => write!(f, "exact `{v}`"),
            StringMatch::Prefix(v) => write!(f, "prefix `{v}`"),
            StringMatch::Regex(r) => write!(f, "regex `{}`", r.as_str()),
            StringMatch::Wildcard(v) => write!(f, "wildcard `{v}`"),
            StringMatch::Empty => f.write_str("empty"),
            StringMatch::NonEmpty => f.write_str("noempty"),
        }
    }
}

/// One `{key, value}` entry: the provider URL parameter `key` must match `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamMatch {
    /// The provider URL parameter (`dubbo.tag` is the provider's static tag).
    pub key: String,
    /// How its value is matched.
    pub value: StringMatch,
}

impl ParamMatch {
    /// Whether the provider's value of the parameter (`None` = absent) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        self.value.matches(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_java_string_match() {
        let exact = StringMatch::Exact("a".into());
        assert!(exact.matches(Some("a")) && !exact.matches(Some("ab")) && !exact.matches(None));
        let prefix = StringMatch::Prefix("gr".into());
        assert!(prefix.matches(Some("gray")) && !prefix.matches(Some("agray")) && !prefix.matches(None));
        let re = StringMatch::regex("v[0-9]+").unwrap();
        assert!(re.matches(Some("v12")));
        assert!(!re.matches(Some("xv12")), "Java String.matches: the whole value");
        assert!(!re.matches(Some("v12x")) && !re.matches(None));
        let any = StringMatch::Wildcard("*".into());
        assert!(any.matches(Some("x")) && any.matches(Some("")) && !any.matches(None));
        let w = StringMatch::Wildcard("a*".into());
        assert!(
            w.matches(Some("a*")) && !w.matches(Some("ab")),
            "only a lone `*` is special"
        );
        assert!(StringMatch::Empty.matches(None) && StringMatch::Empty.matches(Some("")));
        assert!(!StringMatch::Empty.matches(Some("x")));
        assert!(StringMatch::NonEmpty.matches(Some("x")));
        assert!(!StringMatch::NonEmpty.matches(Some("")) && !StringMatch::NonEmpty.matches(None));
    }

    #[test]
    fn refuses_regexes_rust_cannot_run() {
        assert!(StringMatch::regex("(?=a)b")
            .unwrap_err()
            .contains("not supported"));
        assert!(StringMatch::regex("(a)\\1").is_err());
        assert!(StringMatch::regex(&"a".repeat(MAX_REGEX_BYTES + 1)).is_err());
        assert_eq!(
            StringMatch::regex("a|b").unwrap(),
            StringMatch::regex("a|b").unwrap()
        );
        // `^(?:a|b)$`: the alternation is anchored as a whole.
        assert!(!StringMatch::regex("a|b").unwrap().matches(Some("ab")));
    }
}
