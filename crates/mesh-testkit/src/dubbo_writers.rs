//! Dubbo registrations in etcd exactly as the real implementations write them: Java 2.7 and Java 3.3
//! (`EtcdRegistry`) and dubbo-go (`etcdv3` registry). Written from their sources, independently of
//! `mesh-registry` (which this module must never call), so that tests and the registry load tool can check the
//! agents against what a Dubbo estate really holds.
//!
//! A writer function turns a [`Provider`] into a [`Registration`]: the raw URL the implementation builds, the
//! etcd key, the value rule, the lease rule and the parent keys it writes around it. [`put`] writes
//! registrations into a real etcd with leases kept alive.
//!
//! # Sources (paths relative to each repository's root)
//!
//! * Java 2.7 (`apache/dubbo` branch `2.7.x`, 36cef606):
//!   `dubbo-registry/dubbo-registry-etcd3/src/main/java/org/apache/dubbo/registry/etcd/EtcdRegistry.java`
//!   (`toServicePath` = root + `/` + `URL.encode(interface)`, `toCategoryPath` + `/` + category, `toUrlPath` +
//!   `/` + `URL.encode(url.toFullString())`; `doRegister` → `createEphemeral` when `dynamic` (the default));
//!   `dubbo-remoting/dubbo-remoting-etcd3/src/main/java/org/apache/dubbo/remoting/etcd/jetcd/JEtcdClientWrapper.java`
//!   (`createEphemeral`: value `String.valueOf(globalLeaseId)`, one `globalLeaseId` per client shared by all
//!   ephemeral keys, TTL `session`/1000 = 30 s by default; `createPersistent`: value
//!   `String.valueOf(path.hashCode())`);
//!   `dubbo-remoting/dubbo-remoting-etcd3/src/main/java/org/apache/dubbo/remoting/etcd/support/AbstractEtcdClient.java`
//!   (`createParentIfAbsent`: the grandparent `/<root>/<iface>` of a URL key, persistent, only if absent);
//!   `dubbo-common/src/main/java/org/apache/dubbo/common/URL.java` (`encode` = `URLEncoder.encode(v, "UTF-8")`;
//!   `buildString`/`buildParameters`: `protocol://host:port/path?` + parameters from a `TreeMap` (sorted),
//!   values trimmed);
//!   `dubbo-config/dubbo-config-api/src/main/java/org/apache/dubbo/config/ServiceConfig.java` (`side`,
//!   runtime parameters `dubbo`/`release`/`timestamp`/`pid`, `generic`, `methods`, `token`, `anyhost`; the
//!   `deprecated`/`dynamic` getters of the service config).
//! * Java 3.3 (`apache/dubbo` branch `3.3`, 324c6255; the etcd registry itself lives in
//!   `apache/dubbo-spi-extensions` `dubbo-registry-extensions/dubbo-registry-etcd3/.../EtcdRegistry.java` and
//!   `dubbo-remoting-extensions/dubbo-remoting-etcd3/.../JEtcdClientWrapper.java`, identical to 2.7's apart from
//!   imports):
//!   `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/integration/DefaultServiceURLCustomizer.java`
//!   (removes `pid`, `anyhost`, `background`, `file-cache`, `executor-management-mode`, `register-mode`,
//!   thread-pool keys; with `simplified` keeps only `DEFAULT_REGISTER_PROVIDER_KEYS` + extra keys (+ `interface`
//!   when path ≠ interface) + keys starting with a method name, via `URL.valueOf(url, keys, methods)`);
//!   `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/integration/RegistryProtocol.java`
//!   (`DEFAULT_REGISTER_PROVIDER_KEYS`, lines ≈145–172; the provider subscribes to its `configurators`
//!   category, which creates that path as a persistent key).
//! * dubbo-go (`apache/dubbo-go` `main`, 08a4387b): `registry/base_registry.go` (`providerRegistry`: path
//!   `/<registry.group or dubbo>/<url.QueryEscape(service)>/providers`, adds `anyhost=true` and `methods`, drops
//!   empty values, raw URL `protocol://ip:port/path?` + `QueryUnescape(params.Encode())` (sorted by key);
//!   `processURL`: node `url.QueryEscape(rawURL)`); `registry/etcdv3/registry.go` (`DoRegister` →
//!   `RegisterTemp(path.Join(root, node), "")`; `CreatePath` puts `""` at every prefix); `server/action.go`
//!   (`getUrlMap`: `timestamp` = `time.Now().Unix()` in seconds, `registry.role=3`,
//!   `release=dubbo-golang-<ver>`, `side=provider`, application keys, `service.filter`, `pid`, `export`);
//!   `common/url.go` (`WithPath` adds the leading `/`; `WithToken`); `dubbogo/gost`
//!   `database/kv/etcd/v3/client.go` (`keepAliveKV`: one lease per key, `Grant(30)`, then `Put` with it).
//!
//! Where a source leaves a choice open (Java joins `methods` from a `HashSet`, so its order is not fixed), the
//! writer keeps the caller's order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod app_level;
pub mod put;

/// Dubbo's default registry root (`EtcdRegistry.DEFAULT_ROOT` with the `/` prepended; dubbo-go's
/// `registry.group` default `dubbo`).
pub const DEFAULT_ROOT: &str = "/dubbo";
/// Java's default lease TTL: `DEFAULT_KEEPALIVE_TIMEOUT` = 30,000 ms / 1000.
pub const JAVA_TTL_SECS: i64 = 30;
/// dubbo-go's (gost's) lease TTL: `Grant(ctx, int64(30*time.Second.Seconds()))`.
pub const GO_TTL_SECS: i64 = 30;
/// `Version.DEFAULT_DUBBO_PROTOCOL_VERSION`, the `dubbo` parameter of Java providers.
pub const DUBBO_PROTOCOL_VERSION: &str = "2.0.2";
/// The `release` a Java 2.7 provider writes by default here (the last 2.7 release).
pub const JAVA27_RELEASE: &str = "2.7.23";
/// The `release` a Java 3.3 provider writes by default here.
pub const JAVA33_RELEASE: &str = "3.3.1";
/// dubbo-go's `constant.Version` on `main` (`common/constant/version.go`).
pub const GO_VERSION: &str = "3.3.2";
/// `constant.DefaultServiceFilters` of dubbo-go (`common/constant/default.go`).
pub const GO_DEFAULT_SERVICE_FILTERS: &str = "echo,token,accesslog,tps,generic_service,execute,pshutdown";

/// `RegistryProtocol.DEFAULT_REGISTER_PROVIDER_KEYS` of Java 2.7.16–2.7.23 (`2.7.x`
/// `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/integration/RegistryProtocol.java`):
/// what a simplified 2.7 provider URL keeps (no `side`, `interface`, `methods`; `timestamp` and `dubbo.tag` stay).
pub const JAVA27_SIMPLIFIED_PROVIDER_KEYS: [&str; 20] = [
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
    "dubbo.tag",
];

/// `RegistryProtocol.DEFAULT_REGISTER_PROVIDER_KEYS` of Java 3.3: what a simplified provider URL keeps.
pub const JAVA33_SIMPLIFIED_PROVIDER_KEYS: [&str; 26] = [
    "application",
    "codec",
    "exchanger",
    "serialization",
    "prefer.serialization",
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
    "dubbo",
    "release",
    "side",
    "ipv6",
    "serialize.packable.factory",
    "auth",
    "authenticator",
    "username",
    "password",
];

/// The Dubbo categories under a service path (remoting `Constants.java`; dubbo-go `common.DubboNodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `providers`
    Providers,
    /// `consumers`
    Consumers,
    /// `routers`
    Routers,
    /// `configurators`
    Configurators,
}

impl Category {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Providers => "providers",
            Category::Consumers => "consumers",
            Category::Routers => "routers",
            Category::Configurators => "configurators",
        }
    }
}

/// Which implementation wrote a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Java 2.7.x `EtcdRegistry`.
    Java27,
    /// Java 2.7.x with `simplified=true` on the registry URL.
    Java27Simplified,
    /// Java 3.3 (`dubbo-spi-extensions` `EtcdRegistry`), full URL.
    Java33,
    /// Java 3.3 with `simplified=true`.
    Java33Simplified,
    /// dubbo-go `etcdv3` registry.
    DubboGo,
}

/// What value the key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRule {
    /// The decimal id of the lease the key is attached to (Java `createEphemeral`).
    LeaseId,
    /// This exact string (dubbo-go: `""`; Java persistent keys: the path's `String.hashCode`).
    Literal(String),
}

impl ValueRule {
    /// The value to write when the key is attached to `lease` (0 = none).
    pub fn value(&self, lease: i64) -> String {
        match self {
            ValueRule::LeaseId => lease.to_string(),
            ValueRule::Literal(s) => s.clone(),
        }
    }
}

/// Which lease the key is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRule {
    /// One lease per client, granted once with this TTL and shared by every ephemeral key of that client
    /// (Java `globalLeaseId`).
    SharedPerClient { ttl_secs: i64 },
    /// A lease of its own for every key, with this TTL (gost `keepAliveKV`).
    OnePerKey { ttl_secs: i64 },
    /// No lease: a persistent key (Java `createPersistent`, dubbo-go `CreatePath`, Dubbo Admin rules).
    Persistent,
}

/// A key written next to a registration (parent "directories" that Java and Go write as real keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentKey {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Written only when absent (Java `createParentIfAbsent` checks first); otherwise always put.
    pub only_if_absent: bool,
}

/// One registration as an implementation writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Who wrote it.
    pub flavor: Flavor,
    /// The URL before key encoding (Java `toFullString()`, Go `rawURL`).
    pub url: String,
    /// The etcd key.
    pub key: String,
    /// The key's value.
    pub value: ValueRule,
    /// The key's lease.
    pub lease: LeaseRule,
    /// Keys written before it, in order.
    pub parents: Vec<ParentKey>,
}

/// A provider as its configuration describes it; the writers add what each implementation adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The service interface (also the URL path).
    pub interface: String,
    /// The registered host (an IP).
    pub host: String,
    /// The registered port.
    pub port: u16,
    /// The protocol (`dubbo`).
    pub protocol: String,
    /// `application`.
    pub application: String,
    /// The exported methods (`methods=a,b`, in this order; Java writes `*` when empty).
    pub methods: Vec<String>,
    /// `group`, when set.
    pub group: Option<String>,
    /// `version`, when set.
    pub version: Option<String>,
    /// `weight`, when set.
    pub weight: Option<u32>,
    /// `token`, when set.
    pub token: Option<String>,
    /// `dubbo.tag`, when set.
    pub tag: Option<String>,
    /// `warmup` in ms, when set.
    pub warmup_ms: Option<u64>,
    /// Start time in ms since the epoch (Java writes it in ms, dubbo-go in seconds).
    pub timestamp_ms: u64,
    /// The process id (`pid`, Java 2.7 and dubbo-go).
    pub pid: u32,
    /// The `release` override (None = the writer's default).
    pub release: Option<String>,
    /// Any other parameters (`enabled`, `timeout`, `serialization`, `<method>.<key>`, ...); they replace a
    /// writer's own value of the same key.
    pub extra: BTreeMap<String, String>,
}

impl Provider {
    /// A provider of `interface` at `host:port` with one method `hash`, application `demo-provider`, this
    /// process's pid and the current time.
    pub fn new(interface: &str, host: &str, port: u16) -> Provider {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Provider {
            interface: interface.to_owned(),
            host: host.to_owned(),
            port,
            protocol: "dubbo".to_owned(),
            application: "demo-provider".to_owned(),
            methods: vec!["hash".to_owned()],
            group: None,
            version: None,
            weight: None,
            token: None,
            tag: None,
            warmup_ms: None,
            timestamp_ms: now_ms,
            pid: std::process::id(),
            release: None,
            extra: BTreeMap::new(),
        }
    }

    /// Sets `group`.
    pub fn group(mut self, group: &str) -> Provider {
        self.group = Some(group.to_owned());
        self
    }

    /// Sets `version`.
    pub fn version(mut self, version: &str) -> Provider {
        self.version = Some(version.to_owned());
        self
    }

    /// Sets `weight`.
    pub fn weight(mut self, weight: u32) -> Provider {
        self.weight = Some(weight);
        self
    }

    /// Sets `token`.
    pub fn token(mut self, token: &str) -> Provider {
        self.token = Some(token.to_owned());
        self
    }

    /// Sets `dubbo.tag`.
    pub fn tag(mut self, tag: &str) -> Provider {
        self.tag = Some(tag.to_owned());
        self
    }

    /// Sets any other parameter.
    pub fn param(mut self, key: &str, value: &str) -> Provider {
        self.extra.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The options every writer copies when set.
    fn configured(&self, params: &mut BTreeMap<String, String>) {
        let mut set = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                params.insert(k.to_owned(), v);
            }
        };
        set("group", self.group.clone());
        set("version", self.version.clone());
        set("weight", self.weight.map(|w| w.to_string()));
        set("token", self.token.clone());
        set("dubbo.tag", self.tag.clone());
        set("warmup", self.warmup_ms.map(|w| w.to_string()));
        for (k, v) in &self.extra {
            params.insert(k.clone(), v.clone());
        }
    }

    /// `methods` as Java writes it: the names joined by `,`, or `*` when there are none.
    fn java_methods(&self) -> String {
        if self.methods.is_empty() {
            "*".to_owned()
        } else {
            self.methods.join(",")
        }
    }
}

/// Java `URLEncoder.encode(s, "UTF-8")`: `a-z A-Z 0-9 . - * _` stay, a space becomes `+`, every other byte of
/// the UTF-8 form becomes `%XX` (upper-case hex).
pub fn java_url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go `url.QueryEscape`: `a-z A-Z 0-9 - _ . ~` stay, a space becomes `+`, every other byte becomes `%XX`
/// (upper-case hex; `*` is escaped, unlike Java).
pub fn go_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Java `String.hashCode()`: `h = 31 * h + c` over the UTF-16 code units, wrapping 32-bit arithmetic.
pub fn java_string_hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Java `URL.toFullString()` of a URL without user or password: `protocol://host:port/path?k=v&...` with the
/// parameters sorted by key (a `TreeMap`), values trimmed, empty keys skipped; no `?` without parameters.
pub fn java_full_string(
    protocol: &str,
    host: &str,
    port: u16,
    path: &str,
    params: &BTreeMap<String, String>,
) -> String {
    let mut s = format!("{protocol}://{host}");
    if port > 0 {
        let _ = write!(s, ":{port}");
    }
    if !path.is_empty() {
        s.push('/');
        s.push_str(path);
    }
    let mut first = true;
    for (k, v) in params.iter().filter(|(k, _)| !k.is_empty()) {
        s.push(if first { '?' } else { '&' });
        first = false;
        s.push_str(k);
        s.push('=');
        s.push_str(v.trim());
    }
    s
}

/// The root as Java's `EtcdRegistry` derives it from the registry URL's `group`: `/` prepended if missing.
pub fn java_root(group: &str) -> String {
    if group.starts_with('/') {
        group.to_owned()
    } else {
        format!("/{group}")
    }
}

/// Java `toServicePath`: `root/URL.encode(interface)`.
pub fn java_service_path(root: &str, interface: &str) -> String {
    format!("{}/{}", java_root(root), java_url_encode(interface))
}

/// Java `toUrlPath`: `root/URL.encode(interface)/category/URL.encode(fullUrl)`.
pub fn java_url_key(root: &str, interface: &str, category: Category, full_url: &str) -> String {
    format!(
        "{}/{}/{}",
        java_service_path(root, interface),
        category.as_str(),
        java_url_encode(full_url)
    )
}

/// A persistent Java key (`createPersistent`): value `String.valueOf(path.hashCode())`.
pub fn java_persistent(key: &str) -> ParentKey {
    ParentKey {
        key: key.to_owned(),
        value: java_string_hash_code(key).to_string(),
        only_if_absent: false,
    }
}

/// The keys a Java provider writes around its URL key: the service path (`createParentIfAbsent`, only if
/// absent) and, from its subscription to override rules, `<service path>/configurators` (persistent).
fn java_provider_parents(root: &str, interface: &str) -> Vec<ParentKey> {
    let service = java_service_path(root, interface);
    let mut parent = java_persistent(&service);
    parent.only_if_absent = true;
    let configurators = java_persistent(&format!("{service}/{}", Category::Configurators.as_str()));
    vec![parent, configurators]
}

/// The parameters of a Java 2.7.x provider URL (`ServiceConfig.doExportUrlsFor1Protocol` with the defaults of
/// a plain `<dubbo:service>`, after `RegistryProtocol.getUrlToRegistry` removed `bind.ip`/`bind.port`/...).
pub fn java27_params(p: &Provider) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        m.insert(k.to_owned(), v.to_owned());
    };
    put("anyhost", "true");
    put("application", &p.application);
    put("deprecated", "false");
    put("dubbo", DUBBO_PROTOCOL_VERSION);
    put("dynamic", "true");
    put("generic", "false");
    put("interface", &p.interface);
    put("methods", &p.java_methods());
    put("pid", &p.pid.to_string());
    put("release", p.release.as_deref().unwrap_or(JAVA27_RELEASE));
    put("side", "provider");
    put("timestamp", &p.timestamp_ms.to_string());
    p.configured(&mut m);
    m
}

/// The parameters of a Java 3.3 provider URL, not simplified: the 2.7 set without `pid` and `anyhost`
/// (removed by `DefaultServiceURLCustomizer`), plus `prefer.serialization` and `service-name-mapping`.
pub fn java33_params(p: &Provider) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        m.insert(k.to_owned(), v.to_owned());
    };
    put("application", &p.application);
    put("deprecated", "false");
    put("dubbo", DUBBO_PROTOCOL_VERSION);
    put("dynamic", "true");
    put("generic", "false");
    put("interface", &p.interface);
    put("methods", &p.java_methods());
    put("prefer.serialization", "fastjson2,hessian2");
    put("release", p.release.as_deref().unwrap_or(JAVA33_RELEASE));
    put("service-name-mapping", "true");
    put("side", "provider");
    put("timestamp", &p.timestamp_ms.to_string());
    p.configured(&mut m);
    m
}

/// Java `URL.valueOf(url, reserveParams, reserveParamPrefixes)`: keeps the listed keys with non-empty values
/// and every key that starts with one of the prefixes (the method names).
pub fn java_simplify(
    params: &BTreeMap<String, String>,
    keys: &[&str],
    method_prefixes: &[String],
) -> BTreeMap<String, String> {
    params
        .iter()
        .filter(|(k, v)| {
            !v.is_empty()
                && (keys.contains(&k.as_str()) || method_prefixes.iter().any(|m| k.starts_with(m.as_str())))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A Java provider registration from its parameters.
fn java_provider(
    flavor: Flavor,
    root: &str,
    p: &Provider,
    params: &BTreeMap<String, String>,
) -> Registration {
    let url = java_full_string(&p.protocol, &p.host, p.port, &p.interface, params);
    Registration {
        flavor,
        key: java_url_key(root, &p.interface, Category::Providers, &url),
        url,
        value: ValueRule::LeaseId,
        lease: LeaseRule::SharedPerClient {
            ttl_secs: JAVA_TTL_SECS,
        },
        parents: java_provider_parents(root, &p.interface),
    }
}

/// A Java 2.7.x provider: full parameter set, value = the shared lease's id.
pub fn java27_provider(root: &str, p: &Provider) -> Registration {
    java_provider(Flavor::Java27, root, p, &java27_params(p))
}

/// A Java 2.7.x provider with `simplified=true` (and `extra-keys`) on the registry URL:
/// [`JAVA27_SIMPLIFIED_PROVIDER_KEYS`] + the extra keys + keys starting with a method name
/// (`RegistryProtocol.getUrlToRegistry`). No `side`, `interface`, `methods`, `pid`, `anyhost`.
pub fn java27_simplified_provider(root: &str, p: &Provider, extra_keys: &[&str]) -> Registration {
    let mut keys: Vec<&str> = JAVA27_SIMPLIFIED_PROVIDER_KEYS.to_vec();
    keys.extend_from_slice(extra_keys);
    let params = java_simplify(&java27_params(p), &keys, &p.methods);
    java_provider(Flavor::Java27Simplified, root, p, &params)
}

/// A Java 3.3 provider, not simplified.
pub fn java33_provider(root: &str, p: &Provider) -> Registration {
    java_provider(Flavor::Java33, root, p, &java33_params(p))
}

/// A Java 3.3 provider with `simplified=true` and `extra-keys`: [`JAVA33_SIMPLIFIED_PROVIDER_KEYS`] + the
/// extra keys + keys starting with a method name. `interface`, `methods`, `timestamp`, `dubbo.tag` and
/// `generic`/`dynamic` are gone (the URL path still names the interface); `side` stays (3.0 branch on).
pub fn java33_simplified_provider(root: &str, p: &Provider, extra_keys: &[&str]) -> Registration {
    let mut keys: Vec<&str> = JAVA33_SIMPLIFIED_PROVIDER_KEYS.to_vec();
    keys.extend_from_slice(extra_keys);
    // The path is the interface here, so `interface` is not added (DefaultServiceURLCustomizer).
    let params = java_simplify(&java33_params(p), &keys, &p.methods);
    java_provider(Flavor::Java33Simplified, root, p, &params)
}

/// A Java 2.7.x consumer URL key (`consumer://ip/interface?...&category=consumers&check=false`,
/// `RegistryProtocol` / `RegistryDirectory`), on the shared lease.
pub fn java27_consumer(
    root: &str,
    interface: &str,
    ip: &str,
    application: &str,
    timestamp_ms: u64,
) -> Registration {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("application", application),
        ("category", "consumers"),
        ("check", "false"),
        ("dubbo", DUBBO_PROTOCOL_VERSION),
        ("interface", interface),
        ("methods", "hash"),
        ("release", JAVA27_RELEASE),
        ("side", "consumer"),
    ] {
        m.insert(k.to_owned(), v.to_owned());
    }
    m.insert("pid".to_owned(), std::process::id().to_string());
    m.insert("timestamp".to_owned(), timestamp_ms.to_string());
    let url = java_full_string("consumer", ip, 0, interface, &m);
    Registration {
        flavor: Flavor::Java27,
        key: java_url_key(root, interface, Category::Consumers, &url),
        url,
        value: ValueRule::LeaseId,
        lease: LeaseRule::SharedPerClient {
            ttl_secs: JAVA_TTL_SECS,
        },
        parents: Vec::new(),
    }
}

/// A rule URL as Dubbo Admin (2.6-style rules) registers it under `routers` or `configurators`: a persistent
/// key (`dynamic=false` → `etcdClient.create`), value = the path's hash code. `url` is the full URL, e.g.
/// `override://0.0.0.0/<iface>?category=configurators&dynamic=false&enabled=true&weight=200`.
pub fn java_rule(root: &str, interface: &str, category: Category, url: &str) -> Registration {
    let key = java_url_key(root, interface, category, url);
    Registration {
        flavor: Flavor::Java27,
        value: ValueRule::Literal(java_string_hash_code(&key).to_string()),
        key,
        url: url.to_owned(),
        lease: LeaseRule::Persistent,
        parents: Vec::new(),
    }
}

/// The parameters of a dubbo-go provider URL (`server/action.go getUrlMap` with default config, plus what
/// `providerRegistry` adds: `anyhost`, `methods`), empty values dropped.
pub fn dubbo_go_params(p: &Provider) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        m.insert(k.to_owned(), v.to_owned());
    };
    put("anyhost", "true");
    put("application", &p.application);
    put("bean.name", &p.interface);
    put("cluster", "failover");
    put("export", "true");
    put("interface", &p.interface);
    put("loadbalance", "random");
    put("metadata-type", "local");
    put("methods", &p.methods.join(","));
    put("module", "sample");
    put("name", &p.application);
    put("organization", "dubbo-go");
    put("owner", "dubbo-go");
    put("pid", &p.pid.to_string());
    put("registry", "etcdv3");
    put("registry.role", "3");
    let release = p
        .release
        .clone()
        .unwrap_or_else(|| format!("dubbo-golang-{GO_VERSION}"));
    put("release", &release);
    put("service.filter", GO_DEFAULT_SERVICE_FILTERS);
    put("side", "provider");
    put("timestamp", &(p.timestamp_ms / 1000).to_string());
    p.configured(&mut m);
    m.retain(|_, v| !v.is_empty());
    m
}

/// A dubbo-go provider: `url.QueryEscape` of `protocol://ip:port/path?sorted raw params`, under
/// `/<registry.group>/<QueryEscape(interface)>/providers`, value `""`, a lease of its own, and `""` written at
/// every prefix of the category path.
pub fn dubbo_go_provider(registry_group: &str, p: &Provider) -> Registration {
    let params = dubbo_go_params(p);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!(
        "{}://{}:{}/{}?{}",
        p.protocol,
        p.host,
        p.port,
        p.interface.trim_start_matches('/'),
        query.join("&")
    );
    let group = registry_group.trim_start_matches('/');
    let category_path = format!(
        "/{group}/{}/{}",
        go_query_escape(&p.interface),
        Category::Providers.as_str()
    )
    .replace('$', "%24");
    let mut parents = Vec::new();
    let mut prefix = String::new();
    for seg in category_path.split('/').skip(1) {
        prefix.push('/');
        prefix.push_str(seg);
        parents.push(ParentKey {
            key: prefix.clone(),
            value: String::new(),
            only_if_absent: false,
        });
    }
    Registration {
        flavor: Flavor::DubboGo,
        key: format!("{category_path}/{}", go_query_escape(&url)),
        url,
        value: ValueRule::Literal(String::new()),
        lease: LeaseRule::OnePerKey {
            ttl_secs: GO_TTL_SECS,
        },
        parents,
    }
}

/// The registration of `p` as `flavor` writes it, under the default root.
pub fn provider(flavor: Flavor, p: &Provider) -> Registration {
    match flavor {
        Flavor::Java27 => java27_provider(DEFAULT_ROOT, p),
        Flavor::Java27Simplified => java27_simplified_provider(DEFAULT_ROOT, p, &[]),
        Flavor::Java33 => java33_provider(DEFAULT_ROOT, p),
        Flavor::Java33Simplified => java33_simplified_provider(DEFAULT_ROOT, p, &[]),
        Flavor::DubboGo => dubbo_go_provider("dubbo", p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = "org.apache.dubbo.demo.DemoService";

    fn demo() -> Provider {
        let mut p = Provider::new(DEMO, "192.168.1.10", 20880);
        p.application = "demo-provider".into();
        p.methods = vec!["sayHello".into(), "sayHelloAsync".into()];
        p.pid = 4242;
        p.timestamp_ms = 1_700_000_000_000;
        p
    }

    #[test]
    fn java_encoder_matches_urlencoder() {
        assert_eq!(java_url_encode("a-z.A_Z*09"), "a-z.A_Z*09");
        assert_eq!(
            java_url_encode("a b/c:d?e=f&g,h~"),
            "a+b%2Fc%3Ad%3Fe%3Df%26g%2Ch%7E"
        );
        assert_eq!(java_url_encode("é"), "%C3%A9");
        assert_eq!(java_url_encode("$"), "%24");
        assert_eq!(java_url_encode(""), "");
    }

    #[test]
    fn go_escape_matches_query_escape() {
        assert_eq!(go_query_escape("a-z.A_Z~09"), "a-z.A_Z~09");
        assert_eq!(go_query_escape("*"), "%2A");
        assert_eq!(go_query_escape("a b/c:d?e=f&g,h"), "a+b%2Fc%3Ad%3Fe%3Df%26g%2Ch");
        assert_eq!(go_query_escape("é"), "%C3%A9");
    }

    #[test]
    fn java_hash_code_of_known_strings() {
        assert_eq!(java_string_hash_code(""), 0);
        assert_eq!(java_string_hash_code("a"), 97);
        // "hello".hashCode() == 99162322; "/dubbo".hashCode() computed by the same recurrence.
        assert_eq!(java_string_hash_code("hello"), 99_162_322);
        // Overflow wraps like Java: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash_code("polygenelubricants"), i32::MIN);
    }

    /// The encoded URL of `CacheableFailbackRegistryTest` (apache/dubbo 3.3,
    /// dubbo-registry/dubbo-registry-api/src/test/java/org/apache/dubbo/registry/CacheableFailbackRegistryTest.java).
    #[test]
    fn encoding_matches_dubbo_test_fixture() {
        let mut m = BTreeMap::new();
        m.insert("timeout".to_owned(), "3000".to_owned());
        m.insert("side".to_owned(), "provider".to_owned());
        let url = java_full_string("dubbo", "172.19.4.113", 20880, DEMO, &m);
        assert_eq!(
            java_url_encode(&url),
            "dubbo%3A%2F%2F172.19.4.113%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fside%3Dprovider%26timeout%3D3000"
        );
    }

    /// The constructed example of the fact sheet, section 1.1.
    #[test]
    fn java27_key_matches_fact_sheet() {
        let r = java27_provider(DEFAULT_ROOT, &demo());
        assert_eq!(
            r.key,
            "/dubbo/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F192.168.1.10%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello%2CsayHelloAsync%26pid%3D4242%26release%3D2.7.23%26side%3Dprovider%26timestamp%3D1700000000000"
        );
        assert_eq!(r.value.value(7_587_869_348_127_391_234), "7587869348127391234");
        assert_eq!(r.lease, LeaseRule::SharedPerClient { ttl_secs: 30 });
        let service = "/dubbo/org.apache.dubbo.demo.DemoService";
        assert_eq!(
            r.parents,
            vec![
                ParentKey {
                    key: service.into(),
                    value: java_string_hash_code(service).to_string(),
                    only_if_absent: true
                },
                ParentKey {
                    key: format!("{service}/configurators"),
                    value: java_string_hash_code(&format!("{service}/configurators")).to_string(),
                    only_if_absent: false
                },
            ]
        );
    }

    #[test]
    fn java27_options_and_root() {
        let p = demo()
            .group("g1")
            .version("1.0.0")
            .weight(200)
            .token("t0k")
            .tag("gray");
        let r = java27_provider("mesh", &p);
        assert!(r
            .key
            .starts_with("/mesh/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F"));
        assert_eq!(
            r.url,
            "dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&deprecated=false&dubbo=2.0.2&dubbo.tag=gray&dynamic=true&generic=false&group=g1&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&pid=4242&release=2.7.23&side=provider&timestamp=1700000000000&token=t0k&version=1.0.0&weight=200"
        );
        // Exactly one `/` after the category path: the URL's slashes are encoded.
        let rest = r
            .key
            .strip_prefix("/mesh/org.apache.dubbo.demo.DemoService/providers/")
            .unwrap_or("");
        assert!(!rest.contains('/'));
    }

    #[test]
    fn java_methods_star_when_none() {
        let mut p = demo();
        p.methods.clear();
        assert!(java27_provider(DEFAULT_ROOT, &p).url.contains("&methods=*&"));
        assert!(java27_provider(DEFAULT_ROOT, &p)
            .key
            .contains("%26methods%3D*%26"));
    }

    #[test]
    fn java33_full_has_no_pid_or_anyhost() {
        let r = java33_provider(DEFAULT_ROOT, &demo().version("2.0"));
        assert_eq!(
            r.url,
            "dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?application=demo-provider&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&prefer.serialization=fastjson2,hessian2&release=3.3.1&service-name-mapping=true&side=provider&timestamp=1700000000000&version=2.0"
        );
        assert_eq!(r.value, ValueRule::LeaseId);
        assert_eq!(r.key, java_url_key("/dubbo", DEMO, Category::Providers, &r.url));
    }

    #[test]
    fn java33_simplified_keeps_dubbo_keys_and_method_keys() {
        let p = demo()
            .group("g")
            .weight(50)
            .tag("gray")
            .param("sayHello.timeout", "250")
            .param("owner", "ops")
            .param("enabled", "false");
        let r = java33_simplified_provider(DEFAULT_ROOT, &p, &["owner"]);
        assert_eq!(
            r.url,
            "dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?application=demo-provider&deprecated=false&dubbo=2.0.2&group=g&owner=ops&prefer.serialization=fastjson2,hessian2&release=3.3.1&sayHello.timeout=250&side=provider&weight=50"
        );
        assert_eq!(r.flavor, Flavor::Java33Simplified);
        // Without extra keys, `owner` goes too.
        assert!(!java33_simplified_provider(DEFAULT_ROOT, &p, &[])
            .url
            .contains("owner"));
    }

    #[test]
    fn java27_simplified_drops_side_and_keeps_timestamp_and_tag() {
        let p = demo()
            .version("1.0")
            .tag("gray")
            .param("sayHelloAsync.retries", "0");
        let r = java27_simplified_provider(DEFAULT_ROOT, &p, &[]);
        assert_eq!(
            r.url,
            "dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?application=demo-provider&deprecated=false&dubbo=2.0.2&dubbo.tag=gray&release=2.7.23&sayHelloAsync.retries=0&timestamp=1700000000000&version=1.0"
        );
        assert_eq!(r.flavor, Flavor::Java27Simplified);
        assert_eq!(r.value, ValueRule::LeaseId);
    }

    #[test]
    fn dubbo_go_key_value_lease_and_parents() {
        let p = demo().version("1.0.0");
        let r = dubbo_go_provider("dubbo", &p);
        assert_eq!(
            r.url,
            "dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&bean.name=org.apache.dubbo.demo.DemoService&cluster=failover&export=true&interface=org.apache.dubbo.demo.DemoService&loadbalance=random&metadata-type=local&methods=sayHello,sayHelloAsync&module=sample&name=demo-provider&organization=dubbo-go&owner=dubbo-go&pid=4242&registry=etcdv3&registry.role=3&release=dubbo-golang-3.3.2&service.filter=echo,token,accesslog,tps,generic_service,execute,pshutdown&side=provider&timestamp=1700000000&version=1.0.0"
        );
        assert_eq!(
            r.key,
            format!(
                "/dubbo/org.apache.dubbo.demo.DemoService/providers/{}",
                go_query_escape(&r.url)
            )
        );
        assert!(r.key.contains(
            "dubbo%3A%2F%2F192.168.1.10%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26"
        ));
        assert_eq!(r.value.value(99), "");
        assert_eq!(r.lease, LeaseRule::OnePerKey { ttl_secs: 30 });
        let keys: Vec<&str> = r.parents.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/dubbo",
                "/dubbo/org.apache.dubbo.demo.DemoService",
                "/dubbo/org.apache.dubbo.demo.DemoService/providers"
            ]
        );
        assert!(r.parents.iter().all(|k| k.value.is_empty() && !k.only_if_absent));
    }

    #[test]
    fn go_and_java_differ_on_star() {
        let mut p = demo();
        p.extra.insert("methods".into(), "*".into());
        assert!(dubbo_go_provider("dubbo", &p).key.contains("methods%3D%2A"));
        assert!(java27_provider(DEFAULT_ROOT, &p).key.contains("methods%3D*"));
    }

    #[test]
    fn consumer_and_rule_keys() {
        let c = java27_consumer(DEFAULT_ROOT, DEMO, "10.0.0.1", "demo-consumer", 1);
        assert!(c.url.starts_with("consumer://10.0.0.1/org.apache.dubbo.demo.DemoService?application=demo-consumer&category=consumers&check=false&"));
        assert!(c
            .key
            .starts_with("/dubbo/org.apache.dubbo.demo.DemoService/consumers/consumer%3A%2F%2F10.0.0.1%2F"));
        let url =
            format!("override://0.0.0.0/{DEMO}?category=configurators&dynamic=false&enabled=true&weight=200");
        let r = java_rule(DEFAULT_ROOT, DEMO, Category::Configurators, &url);
        assert_eq!(r.lease, LeaseRule::Persistent);
        assert_eq!(
            r.value,
            ValueRule::Literal(java_string_hash_code(&r.key).to_string())
        );
        assert!(r.key.starts_with(
            "/dubbo/org.apache.dubbo.demo.DemoService/configurators/override%3A%2F%2F0.0.0.0%2F"
        ));
    }
}
