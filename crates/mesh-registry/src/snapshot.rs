//! The pure model: endpoints, immutable versioned snapshots, and the etcd key/value layout. No IO.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// Capacity weight of an endpoint that does not say otherwise.
pub const DEFAULT_WEIGHT: u32 = 100;

/// The service name that matches every service without an entry of its own (used by static lists such as
/// `mesh-agent consumer --provider 127.0.0.1:30000`).
pub const WILDCARD_SERVICE: &str = "*";

/// The default etcd key prefix.
pub const DEFAULT_PREFIX: &str = "/dubbomesh/v1";

/// One provider agent instance serving a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where its agent listens.
    pub addr: SocketAddr,
    /// Capacity weight (default [`DEFAULT_WEIGHT`]); entries read from etcd are always at least 1.
    pub weight: u32,
    /// The provider's thread cap (Dubbo's `threads`), when known; entries read from etcd are never `Some(0)`.
    pub max_concurrency: Option<u32>,
    /// Unique per agent instance, e.g. `host:port` (a restarted agent may use a new one).
    pub id: String,
    /// Dubbo's `dubbo.tag` of the provider (tag routing), if any.
    pub tag: Option<String>,
    /// Other attributes for condition routing (`application`, `version`, anything).
    pub params: BTreeMap<String, String>,
    /// When the provider started (Unix milliseconds), for warm-up (slow start) of its weight; `None`: warm.
    pub registered_at_ms: Option<u64>,
}

impl Endpoint {
    /// An endpoint with the default weight, no concurrency cap and `addr` as its id.
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            weight: DEFAULT_WEIGHT,
            max_concurrency: None,
            id: addr.to_string(),
            tag: None,
            params: BTreeMap::new(),
            registered_at_ms: None,
        }
    }

    /// The same endpoint with its start time (Unix milliseconds), for warm-up.
    pub fn with_registered_at_ms(mut self, ms: u64) -> Self {
        self.registered_at_ms = Some(ms);
        self
    }

    /// The same endpoint with a routing tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// The same endpoint with one more routing attribute.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The same endpoint with another weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same endpoint with a concurrency cap.
    pub fn with_max_concurrency(mut self, max: u32) -> Self {
        self.max_concurrency = Some(max);
        self
    }

    /// The same endpoint with another id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// An immutable view of every provider, as one registry source saw it at one moment.
///
/// `version` grows by one with every snapshot a watcher publishes (the first one is 1), so a shard can tell
/// a new snapshot from the one it has by comparing versions. Per service, endpoints are sorted by address
/// and unique per address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Publication number: 1 for the first snapshot of a watcher, +1 for each later one.
    pub version: u64,
    services: BTreeMap<String, Vec<Endpoint>>,
    /// Routing rule documents by service (the text of `{prefix}/{service}/routing`), for the consumer's
    /// router to parse.
    rules: BTreeMap<String, std::sync::Arc<str>>,
    /// Every address any service lists, built with the snapshot: [`Snapshot::contains_addr`] in O(1).
    addrs: HashSet<SocketAddr>,
}

impl Snapshot {
    /// Builds a snapshot from `(service, endpoint)` pairs in any order. When a service lists the same
    /// address twice, the later pair wins.
    pub fn new(version: u64, entries: impl IntoIterator<Item = (String, Endpoint)>) -> Self {
        let mut by_service: BTreeMap<String, BTreeMap<SocketAddr, Endpoint>> = BTreeMap::new();
        for (service, endpoint) in entries {
            by_service
                .entry(service)
                .or_default()
                .insert(endpoint.addr, endpoint);
        }
        let services: BTreeMap<String, Vec<Endpoint>> = by_service
            .into_iter()
            .map(|(service, eps)| (service, eps.into_values().collect()))
            .collect();
        let addrs = services.values().flatten().map(|e| e.addr).collect();
        Snapshot {
            version,
            services,
            rules: BTreeMap::new(),
            addrs,
        }
    }

    /// The same snapshot with these routing rule documents (service -> text).
    pub fn with_rules(mut self, rules: impl IntoIterator<Item = (String, String)>) -> Self {
        self.rules = rules.into_iter().map(|(s, r)| (s, r.into())).collect();
        self
    }

    /// The routing rule document of `service`, if one is registered.
    pub fn rules(&self, service: &str) -> Option<&str> {
        self.rules.get(service).map(|r| &**r)
    }

    /// A snapshot without any endpoint.
    pub fn empty(version: u64) -> Self {
        Snapshot {
            version,
            ..Snapshot::default()
        }
    }

    /// The endpoints serving `service`: its own entry, else the wildcard [`WILDCARD_SERVICE`] entry, else
    /// none. Sorted by address.
    pub fn endpoints(&self, service: &str) -> &[Endpoint] {
        self.services
            .get(service)
            .or_else(|| self.services.get(WILDCARD_SERVICE))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any service lists an endpoint at `addr` (O(1): the index is built with the snapshot).
    pub fn contains_addr(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&addr)
    }

    /// The services with an entry of their own (including `*` when present), sorted.
    pub fn services(&self) -> impl Iterator<Item = &str> + '_ {
        self.services.keys().map(String::as_str)
    }

    /// Every `(service, endpoints)` entry, sorted by service.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Endpoint])> + '_ {
        self.services.iter().map(|(s, eps)| (s.as_str(), eps.as_slice()))
    }

    /// Whether no service has any endpoint.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The number of `(service, endpoint)` entries.
    pub fn endpoint_count(&self) -> usize {
        self.services.values().map(Vec::len).sum()
    }

    /// Whether `other` lists exactly the same endpoints and rules, whatever the versions.
    pub fn same_endpoints(&self, other: &Snapshot) -> bool {
        self.services == other.services && self.rules == other.rules
    }

    /// The same endpoints under another version.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}

/// The JSON stored as the value of a registry key.
#[derive(Debug, Serialize, Deserialize)]
struct EntryValue {
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registered_at_ms: Option<u64>,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// `prefix` without trailing slashes: `/dubbomesh/v1/` and `/dubbomesh/v1` are the same prefix.
pub fn normalize_prefix(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

/// The range every registry key lives in: `{prefix}/` (so that `/dubbomesh/v1` does not also match
/// `/dubbomesh/v10/...`).
pub fn prefix_range(prefix: &str) -> String {
    format!("{}/", normalize_prefix(prefix))
}

/// The key of `addr` serving `service`: `{prefix}/{service}/{ip:port}` (IPv6 as `[ip]:port`).
pub fn key_for(prefix: &str, service: &str, addr: SocketAddr) -> String {
    format!("{}/{}/{}", normalize_prefix(prefix), service, addr)
}

/// Checks a service name for use in a key: not empty, no `/`, no control characters or spaces.
pub fn validate_service(service: &str) -> Result<(), String> {
    if service.is_empty() {
        return Err("empty service name".into());
    }
    if let Some(c) = service
        .chars()
        .find(|c| *c == '/' || c.is_control() || c.is_whitespace())
    {
        return Err(format!("service name {service:?} contains {c:?}"));
    }
    Ok(())
}

/// The value stored for `endpoint`: `{"weight":..,"max_concurrency":..,"id":".."}` (`max_concurrency`
/// left out when unknown).
pub fn encode_value(endpoint: &Endpoint) -> String {
    let value = EntryValue {
        weight: endpoint.weight,
        max_concurrency: endpoint.max_concurrency,
        id: Some(endpoint.id.clone()),
        tag: endpoint.tag.clone(),
        params: endpoint.params.clone(),
        registered_at_ms: endpoint.registered_at_ms,
    };
    // Serializing a struct of integers and a string cannot fail.
    serde_json::to_string(&value).unwrap_or_default()
}

/// Reads one etcd entry: `{prefix}/{service}/{ip:port}` with the endpoint JSON as value.
///
/// Missing value fields take defaults (weight 100, no cap, the address as id); an empty value means all
/// defaults; unknown fields are ignored. Weight 0 and `max_concurrency` 0 are rejected.
pub fn parse_entry(prefix: &str, key: &[u8], value: &[u8]) -> Result<(String, Endpoint), RegistryError> {
    let bad_key = |reason: &str| RegistryError::BadKey {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    };
    let key_str = std::str::from_utf8(key).map_err(|_| bad_key("not UTF-8"))?;
    let rest = key_str
        .strip_prefix(normalize_prefix(prefix))
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| bad_key("outside the registry prefix"))?;
    let (service, addr) = rest
        .split_once('/')
        .ok_or_else(|| bad_key("expected {prefix}/{service}/{ip:port}"))?;
    validate_service(service).map_err(|reason| bad_key(&reason))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| bad_key("the last segment is not an ip:port"))?;
    if addr.port() == 0 {
        return Err(bad_key("port 0"));
    }

    let bad_value = |reason: String| RegistryError::BadValue {
        key: key_str.to_owned(),
        reason,
    };
    let value = if value.iter().all(u8::is_ascii_whitespace) {
        EntryValue {
            weight: DEFAULT_WEIGHT,
            max_concurrency: None,
            id: None,
            tag: None,
            params: BTreeMap::new(),
            registered_at_ms: None,
        }
    } else {
        // Through `Value` first: serde would otherwise also accept a JSON array for the struct.
        match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(v @ serde_json::Value::Object(_)) => {
                EntryValue::deserialize(v).map_err(|e| bad_value(e.to_string()))?
            }
            Ok(_) => return Err(bad_value("not a JSON object".into())),
            Err(e) => return Err(bad_value(e.to_string())),
        }
    };
    if value.weight == 0 {
        return Err(bad_value("weight 0".into()));
    }
    if value.max_concurrency == Some(0) {
        return Err(bad_value("max_concurrency 0".into()));
    }
    let id = match value.id {
        Some(id) if !id.is_empty() => id,
        _ => addr.to_string(),
    };
    Ok((
        service.to_owned(),
        Endpoint {
            addr,
            weight: value.weight,
            max_concurrency: value.max_concurrency,
            id,
            tag: value.tag.filter(|t| !t.is_empty()),
            params: value.params,
            registered_at_ms: value.registered_at_ms,
        },
    ))
}

/// The last key segment that holds a service's routing rules instead of an endpoint.
pub const ROUTING_SEGMENT: &str = "routing";

/// The key of `service`'s routing rule document: `{prefix}/{service}/routing`.
pub fn rules_key_for(prefix: &str, service: &str) -> String {
    format!("{}/{}/{ROUTING_SEGMENT}", normalize_prefix(prefix), service)
}

/// One registry entry: an endpoint, or a service's routing rule document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Endpoint(String, Endpoint),
    /// `(service, document text)`; the document is checked by the consumer's router, not here.
    Rules(String, String),
}

/// Reads any etcd entry under the prefix: [`parse_entry`] for endpoints, the rule document for
/// `{prefix}/{service}/routing` (UTF-8 text, at most 1 MiB).
pub fn parse_any(prefix: &str, key: &[u8], value: &[u8]) -> Result<Entry, RegistryError> {
    let rules_of = std::str::from_utf8(key).ok().and_then(|k| {
        let rest = k.strip_prefix(normalize_prefix(prefix))?.strip_prefix('/')?;
        let (service, last) = rest.split_once('/')?;
        (last == ROUTING_SEGMENT && validate_service(service).is_ok()).then(|| service.to_owned())
    });
    let Some(service) = rules_of else {
        return parse_entry(prefix, key, value).map(|(s, e)| Entry::Endpoint(s, e));
    };
    let bad_value = |reason: &str| RegistryError::BadValue {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    };
    if value.len() > 1024 * 1024 {
        return Err(bad_value("routing rules larger than 1 MiB"));
    }
    let text = std::str::from_utf8(value).map_err(|_| bad_value("routing rules are not UTF-8"))?;
    Ok(Entry::Rules(service, text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::new(s.parse().unwrap())
    }

    #[test]
    fn snapshot_sorts_and_dedups_by_addr_later_wins() {
        let snap = Snapshot::new(
            3,
            [
                ("svc".to_string(), ep("10.0.0.2:20880")),
                ("svc".to_string(), ep("10.0.0.1:20880").with_weight(1)),
                ("svc".to_string(), ep("10.0.0.1:20880").with_weight(7)),
                ("other".to_string(), ep("10.0.0.3:1")),
            ],
        );
        assert_eq!(snap.version, 3);
        let svc = snap.endpoints("svc");
        assert_eq!(svc.len(), 2);
        assert_eq!(svc[0].addr, "10.0.0.1:20880".parse().unwrap());
        assert_eq!(svc[0].weight, 7);
        assert_eq!(svc[1].addr, "10.0.0.2:20880".parse().unwrap());
        assert_eq!(snap.services().collect::<Vec<_>>(), ["other", "svc"]);
        assert_eq!(snap.endpoint_count(), 3);
        assert!(!snap.is_empty());
    }

    #[test]
    fn wildcard_matches_services_without_their_own_entry() {
        let snap = Snapshot::new(
            1,
            [
                ("*".to_string(), ep("127.0.0.1:30000")),
                ("own".to_string(), ep("127.0.0.1:30001")),
            ],
        );
        assert_eq!(snap.endpoints("anything")[0].addr.port(), 30000);
        assert_eq!(snap.endpoints("own").len(), 1);
        assert_eq!(snap.endpoints("own")[0].addr.port(), 30001);
        let no_wildcard = Snapshot::new(1, [("own".to_string(), ep("127.0.0.1:30001"))]);
        assert!(no_wildcard.endpoints("anything").is_empty());
    }

    #[test]
    fn address_index_covers_every_service() {
        let s = Snapshot::new(
            1,
            [
                ("a".to_string(), ep("10.0.0.1:1")),
                ("b".to_string(), ep("10.0.0.2:2")),
                ("*".to_string(), ep("10.0.0.3:3")),
            ],
        );
        for addr in ["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"] {
            assert!(s.contains_addr(addr.parse().unwrap()), "{addr}");
        }
        assert!(!s.contains_addr("10.0.0.1:2".parse().unwrap()));
        assert!(!Snapshot::empty(3).contains_addr("10.0.0.1:1".parse().unwrap()));
        assert!(s
            .clone()
            .with_version(9)
            .contains_addr("10.0.0.2:2".parse().unwrap()));
    }

    #[test]
    fn empty_and_same_endpoints() {
        let a = Snapshot::empty(1);
        assert!(a.is_empty());
        assert_eq!(a.endpoint_count(), 0);
        assert!(a.endpoints("x").is_empty());
        let b = Snapshot::new(2, [("s".to_string(), ep("1.2.3.4:5"))]);
        let c = Snapshot::new(9, [("s".to_string(), ep("1.2.3.4:5"))]);
        assert!(b.same_endpoints(&c));
        assert!(!a.same_endpoints(&b));
        assert_eq!(b.clone().with_version(9), c);
        assert_eq!(b.iter().count(), 1);
    }

    #[test]
    fn tags_params_and_rule_documents() {
        let e = Endpoint::new("10.0.0.1:30000".parse().unwrap())
            .with_registered_at_ms(1_763_700_000_000)
            .with_tag("gray")
            .with_param("application", "orders");
        let key = key_for("/p", "svc", e.addr);
        let (svc, back) = parse_entry("/p", key.as_bytes(), encode_value(&e).as_bytes()).unwrap();
        assert_eq!((svc.as_str(), &back), ("svc", &e));
        // An empty tag is no tag.
        let (_, untagged) = parse_entry("/p", key.as_bytes(), br#"{"tag":""}"#).unwrap();
        assert_eq!(untagged.tag, None);
        // The routing key of a service carries its rule document as text.
        let rk = rules_key_for("/p/", "svc");
        assert_eq!(rk, "/p/svc/routing");
        assert_eq!(
            parse_any("/p", rk.as_bytes(), b"{\"conditions\":[]}").unwrap(),
            Entry::Rules("svc".into(), "{\"conditions\":[]}".into())
        );
        assert!(parse_any("/p", rk.as_bytes(), &[0xff, 0xfe]).is_err());
        assert!(matches!(
            parse_any("/p", key.as_bytes(), b"").unwrap(),
            Entry::Endpoint(s, _) if s == "svc"
        ));
        let snap =
            Snapshot::new(1, [("svc".to_string(), e)]).with_rules([("svc".to_string(), "x".to_string())]);
        assert_eq!(snap.rules("svc"), Some("x"));
        assert_eq!(snap.rules("other"), None);
        assert!(!snap.same_endpoints(&Snapshot::new(
            1,
            snap.iter().map(|(s, e)| (s.to_owned(), e[0].clone()))
        )));
    }

    #[test]
    fn key_layout() {
        let v4: SocketAddr = "10.0.0.1:20880".parse().unwrap();
        assert_eq!(
            key_for(DEFAULT_PREFIX, "com.foo.IHello", v4),
            "/dubbomesh/v1/com.foo.IHello/10.0.0.1:20880"
        );
        assert_eq!(key_for("/p/", "s", v4), "/p/s/10.0.0.1:20880");
        let v6: SocketAddr = "[::1]:30000".parse().unwrap();
        assert_eq!(key_for("/p", "s", v6), "/p/s/[::1]:30000");
        assert_eq!(prefix_range("/p/"), "/p/");
        assert_eq!(prefix_range(DEFAULT_PREFIX), "/dubbomesh/v1/");
    }

    #[test]
    fn round_trip_through_key_and_value() {
        let e = ep("[::1]:30000")
            .with_weight(250)
            .with_max_concurrency(200)
            .with_id("host-a:30000");
        let key = key_for(DEFAULT_PREFIX, "com.foo.IHello", e.addr);
        let value = encode_value(&e);
        assert_eq!(
            value,
            r#"{"weight":250,"max_concurrency":200,"id":"host-a:30000"}"#
        );
        let (service, back) = parse_entry(DEFAULT_PREFIX, key.as_bytes(), value.as_bytes()).unwrap();
        assert_eq!(service, "com.foo.IHello");
        assert_eq!(back, e);
        let plain = ep("1.2.3.4:5");
        assert_eq!(encode_value(&plain), r#"{"weight":100,"id":"1.2.3.4:5"}"#);
    }

    #[test]
    fn value_defaults_and_unknown_fields() {
        let key = b"/dubbomesh/v1/s/1.2.3.4:5";
        for v in [
            &b""[..],
            b"  ",
            b"{}",
            br#"{"max_concurrency":null,"zone":"a"}"#,
            br#"{"id":""}"#,
        ] {
            let (_, e) = parse_entry(DEFAULT_PREFIX, key, v).unwrap();
            assert_eq!(e, ep("1.2.3.4:5"), "value {:?}", String::from_utf8_lossy(v));
        }
        // A trailing slash on the prefix changes nothing.
        assert!(parse_entry("/dubbomesh/v1/", key, b"{}").is_ok());
    }

    #[test]
    fn bad_keys_are_errors() {
        let cases: &[&[u8]] = &[
            b"/other/s/1.2.3.4:5",
            b"/dubbomesh/v10/s/1.2.3.4:5",
            b"/dubbomesh/v1/1.2.3.4:5",
            b"/dubbomesh/v1//1.2.3.4:5",
            b"/dubbomesh/v1/s/notanaddr",
            b"/dubbomesh/v1/s/1.2.3.4",
            b"/dubbomesh/v1/s/1.2.3.4:0",
            b"/dubbomesh/v1/a/b/1.2.3.4:5",
            b"/dubbomesh/v1/s/1.2.3.4:5/",
            b"/dubbomesh/v1/s\xff/1.2.3.4:5",
        ];
        for key in cases {
            match parse_entry(DEFAULT_PREFIX, key, b"{}") {
                Err(RegistryError::BadKey { .. }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(key)),
            }
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let key = b"/dubbomesh/v1/s/1.2.3.4:5";
        let cases: &[&[u8]] = &[
            b"dubbo://1.2.3.4:5/s?weight=1",
            br#"{"weight":0}"#,
            br#"{"weight":-1}"#,
            br#"{"weight":"100"}"#,
            br#"{"max_concurrency":0}"#,
            br#"{"weight":4294967296}"#,
            b"[1]",
            b"\xff",
        ];
        for v in cases {
            match parse_entry(DEFAULT_PREFIX, key, v) {
                Err(RegistryError::BadValue { key: k, .. }) => assert_eq!(k, "/dubbomesh/v1/s/1.2.3.4:5"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(v)),
            }
        }
    }

    #[test]
    fn service_names() {
        assert!(validate_service("com.alibaba.dubbo.performance.demo.provider.IHelloService").is_ok());
        assert!(validate_service(WILDCARD_SERVICE).is_ok());
        assert!(validate_service("").is_err());
        assert!(validate_service("a/b").is_err());
        assert!(validate_service("a b").is_err());
    }
}
