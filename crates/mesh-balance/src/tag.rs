//! Tag routing: the providers' static tags plus an optional dynamic tag rule (tag name -> addresses), with
//! Dubbo's `TagStateRouter` semantics. Everything here runs at table build time; requests only look up the
//! precomputed result for their tag.
//!
//! With **no dynamic rule** (or a disabled one):
//! - request tag `T`: the providers tagged `T`; if there are none and the request does not force the tag
//!   (`dubbo.force.tag`), the providers without a tag;
//! - no request tag: the providers without a tag (none if every provider is tagged — Dubbo does not fall
//!   back to tagged providers).
//!
//! With a **dynamic rule**:
//! - request tag `T` and the rule names addresses for `T`: the providers at those addresses; if that is
//!   empty and the rule is not `force`, continue below with an empty result;
//! - request tag `T` the rule does not name: the providers with static tag `T`;
//! - still empty and the request does not force the tag: the providers that are in no dynamic group and
//!   have no static tag;
//! - no request tag: the providers in no dynamic group (empty if all are), minus those whose static tag is
//!   one of the rule's tag names.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use crate::param_match::ParamMatch;
use crate::table::Provider;

/// One host:port pattern of a dynamic tag group.
///
/// Accepted: `1.2.3.4:20880`, `1.2.3.4` (any port), `1.2.3.*:20880` and `1.2.3.10-20` (per-octet `*` and
/// ranges), `10.0.0.0/8[:port]` (CIDR), `*:20880` / `0.0.0.0:20880` (any host), `[::1]:20880` and bare IPv6
/// addresses, and `*` as the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPattern {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    V4([(u8, u8); 4]),
    Cidr(u32, u32),
    Exact(IpAddr),
}

impl AddressPattern {
    /// Parses one address pattern; the error says what is wrong.
    pub fn parse(s: &str) -> Result<AddressPattern, &'static str> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty address");
        }
        if s == "*" {
            return Ok(AddressPattern {
                host: HostPattern::Any,
                port: None,
            });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(AddressPattern {
                host: host_or_any(sa.ip()),
                port: Some(sa.port()),
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AddressPattern {
                host: host_or_any(ip),
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port = if p == "*" {
                    None
                } else {
                    Some(p.parse::<u16>().map_err(|_| "bad port")?)
                };
                (h, port)
            }
            None => (s, None),
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some((net, bits)) = host.split_once('/') {
            let net: Ipv4Addr = net.parse().map_err(|_| "bad CIDR network")?;
            let bits: u32 = bits.parse().map_err(|_| "bad CIDR prefix length")?;
            if bits > 32 {
                return Err("CIDR prefix length over 32");
            }
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            HostPattern::Cidr(u32::from(net) & mask, mask)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            host_or_any(ip)
        } else {
            let parts: Vec<&str> = host.split('.').collect();
            if parts.len() != 4 {
                return Err("host is not an IPv4 pattern (four octets)");
            }
            let mut oct = [(0u8, 0u8); 4];
            for (o, part) in oct.iter_mut().zip(parts) {
                *o = if part == "*" {
                    (0, 255)
                } else if let Some((a, b)) = part.split_once('-') {
                    let a: u8 = a.parse().map_err(|_| "bad octet range")?;
                    let b: u8 = b.parse().map_err(|_| "bad octet range")?;
                    if a > b {
                        return Err("empty octet range");
                    }
                    (a, b)
                } else {
                    let v: u8 = part.parse().map_err(|_| "bad octet")?;
                    (v, v)
                };
            }
            HostPattern::V4(oct)
        };
        Ok(AddressPattern { host, port })
    }

    /// Exactly `addr`.
    pub fn exact(addr: SocketAddr) -> AddressPattern {
        AddressPattern {
            host: HostPattern::Exact(addr.ip()),
            port: Some(addr.port()),
        }
    }

    /// True when `addr` matches.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        if self.port.is_some_and(|p| p != addr.port()) {
            return false;
        }
        match (&self.host, addr.ip()) {
            (HostPattern::Any, _) => true,
            (HostPattern::Exact(ip), a) => *ip == a,
            (HostPattern::V4(oct), IpAddr::V4(a)) => oct
                .iter()
                .zip(a.octets())
                .all(|(&(lo, hi), o)| lo <= o && o <= hi),
            (HostPattern::Cidr(net, mask), IpAddr::V4(a)) => u32::from(a) & mask == *net,
            _ => false,
        }
    }
}

fn host_or_any(ip: IpAddr) -> HostPattern {
    if ip.is_unspecified() {
        HostPattern::Any
    } else {
        HostPattern::Exact(ip)
    }
}

/// A dynamic tag rule as it appears in the rule document (`"tag": {...}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRuleSpec {
    /// A disabled rule behaves as if there were none (static tags only).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When a tag's address group matches no provider: true = no provider, false = fall back.
    #[serde(default)]
    pub force: bool,
    /// The groups.
    #[serde(default)]
    pub tags: Vec<TagGroupSpec>,
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

impl TagRuleSpec {
    /// An enabled rule with these groups.
    pub fn new(force: bool, tags: Vec<TagGroupSpec>) -> Self {
        TagRuleSpec {
            enabled: true,
            force,
            tags,
            _key: None,
            _scope: None,
            _runtime: None,
            _config_version: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// One `{"name": "gray", "addresses": ["10.0.0.1:20880"]}` group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagGroupSpec {
    /// Tag name (the value of the request's `dubbo.tag` attachment).
    pub name: String,
    /// Address patterns (see [`AddressPattern`]).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A validated dynamic tag rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRule {
    /// Fall back (false) or not (true) when a named group matches no provider.
    pub force: bool,
    /// `(tag name, address patterns)`, in document order; names are unique.
    pub groups: Vec<(String, Vec<AddressPattern>)>,
    /// Dubbo 3 groups chosen by provider parameters (`configVersion: v3.0` tag rules' `match`), names unique
    /// and distinct from `groups`: every matcher must match (an empty list matches every provider). They
    /// become address groups of the providers they match when a route table is built
    /// ([`TagRule::for_providers`]), as Java's `TagRouterRule.init` does with the current invokers.
    pub param_groups: Vec<(String, Vec<ParamMatch>)>,
}

impl TagRule {
    /// Validates a spec; `Ok(None)` for a disabled rule.
    pub fn from_spec(spec: &TagRuleSpec) -> Result<Option<TagRule>, crate::RuleError> {
        if !spec.enabled {
            return Ok(None);
        }
        let mut groups: Vec<(String, Vec<AddressPattern>)> = Vec::new();
        for (index, g) in spec.tags.iter().enumerate() {
            if g.name.is_empty() {
                return Err(crate::RuleError::TagGroup {
                    index,
                    name: g.name.clone(),
                    why: "empty tag name".into(),
                });
            }
            if groups.iter().any(|(n, _)| *n == g.name) {
                return Err(crate::RuleError::TagGroup {
                    index,
                    name: g.name.clone(),
                    why: "duplicate tag name".into(),
                });
            }
            let mut pats = Vec::new();
            for a in &g.addresses {
                pats.push(
                    AddressPattern::parse(a).map_err(|why| crate::RuleError::TagGroup {
                        index,
                        name: g.name.clone(),
                        why: format!("bad address `{a}`: {why}"),
                    })?,
                );
            }
            groups.push((g.name.clone(), pats));
        }
        Ok(Some(TagRule {
            force: spec.force,
            groups,
            param_groups: Vec::new(),
        }))
    }

    /// The address patterns of group `name`, if the rule has that group.
    pub fn group(&self, name: &str) -> Option<&[AddressPattern]> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_slice())
    }

    /// The rule as it applies to `providers`: each parameter group becomes an address group of the providers
    /// whose parameters match (`dubbo.tag` is a provider's static tag). A parameter group that matches nobody
    /// stays as a group without addresses, which the tag router treats as a tag the rule does not name (Java
    /// leaves such a tag out of `tagnameToAddresses`). Borrowed when there are no parameter groups.
    pub fn for_providers(&self, providers: &[Provider]) -> Cow<'_, TagRule> {
        if self.param_groups.is_empty() {
            return Cow::Borrowed(self);
        }
        let mut rule = self.clone();
        for (name, matchers) in rule.param_groups.drain(..) {
            let addrs = providers
                .iter()
                .filter(|p| {
                    matchers.iter().all(|m| {
                        let v = match m.key.as_str() {
                            "dubbo.tag" => p.tag.as_deref(),
                            k => p.params.get(k).map(String::as_str),
                        };
                        m.matches(v)
                    })
                })
                .map(|p| AddressPattern::exact(p.addr))
                .collect();
            rule.groups.push((name, addrs));
        }
        Cow::Owned(rule)
    }

    /// True when `addr` is in any group.
    pub fn in_any_group(&self, addr: SocketAddr) -> bool {
        self.groups
            .iter()
            .any(|(_, ps)| ps.iter().any(|p| p.matches(addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        AddressPattern::parse(p).unwrap().matches(a.parse().unwrap())
    }

    #[test]
    fn address_patterns() {
        assert!(m("10.0.0.1:20880", "10.0.0.1:20880"));
        assert!(!m("10.0.0.1:20880", "10.0.0.1:20881"));
        assert!(m("10.0.0.1", "10.0.0.1:1"));
        assert!(m("10.0.*.1-5:*", "10.0.9.3:7"));
        assert!(!m("10.0.*.1-5", "10.0.9.6:7"));
        assert!(m("10.0.0.0/8", "10.200.0.1:1") && !m("10.0.0.0/8:5", "10.200.0.1:1"));
        assert!(m("*:20880", "1.2.3.4:20880") && m("0.0.0.0:20880", "1.2.3.4:20880"));
        assert!(!m("0.0.0.0:20880", "1.2.3.4:1"));
        assert!(m("[::1]:5", "[::1]:5") && m("::1", "[::1]:9") && !m("::1", "127.0.0.1:9"));
        assert!(m("*", "[::1]:9"));
        let a: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert!(
            AddressPattern::exact(a).matches(a)
                && !AddressPattern::exact(a).matches("10.0.0.1:6".parse().unwrap())
        );
        for bad in ["", "1.2.3", "1.2.3.4:x", "1.2.3.9-1", "10.0.0.0/40", "a.b.c.d"] {
            assert!(AddressPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameter_groups_become_address_groups_of_the_matching_providers() {
        use crate::param_match::StringMatch;
        let p = |i: u8, env: Option<&str>| {
            let mut p = Provider::new(format!("10.0.0.{i}:1").parse().unwrap());
            if let Some(e) = env {
                p = p.with_param("env", e);
            }
            p
        };
        let providers = [
            p(1, Some("gray")),
            p(2, Some("prod")),
            p(3, None),
            p(4, None).with_tag("t"),
        ];
        let rule = TagRule {
            force: false,
            groups: vec![("fixed".into(), vec![AddressPattern::parse("10.0.0.9").unwrap()])],
            param_groups: vec![
                (
                    "gray".into(),
                    vec![ParamMatch {
                        key: "env".into(),
                        value: StringMatch::Exact("gray".into()),
                    }],
                ),
                (
                    "bare".into(),
                    vec![ParamMatch {
                        key: "env".into(),
                        value: StringMatch::Empty,
                    }],
                ),
                (
                    "tagged".into(),
                    vec![ParamMatch {
                        key: "dubbo.tag".into(),
                        value: StringMatch::NonEmpty,
                    }],
                ),
                (
                    "nobody".into(),
                    vec![ParamMatch {
                        key: "env".into(),
                        value: StringMatch::Prefix("x".into()),
                    }],
                ),
                ("everyone".into(), vec![]),
            ],
        };
        let r = rule.for_providers(&providers);
        assert!(r.param_groups.is_empty());
        let members = |name: &str| -> Vec<u8> {
            let g = r.group(name).unwrap();
            providers
                .iter()
                .filter(|p| g.iter().any(|a| a.matches(p.addr)))
                .map(|p| match p.addr.ip() {
                    IpAddr::V4(v4) => v4.octets()[3],
                    IpAddr::V6(_) => 0,
                })
                .collect()
        };
        assert_eq!(members("gray"), [1]);
        assert_eq!(members("bare"), [3, 4]);
        assert_eq!(members("tagged"), [4]);
        assert!(
            r.group("nobody").unwrap().is_empty(),
            "kept as a group naming nobody"
        );
        assert_eq!(members("everyone"), [1, 2, 3, 4]);
        assert_eq!(r.group("fixed").unwrap().len(), 1);
        // without parameter groups the rule is used as it is
        let plain = TagRule {
            param_groups: vec![],
            ..rule.clone()
        };
        assert!(matches!(plain.for_providers(&providers), Cow::Borrowed(_)));
    }
}
