//! From an instance and its `MetadataInfo` to provider endpoints per service key, as a Java Dubbo 3
//! consumer builds its addresses (apache/dubbo `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/
//! dubbo/registry/client/event/listener/ServiceInstancesChangedListener.java` `doOnEvent` and
//! `getServiceUrlsCache`; `.../client/InstanceAddressURL.java` `getParameter`), giving the same
//! [`Discovered`] as the interface-level path ([`super::discover`]) so both feed one snapshot.
//!
//! * Port: `ServiceInfo.port` when > 0; else the `dubbo.endpoints` entry of the service's protocol; else
//!   the instance port.
//! * Parameters: a service's own (`ServiceInfo.params`) win over the instance's metadata
//!   (`InstanceAddressURL.getParameter` asks the service first, then the instance); the discovery entries of
//!   the instance metadata (revision, storage type, MetadataService parameters, endpoints, `meta-v`) are
//!   left out; `interface`, `group` and `version` come from the `ServiceInfo`.

use std::collections::BTreeMap;

use super::instance::{
    ServiceInstance, ENDPOINTS_KEY, METADATA_SERVICE_URL_PARAMS_KEY, META_VERSION_KEY, REVISION_KEY,
    REVISION_KEY_2_7_8, STORAGE_TYPE_KEY,
};
use super::key::{Category, RegisteredUrl};
use super::metadata_info::{MetadataInfo, ServiceInfo};
use super::provider::{discover, Discovered};
use super::url::{DubboUrl, GROUP_KEY, INTERFACE_KEY, VERSION_KEY};

/// Instance metadata that says how to discover, not how to call: not copied into endpoint parameters.
const DISCOVERY_KEYS: [&str; 6] = [
    REVISION_KEY,
    REVISION_KEY_2_7_8,
    STORAGE_TYPE_KEY,
    METADATA_SERVICE_URL_PARAMS_KEY,
    ENDPOINTS_KEY,
    META_VERSION_KEY,
];

/// One service of an instance, as the consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProvider {
    /// The `MetadataInfo.services` key it was listed under (`group/interface:version:protocol`).
    pub match_key: String,
    /// A provider of a service key (same as the interface-level path), or why not.
    pub discovered: Discovered,
}

/// The port a consumer calls `service` on at `instance` (`ServiceInstancesChangedListener
/// .getServiceUrlsCache`): `ServiceInfo.port` if > 0, else the `dubbo.endpoints` port of its protocol, else
/// the instance port. `None` when `ServiceInfo.port` is above 65535.
pub fn provider_port(instance: &ServiceInstance, service: &ServiceInfo) -> Option<u16> {
    if service.port > 0 {
        return u16::try_from(service.port).ok();
    }
    let from_endpoints = service
        .protocol
        .as_deref()
        .and_then(|p| instance.endpoint_port(p));
    Some(from_endpoints.unwrap_or(instance.port))
}

/// The provider URL a Java consumer's `InstanceAddressURL` stands for (see the module documentation).
pub fn provider_url(instance: &ServiceInstance, service: &ServiceInfo, port: u16) -> DubboUrl {
    let mut params: BTreeMap<String, String> = instance
        .metadata
        .iter()
        .filter(|(k, _)| !DISCOVERY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.extend(service.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    params.insert(INTERFACE_KEY.to_owned(), service.name.clone());
    for (key, value) in [(GROUP_KEY, &service.group), (VERSION_KEY, &service.version)] {
        match value.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => params.insert(key.to_owned(), v.to_owned()),
            None => params.remove(key),
        };
    }
    let host = if instance.host.contains(':') && !instance.host.starts_with('[') {
        format!("[{}]", instance.host)
    } else {
        instance.host.clone()
    };
    DubboUrl {
        protocol: service.protocol.clone().unwrap_or_default(),
        username: None,
        password: None,
        host,
        port,
        path: service
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| service.name.clone()),
        params,
    }
}

/// Every service of `info` served by `instance`: an endpoint per service key, or why a service is skipped
/// (not the Dubbo protocol, port out of range, host not an IP, ...). Call it only for an instance whose
/// [`ServiceInstance::usability`] is `Use` and whose revision `info` is.
pub fn instance_providers(instance: &ServiceInstance, info: &MetadataInfo) -> Vec<AppProvider> {
    info.services
        .iter()
        .map(|(match_key, service)| {
            let discovered = if service.protocol.as_deref().is_none_or(str::is_empty) {
                Discovered::Skipped("a ServiceInfo without a protocol")
            } else {
                match provider_port(instance, service) {
                    None => Discovered::Skipped("ServiceInfo.port is above 65535"),
                    Some(port) => discover(&RegisteredUrl {
                        interface: service.name.clone(),
                        category: Category::Providers,
                        url: provider_url(instance, service, port),
                    }),
                }
            };
            AppProvider {
                match_key: match_key.clone(),
                discovered,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::instance::{ENDPOINTS_KEY, REVISION_KEY};
    use crate::dubbo::{ProviderRegistration, ServiceKey};
    use std::net::SocketAddr;

    fn service(protocol: &str, port: i32) -> ServiceInfo {
        ServiceInfo {
            name: "org.demo.Greeter".into(),
            group: Some("g".into()),
            version: Some("1.0.0".into()),
            protocol: Some(protocol.into()),
            port,
            path: Some("org.demo.Greeter".into()),
            params: [
                ("application".to_owned(), "demo".to_owned()),
                ("weight".to_owned(), "7".to_owned()),
                ("methods".to_owned(), "greet".to_owned()),
            ]
            .into(),
        }
    }

    fn instance() -> ServiceInstance {
        let mut i = ServiceInstance::new("demo", "10.0.0.5", 20880);
        i.metadata.insert(REVISION_KEY.into(), "r1".into());
        i.metadata.insert("timestamp".into(), "1700000000000".into());
        i.metadata.insert("weight".into(), "50".into());
        i.metadata.insert(
            ENDPOINTS_KEY.into(),
            r#"[{"port":20880,"protocol":"dubbo"},{"port":20990,"protocol":"dubbo2"}]"#.into(),
        );
        i
    }

    #[test]
    fn port_choice_follows_java() {
        let i = instance();
        assert_eq!(provider_port(&i, &service("dubbo", 20999)), Some(20999));
        assert_eq!(provider_port(&i, &service("dubbo2", -1)), Some(20990));
        assert_eq!(provider_port(&i, &service("dubbo", 0)), Some(20880));
        assert_eq!(provider_port(&i, &service("tri", -1)), Some(20880));
        assert_eq!(provider_port(&i, &service("dubbo", 70000)), None);
    }

    #[test]
    fn endpoints_match_the_interface_level_path() {
        let i = instance();
        let info = MetadataInfo::new("demo", [service("dubbo", -1), service("tri", 50051)]);
        let providers = instance_providers(&i, &info);
        assert_eq!(providers.len(), 2);
        let dubbo = providers
            .iter()
            .find(|p| p.match_key == "g/org.demo.Greeter:1.0.0:dubbo")
            .unwrap();
        let Discovered::Provider {
            service: key,
            endpoint,
        } = &dubbo.discovered
        else {
            panic!("{dubbo:?}");
        };
        assert_eq!(key, &ServiceKey::parse("g/org.demo.Greeter:1.0.0").to_string());
        assert_eq!(endpoint.addr, "10.0.0.5:20880".parse::<SocketAddr>().unwrap());
        // the service's weight wins over the instance's; the instance's timestamp is used
        assert_eq!(endpoint.weight, 7);
        assert_eq!(endpoint.registered_at_ms, Some(1_700_000_000_000));
        assert!(!endpoint.params.contains_key(ENDPOINTS_KEY));
        assert!(!endpoint.params.contains_key(REVISION_KEY));
        let tri = providers.iter().find(|p| p.match_key.ends_with(":tri")).unwrap();
        assert!(matches!(tri.discovered, Discovered::Skipped(_)));

        // The same provider registered at interface level gives the same service key and address.
        let reg = ProviderRegistration {
            service: ServiceKey::parse("g/org.demo.Greeter:1.0.0"),
            addr: endpoint.addr,
            application: "demo".into(),
            weight: 7,
            threads: None,
            tag: None,
            warmup_ms: 0,
            timestamp_ms: 1_700_000_000_000,
            token: None,
            methods: vec!["greet".into()],
            params: BTreeMap::new(),
        };
        let Discovered::Provider {
            service: k2,
            endpoint: e2,
        } = discover(&RegisteredUrl {
            interface: "org.demo.Greeter".into(),
            category: Category::Providers,
            url: reg.url(),
        })
        else {
            panic!("interface-level provider skipped");
        };
        assert_eq!(
            (k2, e2.addr, e2.weight),
            (key.clone(), endpoint.addr, endpoint.weight)
        );
    }

    #[test]
    fn ipv6_hosts_and_missing_protocol() {
        let mut i = instance();
        i.host = "fe80::1".into();
        let mut no_protocol = service("dubbo", -1);
        no_protocol.protocol = None;
        let info = MetadataInfo::new("demo", [service("dubbo", -1), no_protocol]);
        let providers = instance_providers(&i, &info);
        let ok = providers
            .iter()
            .find_map(|p| match &p.discovered {
                Discovered::Provider { endpoint, .. } => Some(endpoint.addr),
                Discovered::Skipped(_) => None,
            })
            .unwrap();
        assert_eq!(ok, "[fe80::1]:20880".parse::<SocketAddr>().unwrap());
        assert!(providers
            .iter()
            .any(|p| p.discovered == Discovered::Skipped("a ServiceInfo without a protocol")));
    }
}
