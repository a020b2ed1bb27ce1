//! URL simplification (`simplified=true` + `extra-keys`): the parameters Dubbo keeps in registered URLs.
//!
//! Fact sheet §3 (J27/J3 `dubbo-registry/dubbo-registry-api/.../integration/RegistryProtocol.java`
//! `DEFAULT_REGISTER_PROVIDER_KEYS` / `DEFAULT_REGISTER_CONSUMER_KEYS` and `getUrlToRegistry`; 3.2.11+
//! `DefaultServiceURLCustomizer`; `DynamicDirectory.setRegisteredConsumerUrl`; `URL.valueOf(url,
//! reserveParams, reserveParamPrefixs)` in J27/J3 `dubbo-common/.../URL.java`):
//!
//! * provider: keep the default provider keys of the Dubbo version, the extra keys, `interface` when the
//!   path is not the interface (every release after 2.7.0), and every key that starts with one of the
//!   `methods` names; only non-empty values; protocol, user info, host, port and path stay;
//! * consumer: keep the default consumer keys, then set `category=consumers` and `check=false`.

use super::url::{DubboUrl, CATEGORY_KEY, INTERFACE_KEY};
use super::Category;

/// A Dubbo version whose default provider key list differs from the one before it (fact sheet §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DubboVersion {
    /// 2.7.0 – 2.7.15.
    ///
    /// 2.7.0 itself (`getRegisteredProviderUrl`) did not keep `interface` when the path is not the interface;
    /// every later release (`getUrlToRegistry`, `DefaultServiceURLCustomizer`) does, and so does this.
    V2_7_0,
    /// 2.7.16 – 2.7.23: adds `dubbo.tag`.
    V2_7_16,
    /// 3.0.0: the 2.7.0 list without `timestamp`.
    V3_0_0,
    /// Later 3.0.x (the 3.0 branch): adds `side`.
    V3_0,
    /// 3.1: adds `ipv6`.
    V3_1,
    /// 3.2: adds `prefer.serialization` and `serialize.packable.factory`.
    V3_2,
    /// 3.3 (the default): adds `auth`, `authenticator`, `username`, `password`.
    #[default]
    V3_3,
}

/// 2.7.0's `DEFAULT_REGISTER_PROVIDER_KEYS` (J27 tag `dubbo-2.7.0` `Constants.java`).
const PROVIDER_KEYS_2_7_0: &[&str] = &[
    "application",
    "codec",
    "exchanger",
    "serialization",
    "cluster",
    "connections",
    "deprecated",
    "group",
    "loadbalance",
    "mock",
    "path",
    "timeout",
    "token",
    "version",
    "warmup",
    "weight",
    "timestamp",
    "dubbo",
    "release",
];

/// What each version adds to (or, for 3.0.0, removes from) the list before it.
const ADDED_2_7_16: &[&str] = &["dubbo.tag"];
const ADDED_3_0: &[&str] = &["side"];
const ADDED_3_1: &[&str] = &["ipv6"];
const ADDED_3_2: &[&str] = &["prefer.serialization", "serialize.packable.factory"];
const ADDED_3_3: &[&str] = &["auth", "authenticator", "username", "password"];

/// `DEFAULT_REGISTER_CONSUMER_KEYS`, the same in every version.
pub const CONSUMER_KEYS: &[&str] = &["application", "version", "group", "dubbo", "release"];

/// The parameter a simplified consumer URL gets set to `false`.
const CHECK_KEY: &str = "check";

impl DubboVersion {
    /// The default provider keys this version keeps in a simplified provider URL.
    pub fn provider_keys(self) -> Vec<&'static str> {
        let mut keys: Vec<&str> = PROVIDER_KEYS_2_7_0.to_vec();
        if self == DubboVersion::V2_7_16 {
            keys.extend_from_slice(ADDED_2_7_16);
        }
        if self >= DubboVersion::V3_0_0 {
            keys.retain(|k| *k != "timestamp");
        }
        for (since, added) in [
            (DubboVersion::V3_0, ADDED_3_0),
            (DubboVersion::V3_1, ADDED_3_1),
            (DubboVersion::V3_2, ADDED_3_2),
            (DubboVersion::V3_3, ADDED_3_3),
        ] {
            if self >= since {
                keys.extend_from_slice(added);
            }
        }
        keys
    }
}

/// The provider URL as Dubbo registers it with `simplified=true` and `extra-keys=extra_keys` (see the module
/// documentation).
pub fn simplify_provider_url(
    url: &DubboUrl,
    version: DubboVersion,
    extra_keys: &[impl AsRef<str>],
) -> DubboUrl {
    let mut kept: Vec<&str> = version.provider_keys();
    kept.extend(extra_keys.iter().map(AsRef::as_ref));
    if url.param(INTERFACE_KEY) != Some(url.path.as_str()) {
        kept.push(INTERFACE_KEY);
    }
    let methods: Vec<&str> = url.methods().collect();
    let params = url
        .params
        .iter()
        .filter(|(key, value)| {
            !value.is_empty() && (kept.contains(&key.as_str()) || methods.iter().any(|m| key.starts_with(m)))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    DubboUrl {
        params,
        ..url.clone()
    }
}

/// The consumer URL as Dubbo registers it with `simplified=true`: [`CONSUMER_KEYS`] kept, then
/// `category=consumers` and `check=false`.
pub fn simplify_consumer_url(url: &DubboUrl) -> DubboUrl {
    let mut params: std::collections::BTreeMap<String, String> = url
        .params
        .iter()
        .filter(|(key, value)| !value.is_empty() && CONSUMER_KEYS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.insert(CATEGORY_KEY.to_owned(), Category::Consumers.as_str().to_owned());
    params.insert(CHECK_KEY.to_owned(), "false".to_owned());
    DubboUrl {
        params,
        ..url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full Java 2.7-style provider URL (fact sheet §2.1's "always" list, plus method-level and other
    /// keys).
    fn full() -> DubboUrl {
        DubboUrl::parse(
            "dubbo://10.0.0.1:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo\
             &deprecated=false&dubbo=2.0.2&dubbo.tag=gray&dynamic=true&generic=false\
             &interface=org.apache.dubbo.demo.DemoService&ipv6=fe80::1&methods=sayHello,sayHelloAsync\
             &owner=ops&pid=42&prefer.serialization=fastjson2,hessian2&release=3.3.1\
             &sayHello.timeout=3000&sayHelloAsync.retries=0&side=provider&timeout=&timestamp=1700000000000\
             &token=secret&weight=50",
        )
        .unwrap()
    }

    fn kept(u: &DubboUrl) -> Vec<&str> {
        u.params.keys().map(String::as_str).collect()
    }

    #[test]
    fn provider_lists_per_version_match_the_fact_sheet() {
        let v270 = DubboVersion::V2_7_0.provider_keys();
        assert_eq!(v270.len(), 19);
        assert!(v270.contains(&"timestamp") && !v270.contains(&"dubbo.tag"));
        let v2716 = DubboVersion::V2_7_16.provider_keys();
        assert_eq!(v2716.len(), 20);
        assert!(v2716.contains(&"dubbo.tag"));
        let v300 = DubboVersion::V3_0_0.provider_keys();
        assert_eq!(v300.len(), 18);
        assert!(!v300.contains(&"timestamp") && !v300.contains(&"dubbo.tag"));
        assert_eq!(DubboVersion::V3_0.provider_keys().len(), 19);
        assert_eq!(DubboVersion::V3_1.provider_keys().len(), 20);
        assert_eq!(DubboVersion::V3_2.provider_keys().len(), 22);
        // J3 HEAD `RegistryProtocol.DEFAULT_REGISTER_PROVIDER_KEYS` (26 keys, the sheet's §3.1 3.3 row).
        let mut v33 = DubboVersion::V3_3.provider_keys();
        v33.sort_unstable();
        let mut head: Vec<&str> = "application codec exchanger serialization prefer.serialization cluster \
             connections deprecated group loadbalance mock path timeout token version warmup weight dubbo \
             release side ipv6 serialize.packable.factory auth authenticator username password"
            .split_whitespace()
            .collect();
        head.sort_unstable();
        assert_eq!(v33, head);
        assert_eq!(DubboVersion::default(), DubboVersion::V3_3);
    }

    #[test]
    fn simplified_3_3_provider() {
        let s = simplify_provider_url(&full(), DubboVersion::V3_3, &["owner"]);
        assert_eq!(
            kept(&s),
            [
                "application",
                "deprecated",
                "dubbo",
                "ipv6",
                "owner",
                "prefer.serialization",
                "release",
                "sayHello.timeout",
                "sayHelloAsync.retries",
                "side",
                "token",
                "weight"
            ]
        );
        assert_eq!(
            (s.protocol.as_str(), s.host.as_str(), s.port, s.path.as_str()),
            ("dubbo", "10.0.0.1", 20880, "org.apache.dubbo.demo.DemoService")
        );
        // No `interface` (the path is the interface), no `methods`, no empty `timeout`.
        assert_eq!(s.param("interface"), None);
        assert_eq!(s.service_interface(), "org.apache.dubbo.demo.DemoService");
    }

    #[test]
    fn simplified_2_7_provider_keeps_timestamp_and_tag_by_version() {
        let none: &[&str] = &[];
        let s = simplify_provider_url(&full(), DubboVersion::V2_7_0, none);
        assert!(s.param("timestamp").is_some() && s.param("dubbo.tag").is_none());
        assert!(s.param("side").is_none());
        let s = simplify_provider_url(&full(), DubboVersion::V2_7_16, none);
        assert!(s.param("timestamp").is_some() && s.param("dubbo.tag").is_some());
        let s = simplify_provider_url(&full(), DubboVersion::V3_0_0, none);
        assert!(s.param("timestamp").is_none() && s.param("side").is_none());
        let s = simplify_provider_url(&full(), DubboVersion::V3_0, none);
        assert!(s.param("side").is_some() && s.param("ipv6").is_none());
    }

    #[test]
    fn interface_is_kept_when_the_path_is_not_the_interface() {
        let mut u = full();
        u.path = "demo-path".into();
        let none: &[&str] = &[];
        let s = simplify_provider_url(&u, DubboVersion::V3_3, none);
        assert_eq!(s.param("interface"), Some("org.apache.dubbo.demo.DemoService"));
        let s = simplify_provider_url(&u, DubboVersion::V2_7_16, none);
        assert_eq!(s.param("interface"), Some("org.apache.dubbo.demo.DemoService"));
    }

    #[test]
    fn simplified_consumer() {
        let c = DubboUrl::parse(
            "consumer://10.0.0.2/com.foo.Bar?application=web&category=consumers&check=true&dubbo=2.0.2\
             &group=g&interface=com.foo.Bar&methods=a&pid=7&release=3.3.1&side=consumer&timestamp=1&version=",
        )
        .unwrap();
        let s = simplify_consumer_url(&c);
        assert_eq!(
            s.to_full_string(),
            "consumer://10.0.0.2/com.foo.Bar?application=web&category=consumers&check=false&dubbo=2.0.2&group=g&release=3.3.1"
        );
    }
}
