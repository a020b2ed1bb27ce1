//! What the provider agent publishes for discovery, and what a configuration reload (SIGHUP) may change of
//! it: by `provider.register_mode`, the provider URL keys (`interface`, `all`), the Dubbo 3 application
//! instance (`instance`, `all`) and, with `provider.write_mapping`, the interface-to-application mapping of
//! its interfaces; the `MetadataInfo` its MetadataService serves is built once, here, and the instance
//! carries its revision.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_registry::dubbo::app_registration::AppRegistration;
use mesh_registry::dubbo::metadata_info::MetadataInfo;
use mesh_registry::dubbo::DubboUrl;
use mesh_registry::{InstanceRegistration, Registrations};

use crate::config::{EtcdSection, ProviderConfig};

/// The application-level view of the provider: its application, the advertised address (the instance
/// host and port, IPv6 without brackets as Java writes instance hosts), the provider URLs.
pub(crate) fn app_registration(
    p: &ProviderConfig,
    advertise: SocketAddr,
    provider_urls: Vec<DubboUrl>,
) -> AppRegistration {
    AppRegistration {
        application: p.application.clone(),
        host: advertise.ip().to_string(),
        port: advertise.port(),
        provider_urls,
    }
}

/// What the registrar keeps in etcd for `p` (under `e`'s roots, on a lease of `e.lease_ttl_s`): the
/// provider URLs when the mode registers interfaces, the instance of `info` when it registers instances,
/// and the mapping of every interface when it also writes the mapping.
pub(crate) fn registrations(
    p: &ProviderConfig,
    e: &EtcdSection,
    app: &AppRegistration,
    info: &MetadataInfo,
) -> Registrations {
    let ttl = Duration::from_secs(e.lease_ttl_s);
    let urls = if p.register_mode.registers_interfaces() {
        app.provider_urls.clone()
    } else {
        Vec::new()
    };
    let mut regs = Registrations::urls(urls, ttl);
    if p.register_mode.registers_instance() {
        let mut instance =
            InstanceRegistration::new(app.instance(info)).with_services_root(e.services_root.clone());
        if p.write_mapping {
            let mut interfaces: Vec<String> = Vec::new();
            for url in &app.provider_urls {
                let interface = url.service_interface().to_owned();
                if !interfaces.contains(&interface) {
                    interfaces.push(interface);
                }
            }
            instance = instance.with_mapping(e.mapping_root.clone(), interfaces);
        }
        regs = regs.with_instance(instance);
    }
    regs
}

/// A provider section read again on SIGHUP, as far as it can be taken without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reload {
    /// The section to run with: the running one with the new values of [`RELOADED_KEYS`].
    pub(crate) config: ProviderConfig,
    /// Other keys whose value changed: they take effect at the next start.
    pub(crate) need_restart: Vec<String>,
}

/// The keys a reload applies: what shapes the registered URLs, the served `MetadataInfo` and the
/// mapping, and nothing the shards or the registrar's lease and watches were started with (the
/// application is the MetadataService's group, the token and the cap are enforced by the shards).
pub(crate) const RELOADED_KEYS: [&str; 8] = [
    "services",
    "weight",
    "tag",
    "params",
    "warmup_ms",
    "simplified",
    "extra_keys",
    "write_mapping",
];

/// What of `new` a running provider configured with `running` takes on SIGHUP.
pub(crate) fn reload(running: &ProviderConfig, new: &ProviderConfig) -> Reload {
    let mut config = running.clone();
    config.services = new.services.clone();
    config.weight = new.weight;
    config.tag = new.tag.clone();
    config.params = new.params.clone();
    config.warmup_ms = new.warmup_ms;
    config.simplified = new.simplified;
    config.extra_keys = new.extra_keys.clone();
    config.write_mapping = new.write_mapping;
    let table = |c: &ProviderConfig| toml::Value::try_from(c).ok().and_then(|v| v.as_table().cloned());
    let need_restart = match (table(&config), table(new)) {
        (Some(taken), Some(wanted)) => {
            let mut keys: Vec<String> = taken
                .keys()
                .chain(wanted.keys())
                .filter(|k| taken.get(*k) != wanted.get(*k))
                .map(|k| format!("provider.{k}"))
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    };
    Reload { config, need_restart }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{load, Overrides, Role};
    use mesh_registry::dubbo::instance::ServiceInstance;

    fn loaded(provider: &str, etcd: &str) -> (ProviderConfig, EtcdSection) {
        let text = format!("[provider]\n{provider}[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n{etcd}");
        let c = load(Some(&text), &Overrides::default(), Role::Provider).unwrap();
        (c.provider.unwrap(), c.etcd.unwrap())
    }

    fn published(p: &ProviderConfig, e: &EtcdSection) -> (Registrations, MetadataInfo) {
        let advertise: SocketAddr = "10.0.0.5:30000".parse().unwrap();
        let urls = crate::run::provider_urls(p, advertise, 1_700_000_000_000);
        let app = app_registration(p, advertise, urls);
        let info = app.metadata_info();
        (registrations(p, e, &app, &info), info)
    }

    #[test]
    fn each_register_mode_registers_what_dubbo_does() {
        let services = "application = \"orders\"\nservices = [\"a.B\", \"g/a.B:1\", \"c.D\"]\n";
        let (p, e) = loaded(services, "");
        let (all, info) = published(&p, &e);
        assert_eq!(all.urls.len(), 3);
        assert_eq!(all.ttl, Duration::from_secs(10));
        let instance = all.instance.unwrap();
        assert_eq!(
            (
                instance.instance.service_name.as_str(),
                instance.instance.host.as_str(),
                instance.instance.port
            ),
            ("orders", "10.0.0.5", 30000)
        );
        assert_eq!(instance.instance.revision(), Some(info.revision.as_str()));
        assert_eq!(instance.services_root, "/services");
        assert_eq!(
            (instance.mapping_root.as_str(), instance.mapped_interfaces.clone()),
            ("/dubbo", vec!["a.B".to_owned(), "c.D".to_owned()])
        );
        assert_eq!(info.services.len(), 3, "one ServiceInfo per service key");

        let (p, e) = loaded(&format!("{services}register_mode = \"interface\"\n"), "");
        let (interface, _) = published(&p, &e);
        assert_eq!((interface.urls.len(), interface.instance), (3, None));

        let (p, e) = loaded(
            &format!("{services}register_mode = \"instance\"\nwrite_mapping = false\n"),
            "services_root = \"/apps\"\n",
        );
        let (instance_only, _) = published(&p, &e);
        assert!(instance_only.urls.is_empty());
        let instance = instance_only.instance.unwrap();
        assert_eq!(instance.services_root, "/apps");
        assert!(instance.mapped_interfaces.is_empty());
        // What goes to etcd reads back as Java's shape.
        let json = instance.instance.to_java_json();
        assert_eq!(
            ServiceInstance::from_json(json.as_bytes()).unwrap().0,
            instance.instance
        );
    }

    #[test]
    fn a_reload_takes_the_registered_shape_and_names_what_needs_a_restart() {
        let (running, _) = loaded("services = [\"a.B\"]\nweight = 100\n", "");
        let (new, _) = loaded(
            "services = [\"a.B\", \"c.D\"]\nweight = 50\ntag = \"blue\"\ntoken = \"t0ken\"\napplication = \"x\"\n",
            "",
        );
        let r = reload(&running, &new);
        assert_eq!(r.config.services, ["a.B", "c.D"]);
        assert_eq!((r.config.weight, r.config.tag.as_deref()), (50, Some("blue")));
        assert_eq!(
            (r.config.token.as_deref(), r.config.application.as_str()),
            (None, running.application.as_str())
        );
        assert_eq!(r.need_restart, ["provider.application", "provider.token"]);
        let same = reload(&running, &running);
        assert_eq!((same.config, same.need_restart), (running, Vec::<String>::new()));
    }
}
