//! Provider URLs and endpoints: what a provider URL read from the registry means to the consumer (an
//! [`Endpoint`] of a service key, or a reason to skip it), and the URL a provider agent registers.
//!
//! Reading follows what Java and dubbo-go write (fact sheet §2.1, §1.3): `weight` (default 100; 0 drains the
//! provider, negative counts as 0, as Dubbo's `getWeight` does), `timestamp`
//! (milliseconds from Java, seconds from dubbo-go) with `warmup` for slow start (Dubbo's
//! `AbstractLoadBalance.getWeight`), `dubbo.tag` for tag routing, `token` sent back as the `token`
//! attachment, `threads` (the provider's thread pool, when registered) as its concurrency cap. Writing
//! follows Java 3.3's registered provider URL (no `pid`/`anyhost` since 3.2.1), with the agent's own
//! settings under Dubbo's names.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::key::{Category, RegisteredUrl};
use super::url::{DubboUrl, ENABLED_KEY, GROUP_KEY, INTERFACE_KEY, METHODS_KEY, VERSION_KEY};
use super::ServiceKey;
use crate::snapshot::{Endpoint, DEFAULT_WEIGHT};

/// The only protocol the agents call.
pub const DUBBO_PROTOCOL: &str = "dubbo";

/// The Dubbo protocol version every provider registers (`Version.DEFAULT_DUBBO_PROTOCOL_VERSION`).
pub const DUBBO_PROTOCOL_VERSION: &str = "2.0.2";

/// What the agents write as `release` (Java writes its framework version, dubbo-go `dubbo-golang-<ver>`).
pub const RELEASE: &str = concat!("dubbo-mesh-agent-", env!("CARGO_PKG_VERSION"));

/// Below this a `timestamp` is in seconds (dubbo-go), above in milliseconds (Java): 10^11 ms is 1973,
/// 10^11 s is the year 5138.
const SECONDS_BELOW: u64 = 100_000_000_000;

/// What a registered URL is to the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovered {
    /// A provider of `service` (a service key's text, `group/interface:version`).
    Provider {
        /// The service key it serves.
        service: String,
        /// How to reach and weigh it.
        endpoint: Endpoint,
    },
    /// Not a callable provider; why (for one log line).
    Skipped(&'static str),
}

/// Reads a URL found under a registry key (see the module documentation).
pub fn discover(registered: &RegisteredUrl) -> Discovered {
    let params = || {
        registered
            .url
            .params
            .iter()
            .filter(|(k, v)| kept_param(k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    with_params(discover_but_params(registered), params)
}

/// [`discover`], moving the URL's parameters into the endpoint instead of copying them (the watcher's
/// path: a Java provider URL has some twenty).
pub fn discover_owned(registered: RegisteredUrl) -> Discovered {
    let found = discover_but_params(&registered);
    with_params(found, move || {
        let mut params = registered.url.params;
        params.retain(|k, v| kept_param(k, v));
        params
    })
}

/// Whether a URL parameter goes into the endpoint: `methods` can be kilobytes and no rule reads it.
fn kept_param(name: &str, value: &str) -> bool {
    name != METHODS_KEY && !value.is_empty()
}

/// A provider found with these parameters.
fn with_params(found: Discovered, params: impl FnOnce() -> BTreeMap<String, String>) -> Discovered {
    match found {
        Discovered::Provider {
            service,
            mut endpoint,
        } => {
            endpoint.params = params();
            Discovered::Provider { service, endpoint }
        }
        skipped @ Discovered::Skipped(_) => skipped,
    }
}

/// [`discover`] without the endpoint's parameters (left empty).
fn discover_but_params(registered: &RegisteredUrl) -> Discovered {
    let url = &registered.url;
    if registered.category != Category::Providers {
        return Discovered::Skipped("not under providers");
    }
    if url.protocol != DUBBO_PROTOCOL {
        return Discovered::Skipped("not a dubbo:// URL (only the Dubbo protocol is called)");
    }
    if url
        .param(ENABLED_KEY)
        .is_some_and(|e| !e.eq_ignore_ascii_case("true"))
    {
        return Discovered::Skipped("disabled (enabled=false)");
    }
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Discovered::Skipped("the host is not an IP address");
    };
    if url.port == 0 {
        return Discovered::Skipped("no port");
    }
    let addr = SocketAddr::new(ip, url.port);
    let interface = url.param(INTERFACE_KEY).unwrap_or(registered.interface.as_str());
    let service = ServiceKey::new(
        url.group().map(str::to_owned),
        interface,
        url.version().map(str::to_owned),
    );
    let weight = url
        .param("weight")
        .and_then(|w| w.trim().parse::<i64>().ok())
        // Dubbo's `AbstractLoadBalance.getWeight`: max(weight, 0); 0 drains a provider (no share while
        // another weighs more).
        .map_or(DEFAULT_WEIGHT, |w| w.clamp(0, i64::from(u32::MAX)) as u32);
    let threads = url
        .param("threads")
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&t| t > 0);
    let registered_at_ms = url
        .param("timestamp")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
        .map(|t| {
            if t < SECONDS_BELOW {
                t.saturating_mul(1000)
            } else {
                t
            }
        });
    let endpoint = Endpoint {
        addr,
        weight,
        max_concurrency: threads,
        id: addr.to_string(),
        tag: url.param("dubbo.tag").map(str::to_owned),
        params: BTreeMap::new(),
        registered_at_ms,
    };
    Discovered::Provider {
        service: service.to_string(),
        endpoint,
    }
}

/// What a provider agent announces for one service key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRegistration {
    /// The service key it serves.
    pub service: ServiceKey,
    /// Where consumers reach it.
    pub addr: SocketAddr,
    /// Dubbo's `application`.
    pub application: String,
    /// Dubbo's `weight`.
    pub weight: u32,
    /// The concurrency cap, as Dubbo's `threads`.
    pub threads: Option<u32>,
    /// Dubbo's `dubbo.tag`.
    pub tag: Option<String>,
    /// Dubbo's `warmup` (milliseconds; 0: none).
    pub warmup_ms: u64,
    /// Dubbo's `timestamp`: the start time (Unix milliseconds).
    pub timestamp_ms: u64,
    /// Dubbo's `token`: callers must send it as the `token` attachment.
    pub token: Option<String>,
    /// Dubbo's `methods`; empty: `*` (any, as for a generic service).
    pub methods: Vec<String>,
    /// More parameters (they may not replace the ones above).
    pub params: BTreeMap<String, String>,
}

impl ProviderRegistration {
    /// The provider URL, with the parameters a Java 3.3 provider registers.
    pub fn url(&self) -> DubboUrl {
        let host = match self.addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let interface = self.service.interface.clone();
        let methods = if self.methods.is_empty() {
            "*".to_owned()
        } else {
            self.methods.join(",")
        };
        let mut url = DubboUrl::new(DUBBO_PROTOCOL, host, self.addr.port(), interface.clone());
        for (k, v) in &self.params {
            url = url.with_param(k.clone(), v.clone());
        }
        url = url
            .with_param("application", self.application.clone())
            .with_param("deprecated", "false")
            .with_param("dubbo", DUBBO_PROTOCOL_VERSION)
            .with_param("dynamic", "true")
            .with_param("generic", "false")
            .with_param(INTERFACE_KEY, interface)
            .with_param(METHODS_KEY, methods)
            .with_param("release", RELEASE)
            .with_param("side", "provider")
            .with_param("timestamp", self.timestamp_ms.to_string())
            .with_param("warmup", self.warmup_ms.to_string())
            .with_param("weight", self.weight.to_string());
        if let Some(group) = &self.service.group {
            url = url.with_param(GROUP_KEY, group.clone());
        }
        if let Some(version) = &self.service.version {
            url = url.with_param(VERSION_KEY, version.clone());
        }
        if let Some(threads) = self.threads {
            url = url.with_param("threads", threads.to_string());
        }
        if let Some(tag) = &self.tag {
            url = url.with_param("dubbo.tag", tag.clone());
        }
        if let Some(token) = &self.token {
            url = url.with_param("token", token.clone());
        }
        url
    }

    /// The parameters simplification must keep beyond Dubbo's defaults so the agents' settings survive it
    /// (`threads` is not in Dubbo's list).
    pub fn agent_keys() -> &'static [&'static str] {
        &["threads", "dubbo.tag", "application"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::{KeyEncoding, RegistryKey, RegistryRoot};

    fn registered(key: &str) -> RegisteredUrl {
        match RegistryRoot::default().parse_key(key.as_bytes()) {
            Ok(RegistryKey::Url(u)) => u,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn key_of(url: &str) -> String {
        let url = DubboUrl::parse(url).unwrap();
        RegistryRoot::default()
            .url_key(&url, KeyEncoding::JavaUrlEncoder)
            .unwrap()
    }

    #[test]
    fn a_java_2_7_provider_is_an_endpoint_of_its_service_key() {
        // Fact sheet §1.1's example key, as Java's URLEncoder writes it.
        let key = "/dubbo/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F192.168.1.10%3A20880%2F\
                   org.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider%26\
                   deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3D\
                   org.apache.dubbo.demo.DemoService%26methods%3DsayHello%2CsayHelloAsync%26pid%3D4242%26\
                   release%3D2.7.23%26side%3Dprovider%26timestamp%3D1700000000000";
        let Discovered::Provider { service, endpoint } = discover(&registered(key)) else {
            panic!("skipped");
        };
        assert_eq!(service, "org.apache.dubbo.demo.DemoService");
        assert_eq!(endpoint.addr, "192.168.1.10:20880".parse().unwrap());
        assert_eq!(endpoint.weight, DEFAULT_WEIGHT);
        assert_eq!(endpoint.max_concurrency, None);
        assert_eq!(endpoint.tag, None);
        assert_eq!(endpoint.registered_at_ms, Some(1_700_000_000_000));
        assert_eq!(endpoint.params["application"], "demo-provider");
        assert!(!endpoint.params.contains_key("methods"));
    }

    #[test]
    fn discover_owned_finds_what_discover_does() {
        let urls = [
            "dubbo://10.0.0.1:20880/com.foo.Svc?application=a&dubbo.tag=gray&empty=&group=g&methods=m1,m2\
             &threads=50&timestamp=1700000000&token=t0k&version=1.0&weight=250",
            "dubbo://10.0.0.1:20880/com.foo.Svc?enabled=false",
            "tri://10.0.0.1:20880/com.foo.Svc?application=a",
            "dubbo://host.example:20880/com.foo.Svc",
        ];
        for url in urls {
            let found = discover(&registered(&key_of(url)));
            assert_eq!(discover_owned(registered(&key_of(url))), found, "{url}");
            if let Discovered::Provider { endpoint, .. } = found {
                assert_eq!(
                    endpoint.params.keys().collect::<Vec<_>>(),
                    [
                        "application",
                        "dubbo.tag",
                        "group",
                        "threads",
                        "timestamp",
                        "token",
                        "version",
                        "weight"
                    ]
                );
            }
        }
    }

    #[test]
    fn weight_tag_threads_token_group_version_and_go_timestamps() {
        let key = key_of(
            "dubbo://10.0.0.1:20880/com.foo.Svc?dubbo.tag=gray&group=g&threads=50&timestamp=1700000000\
             &token=t0k&version=1.0&weight=250",
        );
        let Discovered::Provider { service, endpoint } = discover(&registered(&key)) else {
            panic!("skipped");
        };
        assert_eq!(service, "g/com.foo.Svc:1.0");
        assert_eq!(endpoint.weight, 250);
        assert_eq!(endpoint.max_concurrency, Some(50));
        assert_eq!(endpoint.tag.as_deref(), Some("gray"));
        assert_eq!(endpoint.params["token"], "t0k");
        // dubbo-go writes seconds.
        assert_eq!(endpoint.registered_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn a_simplified_url_takes_its_interface_from_the_path() {
        let key = "/dubbo/com.foo.Svc/providers/dubbo%3A%2F%2F10.0.0.1%3A20880%2Fcom.foo.Svc%3Fversion%3D2";
        let Discovered::Provider { service, .. } = discover(&registered(key)) else {
            panic!("skipped");
        };
        assert_eq!(service, "com.foo.Svc:2");
    }

    #[test]
    fn what_is_not_a_callable_provider_is_skipped_with_a_reason() {
        for (url_or_key, why) in [
            ("dubbo://10.0.0.1:1/S?enabled=false", "disabled"),
            ("tri://10.0.0.1:1/S", "dubbo://"),
            ("dubbo://host.example:1/S", "IP address"),
            ("dubbo://10.0.0.1/S", "port"),
        ] {
            match discover(&registered(&key_of(url_or_key))) {
                Discovered::Skipped(reason) => assert!(reason.contains(why), "{url_or_key}: {reason}"),
                other => panic!("{url_or_key}: {other:?}"),
            }
        }
        let consumer = "/dubbo/S/consumers/consumer%3A%2F%2F10.0.0.1%2FS%3Fcategory%3Dconsumers";
        assert_eq!(
            discover(&registered(consumer)),
            Discovered::Skipped("not under providers")
        );
        // Bad numbers fall back to Dubbo's defaults rather than dropping the provider.
        let odd = key_of("dubbo://10.0.0.1:1/S?weight=-5&threads=x&timestamp=soon&enabled=TRUE");
        let Discovered::Provider { endpoint, .. } = discover(&registered(&odd)) else {
            panic!("skipped");
        };
        assert_eq!(
            (
                endpoint.weight,
                endpoint.max_concurrency,
                endpoint.registered_at_ms
            ),
            (0, None, None)
        );
    }

    #[test]
    fn the_registered_url_reads_back_as_the_same_endpoint() {
        let reg = ProviderRegistration {
            service: ServiceKey::parse("g/com.foo.Svc:1.0.0"),
            addr: "[::1]:30000".parse().unwrap(),
            application: "orders".into(),
            weight: 300,
            threads: Some(64),
            tag: Some("blue".into()),
            warmup_ms: 60_000,
            timestamp_ms: 1_764_900_000_000,
            token: Some("s3cret".into()),
            methods: vec!["hash".into(), "find".into()],
            params: [("zone".to_string(), "a".to_string())].into(),
        };
        let url = reg.url();
        assert_eq!(
            url.to_full_string(),
            format!(
                "dubbo://[::1]:30000/com.foo.Svc?application=orders&deprecated=false&dubbo=2.0.2\
                 &dubbo.tag=blue&dynamic=true&generic=false&group=g&interface=com.foo.Svc&methods=hash,find\
                 &release={RELEASE}&side=provider&threads=64&timestamp=1764900000000&token=s3cret\
                 &version=1.0.0&warmup=60000&weight=300&zone=a"
            )
        );
        let key = RegistryRoot::default()
            .url_key(&url, KeyEncoding::JavaUrlEncoder)
            .unwrap();
        assert!(key.starts_with("/dubbo/com.foo.Svc/providers/dubbo%3A%2F%2F%5B%3A%3A1%5D%3A30000%2F"));
        let Discovered::Provider { service, endpoint } = discover(&registered(&key)) else {
            panic!("skipped");
        };
        assert_eq!(service, "g/com.foo.Svc:1.0.0");
        assert_eq!(endpoint.addr, reg.addr);
        assert_eq!(
            (endpoint.weight, endpoint.max_concurrency, endpoint.tag.as_deref()),
            (300, Some(64), Some("blue"))
        );
        assert_eq!(endpoint.registered_at_ms, Some(1_764_900_000_000));
        assert_eq!(endpoint.params["warmup"], "60000");
        assert_eq!(endpoint.params["token"], "s3cret");
        // Without methods: `*`, as Dubbo writes for a generic service.
        let any = ProviderRegistration {
            methods: vec![],
            ..reg
        };
        assert_eq!(any.url().param("methods"), Some("*"));
    }
}
