//! Dubbo's tag router rule as Dubbo Admin writes it to the config center (`<providerApp>.tag-router`, YAML),
//! read into a [`TagRule`].
//!
//! Sources (apache/dubbo 3.3, `dubbo-cluster/src/main/java/org/apache/dubbo/rpc/cluster/router/tag/`):
//! - `model/TagRuleParser.java`: a rule without `tags` is invalid, and an invalid or disabled rule leaves
//!   only the static tags (`TagStateRouter.doRoute` -> `filterUsingStaticTag`);
//! - `model/TagRouterRule.java`, `model/Tag.java`: `tags: [{name, addresses: [ip:port, ...]}]`; only when
//!   `configVersion` starts with `v3.0` is a tag's `match: [{key, value: {exact|prefix|regex|wildcard|
//!   empty|noempty}}]` read, and it is used only for a tag without `addresses`: the tag's providers are those
//!   whose URL parameters all match (`init`), and a tag that matches no provider is left unset;
//! - `model/ParamMatch.java` and `../mesh/rule/virtualservice/match/StringMatch.java`: see
//!   [`crate::param_match`];
//! - `TagStateRouter.java`: `force` = a tag whose group matches no provider returns none instead of falling
//!   back; addresses are matched with `NetUtils.matchIpExpression` or as `0.0.0.0:port` (see
//!   [`crate::tag::AddressPattern`]).
//!
//! Refused, with an error naming the place: a tag without a name, two tags with one name (Java keeps the
//! last one), an address that is not an IP pattern (Java logs it and skips it at every call), a `match`
//! entry without `key` or with other than exactly one matcher in its `value`, a regex the `regex` crate
//! cannot run. Not supported and not refused: Dubbo's tag levels (`beta|team1` requests falling back to
//! `beta`), a routing feature of the tag router itself rather than of the rule.

use super::header::RuleHeader;
use super::yaml::{mapping, parse_mapping, scalar_text, Fields};
use super::DubboRuleError;
use crate::param_match::{ParamMatch, StringMatch};
use crate::ruleset::RuleError;
use crate::tag::{AddressPattern, TagRule};

const BODY: &[&str] = &["tags"];

/// One `*.tag-router` document, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRouterRule {
    /// `key` (the provider application, informational: the config key decides), `configVersion` (`v3.0...`
    /// enables `match`), `enabled`, `force` (also in [`TagRule::force`]), `runtime`, `priority`.
    pub header: RuleHeader,
    /// The rule (its `force` included); `None` when there are no tags (Dubbo: an invalid rule).
    pub rule: Option<TagRule>,
    /// Keys Dubbo does not read (or does not read in this version), ignored.
    pub warnings: Vec<String>,
}

impl TagRouterRule {
    /// Parses and validates a tag router YAML.
    pub fn parse(text: &str) -> Result<TagRouterRule, DubboRuleError> {
        let map = parse_mapping(text)?;
        let f = Fields::document(&map, BODY);
        let header = RuleHeader::read(&f)?;
        let with_match = header
            .config_version
            .as_deref()
            .is_some_and(|v| v.starts_with("v3.0"));
        let mut warnings = f.unknown();
        let mut groups: Vec<(String, Vec<AddressPattern>)> = Vec::new();
        let mut param_groups: Vec<(String, Vec<ParamMatch>)> = Vec::new();
        let entries = f.list("tags")?.map(Vec::as_slice).unwrap_or_default();
        for (index, entry) in entries.iter().enumerate() {
            let path = format!("tags[{index}]");
            let tag = Fields::new(
                format!("{path}."),
                mapping(entry, &path)?,
                &["name", "addresses", "match"],
            );
            warnings.extend(tag.unknown());
            let name = tag.text("name")?.unwrap_or_default();
            let bad = |why: String| {
                DubboRuleError::Rule(RuleError::TagGroup {
                    index,
                    name: name.clone(),
                    why,
                })
            };
            if name.is_empty() {
                return Err(bad("empty tag name".into()));
            }
            if groups.iter().any(|(n, _)| *n == name) || param_groups.iter().any(|(n, _)| *n == name) {
                return Err(bad("duplicate tag name".into()));
            }
            let addresses = tag.list("addresses")?.map(Vec::as_slice).unwrap_or_default();
            let matchers = tag.list("match")?;
            if matchers.is_some() && !with_match {
                warnings.push(format!(
                    "`{path}.match` is read only with `configVersion: v3.0`: ignored"
                ));
            }
            match matchers.filter(|_| with_match && addresses.is_empty()) {
                Some(list) => {
                    let mut ms = Vec::with_capacity(list.len());
                    for (i, m) in list.iter().enumerate() {
                        ms.push(param_match(m, &format!("{path}.match[{i}]"))?);
                    }
                    param_groups.push((name, ms));
                }
                None => {
                    let mut pats = Vec::with_capacity(addresses.len());
                    for (i, a) in addresses.iter().enumerate() {
                        let a = scalar_text(a, &format!("{path}.addresses[{i}]"))?;
                        pats.push(
                            AddressPattern::parse(&a)
                                .map_err(|why| bad(format!("bad address `{a}`: {why}")))?,
                        );
                    }
                    groups.push((name, pats));
                }
            }
        }
        let rule = (!entries.is_empty()).then_some(TagRule {
            force: header.force,
            groups,
            param_groups,
        });
        Ok(TagRouterRule {
            header,
            rule,
            warnings,
        })
    }

    /// The rule for a route table: `None` when disabled or without tags (static tags only).
    pub fn tag_rule(&self) -> Option<&TagRule> {
        self.rule.as_ref().filter(|_| self.header.enabled)
    }
}

fn param_match(v: &serde_json::Value, path: &str) -> Result<ParamMatch, DubboRuleError> {
    let m = Fields::new(format!("{path}."), mapping(v, path)?, &["key", "value"]);
    let key = m
        .text("key")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| DubboRuleError::field(m.name("key"), "missing"))?;
    let value_path = m.name("value");
    let value = m
        .get("value")
        .ok_or_else(|| DubboRuleError::field(&value_path, "missing (Dubbo matches nothing)"))?;
    let value = mapping(value, &value_path)?;
    let kinds = ["exact", "prefix", "regex", "wildcard", "empty", "noempty"];
    let set: Vec<(&String, &serde_json::Value)> = value.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(kind, text)] = set.as_slice() else {
        return Err(DubboRuleError::field(
            value_path,
            format!("give exactly one of {}", kinds.join(", ")),
        ));
    };
    let at = format!("{value_path}.{kind}");
    let text = scalar_text(text, &at)?;
    let value = match kind.as_str() {
        "exact" => StringMatch::Exact(text),
        "prefix" => StringMatch::Prefix(text),
        "regex" => StringMatch::regex(&text).map_err(|why| DubboRuleError::field(&at, why))?,
        "wildcard" => StringMatch::Wildcard(text),
        "empty" => StringMatch::Empty,
        "noempty" => StringMatch::NonEmpty,
        other => {
            return Err(DubboRuleError::field(
                value_path,
                format!("unknown matcher `{other}` (known: {})", kinds.join(", ")),
            ))
        }
    };
    Ok(ParamMatch { key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of `TagRouterRule`'s Javadoc, as Dubbo Admin writes it.
    #[test]
    fn parses_address_tags() {
        let r = TagRouterRule::parse(
            "force: true\nruntime: false\nenabled: true\npriority: 1\nkey: demo-provider\ntags:\n\
             \x20 - name: tag1\n    addresses: [\"10.0.0.1:20880\", 10.0.0.2]\n\
             \x20 - name: tag2\n    addresses: [\"10.0.1.0/24\"]\n  - name: tag3\n",
        )
        .unwrap();
        assert_eq!(r.header.key.as_deref(), Some("demo-provider"));
        let rule = r.tag_rule().unwrap();
        assert!(rule.force);
        assert_eq!(rule.group("tag1").unwrap().len(), 2);
        assert!(rule.group("tag2").unwrap()[0].matches("10.0.1.7:1".parse().unwrap()));
        assert!(
            rule.group("tag3").unwrap().is_empty(),
            "a tag without addresses names nobody"
        );
        assert!(r.warnings.is_empty());
        // disabled, or without tags: static tags only
        let off = TagRouterRule::parse("enabled: false\ntags: [{name: a, addresses: [1.2.3.4]}]\n").unwrap();
        assert!(off.tag_rule().is_none());
        assert!(TagRouterRule::parse("force: true\n")
            .unwrap()
            .tag_rule()
            .is_none());
    }

    #[test]
    fn parses_v30_parameter_matches() {
        let r = TagRouterRule::parse(
            "configVersion: v3.0\nforce: false\nenabled: true\nkey: shop\ntags:\n\
             \x20 - name: gray\n    match:\n      - key: env\n        value: {exact: gray}\n\
             \x20     - key: version\n        value:\n          regex: 'v2\\..*'\n\
             \x20 - name: fixed\n    addresses: [10.0.0.9]\n    match: [{key: env, value: {exact: x}}]\n",
        )
        .unwrap();
        let rule = r.tag_rule().unwrap();
        assert_eq!(rule.param_groups.len(), 1);
        let (name, ms) = &rule.param_groups[0];
        assert_eq!(name, "gray");
        assert_eq!(
            ms[0],
            ParamMatch {
                key: "env".into(),
                value: StringMatch::Exact("gray".into())
            }
        );
        assert!(ms[1].matches(Some("v2.1")) && !ms[1].matches(Some("v3.0")));
        // addresses win over match (Java reads match only for tags without addresses)
        assert_eq!(rule.group("fixed").unwrap().len(), 1);
        // without v3.0, match is not read: a tag without addresses, and a warning
        let old = TagRouterRule::parse("tags: [{name: gray, match: [{key: env, value: {exact: gray}}]}]\n")
            .unwrap();
        assert!(old.tag_rule().unwrap().param_groups.is_empty());
        assert!(old.tag_rule().unwrap().group("gray").unwrap().is_empty());
        assert_eq!(
            old.warnings,
            ["`tags[0].match` is read only with `configVersion: v3.0`: ignored"]
        );
    }

    #[test]
    fn refuses_what_it_cannot_express_naming_the_place() {
        let e = |y: &str| TagRouterRule::parse(y).unwrap_err().to_string();
        assert_eq!(
            e("tags: [{name: a, addresses: [my-host:20880]}]\n"),
            "tag rule group 0 `a`: bad address `my-host:20880`: host is not an IPv4 pattern (four octets)"
        );
        assert_eq!(
            e("tags: [{addresses: [1.2.3.4]}]\n"),
            "tag rule group 0 ``: empty tag name"
        );
        assert_eq!(
            e("tags: [{name: a}, {name: a}]\n"),
            "tag rule group 1 `a`: duplicate tag name"
        );
        let v30 = |m: &str| {
            e(&format!(
                "configVersion: v3.0\ntags: [{{name: a, match: [{m}]}}]\n"
            ))
        };
        assert_eq!(
            v30("{key: env, value: {exact: a, prefix: b}}"),
            "`tags[0].match[0].value`: give exactly one of exact, prefix, regex, wildcard, empty, noempty"
        );
        assert_eq!(
            v30("{key: env}"),
            "`tags[0].match[0].value`: missing (Dubbo matches nothing)"
        );
        assert_eq!(v30("{value: {exact: a}}"), "`tags[0].match[0].key`: missing");
        assert_eq!(
            v30("{key: env, value: {like: a}}"),
            "`tags[0].match[0].value`: unknown matcher `like` (known: exact, prefix, regex, wildcard, empty, noempty)"
        );
        assert!(
            v30("{key: env, value: {regex: '(?<=a)b'}}").starts_with("`tags[0].match[0].value.regex`: regex")
        );
        assert_eq!(e("tags: {name: a}\n"), "`tags`: expected a list, found a mapping");
    }
}
