//! Dubbo 3 application-level discovery data in etcd exactly as Java Dubbo 3.3 and dubbo-go write it: the
//! service instance `/services/<app>/<host>:<port>` (Java's camelCase Gson value, dubbo-go's PascalCase
//! `encoding/json` value), the instance metadata (revision, storage type, MetadataService URL parameters,
//! endpoints), Java's revision of an application's services, and dubbo-go's interface-to-application mapping
//! key `/dubbo/mapping/<interface>`. Written from the sources and the fact sheet (`shared/dubbo-discovery.md`
//! §4 to §6), independently of `mesh-registry` (which this module must never call: tests check one against
//! the other), JSON encoders included.
//!
//! # Sources (paths relative to each repository's root)
//!
//! * apache/dubbo-spi-extensions `dubbo-registry-extensions/dubbo-registry-etcd3/.../EtcdServiceDiscovery.java`:
//!   key `root + "/" + serviceName + "/" + host + ":" + port` with `root = "/services"`, value
//!   `new Gson().toJson(serviceInstance)` put with `putEphemeral` (the client's global lease, 30 s).
//! * apache/dubbo (3.3) `dubbo-registry/dubbo-registry-api/.../client/DefaultServiceInstance.java` (non-transient
//!   fields in declaration order: `rawAddress` (null, so omitted by Gson), `serviceName`, `host`, `port`,
//!   `enabled`, `healthy`, `metadata`), `.../client/metadata/ServiceInstanceMetadataUtils.java` (metadata keys),
//!   `dubbo-config/dubbo-config-api/.../metadata/MetadataServiceURLParamsMetadataCustomizer.java` (flat
//!   `dubbo.metadata-service.url-params` + `meta-v`), `.../ProtocolPortsMetadataCustomizer.java`
//!   (`dubbo.endpoints`), `dubbo-metadata/dubbo-metadata-api/.../MetadataInfo.java` (`calAndGetRevision`,
//!   `ServiceInfo.toDescString`), `.../DefaultMetadataParamsFilter.java` (the parameters a `ServiceInfo` drops).
//!   Gson's `JsonWriter` escapes `"`, `\`, control characters and, being HTML-safe by default, `<`, `>`, `&`,
//!   `=`, `'` (as `\u003c` ...), and U+2028/U+2029.
//! * apache/dubbo-go `registry/etcdv3/service_discovery.go` (`toPath` = `/services/<ServiceName>/<Host>:<Port>`,
//!   value `jsonutil.EncodeJSON(instance)` = `json.NewEncoder(..).Encode`: a trailing newline, `<`, `>`, `&`
//!   escaped, map keys sorted; put with `RegisterTemp`: a lease of its own, 30 s),
//!   `registry/service_instance.go` (`DefaultServiceInstance` fields, no JSON tags: `ID`, `ServiceName`, `Host`,
//!   `Port`, `Weight`, `Enable`, `Healthy`, `Metadata`, `ServiceMetadata`, `Address`, `GroupName`, `Tag`),
//!   `metadata/info/metadata_info.go` (`MetadataInfo` JSON tags `app`, `revision`, `tag`, `services`,
//!   `lastUpdatedTime`, `ServiceInfo` `name`, `group`, `version`, `protocol`, `port`, `path`, `params`, all
//!   `omitempty`), `metadata/report/etcd/report.go` (mapping key `/<group>/mapping/<interface>`, value the
//!   comma-separated applications, a plain key without lease).
//!
//! Where a source leaves a choice open (the order of Java's metadata map, dubbo-go's MetadataService URL
//! parameters), the writer picks a plausible one and says so; every reader parses JSON objects in any order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{
    java33_params, Flavor, LeaseRule, Provider, Registration, ValueRule, GO_TTL_SECS, JAVA_TTL_SECS,
};
use super::{DUBBO_PROTOCOL_VERSION, GO_VERSION, JAVA33_RELEASE};

/// The root of instance keys (`EtcdServiceDiscovery.root`, dubbo-go `ROOT`).
pub const SERVICES_ROOT: &str = "/services";
/// dubbo-go's default metadata-report root (`/` + `metadata-report.group`, default `dubbo`).
pub const DEFAULT_MAPPING_ROOT: &str = "/dubbo";
/// The MetadataService interface.
pub const METADATA_SERVICE: &str = "org.apache.dubbo.metadata.MetadataService";
/// `MetadataService.VERSION`.
pub const METADATA_SERVICE_VERSION: &str = "1.0.0";
/// The revision of an application without services (`RevisionResolver.EMPTY_REVISION`).
pub const EMPTY_REVISION: &str = "0";

/// `DefaultMetadataParamsFilter.excludedServiceParams`: provider URL parameters a `ServiceInfo` leaves out
/// (a key equal to one, ignoring case, or containing `.` + one).
pub const EXCLUDED_SERVICE_PARAMS: [&str; 13] = [
    "monitor",
    "bind.ip",
    "bind.port",
    "qos.enable",
    "qos.host",
    "qos.port",
    "qos.accept.foreign.ip",
    "validation",
    "interfaces",
    "pid",
    "timestamp",
    "heartbeat.timeout",
    "ipv6",
];

/// One exported service as `MetadataInfo.ServiceInfo` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDescription {
    /// `name`: the interface.
    pub name: String,
    /// `group` (Java: null when unset; Go: `""`).
    pub group: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `protocol`.
    pub protocol: String,
    /// `port`.
    pub port: u16,
    /// `path` (the interface).
    pub path: String,
    /// `params`: the provider URL's parameters less [`EXCLUDED_SERVICE_PARAMS`].
    pub params: BTreeMap<String, String>,
}

impl ServiceDescription {
    /// `ServiceInfo.getMatchKey()`: `group/` when set, the name, `:version` when set, `:protocol`.
    pub fn match_key(&self) -> String {
        let mut key = String::new();
        if let Some(g) = self.group.as_deref().filter(|g| !g.is_empty()) {
            key.push_str(g);
            key.push('/');
        }
        key.push_str(&self.name);
        if let Some(v) = self.version.as_deref().filter(|v| !v.is_empty()) {
            key.push(':');
            key.push_str(v);
        }
        key.push(':');
        key.push_str(&self.protocol);
        key
    }

    /// `ServiceInfo.toDescString()`: `getMatchKey() + port + path + new TreeMap<>(params).toString()`.
    pub fn java_desc_string(&self) -> String {
        let mut out = self.match_key();
        let _ = write!(out, "{}{}{{", self.port, self.path);
        let mut keys: Vec<&String> = self.params.keys().collect();
        keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{k}={}", self.params[k]);
        }
        out.push('}');
        out
    }
}

/// The `ServiceInfo` a Java 3.3 provider builds for its exported URL (`new ServiceInfo(url, filters)`): the
/// parameters of [`java33_params`] plus `anyhost=true` (on the exported URL; the registry URL drops it),
/// less [`EXCLUDED_SERVICE_PARAMS`].
pub fn java33_service(p: &Provider) -> ServiceDescription {
    let mut params = java33_params(p);
    params.insert("anyhost".into(), "true".into());
    let excluded = |key: &str| {
        EXCLUDED_SERVICE_PARAMS
            .iter()
            .any(|x| key.eq_ignore_ascii_case(x) || key.contains(&format!(".{x}")))
    };
    params.retain(|k, _| !excluded(k));
    ServiceDescription {
        name: p.interface.clone(),
        group: p.group.clone(),
        version: p.version.clone(),
        protocol: p.protocol.clone(),
        port: p.port,
        path: p.interface.clone(),
        params,
    }
}

/// Java 3.3's revision (`MetadataInfo.calAndGetRevision`): the lowercase hex MD5 of `app` followed by each
/// service's [`ServiceDescription::java_desc_string`] in match-key order (`new TreeMap<>(services)`, Java
/// `String` order); [`EMPTY_REVISION`] without services.
pub fn java_revision(app: &str, services: &[ServiceDescription]) -> String {
    if services.is_empty() {
        return EMPTY_REVISION.to_owned();
    }
    let mut sorted: Vec<(String, &ServiceDescription)> =
        services.iter().map(|s| (s.match_key(), s)).collect();
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    // A later service with the same match key replaces an earlier one (`services.put`).
    sorted.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1;
            true
        } else {
            false
        }
    });
    let mut text = app.to_owned();
    for (_, s) in sorted {
        text.push_str(&s.java_desc_string());
    }
    format!("{:x}", md5::compute(text.as_bytes()))
}

/// A Dubbo 3 application instance: where it listens and what it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInstance {
    /// The application (`serviceName`).
    pub application: String,
    /// The host (an IP).
    pub host: String,
    /// The instance port: its Dubbo protocol's (and MetadataService's) port.
    pub port: u16,
    /// The revision in `dubbo.metadata.revision`.
    pub revision: String,
    /// The exported services (dubbo-go writes them into `ServiceMetadata`).
    pub services: Vec<ServiceDescription>,
    /// Start time, ms since the epoch (Java's `timestamp` instance parameter).
    pub timestamp_ms: u64,
}

impl AppInstance {
    /// The instance of `application` at `host:port` exporting `providers` as a Java 3.3 provider does, with
    /// Java's revision of them.
    pub fn java33(
        application: &str,
        host: &str,
        port: u16,
        providers: &[Provider],
        timestamp_ms: u64,
    ) -> Self {
        let services: Vec<ServiceDescription> = providers.iter().map(java33_service).collect();
        AppInstance {
            application: application.to_owned(),
            host: host.to_owned(),
            port,
            revision: java_revision(application, &services),
            services,
            timestamp_ms,
        }
    }
}

/// `/services/<app>/<host>:<port>` (Java `toPath`; dubbo-go `toPath`).
pub fn instance_key(application: &str, host: &str, port: u16) -> String {
    format!("{SERVICES_ROOT}/{application}/{host}:{port}")
}

/// The metadata a Java 3.3 provider puts on its instance, in the order its customizers add them (the map's
/// order is not fixed by the source): `dubbo.metadata.storage-type` (`createServiceInstance`),
/// `dubbo.endpoints` (`ProtocolPortsMetadataCustomizer`), `timestamp` (`ServiceInstanceMetadataCustomizer`
/// via `DefaultMetadataParamsFilter.includedInstanceParams`), `dubbo.metadata-service.url-params` and
/// `meta-v` (`MetadataServiceURLParamsMetadataCustomizer`), `dubbo.metadata.revision`
/// (`calOrUpdateInstanceRevision`).
pub fn java33_metadata(i: &AppInstance) -> Vec<(String, String)> {
    let port = i.port.to_string();
    // `getMetadataServiceParameter`: the MetadataService URL's DEFAULT_REGISTER_PROVIDER_KEYS less
    // application/group/deprecated/timestamp, then port and protocol (values as in the fact sheet's example).
    let url_params = json_object_gson(&[
        ("version", METADATA_SERVICE_VERSION),
        ("dubbo", DUBBO_PROTOCOL_VERSION),
        ("release", JAVA33_RELEASE),
        ("side", "provider"),
        ("port", &port),
        ("protocol", "dubbo"),
    ]);
    vec![
        ("dubbo.metadata.storage-type".into(), "local".into()),
        ("dubbo.endpoints".into(), endpoints_json(i.port, "dubbo")),
        ("timestamp".into(), i.timestamp_ms.to_string()),
        ("dubbo.metadata-service.url-params".into(), url_params),
        ("meta-v".into(), METADATA_SERVICE_VERSION.into()),
        ("dubbo.metadata.revision".into(), i.revision.clone()),
    ]
}

/// `dubbo.endpoints`: `[{"port":20880,"protocol":"dubbo"}]` (`DefaultServiceInstance.Endpoint`).
pub fn endpoints_json(port: u16, protocol: &str) -> String {
    format!("[{{\"port\":{port},\"protocol\":{}}}]", gson_string(protocol))
}

/// The instance value as Java 3.3 writes it: Gson over `DefaultServiceInstance`
/// (`{"serviceName":..,"host":..,"port":..,"enabled":true,"healthy":true,"metadata":{..}}`).
pub fn java33_instance_value(i: &AppInstance) -> String {
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{{\"serviceName\":{},\"host\":{},\"port\":{},\"enabled\":true,\"healthy\":true,\"metadata\":{{",
        gson_string(&i.application),
        gson_string(&i.host),
        i.port
    );
    for (n, (k, v)) in java33_metadata(i).iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", gson_string(k), gson_string(v));
    }
    out.push_str("}}");
    out
}

/// A Java 3.3 instance registration: the key, the Gson value, on the client's shared lease (`putEphemeral`).
pub fn java33_instance(i: &AppInstance) -> Registration {
    Registration {
        flavor: Flavor::Java33,
        url: format!("{}:{}", i.host, i.port),
        key: instance_key(&i.application, &i.host, i.port),
        value: ValueRule::Literal(java33_instance_value(i)),
        lease: LeaseRule::SharedPerClient {
            ttl_secs: JAVA_TTL_SECS,
        },
        parents: Vec::new(),
    }
}

/// The metadata a dubbo-go provider puts on its instance (keys of `common/constant/key.go`; the MetadataService
/// URL parameters are a flat map with `port` and `protocol`, values constructed). Sorted, as Go encodes maps.
pub fn dubbo_go_metadata(i: &AppInstance) -> BTreeMap<String, String> {
    let port = i.port.to_string();
    let release = format!("dubbo-golang-{GO_VERSION}");
    let url_params = json_object_go(&BTreeMap::from([
        ("port", port.as_str()),
        ("protocol", "dubbo"),
        ("release", release.as_str()),
        ("side", "provider"),
        ("version", METADATA_SERVICE_VERSION),
    ]));
    BTreeMap::from([
        ("dubbo.endpoints".into(), endpoints_json(i.port, "dubbo")),
        ("dubbo.metadata-service.url-params".into(), url_params),
        ("dubbo.metadata.revision".into(), i.revision.clone()),
        ("dubbo.metadata.storage-type".into(), "local".into()),
        ("meta-v".into(), METADATA_SERVICE_VERSION.into()),
    ])
}

/// dubbo-go's JSON of a `MetadataInfo` (`omitempty` everywhere; `services` keyed by match key, sorted).
pub fn dubbo_go_metadata_info(app: &str, revision: &str, services: &[ServiceDescription]) -> String {
    let mut out = String::from("{");
    let mut fields = Vec::new();
    if !app.is_empty() {
        fields.push(format!("\"app\":{}", go_string(app)));
    }
    if !revision.is_empty() {
        fields.push(format!("\"revision\":{}", go_string(revision)));
    }
    if !services.is_empty() {
        let by_key: BTreeMap<String, &ServiceDescription> =
            services.iter().map(|s| (s.match_key(), s)).collect();
        let mut s_out = String::from("{");
        for (n, (key, s)) in by_key.iter().enumerate() {
            if n > 0 {
                s_out.push(',');
            }
            let mut f = Vec::new();
            f.push(format!("\"name\":{}", go_string(&s.name)));
            if let Some(g) = s.group.as_deref().filter(|g| !g.is_empty()) {
                f.push(format!("\"group\":{}", go_string(g)));
            }
            if let Some(v) = s.version.as_deref().filter(|v| !v.is_empty()) {
                f.push(format!("\"version\":{}", go_string(v)));
            }
            f.push(format!("\"protocol\":{}", go_string(&s.protocol)));
            if s.port != 0 {
                f.push(format!("\"port\":{}", s.port));
            }
            f.push(format!("\"path\":{}", go_string(&s.path)));
            if !s.params.is_empty() {
                let params: BTreeMap<&str, &str> =
                    s.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                f.push(format!("\"params\":{}", json_object_go(&params)));
            }
            let _ = write!(s_out, "{}:{{{}}}", go_string(key), f.join(","));
        }
        s_out.push('}');
        fields.push(format!("\"services\":{s_out}"));
    }
    out.push_str(&fields.join(","));
    out.push('}');
    out
}

/// The instance value as dubbo-go writes it (`jsonutil.EncodeJSON`: fields in declaration order, a trailing
/// newline); `ServiceMetadata` is the whole `MetadataInfo` when `with_service_metadata`, else `null`.
pub fn dubbo_go_instance_value(i: &AppInstance, with_service_metadata: bool) -> String {
    let owned = dubbo_go_metadata(i);
    let metadata: BTreeMap<&str, &str> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let service_metadata = if with_service_metadata {
        dubbo_go_metadata_info(&i.application, &i.revision, &i.services)
    } else {
        "null".to_owned()
    };
    format!(
        "{{\"ID\":{},\"ServiceName\":{},\"Host\":{},\"Port\":{},\"Weight\":0,\"Enable\":true,\"Healthy\":true,\
         \"Metadata\":{},\"ServiceMetadata\":{service_metadata},\"Address\":\"\",\"GroupName\":\"\",\"Tag\":\"\"}}\n",
        go_string(&format!("{}:{}", i.host, i.port)),
        go_string(&i.application),
        go_string(&i.host),
        i.port,
        json_object_go(&metadata),
    )
}

/// A dubbo-go instance registration: the key, the Go value, on a lease of its own (`RegisterTemp`).
pub fn dubbo_go_instance(i: &AppInstance, with_service_metadata: bool) -> Registration {
    Registration {
        flavor: Flavor::DubboGo,
        url: format!("{}:{}", i.host, i.port),
        key: instance_key(&i.application, &i.host, i.port),
        value: ValueRule::Literal(dubbo_go_instance_value(i, with_service_metadata)),
        lease: LeaseRule::OnePerKey {
            ttl_secs: GO_TTL_SECS,
        },
        parents: Vec::new(),
    }
}

/// dubbo-go's mapping key: `<root>/mapping/<interface>` (the interface not escaped).
pub fn mapping_key(root: &str, interface: &str) -> String {
    format!("{}/mapping/{interface}", root.trim_end_matches('/'))
}

/// dubbo-go's mapping entry: the applications joined by `,`, a plain key (no lease).
pub fn dubbo_go_mapping(root: &str, interface: &str, applications: &[&str]) -> Registration {
    Registration {
        flavor: Flavor::DubboGo,
        url: interface.to_owned(),
        key: mapping_key(root, interface),
        value: ValueRule::Literal(applications.join(",")),
        lease: LeaseRule::Persistent,
        parents: Vec::new(),
    }
}

/// A JSON string as Gson writes it (HTML-safe, its default).
pub fn gson_string(s: &str) -> String {
    json_string(s, |c| matches!(c, '<' | '>' | '&' | '=' | '\''))
}

/// A JSON string as Go's `json.Encoder` writes it (HTML escaping on, its default).
pub fn go_string(s: &str) -> String {
    json_string(s, |c| matches!(c, '<' | '>' | '&'))
}

fn json_string(s: &str, html: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 || html(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A flat JSON object of strings in the given order, Gson's escaping.
fn json_object_gson(entries: &[(&str, &str)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", gson_string(k), gson_string(v)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A flat JSON object of strings as Go encodes a `map[string]string` (keys sorted).
fn json_object_go(entries: &BTreeMap<&str, &str>) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", go_string(k), go_string(v)))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    //! The writers read back by mesh-registry's parsers (the agent's consumer side reads exactly these).
    use super::*;
    use mesh_registry::dubbo::instance::{
        InstanceKey, InstanceShape, InstanceUse, MetadataStorage, ServiceInstance,
    };
    use mesh_registry::dubbo::mapping::parse_mapping;
    use mesh_registry::dubbo::metadata_info::{MetadataInfo, ServiceInfo};

    const IFACE: &str = "org.apache.dubbo.demo.DemoService";

    fn instance() -> AppInstance {
        let providers = [
            Provider::new(IFACE, "192.168.1.10", 20880),
            Provider::new("org.apache.dubbo.demo.GreetingService", "192.168.1.10", 20880)
                .group("g")
                .version("1.0.0"),
        ];
        AppInstance::java33(
            "demo-provider",
            "192.168.1.10",
            20880,
            &providers,
            1_700_000_000_000,
        )
    }

    fn as_registry(s: &ServiceDescription) -> ServiceInfo {
        ServiceInfo {
            name: s.name.clone(),
            group: s.group.clone(),
            version: s.version.clone(),
            protocol: Some(s.protocol.clone()),
            port: i32::from(s.port),
            path: Some(s.path.clone()),
            params: s.params.clone(),
        }
    }

    #[test]
    fn java_revision_matches_hand_computed_md5_and_the_registry_model() {
        let one = ServiceDescription {
            name: "a.B".into(),
            group: None,
            version: None,
            protocol: "dubbo".into(),
            port: 20880,
            path: "a.B".into(),
            params: BTreeMap::from([("methods".into(), "greet".into())]),
        };
        // md5("demoa.B:dubbo20880a.B{methods=greet}"), computed with Python's hashlib.
        assert_eq!(
            java_revision("demo", std::slice::from_ref(&one)),
            "ae08c1cb4c16217cb3db72f1209fd518"
        );
        let two = ServiceDescription {
            name: "a.B".into(),
            group: Some("g".into()),
            version: Some("1.0".into()),
            params: BTreeMap::from([("methods".into(), "greet".into()), ("a".into(), "1".into())]),
            ..one.clone()
        };
        let three = ServiceDescription {
            name: "c.D".into(),
            path: "c.D".into(),
            params: BTreeMap::new(),
            ..one
        };
        // md5("demo" + "c.D:dubbo20880c.D{}" + "g/a.B:1.0:dubbo20880a.B{a=1, methods=greet}"): match-key order.
        assert_eq!(
            java_revision("demo", &[three.clone(), two.clone()]),
            "74d5f043d010a13659bf691dbaaf8c77"
        );
        assert_eq!(java_revision("demo", &[]), "0");
        let i = instance();
        let model = MetadataInfo::new(i.application.clone(), i.services.iter().map(as_registry));
        assert_eq!(i.revision, model.revision);
        assert_eq!(
            MetadataInfo::new("demo", [&three, &two].into_iter().map(as_registry)).revision,
            "74d5f043d010a13659bf691dbaaf8c77"
        );
    }

    #[test]
    fn service_description_drops_what_java_drops() {
        let s = java33_service(&Provider::new(IFACE, "10.0.0.1", 20880).param("sayHello.validation", "true"));
        for gone in ["pid", "timestamp", "sayHello.validation"] {
            assert!(!s.params.contains_key(gone), "{gone}");
        }
        assert_eq!(s.params.get("anyhost").map(String::as_str), Some("true"));
        assert_eq!(s.params.get("side").map(String::as_str), Some("provider"));
        assert_eq!(s.match_key(), format!("{IFACE}:dubbo"));
    }

    #[test]
    fn java_instance_reads_back_as_java() {
        let i = instance();
        let r = java33_instance(&i);
        assert_eq!(r.key, "/services/demo-provider/192.168.1.10:20880");
        assert_eq!(r.lease, LeaseRule::SharedPerClient { ttl_secs: 30 });
        let key = InstanceKey::parse(&r.key).unwrap();
        assert_eq!(
            (key.app.as_str(), key.host.as_str(), key.port),
            ("demo-provider", "192.168.1.10", 20880)
        );
        let value = r.value.value(7);
        assert!(value.starts_with(
            r#"{"serviceName":"demo-provider","host":"192.168.1.10","port":20880,"enabled":true,"healthy":true,"metadata":{"dubbo.metadata.storage-type":"local","dubbo.endpoints":"[{\"port\":20880,\"protocol\":\"dubbo\"}]","#
        ), "{value}");
        let (read, shape) = ServiceInstance::from_json(value.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Java);
        assert_eq!(read.service_name, "demo-provider");
        assert_eq!(
            read.usability(),
            InstanceUse::Use {
                revision: &i.revision
            }
        );
        assert_eq!(read.storage_type(), MetadataStorage::Local);
        assert_eq!(read.endpoint_port("dubbo"), Some(20880));
        assert_eq!(read.meta("timestamp"), Some("1700000000000"));
        assert_eq!(read.meta("meta-v"), Some("1.0.0"));
        let ms = read.metadata_service_params().unwrap().unwrap();
        assert_eq!((ms.protocol.as_str(), ms.port), ("dubbo", Some(20880)));
        assert_eq!(ms.params.get("version").map(String::as_str), Some("1.0.0"));
        assert!(read.inline_metadata.is_none());
    }

    #[test]
    fn go_instance_reads_back_as_go_with_its_metadata() {
        let i = instance();
        let r = dubbo_go_instance(&i, true);
        assert_eq!(r.key, "/services/demo-provider/192.168.1.10:20880");
        assert_eq!(r.lease, LeaseRule::OnePerKey { ttl_secs: 30 });
        let value = r.value.value(0);
        assert!(value.starts_with(r#"{"ID":"192.168.1.10:20880","ServiceName":"demo-provider","Host":"192.168.1.10","Port":20880,"Weight":0,"Enable":true,"#), "{value}");
        assert!(value.ends_with("\"Tag\":\"\"}\n"));
        let (read, shape) = ServiceInstance::from_json(value.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Go);
        assert_eq!(
            read.usability(),
            InstanceUse::Use {
                revision: &i.revision
            }
        );
        assert_eq!(read.endpoint_port("dubbo"), Some(20880));
        let inline = read.inline_metadata.expect("ServiceMetadata");
        assert_eq!(
            (inline.app.as_str(), inline.revision.as_str()),
            ("demo-provider", i.revision.as_str())
        );
        let keys: Vec<&str> = inline.services.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "g/org.apache.dubbo.demo.GreetingService:1.0.0:dubbo",
                "org.apache.dubbo.demo.DemoService:dubbo"
            ]
        );
        let s = &inline.services["org.apache.dubbo.demo.DemoService:dubbo"];
        assert_eq!(
            (s.port, s.path.as_deref(), s.group.as_deref()),
            (20880, Some(IFACE), None)
        );
        assert_eq!(s.params, i.services[0].params);
        // Without ServiceMetadata (null), the revision comes from the metadata map.
        let (bare, _) =
            ServiceInstance::from_json(dubbo_go_instance(&i, false).value.value(0).as_bytes()).unwrap();
        assert!(bare.inline_metadata.is_none());
        assert_eq!(bare.revision(), Some(i.revision.as_str()));
    }

    #[test]
    fn mapping_key_and_value_read_back() {
        let r = dubbo_go_mapping(DEFAULT_MAPPING_ROOT, IFACE, &["app-a", "app-b"]);
        assert_eq!(r.key, format!("/dubbo/mapping/{IFACE}"));
        assert_eq!(r.key, mesh_registry::dubbo::mapping::mapping_key("/dubbo", IFACE));
        assert_eq!(r.lease, LeaseRule::Persistent);
        assert_eq!(parse_mapping(&r.value.value(0)).unwrap(), ["app-a", "app-b"]);
        assert_eq!(mapping_key("/dubbo/", "x.Y"), "/dubbo/mapping/x.Y");
    }

    #[test]
    fn json_strings_escape_like_gson_and_go() {
        assert_eq!(
            gson_string("a=b<c>&'\"\\\n\u{1}"),
            r#""a\u003db\u003cc\u003e\u0026\u0027\"\\\n\u0001""#
        );
        assert_eq!(go_string("a=b<c>&'"), r#""a=b\u003cc\u003e\u0026'""#);
        assert_eq!(gson_string("\u{2028}é"), "\"\\u2028é\"");
        // Both read back by a JSON parser to the same text.
        let s = "a=b<c>&'\"\\\n\u{1}\u{8}\u{c}\u{2029}é";
        let g: String = serde_json::from_str(&gson_string(s)).unwrap();
        let o: String = serde_json::from_str(&go_string(s)).unwrap();
        assert_eq!((g.as_str(), o.as_str()), (s, s));
    }
}
