//! Dubbo's condition router rule as Dubbo Admin writes it to the config center (YAML), read into
//! [`ConditionRule`]s.
//!
//! Sources (apache/dubbo 3.3, `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/`):
//! - `condition/config/model/ConditionRuleParser.java`: `configVersion` starting with `v3.1` (any case) selects
//!   the multi-destination form, a version sorting after `v3.1` is ignored, anything else (absent, `v2.7`,
//!   `v3.0`) is the classic form; a rule whose `conditions` are empty is invalid;
//! - `condition/config/model/ConditionRouterRule.java`: classic `conditions` are texts
//!   (`String.valueOf` of each entry) in Dubbo's `when => then` syntax (see [`crate::rule`]);
//! - `condition/config/model/MultiDestConditionRouterRule.java`, `MultiDestCondition.java` and
//!   `condition/MultiDestConditionRouter.java`: v3.1 `conditions` are `{from: {match}, to: [{match, weight}]}`;
//!   a blank or `true` `from.match` matches every call; each `to` keeps the providers its `match` accepts
//!   (a blank or `false` `to.match` accepts every provider, unlike the classic then part where it is a
//!   blacklist); an empty `to` list is a blacklist; with several `to` entries one non-empty destination is
//!   drawn per call by weight;
//! - `condition/config/ListenableStateRouter.java`: each condition becomes a `ConditionStateRouter` with the
//!   rule-level `force` and `enabled`, run in document order, each on the previous one's result; the rule's
//!   `priority` and `runtime` are read but do not order or change anything.
//!
//! Supported: the classic form, and v3.1 conditions with at most one `to` (a per-call weighted draw between
//! several destinations cannot be cached per route and is refused with an error naming the condition).

use serde_json::Value;

use super::header::RuleHeader;
use super::yaml::{mapping, parse_mapping, scalar_text, Fields};
use super::DubboRuleError;
use crate::rule::ConditionRule;
use crate::ruleset::{CompiledRule, RuleError, MAX_CONDITION_RULES};

const BODY: &[&str] = &["conditions"];

/// One `*.condition-router` document, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionRouterRule {
    /// `scope`, `key`, `configVersion`, `enabled`, `force` (a condition that leaves no provider leaves none
    /// instead of being ignored), `runtime`, `priority`.
    pub header: RuleHeader,
    /// The conditions in document order.
    pub conditions: Vec<ConditionRule>,
    /// Keys Dubbo does not read, ignored.
    pub warnings: Vec<String>,
}

impl ConditionRouterRule {
    /// Parses and validates a condition router YAML.
    pub fn parse(text: &str) -> Result<ConditionRouterRule, DubboRuleError> {
        let map = parse_mapping(text)?;
        let f = Fields::document(&map, BODY);
        let header = RuleHeader::read(&f)?;
        let multi_dest = match header.config_version.as_deref().map(str::to_ascii_lowercase) {
            Some(v) if v.starts_with("v3.1") => true,
            Some(v) if v.as_str() > "v3.1" => {
                return Err(DubboRuleError::NewerVersion(
                    header.config_version.clone().unwrap_or_default(),
                ))
            }
            _ => false,
        };
        let entries = f.list("conditions")?.map(Vec::as_slice).unwrap_or_default();
        if entries.is_empty() {
            return Err(DubboRuleError::NoConditions);
        }
        if entries.len() > MAX_CONDITION_RULES {
            return Err(RuleError::TooManyRules { count: entries.len() }.into());
        }
        let mut warnings = f.unknown();
        let mut conditions = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let path = format!("conditions[{index}]");
            let rule = if multi_dest {
                multi_dest_condition(index, entry, &path, &mut warnings)?
            } else {
                if entry.is_object() {
                    return Err(DubboRuleError::field(
                        path,
                        "`from`/`to` conditions need `configVersion: v3.1`",
                    ));
                }
                let text = scalar_text(entry, &path)?;
                parse_rule(index, &text)?
            };
            conditions.push(rule);
        }
        Ok(ConditionRouterRule {
            header,
            conditions,
            warnings,
        })
    }

    /// The enabled conditions for a route table, at `chain_priority` (the router's place in Dubbo's chain;
    /// ties keep document order). None when the rule is disabled.
    pub fn compiled(&self, chain_priority: i32) -> Vec<CompiledRule> {
        if !self.header.enabled {
            return Vec::new();
        }
        self.conditions
            .iter()
            .enumerate()
            .map(|(index, rule)| CompiledRule {
                index,
                rule: rule.clone(),
                force: self.header.force,
                priority: chain_priority,
            })
            .collect()
    }
}

fn parse_rule(index: usize, text: &str) -> Result<ConditionRule, DubboRuleError> {
    ConditionRule::parse(text).map_err(|source| {
        RuleError::Condition {
            index,
            rule: text.to_owned(),
            source,
        }
        .into()
    })
}

/// `{from: {match}, to: [{match, weight}]}` with at most one `to`, as a classic rule.
fn multi_dest_condition(
    index: usize,
    entry: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<ConditionRule, DubboRuleError> {
    let cond = Fields::new(format!("{path}."), mapping(entry, path)?, &["from", "to"]);
    warnings.extend(cond.unknown());
    let from = cond
        .get("from")
        .ok_or_else(|| DubboRuleError::field(cond.name("from"), "missing (Dubbo refuses the rule)"))?;
    let from = Fields::new(
        format!("{path}.from."),
        mapping(from, &cond.name("from"))?,
        &["match"],
    );
    warnings.extend(from.unknown());
    let when = from.text("match")?.unwrap_or_default();
    let to = cond
        .list("to")?
        .ok_or_else(|| DubboRuleError::field(cond.name("to"), "missing (Dubbo refuses the rule)"))?;
    let then = match to.as_slice() {
        [] => None,
        [one] => {
            let to_path = format!("{path}.to[0]");
            let dest = Fields::new(
                format!("{to_path}."),
                mapping(one, &to_path)?,
                &["match", "weight"],
            );
            warnings.extend(dest.unknown());
            dest.int("weight")?;
            Some(dest.text("match")?.unwrap_or_default())
        }
        many => {
            return Err(DubboRuleError::Unsupported(format!(
                "`{path}.to` has {} destinations: a weighted draw between destinations per call is not \
                 supported, give one `to`",
                many.len()
            )))
        }
    };
    let when = when.trim();
    let when = if when == "true" { "" } else { when };
    if when.contains("=>") || then.as_deref().is_some_and(|t| t.contains("=>")) {
        return Err(DubboRuleError::field(path, "`=>` inside a `match`"));
    }
    match then.as_deref().map(str::trim) {
        // no destination: a blacklist
        None => parse_rule(index, &format!("{when} => false")),
        // a destination without conditions keeps every provider
        Some("" | "false") => {
            let mut rule = parse_rule(index, &format!("{when} => false"))?;
            rule.then = Some(Vec::new());
            Ok(rule)
        }
        Some(then) => parse_rule(index, &format!("{when} => {then}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of `ConditionRuleParser`'s Javadoc and the shape Dubbo Admin writes.
    #[test]
    fn parses_classic_rules() {
        let r = ConditionRouterRule::parse(
            "configVersion: v3.0\nscope: service\nforce: true\nruntime: true\nenabled: true\n\
             key: org.apache.dubbo.samples.DemoService\nconditions:\n  - method=sayHello => address=*:20880\n\
             \x20 - >\n    ip=127.0.0.1\n    =>\n    host = 1.1.1.1\n  - '=> host != 172.22.3.91'\n",
        )
        .unwrap();
        assert_eq!(r.header.scope.as_deref(), Some("service"));
        assert!(r.header.force && r.header.enabled && r.header.runtime && r.warnings.is_empty());
        assert_eq!(r.conditions.len(), 3);
        assert_eq!(
            r.conditions[0].to_string(),
            "method = sayHello => address = *:20880"
        );
        assert_eq!(r.conditions[1].to_string(), "ip = 127.0.0.1 => host = 1.1.1.1");
        let c = r.compiled(140);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.force && c.priority == 140));
        assert_eq!(c[2].index, 2);
        // the defaults: enabled, not forced; disabled = nothing compiled
        let r = ConditionRouterRule::parse("conditions: ['=> host = 1.2.3.4']\nenabled: false\n").unwrap();
        assert!(!r.header.force && r.compiled(0).is_empty());
        // version 2.7 and no version are the classic form
        assert!(ConditionRouterRule::parse("configVersion: v2.7\nconditions: [a = b => c = d]\n").is_ok());
    }

    /// Dubbo Admin's dump style (SnakeYAML: block list not indented, keys sorted, `=>` plain scalars).
    #[test]
    fn parses_what_dubbo_admin_dumps() {
        let r = ConditionRouterRule::parse(
            "conditions:\n- => host != 172.22.3.91\n- method=sayHello => host=10.0.0.1,10.0.0.2\nenabled: true\n\
             force: false\nkey: governance-conditionrouter-consumer\npriority: 0\nruntime: true\n\
             scope: application\nconfigVersion: v3.0\n",
        )
        .unwrap();
        assert_eq!(r.header.scope.as_deref(), Some("application"));
        assert_eq!(r.conditions[0].to_string(), "=> host != 172.22.3.91");
        assert_eq!(
            r.conditions[1].to_string(),
            "method = sayHello => host = 10.0.0.1,10.0.0.2"
        );
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn parses_v31_with_one_destination() {
        let r = ConditionRouterRule::parse(
            "configVersion: v3.1\nscope: service\nkey: shop\nforce: false\nconditions:\n\
             \x20 - from:\n      match: region=beijing & version=v1\n    to:\n\
             \x20     - match: env=$env & region=beijing\n        weight: 100\n\
             \x20 - from:\n      match:\n    to:\n      - match: 'false'\n\
             \x20 - from: {match: method = del*}\n    to: []\n",
        )
        .unwrap();
        assert_eq!(
            r.conditions[0].to_string(),
            "region = beijing & version = v1 => env = $env & region = beijing"
        );
        assert!(r.conditions[1].when.is_empty());
        assert_eq!(
            r.conditions[1].then,
            Some(vec![]),
            "a blank destination keeps everyone"
        );
        assert_eq!(r.conditions[2].then, None, "no destination: blacklist");
    }

    #[test]
    fn refuses_what_it_cannot_express_naming_the_place() {
        let e = |y: &str| ConditionRouterRule::parse(y).unwrap_err().to_string();
        assert_eq!(
            e("configVersion: V3.1\nconditions:\n  - from: {match: a=b}\n    to: [{match: c=d}, {match: c=e, weight: 200}]\n"),
            "`conditions[0].to` has 2 destinations: a weighted draw between destinations per call is not supported, give one `to`"
        );
        assert_eq!(
            e("configVersion: v3.1\nconditions: [{to: []}]\n"),
            "`conditions[0].from`: missing (Dubbo refuses the rule)"
        );
        assert_eq!(
            e("conditions: [{from: {match: a=b}, to: []}]\n"),
            "`conditions[0]`: `from`/`to` conditions need `configVersion: v3.1`"
        );
        assert_eq!(
            e("configVersion: v3.2\nconditions: [a=b=>c=d]\n"),
            "configVersion `v3.2` is newer than v3.1, the newest condition rule format known"
        );
        assert_eq!(e("scope: service\nconditions: []\n"), "no `conditions`");
        assert_eq!(e("key: x\n"), "no `conditions`");
        assert_eq!(
            e("conditions: ['a = b => c = d', 'x = 1 => host = a b']\n"),
            "condition rule 1 `x = 1 => host = a b`: then part, byte 9: `b` needs `=`, `!=`, `,` or `&` before it"
        );
        assert_eq!(
            e("force: sometimes\nconditions: [a=b]\n"),
            "`force`: expected true or false, found `sometimes`"
        );
        assert!(e("valid: false\nconditions: [a=b]\n").starts_with("`valid`"));
        let many: String = (0..65)
            .map(|i| format!("  - method = m{i} => host = h\n"))
            .collect();
        assert_eq!(
            e(&format!("conditions:\n{many}")),
            "too many enabled condition rules: 65 (at most 64)"
        );
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let r = ConditionRouterRule::parse("conditions: [a=b]\ndescription: hi\nrawRule: x\n").unwrap();
        assert_eq!(
            r.warnings,
            ["`description` is not a Dubbo rule field here: ignored"]
        );
    }
}
