//! The etcd keys of Dubbo's interface-level registry, written and read:
//! `/<root>/<URL-encoded interface>/<category>/<URL-encoded full URL>`.
//!
//! Fact sheet §1.1 and §1.3 (Java `EtcdRegistry.toServicePath` / `toCategoryPath` / `toUrlPath`, J27
//! `dubbo-registry/dubbo-registry-etcd3/.../EtcdRegistry.java` and SPI `dubbo-registry-extensions/...`;
//! dubbo-go `registry/etcdv3/registry.go`):
//!
//! * the root is Dubbo's registry `group` (default `dubbo`) with a `/` put in front when missing;
//! * the interface segment is the URL's interface (`interface` parameter, else its path), URL-encoded;
//! * the category is the URL's `category` parameter, default `providers`;
//! * the last segment is the URL's `toFullString()`, URL-encoded, so every `/` in it is `%2F` (Java only
//!   reads children with exactly one `/` after the category path);
//! * Java writes the parents `/<root>/<interface>` and `/<root>/<interface>/<category>` as real keys,
//!   dubbo-go also `/<root>`: they are read as [`RegistryKey::Parent`];
//! * other Dubbo data also lives under the root (the config center's `/dubbo/config/...`, dubbo-go's
//!   `/dubbo/mapping/<interface>` and metadata keys): read as [`RegistryKey::Unrelated`].
//!
//! The value of a key is not part of the layout: Java stores the lease id, dubbo-go an empty string.

use std::fmt;
use std::str::FromStr;

use super::encode::{decode_component, KeyEncoding};
use super::error::excerpt;
use super::url::{DubboUrl, ANY_VALUE};
use super::{DubboError, MAX_KEY_LEN};

/// Dubbo's default registry root.
pub const DEFAULT_ROOT: &str = "/dubbo";

/// A registry category: the third segment of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// `providers`: provider URLs (Dubbo's `DEFAULT_CATEGORY`).
    Providers,
    /// `consumers`: consumer URLs (`consumer://...`), registered by consumers for the admin console.
    Consumers,
    /// `routers`: `route://` rules of the old registry-based routing.
    Routers,
    /// `configurators`: `override://` rules of the old registry-based configuration.
    Configurators,
}

impl Category {
    /// Every category, in Dubbo's order.
    pub const ALL: [Category; 4] = [
        Category::Providers,
        Category::Consumers,
        Category::Routers,
        Category::Configurators,
    ];

    /// The segment as Dubbo writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Providers => "providers",
            Category::Consumers => "consumers",
            Category::Routers => "routers",
            Category::Configurators => "configurators",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = ();

    /// Exactly one of the four names (a segment, not a comma list).
    fn from_str(s: &str) -> Result<Self, ()> {
        Category::ALL.into_iter().find(|c| c.as_str() == s).ok_or(())
    }
}

/// What an etcd key under the root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryKey {
    /// `/<root>`, `/<root>/<interface>` or `/<root>/<interface>/<category>`: a parent written as a real key
    /// by Java or dubbo-go; it holds no URL. Ignore it.
    Parent,
    /// `/<root>/<interface>/<category>/<url>`.
    Url(RegisteredUrl),
    /// Other Dubbo data under the root (config center, mapping, metadata): no second segment that is a
    /// category. Ignore it.
    Unrelated,
}

/// One URL read from a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredUrl {
    /// The decoded interface segment. A simplified URL may have no `interface` parameter; then this and its
    /// path say which interface it serves.
    pub interface: String,
    /// The category segment.
    pub category: Category,
    /// The decoded, parsed URL.
    pub url: DubboUrl,
}

/// The registry root, `/dubbo` by default (Dubbo's registry `group`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRoot(String);

impl Default for RegistryRoot {
    fn default() -> Self {
        RegistryRoot(DEFAULT_ROOT.to_owned())
    }
}

impl fmt::Display for RegistryRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RegistryRoot {
    /// The root for Dubbo's registry `group` (`dubbo` or `/dubbo` -> `/dubbo`, `a/b` -> `/a/b`).
    ///
    /// Errors ([`DubboError::BadRoot`]): empty, `/`, a trailing `/` or an empty segment (Java would write
    /// keys with `//` in them).
    pub fn new(group: &str) -> Result<Self, DubboError> {
        let root = if group.starts_with('/') {
            group.to_owned()
        } else {
            format!("/{group}")
        };
        let bad = |reason| {
            Err(DubboError::BadRoot {
                root: group.to_owned(),
                reason,
            })
        };
        if root == "/" {
            return bad("must name at least one segment");
        }
        if root[1..].split('/').any(str::is_empty) {
            return bad("must not end with `/` nor contain `//`");
        }
        Ok(RegistryRoot(root))
    }

    /// The root, starting with `/` and not ending with one.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `/<root>/<encoded interface>`: the service path (a parent key Java writes).
    pub fn service_path(&self, interface: &str, encoding: KeyEncoding) -> String {
        format!("{}/{}", self.0, encoding.encode(interface))
    }

    /// `/<root>/<encoded interface>/<category>`: the category path (a parent key Java writes, and the prefix
    /// Java reads without a trailing `/`).
    pub fn category_path(&self, interface: &str, category: Category, encoding: KeyEncoding) -> String {
        format!("{}/{}", self.service_path(interface, encoding), category)
    }

    /// `/<root>/<encoded interface>/<category>/`: the prefix to read or watch one category with (the trailing
    /// `/` keeps `/dubbo/a.B/providers2/...`-like neighbours out, fact sheet §1.2).
    pub fn category_prefix(&self, interface: &str, category: Category, encoding: KeyEncoding) -> String {
        format!("{}/", self.category_path(interface, category, encoding))
    }

    /// The key `url` is registered under: the category path of its interface and category, then its
    /// encoded `toFullString()`.
    ///
    /// Errors: `url` fails [`DubboUrl::validate`]; it has no interface (no `interface` parameter and no
    /// path) or `*`; its `category` is not exactly one of the four; the key is longer than [`MAX_KEY_LEN`].
    pub fn url_key(&self, url: &DubboUrl, encoding: KeyEncoding) -> Result<String, DubboError> {
        url.validate()?;
        let interface = url.service_interface();
        if interface.is_empty() || interface == ANY_VALUE {
            return Err(DubboError::Unwritable {
                part: "interface",
                value: excerpt(interface),
                reason: "a registered URL needs an interface (parameter or path), not `*`",
            });
        }
        let category: Category = url.category().parse().map_err(|()| DubboError::Unwritable {
            part: "category",
            value: excerpt(url.category()),
            reason: "must be one of providers, consumers, routers, configurators",
        })?;
        let key = format!(
            "{}/{}",
            self.category_path(interface, category, encoding),
            encoding.encode(&url.to_full_string())
        );
        if key.len() > MAX_KEY_LEN {
            return Err(DubboError::TooLong {
                what: "etcd key",
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        Ok(key)
    }

    /// Reads an etcd key under this root (written by Java, dubbo-go, or [`RegistryRoot::url_key`]).
    ///
    /// Errors: longer than [`MAX_KEY_LEN`], not UTF-8, not under the root, an empty interface segment, an
    /// empty or badly encoded URL segment, a URL segment with an unencoded `/` (Java skips such keys), or a
    /// URL [`DubboUrl::parse`] refuses.
    pub fn parse_key(&self, key: &[u8]) -> Result<RegistryKey, DubboError> {
        if key.len() > MAX_KEY_LEN {
            return Err(DubboError::TooLong {
                what: "etcd key",
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        let key = std::str::from_utf8(key).map_err(|_| DubboError::NotUtf8 {
            what: "etcd key",
            excerpt: excerpt(&String::from_utf8_lossy(key)),
        })?;
        if key == self.0 {
            return Ok(RegistryKey::Parent);
        }
        let Some(rest) = key
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Err(DubboError::NotUnderRoot {
                key: excerpt(key),
                root: self.0.clone(),
            });
        };
        let bad = |reason: &str| DubboError::BadKey {
            key: excerpt(key),
            reason: reason.to_owned(),
        };
        let segments: Vec<&str> = rest.splitn(4, '/').collect();
        let category = match segments.get(1) {
            None => None,
            Some(segment) => match segment.parse::<Category>() {
                Ok(category) => Some(category),
                Err(()) => return Ok(RegistryKey::Unrelated),
            },
        };
        if segments[0].is_empty() {
            return Err(bad("empty interface segment"));
        }
        let (Some(category), Some(encoded_url)) = (category, segments.get(2)) else {
            return Ok(RegistryKey::Parent);
        };
        if segments.len() > 3 {
            return Err(bad(
                "the URL segment has an unencoded `/` (it must be %2F; Java Dubbo skips such keys)",
            ));
        }
        if encoded_url.is_empty() {
            return Err(bad("empty URL segment"));
        }
        let interface = decode_component("interface segment", segments[0])?;
        let url = DubboUrl::parse(&decode_component("URL segment", encoded_url)?)?;
        Ok(RegistryKey::Url(RegisteredUrl {
            interface,
            category,
            url,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::ServiceKey;
    use proptest::prelude::*;

    fn root() -> RegistryRoot {
        RegistryRoot::default()
    }

    fn parsed_url(key: &str) -> RegisteredUrl {
        match root().parse_key(key.as_bytes()) {
            Ok(RegistryKey::Url(u)) => u,
            other => panic!("{key}: {other:?}"),
        }
    }

    /// Checks that we write `key` for the URL read from it, byte for byte.
    fn assert_written_back(read: &RegisteredUrl, key: &str, encoding: KeyEncoding) {
        assert_eq!(root().url_key(&read.url, encoding).as_deref(), Ok(key));
    }

    /// Fact sheet §1.1, the example key (constructed there with Java `URLEncoder` from Java 2.7's
    /// `EtcdRegistry.toUrlPath`, J27 `dubbo-registry/dubbo-registry-etcd3/.../EtcdRegistry.java`), quoted
    /// whole.
    const JAVA_27_KEY: &str = "/dubbo/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F192.168.1.10%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello%2CsayHelloAsync%26pid%3D4242%26release%3D2.7.23%26side%3Dprovider%26timestamp%3D1700000000000";

    /// Java 3.3 (≥ 3.2.1: no `pid`, no `anyhost`; §2.1 from J3 `RegistryProtocol.getUrlToRegistry` /
    /// `DefaultServiceURLCustomizer`), with `prefer.serialization` (3.2+) and a group and version; same
    /// `EtcdRegistry` layout (SPI `dubbo-registry-extensions/dubbo-registry-etcd3/.../EtcdRegistry.java`).
    /// Written by hand with Java `URLEncoder` rules (the sheet gives no literal 3.x key).
    const JAVA_33_KEY: &str = "/dubbo/org.apache.dubbo.demo.GreetingService/providers/tri%3A%2F%2F10.0.0.7%3A50051%2Forg.apache.dubbo.demo.GreetingService%3Fapplication%3Dgreeter%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26group%3Dblue%26interface%3Dorg.apache.dubbo.demo.GreetingService%26methods%3Dgreet%26prefer.serialization%3Dfastjson2%2Chessian2%26release%3D3.3.1%26service-name-mapping%3Dtrue%26side%3Dprovider%26timestamp%3D1700000000123%26version%3D1.0.0";

    /// Java 3.x simplified (`simplified=true`, §3.2): no `interface`, `methods`, `anyhost`; `side` kept (3.0
    /// branch on), a method-prefixed key kept. Hand-written with Java `URLEncoder` rules.
    const JAVA_3_SIMPLIFIED_KEY: &str = "/dubbo/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F10.0.0.8%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fapplication%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26release%3D3.2.5%26sayHello.timeout%3D3000%26side%3Dprovider%26timeout%3D5000";

    /// dubbo-go (§1.3, GO `registry/etcdv3/registry.go` + `server/action.go getUrlMap`): Go `url.QueryEscape`
    /// of `protocol://ip:port/path?sorted params`, `timestamp` in seconds, `registry.role=3`,
    /// `release=dubbo-golang-<ver>`, `anyhost=true`, `methods=a,b`. Hand-written with Go `QueryEscape` rules,
    /// including an interface with `$` (`%24`) and a `*` (`%2A` in Go, literal in Java).
    const DUBBO_GO_KEY: &str = "/dubbo/com.example.Outer%24UserProvider/providers/dubbo%3A%2F%2F172.17.0.3%3A20000%2Fcom.example.Outer%24UserProvider%3Fanyhost%3Dtrue%26application%3Dgo-server%26cluster%3Dfailover%26group%3D%2A%26interface%3Dcom.example.Outer%24UserProvider%26loadbalance%3Drandom%26methods%3DGetUser%2CSayHello%26registry.role%3D3%26release%3Ddubbo-golang-3.3.0%26retries%3D2%26serialization%3Dhessian2%26side%3Dprovider%26timestamp%3D1700000000%26version%3D1.0.0%26weight%3D100";

    #[test]
    fn reads_the_java_2_7_key_from_the_fact_sheet() {
        let r = parsed_url(JAVA_27_KEY);
        assert_eq!(r.interface, "org.apache.dubbo.demo.DemoService");
        assert_eq!(r.category, Category::Providers);
        assert_eq!(r.url.protocol, "dubbo");
        assert_eq!((r.url.host.as_str(), r.url.port), ("192.168.1.10", 20880));
        assert_eq!(r.url.param("pid"), Some("4242"));
        assert_eq!(r.url.methods().collect::<Vec<_>>(), ["sayHello", "sayHelloAsync"]);
        assert_eq!(
            r.url.service_key().to_string(),
            "org.apache.dubbo.demo.DemoService"
        );
        // And we write the same key for the same URL, byte for byte.
        assert_written_back(&r, JAVA_27_KEY, KeyEncoding::JavaUrlEncoder);
    }

    #[test]
    fn reads_java_3_keys() {
        let r = parsed_url(JAVA_33_KEY);
        assert_eq!(r.url.protocol, "tri");
        assert_eq!(r.url.param("pid"), None);
        assert_eq!(r.url.param("anyhost"), None);
        assert_eq!(r.url.param("prefer.serialization"), Some("fastjson2,hessian2"));
        assert_eq!(
            r.url.service_key().to_string(),
            "blue/org.apache.dubbo.demo.GreetingService:1.0.0"
        );
        assert_written_back(&r, JAVA_33_KEY, KeyEncoding::JavaUrlEncoder);

        let s = parsed_url(JAVA_3_SIMPLIFIED_KEY);
        assert_eq!(s.url.param("interface"), None);
        assert_eq!(s.url.service_interface(), "org.apache.dubbo.demo.DemoService");
        assert_eq!(s.interface, s.url.service_interface());
        assert_eq!(s.url.param("sayHello.timeout"), Some("3000"));
    }

    #[test]
    fn reads_dubbo_go_keys() {
        let r = parsed_url(DUBBO_GO_KEY);
        assert_eq!(r.interface, "com.example.Outer$UserProvider");
        assert_eq!(r.url.group(), Some("*"));
        assert_eq!(r.url.param("timestamp"), Some("1700000000"));
        assert_eq!(r.url.param("registry.role"), Some("3"));
        // Go and Java encoders differ on `*` only here: the keys differ, the URL read is the same.
        assert_written_back(&r, DUBBO_GO_KEY, KeyEncoding::GoQueryEscape);
        let java = root().url_key(&r.url, KeyEncoding::JavaUrlEncoder).unwrap();
        assert!(java.contains("group%3D*%26"), "{java}");
        assert_eq!(root().parse_key(java.as_bytes()).unwrap(), RegistryKey::Url(r));
    }

    #[test]
    fn parents_and_other_dubbo_data_are_recognised() {
        use RegistryKey::{Parent, Unrelated};
        let iface = "/dubbo/org.apache.dubbo.demo.DemoService";
        for (key, want) in [
            ("/dubbo".to_owned(), Parent),
            (iface.to_owned(), Parent),
            (format!("{iface}/providers"), Parent),
            (format!("{iface}/consumers"), Parent),
            (format!("{iface}/routers"), Parent),
            (format!("{iface}/configurators"), Parent),
            // Config center (§5 / issue 11: root `/dubbo/config`), dubbo-go mapping and metadata (§5, §6).
            (
                "/dubbo/config/dubbo/demo-app.condition-router".to_owned(),
                Unrelated,
            ),
            (
                "/dubbo/mapping/org.apache.dubbo.demo.DemoService".to_owned(),
                Unrelated,
            ),
            (
                format!("/dubbo/metadata/{}/1.0.0/g/provider/demo-app", &iface[7..]),
                Unrelated,
            ),
            ("/dubbo/demo-app/9f1c0a".to_owned(), Unrelated),
        ] {
            assert_eq!(root().parse_key(key.as_bytes()), Ok(want), "{key}");
        }
    }

    #[test]
    fn categories_are_told_apart() {
        let consumer = "/dubbo/com.foo.Bar/consumers/consumer%3A%2F%2F10.0.0.2%2Fcom.foo.Bar%3Fapplication%3Dweb%26category%3Dconsumers%26check%3Dfalse";
        let r = parsed_url(consumer);
        assert_eq!(r.category, Category::Consumers);
        assert_eq!(r.url.protocol, "consumer");
        assert_eq!(r.url.port, 0);
        assert_written_back(&r, consumer, KeyEncoding::JavaUrlEncoder);
        let route = "/dubbo/com.foo.Bar/routers/route%3A%2F%2F0.0.0.0%2Fcom.foo.Bar%3Fcategory%3Drouters%26rule%3Dhost+%3D+10.0.0.1";
        let r = parsed_url(route);
        assert_eq!(r.category, Category::Routers);
        assert_eq!(r.url.param("rule"), Some("host = 10.0.0.1"));
        assert_eq!("configurators".parse(), Ok(Category::Configurators));
        assert_eq!("providers,routers".parse::<Category>(), Err(()));
    }

    #[test]
    fn malformed_keys_are_errors_naming_the_problem() {
        let r = root();
        let err = |k: &[u8]| r.parse_key(k).unwrap_err();
        assert!(matches!(
            err(b"/dubbox/a/providers/x"),
            DubboError::NotUnderRoot { .. }
        ));
        assert!(matches!(err(b"/other"), DubboError::NotUnderRoot { .. }));
        assert!(matches!(
            err(b"/dubbo/\xff/providers"),
            DubboError::NotUtf8 { .. }
        ));
        let e = err(b"/dubbo/a/providers/dubbo://1.2.3.4:1/a");
        assert!(e.to_string().contains("unencoded `/`"), "{e}");
        assert!(matches!(err(b"/dubbo//providers/x"), DubboError::BadKey { .. }));
        assert!(matches!(err(b"/dubbo/a/providers/"), DubboError::BadKey { .. }));
        assert!(matches!(
            err(b"/dubbo/a/providers/dubbo%3A%2F%2Fh%3A1%2Fa%ZZ"),
            DubboError::BadEscape { .. }
        ));
        assert!(matches!(
            err(b"/dubbo/a/providers/empty%3A%2F"),
            DubboError::MissingProtocol { .. }
        ));
        let long = format!("/dubbo/a/providers/{}", "x".repeat(MAX_KEY_LEN));
        assert!(matches!(err(long.as_bytes()), DubboError::TooLong { .. }));
    }

    #[test]
    fn roots_follow_dubbos_group_rule() {
        assert_eq!(RegistryRoot::new("dubbo").unwrap(), root());
        assert_eq!(RegistryRoot::new("/dubbo").unwrap(), root());
        assert_eq!(RegistryRoot::new("foo").unwrap().as_str(), "/foo");
        assert_eq!(RegistryRoot::new("a/b").unwrap().as_str(), "/a/b");
        for bad in ["", "/", "dubbo/", "a//b"] {
            assert!(
                matches!(RegistryRoot::new(bad), Err(DubboError::BadRoot { .. })),
                "{bad:?}"
            );
        }
        let foo = RegistryRoot::new("foo").unwrap();
        assert_eq!(
            foo.category_prefix("a.B$C", Category::Providers, KeyEncoding::JavaUrlEncoder),
            "/foo/a.B%24C/providers/"
        );
        assert_eq!(
            foo.parse_key(b"/foo/a/providers/dubbo%3A%2F%2Fh%3A1%2Fa")
                .map(|k| matches!(k, RegistryKey::Url(_))),
            Ok(true)
        );
    }

    #[test]
    fn url_key_refuses_what_cannot_be_registered() {
        let r = root();
        let no_iface = DubboUrl::new("dubbo", "h", 1, "");
        assert!(matches!(
            r.url_key(&no_iface, KeyEncoding::JavaUrlEncoder),
            Err(DubboError::Unwritable {
                part: "interface",
                ..
            })
        ));
        let star = DubboUrl::new("dubbo", "h", 1, "*");
        assert!(r.url_key(&star, KeyEncoding::JavaUrlEncoder).is_err());
        let two = DubboUrl::new("dubbo", "h", 1, "a").with_param("category", "providers,routers");
        assert!(matches!(
            r.url_key(&two, KeyEncoding::JavaUrlEncoder),
            Err(DubboError::Unwritable { part: "category", .. })
        ));
        let amp = DubboUrl::new("dubbo", "h", 1, "a").with_param("k", "a&b");
        assert!(r.url_key(&amp, KeyEncoding::JavaUrlEncoder).is_err());
    }

    /// Random bytes, deterministic (xorshift) so that a failure reproduces, drawn mostly from the characters
    /// the readers split on: no reader panics, and whatever URL reads and validates writes back the same.
    #[test]
    fn a_hundred_thousand_random_inputs_never_panic() {
        const ALPHABET: &[u8] = b"/%+:?&;=@[]*~.-_ aZ09";
        const PREFIXES: [&[u8]; 4] = [b"", b"/dubbo/", b"dubbo://", b"/dubbo/a/providers/dubbo%3A%2F%2F"];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut urls_read = 0;
        for _ in 0..100_000 {
            let prefix = PREFIXES[(next() % 4) as usize];
            let len = (next() % 48) as usize;
            let tail = (0..len).map(|_| match next() {
                r if r % 16 == 0 => r.to_le_bytes()[3],
                r => ALPHABET[(r / 16 % ALPHABET.len() as u64) as usize],
            });
            let bytes: Vec<u8> = prefix.iter().copied().chain(tail).collect();
            let _ = root().parse_key(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_component("t", &text);
            let _ = ServiceKey::parse(&text);
            if let Ok(url) = DubboUrl::parse(&text) {
                urls_read += 1;
                if url.validate().is_ok() {
                    assert_eq!(DubboUrl::parse(&url.to_full_string()), Ok(url), "{text}");
                }
            }
        }
        assert!(urls_read > 1_000, "the inputs reach the URL reader ({urls_read})");
    }

    proptest! {
        #[test]
        fn url_keys_read_back(u in crate::dubbo::url::tests::any_url(), go in any::<bool>()) {
            let encoding = if go { KeyEncoding::GoQueryEscape } else { KeyEncoding::JavaUrlEncoder };
            let interface = u.service_interface().to_owned();
            match root().url_key(&u, encoding) {
                Ok(key) => {
                    prop_assert_eq!(key.matches('/').count(), 4, "{}", key);
                    let read = root().parse_key(key.as_bytes());
                    prop_assert_eq!(read, Ok(RegistryKey::Url(RegisteredUrl {
                        interface,
                        category: Category::Providers,
                        url: u,
                    })));
                }
                Err(e) => prop_assert!(
                    interface.is_empty() || interface == "*" || u.param("category").is_some(),
                    "{e}"
                ),
            }
        }

        #[test]
        fn random_bytes_never_panic_the_key_reader(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            shape in 0usize..4,
        ) {
            let prefix: &[u8] = match shape {
                0 => b"",
                1 => b"/dubbo/",
                2 => b"/dubbo/a.B/providers/",
                _ => b"/dubbo/a.B/providers/dubbo%3A%2F%2F",
            };
            let key = [prefix, &tail].concat();
            let _ = root().parse_key(&key);
        }

        #[test]
        fn url_like_text_never_panics_the_key_reader(
            tail in "[a-z0-9:/?&;=@%+.\\[\\]*~ -]{0,80}",
        ) {
            let java = KeyEncoding::JavaUrlEncoder.encode(&tail);
            let _ = root().parse_key(format!("/dubbo/a/providers/{java}").as_bytes());
            let _ = root().parse_key(format!("/dubbo/a/providers/{tail}").as_bytes());
            let _ = DubboUrl::parse(&tail);
        }
    }
}
