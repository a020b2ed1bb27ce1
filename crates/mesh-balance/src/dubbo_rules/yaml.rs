//! Reading a rule's YAML into a tree, and its fields with the types Dubbo expects.
//!
//! Java reads rules with SnakeYAML (`new Yaml(new SafeConstructor(new LoaderOptions()))`, YAML 1.1: `yes` /
//! `on` are booleans, duplicate keys allowed, the last one wins) into a `Map<String, Object>` and then
//! casts fields (`AbstractRouterRule.parseFromMap0`, apache/dubbo 3.3
//! `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/AbstractRouterRule.java`): `scope`, `key`
//! and `configVersion` must be strings; `force`, `enabled`, `runtime` go through `Boolean.parseBoolean`;
//! `priority` through `Integer.parseInt`. Here the same fields are read with the same types, except that a
//! flag that is neither a boolean nor the text `true`/`false` is refused (Java would read it as false).
//! Keys Dubbo does not read are reported back as warnings, not refused.

use serde_json::{Map, Value};

use super::DubboRuleError;

/// Parses one YAML document (at most one; bounded depth, nodes and aliases) into a mapping.
pub(crate) fn parse_mapping(text: &str) -> Result<Map<String, Value>, DubboRuleError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_nodes: 100_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_documents: 1,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::LastWins,
        with_snippet: false,
    };
    let value: Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| DubboRuleError::Yaml(one_line(&e)))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(DubboRuleError::NotAMapping(kind(&other))),
    }
}

fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a YAML value is, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The fields of one mapping, read by name; `path` prefixes error messages (`tags[1].`).
pub(crate) struct Fields<'a> {
    pub(crate) path: String,
    pub(crate) map: &'a Map<String, Value>,
    /// The keys Dubbo reads here.
    pub(crate) known: &'static [&'static str],
    /// More keys Dubbo reads here: a rule document's header ([`super::header::HEADER_KEYS`]).
    also_known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        path: impl Into<String>,
        map: &'a Map<String, Value>,
        known: &'static [&'static str],
    ) -> Self {
        Fields {
            path: path.into(),
            map,
            known,
            also_known: &[],
        }
    }

    /// The top level of a rule document: the header fields and `body` are known.
    pub(crate) fn document(map: &'a Map<String, Value>, body: &'static [&'static str]) -> Self {
        Fields {
            also_known: super::header::HEADER_KEYS,
            ..Fields::new("", map, body)
        }
    }

    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    /// The value of `key`, `None` when absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Text (Java casts to `String`).
    pub(crate) fn text(&self, key: &str) -> Result<Option<String>, DubboRuleError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(DubboRuleError::field(
                self.name(key),
                format!("expected text, found {}", kind(v)),
            )),
        }
    }

    /// A boolean, or the text `true` / `false` in any case.
    pub(crate) fn flag(&self, key: &str) -> Result<Option<bool>, DubboRuleError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(DubboRuleError::field(
                self.name(key),
                format!("expected true or false, found {}", shown(v)),
            )),
        }
    }

    /// A 32-bit integer, or text holding one (Java `Integer.parseInt`).
    pub(crate) fn int(&self, key: &str) -> Result<Option<i32>, DubboRuleError> {
        let bad = |v: &Value| {
            DubboRuleError::field(self.name(key), format!("expected an integer, found {}", shown(v)))
        };
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(Some)
                .ok_or_else(|| bad(v)),
            Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(v)),
            Some(v) => Err(bad(v)),
        }
    }

    /// A list.
    pub(crate) fn list(&self, key: &str) -> Result<Option<&'a Vec<Value>>, DubboRuleError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(DubboRuleError::field(
                self.name(key),
                format!("expected a list, found {}", kind(v)),
            )),
        }
    }

    /// Keys Dubbo does not read here, as warnings.
    pub(crate) fn unknown(&self) -> Vec<String> {
        self.map
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()) && !self.also_known.contains(&k.as_str()))
            .map(|k| format!("`{}` is not a Dubbo rule field here: ignored", self.name(k)))
            .collect()
    }
}

/// A value for an error message: scalars as written, collections by kind.
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::Bool(b) => format!("`{b}`"),
        other => kind(other).to_owned(),
    }
}

/// A list element as a mapping.
pub(crate) fn mapping<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DubboRuleError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(DubboRuleError::field(
            path,
            format!("expected a mapping, found {}", kind(other)),
        )),
    }
}

/// Java's `String.valueOf` of a scalar list element (a rule text or an address).
pub(crate) fn scalar_text(v: &Value, path: &str) -> Result<String, DubboRuleError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(DubboRuleError::field(
            path,
            format!("expected text, found {}", kind(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_like_snakeyaml() {
        let m = parse_mapping("force: yes\nenabled: off\nruntime: 'TRUE'\npriority: '7'\nkey: a\nkey: b\n")
            .unwrap();
        let f = Fields::new("", &m, &["force", "enabled", "runtime", "priority", "key"]);
        assert_eq!(f.flag("force").unwrap(), Some(true), "YAML 1.1 boolean");
        assert_eq!(f.flag("enabled").unwrap(), Some(false));
        assert_eq!(f.flag("runtime").unwrap(), Some(true));
        assert_eq!(f.int("priority").unwrap(), Some(7));
        assert_eq!(
            f.text("key").unwrap().as_deref(),
            Some("b"),
            "the last duplicate wins"
        );
        assert_eq!(f.flag("absent").unwrap(), None);
        assert!(f.unknown().is_empty());
    }

    #[test]
    fn refuses_wrong_types_with_the_field() {
        let m = parse_mapping("force: maybe\npriority: 1.5\nkey: [a]\nextra: 1\n").unwrap();
        let f = Fields::new("x.", &m, &["force", "priority", "key"]);
        assert_eq!(
            f.flag("force").unwrap_err().to_string(),
            "`x.force`: expected true or false, found `maybe`"
        );
        assert_eq!(
            f.int("priority").unwrap_err().to_string(),
            "`x.priority`: expected an integer, found `1.5`"
        );
        assert_eq!(
            f.text("key").unwrap_err().to_string(),
            "`x.key`: expected text, found a list"
        );
        assert_eq!(f.unknown(), ["`x.extra` is not a Dubbo rule field here: ignored"]);
    }

    #[test]
    fn refuses_what_is_not_one_yaml_mapping() {
        assert!(matches!(parse_mapping(""), Err(DubboRuleError::NotAMapping(_))));
        assert!(matches!(
            parse_mapping("- a\n- b\n"),
            Err(DubboRuleError::NotAMapping("a list"))
        ));
        assert!(matches!(parse_mapping("a: [b\n"), Err(DubboRuleError::Yaml(_))));
        assert!(matches!(
            parse_mapping("a: 1\n---\nb: 2\n"),
            Err(DubboRuleError::Yaml(_))
        ));
        // an alias bomb stops at the budget instead of expanding
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(parse_mapping(&bomb), Err(DubboRuleError::Yaml(_))));
        let deep = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(matches!(parse_mapping(&deep), Err(DubboRuleError::Yaml(_))));
    }
}
