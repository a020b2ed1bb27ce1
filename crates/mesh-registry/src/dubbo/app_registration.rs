//! What a provider agent publishes for application-level discovery, as a Java Dubbo 3.3 provider does:
//! one `ServiceInfo` per exported provider URL, the application's `MetadataInfo` (with Java's revision),
//! and the service instance written at `/services/<app>/<host>:<port>` with its metadata.
//!
//! Sources: apache/dubbo `dubbo-metadata/dubbo-metadata-api/src/main/java/org/apache/dubbo/metadata/
//! MetadataInfo.java` (`ServiceInfo(URL, filters)`, `extractServiceParams`),
//! `.../metadata/DefaultMetadataParamsFilter.java` (excluded service parameters, included instance
//! parameters), `dubbo-registry/dubbo-registry-api/.../client/metadata/ServiceInstanceMetadataUtils.java`
//! (`getMetadataServiceParameter`: the MetadataService URL's parameters plus `port` and `protocol`),
//! `dubbo-config/dubbo-config-api/.../metadata/MetadataServiceURLParamsMetadataCustomizer.java`,
//! `.../client/metadata/ProtocolPortsMetadataCustomizer.java` (`dubbo.endpoints`),
//! `.../client/AbstractServiceDiscovery.java` (`createServiceInstance`: storage type, revision).

use std::collections::BTreeMap;

use super::instance::{
    InstanceEndpoint, ServiceInstance, ENDPOINTS_KEY, METADATA_SERVICE_URL_PARAMS_KEY, META_VERSION_KEY,
    REVISION_KEY, STORAGE_TYPE_KEY,
};
use super::metadata_info::{MetadataInfo, ServiceInfo, METADATA_SERVICE_VERSION};
use super::provider::{DUBBO_PROTOCOL, DUBBO_PROTOCOL_VERSION, RELEASE};
use super::url::DubboUrl;

/// Provider URL parameters kept out of `ServiceInfo.params` (`DefaultMetadataParamsFilter
/// .excludedServiceParams`); a key equal to one ignoring case, or containing `.` + one, is left out
/// (`ServiceInfo.extractServiceParams`).
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

/// Provider URL parameters copied into the instance metadata (`DefaultMetadataParamsFilter
/// .includedInstanceParams`).
pub const INCLUDED_INSTANCE_PARAMS: [&str; 3] = ["heartbeat.timeout", "timestamp", "ipv6"];

/// The `ServiceInfo` Java builds for an exported provider URL (`new ServiceInfo(url, filters)` with
/// `DefaultMetadataParamsFilter`): name = interface, group, version, protocol, port, path, and the URL's
/// parameters less [`EXCLUDED_SERVICE_PARAMS`].
pub fn service_info_from_url(url: &DubboUrl) -> ServiceInfo {
    let excluded = |key: &str| {
        EXCLUDED_SERVICE_PARAMS
            .iter()
            .any(|x| key.eq_ignore_ascii_case(x) || key.contains(&format!(".{x}")))
    };
    ServiceInfo {
        name: url.service_interface().to_owned(),
        group: url.group().map(str::to_owned),
        version: url.version().map(str::to_owned),
        protocol: Some(url.protocol.clone()),
        port: i32::from(url.port),
        path: Some(url.path.clone()).filter(|p| !p.is_empty()),
        params: url
            .params
            .iter()
            .filter(|(k, _)| !excluded(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A provider agent's application-level registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRegistration {
    /// The application.
    pub application: String,
    /// The host consumers reach (an IP; IPv6 without brackets, as Java writes instance hosts).
    pub host: String,
    /// The agent's Dubbo port: the instance port, every service's port and the MetadataService's.
    pub port: u16,
    /// The exported provider URLs (as [`super::ProviderRegistration::url`] builds them).
    pub provider_urls: Vec<DubboUrl>,
}

impl AppRegistration {
    /// The application's `MetadataInfo` (what `getMetadataInfo(revision)` answers), with Java's revision.
    pub fn metadata_info(&self) -> MetadataInfo {
        MetadataInfo::new(
            self.application.clone(),
            self.provider_urls.iter().map(service_info_from_url),
        )
    }

    /// The instance to write at `/services/<app>/<host>:<port>` for `info` (from
    /// [`AppRegistration::metadata_info`]): metadata `dubbo.metadata.revision`, `dubbo.metadata.storage-type`
    /// `local`, `meta-v` `1.0.0`, `dubbo.metadata-service.url-params` (3.x flat JSON: `version`, `dubbo`,
    /// `release`, `side`, `port`, `protocol`), `dubbo.endpoints`, and the instance parameters of the first
    /// provider URL that has them (`timestamp`, ...).
    pub fn instance(&self, info: &MetadataInfo) -> ServiceInstance {
        let mut instance = ServiceInstance::new(self.application.clone(), self.host.clone(), self.port);
        let m = &mut instance.metadata;
        m.insert(REVISION_KEY.into(), info.revision.clone());
        m.insert(STORAGE_TYPE_KEY.into(), "local".into());
        m.insert(META_VERSION_KEY.into(), METADATA_SERVICE_VERSION.into());
        let port = self.port.to_string();
        let url_params: BTreeMap<&str, &str> = [
            ("version", METADATA_SERVICE_VERSION),
            ("dubbo", DUBBO_PROTOCOL_VERSION),
            ("release", RELEASE),
            ("side", "provider"),
            ("port", port.as_str()),
            ("protocol", DUBBO_PROTOCOL),
        ]
        .into();
        m.insert(
            METADATA_SERVICE_URL_PARAMS_KEY.into(),
            serde_json::to_string(&url_params).unwrap_or_default(),
        );
        m.insert(
            ENDPOINTS_KEY.into(),
            endpoints_json(&[InstanceEndpoint {
                port: self.port,
                protocol: DUBBO_PROTOCOL.into(),
            }]),
        );
        for key in INCLUDED_INSTANCE_PARAMS {
            if let Some(value) = self.provider_urls.iter().find_map(|u| u.param(key)) {
                m.insert(key.into(), value.into());
            }
        }
        instance
    }
}

/// `dubbo.endpoints` as Java writes it: `[{"port":20880,"protocol":"dubbo"}]`.
pub fn endpoints_json(endpoints: &[InstanceEndpoint]) -> String {
    let list: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|e| serde_json::json!({"port": e.port, "protocol": e.protocol}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::instance::{InstanceShape, InstanceUse};
    use crate::dubbo::{instance_providers, Discovered, ProviderRegistration, ServiceKey};

    fn registration(service: &str, timestamp_ms: u64) -> ProviderRegistration {
        ProviderRegistration {
            service: ServiceKey::parse(service),
            addr: "10.1.2.3:20880".parse().unwrap(),
            application: "demo".into(),
            weight: 100,
            threads: None,
            tag: None,
            warmup_ms: 0,
            timestamp_ms,
            token: None,
            methods: vec!["greet".into()],
            params: [
                ("pid".to_owned(), "42".to_owned()),
                ("greet.validation".to_owned(), "true".to_owned()),
            ]
            .into(),
        }
    }

    fn app(timestamp_ms: u64, services: &[&str]) -> AppRegistration {
        AppRegistration {
            application: "demo".into(),
            host: "10.1.2.3".into(),
            port: 20880,
            provider_urls: services
                .iter()
                .map(|s| registration(s, timestamp_ms).url())
                .collect(),
        }
    }

    #[test]
    fn service_info_drops_what_java_drops() {
        let s = service_info_from_url(&registration("g/a.B:1", 5).url());
        assert_eq!(s.match_key(), "g/a.B:1:dubbo");
        assert_eq!((s.port, s.path.as_deref()), (20880, Some("a.B")));
        for gone in ["pid", "timestamp", "greet.validation"] {
            assert!(!s.params.contains_key(gone), "{gone}");
        }
        assert_eq!(s.params.get("methods").map(String::as_str), Some("greet"));
    }

    #[test]
    fn revision_ignores_restarts_and_follows_services() {
        let first = app(1_000, &["a.B"]).metadata_info();
        assert_eq!(first.revision, app(2_000, &["a.B"]).metadata_info().revision);
        assert_ne!(
            first.revision,
            app(1_000, &["a.B", "c.D"]).metadata_info().revision
        );
        assert_ne!(first.revision, "0");
    }

    #[test]
    fn instance_is_found_and_resolved_by_a_consumer() {
        let reg = app(1_700_000_000_000, &["g/a.B:1", "c.D"]);
        let info = reg.metadata_info();
        let instance = reg.instance(&info);
        let json = instance.to_java_json();
        let (read, shape) = ServiceInstance::from_json(json.as_bytes()).unwrap();
        assert_eq!((read.clone(), shape), (instance, InstanceShape::Java));
        assert_eq!(
            read.usability(),
            InstanceUse::Use {
                revision: &info.revision
            }
        );
        let ms = read.metadata_service_params().unwrap().unwrap();
        assert_eq!((ms.protocol.as_str(), ms.port), ("dubbo", Some(20880)));
        assert_eq!(read.endpoint_port("dubbo"), Some(20880));
        assert_eq!(read.meta("timestamp"), Some("1700000000000"));
        let mut keys: Vec<String> = instance_providers(&read, &info)
            .into_iter()
            .filter_map(|p| match p.discovered {
                Discovered::Provider { service, .. } => Some(service),
                Discovered::Skipped(_) => None,
            })
            .collect();
        keys.sort();
        assert_eq!(keys, ["c.D", "g/a.B:1"]);
    }
}
