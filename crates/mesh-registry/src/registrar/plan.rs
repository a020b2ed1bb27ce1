//! What a registrar puts in etcd, pure: the keys kept on the lease with their values, the persistent parent
//! keys, the prefixes watched for deletions of our keys, the mappings to write, and what changes in etcd
//! when one set of registrations replaces another.

use crate::dubbo::instance::ServiceInstance;
use crate::dubbo::mapping::{is_mapped_interface, mapping_key};
use crate::dubbo::{Category, KeyEncoding, RegistryRoot};
use crate::etcd::EtcdConfig;
use crate::RegistryError;
use mesh_dubbo::java_string_hash;

use super::Registrations;

/// The value of a key kept on the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyValue {
    /// The decimal lease id (Java's `EtcdRegistry` value of a URL key).
    LeaseId,
    /// This text (an instance's JSON).
    Text(String),
}

impl KeyValue {
    /// The value to put with `lease`.
    pub(super) fn for_lease(&self, lease: i64) -> String {
        match self {
            KeyValue::LeaseId => lease.to_string(),
            KeyValue::Text(t) => t.clone(),
        }
    }
}

/// The mapping keys to add an application to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MappingPlan {
    /// The application.
    pub(super) application: String,
    /// `<mapping root>/mapping/<interface>`, each once.
    pub(super) keys: Vec<String>,
}

/// The keys and values to put, and the lease TTL in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Which registrations these are: 0 for the ones the registrar started with, then one per update.
    pub(super) number: u64,
    /// The keys kept on the lease, each once, with their values.
    pub(super) keys: Vec<(String, KeyValue)>,
    /// Persistent parent keys put when absent, with their values.
    pub(super) parents: Vec<(String, String)>,
    /// The prefixes our keys live in (the registry root, the services root), watched for deletions.
    pub(super) ranges: Vec<String>,
    /// The mappings written beside the lease (none when empty).
    pub(super) mapping: Option<MappingPlan>,
    pub(super) ttl_secs: i64,
    pub(super) summary: String,
}

/// What replacing one plan by another does in etcd, on the current lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Keys no longer registered.
    pub(super) deletes: Vec<String>,
    /// Keys new, or with a new value.
    pub(super) puts: Vec<(String, KeyValue)>,
    /// Parents of new interfaces (put when absent).
    pub(super) parents: Vec<(String, String)>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.puts.is_empty() && self.parents.is_empty()
    }
}

/// The instance key `<root>/<application>/<host>:<port>` (Java `EtcdServiceDiscovery.toPath` with `/`, as
/// every Linux Java and dubbo-go writes it; an IPv6 host without brackets, as both do).
pub(super) fn instance_key(root: &RegistryRoot, instance: &ServiceInstance) -> String {
    format!(
        "{}/{}/{}:{}",
        root.as_str(),
        instance.service_name,
        instance.host,
        instance.port
    )
}

impl Plan {
    pub(super) fn new(cfg: &EtcdConfig, regs: &Registrations, number: u64) -> Result<Self, RegistryError> {
        if regs.urls.is_empty() && regs.instance.is_none() {
            return Err(RegistryError::Config("nothing to register".into()));
        }
        let mut keys: Vec<(String, KeyValue)> = Vec::with_capacity(regs.urls.len() + 1);
        let mut parents: Vec<(String, String)> = Vec::new();
        let mut ranges = Vec::new();
        let mut summary = Vec::new();
        if !regs.urls.is_empty() {
            let root = RegistryRoot::new(&cfg.root)?;
            for url in &regs.urls {
                let key = root.url_key(url, KeyEncoding::JavaUrlEncoder)?;
                if !keys.iter().any(|(k, _)| *k == key) {
                    keys.push((key, KeyValue::LeaseId));
                }
                let parent = root.service_path(url.service_interface(), KeyEncoding::JavaUrlEncoder);
                if !parents.iter().any(|(p, _)| *p == parent) {
                    // Java's `AbstractEtcdClient.createParentIfAbsent` stores the path's `String.hashCode()`.
                    let value = java_string_hash(&parent).to_string();
                    parents.push((parent, value));
                }
                let side = if url.category() == Category::Providers.as_str() {
                    ""
                } else {
                    " (consumer)"
                };
                summary.push(format!(
                    "{}{side} at {}:{}",
                    url.service_key(),
                    url.host,
                    url.port
                ));
            }
            ranges.push(format!("{root}/"));
        }
        let mut mapping = None;
        if let Some(reg) = &regs.instance {
            let bad = |what: &str, e: &dyn std::fmt::Display| RegistryError::Config(format!("{what}: {e}"));
            let root = RegistryRoot::new(&reg.services_root).map_err(|e| bad("services root", &e))?;
            let instance = &reg.instance;
            let value = instance.to_java_json();
            // What we write must be what a consumer (ours, and Java's shape) reads back.
            let (read, _) = ServiceInstance::from_json(value.as_bytes())
                .map_err(|e| bad("the instance cannot be registered", &e))?;
            if read.service_name != instance.service_name || read.host != instance.host {
                return Err(RegistryError::Config(
                    "the instance does not read back as written".into(),
                ));
            }
            let revision = instance.revision().unwrap_or("none");
            summary.push(format!(
                "instance {} at {}:{} (revision {revision})",
                instance.service_name, instance.host, instance.port
            ));
            keys.push((instance_key(&root, instance), KeyValue::Text(value)));
            let range = format!("{root}/");
            if !ranges.contains(&range) {
                ranges.push(range);
            }
            if !reg.mapped_interfaces.is_empty() {
                let mapping_root =
                    RegistryRoot::new(&reg.mapping_root).map_err(|e| bad("mapping root", &e))?;
                let mut mapping_keys: Vec<String> = Vec::new();
                for interface in reg.mapped_interfaces.iter().filter(|i| is_mapped_interface(i)) {
                    if interface.contains('/') {
                        return Err(RegistryError::Config(format!(
                            "cannot map interface {interface:?}: it contains '/'"
                        )));
                    }
                    let key = mapping_key(mapping_root.as_str(), interface);
                    if !mapping_keys.contains(&key) {
                        mapping_keys.push(key);
                    }
                }
                mapping = Some(MappingPlan {
                    application: instance.service_name.clone(),
                    keys: mapping_keys,
                })
                .filter(|m| !m.keys.is_empty());
            }
        }
        // A prefix inside another is watched by the other's watch.
        let covered: Vec<String> = ranges
            .iter()
            .filter(|r| ranges.iter().any(|o| o != *r && r.starts_with(o.as_str())))
            .cloned()
            .collect();
        ranges.retain(|r| !covered.contains(r));
        let ttl_secs = i64::try_from(regs.ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        Ok(Plan {
            number,
            keys,
            parents,
            ranges,
            mapping,
            ttl_secs,
            summary: summary.join(", "),
        })
    }

    /// The index of `key` among ours.
    pub(super) fn is_ours(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|(k, _)| k.as_bytes() == key)
    }

    /// What etcd must change when `next` replaces this plan on the same lease.
    pub(super) fn changes_to(&self, next: &Plan) -> Changes {
        let deletes = self
            .keys
            .iter()
            .filter(|(k, _)| next.is_ours(k.as_bytes()).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let puts = next
            .keys
            .iter()
            .filter(|kv| !self.keys.contains(kv))
            .cloned()
            .collect();
        let parents = next
            .parents
            .iter()
            .filter(|p| !self.parents.contains(p))
            .cloned()
            .collect();
        Changes {
            deletes,
            puts,
            parents,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dubbo::app_registration::AppRegistration;
    use crate::dubbo::DubboUrl;
    use crate::registrar::{InstanceRegistration, Registration};

    fn reg(url: &str) -> Registration {
        Registration::new(DubboUrl::parse(url).unwrap())
    }

    fn plan(regs: impl Into<Registrations>) -> Plan {
        Plan::new(&EtcdConfig::default(), &regs.into(), 0).unwrap()
    }

    fn app(services: &[&str]) -> InstanceRegistration {
        let reg = AppRegistration {
            application: "demo".into(),
            host: "10.0.0.1".into(),
            port: 30000,
            provider_urls: services
                .iter()
                .map(|s| {
                    DubboUrl::parse(&format!("dubbo://10.0.0.1:30000/{s}?interface={s}&side=provider"))
                        .unwrap()
                })
                .collect(),
        };
        InstanceRegistration::new(reg.instance(&reg.metadata_info()))
    }

    fn with_app(urls: &[&str], instance: InstanceRegistration) -> Registrations {
        let urls = urls.iter().map(|u| DubboUrl::parse(u).unwrap()).collect();
        Registrations::urls(urls, Duration::from_secs(10)).with_instance(instance)
    }

    #[test]
    fn plan_writes_dubbos_keys_and_uses_the_smallest_ttl_rounded_up() {
        let cfg = EtcdConfig::default();
        let plan = plan(vec![
            reg("dubbo://10.0.0.1:30000/com.foo.A?interface=com.foo.A&side=provider")
                .with_ttl(Duration::from_millis(2500)),
            reg("dubbo://10.0.0.1:30000/com.foo.B?group=g&interface=com.foo.B&side=provider"),
            reg("consumer://10.0.0.1/com.foo.B?category=consumers&interface=com.foo.B"),
        ]);
        assert_eq!(plan.ttl_secs, 3);
        assert_eq!(
            plan.keys[0],
            (
                "/dubbo/com.foo.A/providers/dubbo%3A%2F%2F10.0.0.1%3A30000%2Fcom.foo.A%3Finterface%3Dcom.foo.A\
                 %26side%3Dprovider"
                    .to_owned(),
                KeyValue::LeaseId
            )
        );
        assert!(plan.keys[2]
            .0
            .starts_with("/dubbo/com.foo.B/consumers/consumer%3A%2F%2F10.0.0.1%2F"));
        assert_eq!(
            plan.parents.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["/dubbo/com.foo.A", "/dubbo/com.foo.B"]
        );
        assert_eq!(plan.ranges, ["/dubbo/"]);
        assert_eq!(plan.mapping, None);
        assert_eq!(plan.is_ours(plan.keys[1].0.as_bytes()), Some(1));
        assert_eq!(plan.is_ours(b"/dubbo/com.foo.C"), None);
        assert!(plan.summary.contains("g/com.foo.B at 10.0.0.1:30000"));
        let tiny = super::tests::plan(vec![reg("dubbo://10.0.0.1:1/S").with_ttl(Duration::ZERO)]);
        assert_eq!(tiny.ttl_secs, 1);
        let grouped = Plan::new(
            &EtcdConfig {
                root: "mesh".into(),
                ..cfg
            },
            &vec![reg("dubbo://10.0.0.1:1/S")].into(),
            0,
        )
        .unwrap();
        assert!(grouped.keys[0].0.starts_with("/mesh/S/providers/dubbo%3A%2F%2F"));
    }

    #[test]
    fn plan_rejects_bad_registrations() {
        let cfg = EtcdConfig::default();
        assert!(Plan::new(&cfg, &Vec::<Registration>::new().into(), 0).is_err());
        let unwritable = DubboUrl::parse("dubbo://10.0.0.1:1/S")
            .unwrap()
            .with_param("x", "a&b");
        assert!(Plan::new(&cfg, &vec![Registration::new(unwritable)].into(), 0).is_err());
        let err = crate::spawn_registrar(cfg.clone(), Vec::<Registration>::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let bad_root = with_app(&[], app(&["a.B"]).with_services_root("services/"));
        assert!(Plan::new(&cfg, &bad_root, 0).is_err());
        let mut bad_app = app(&["a.B"]);
        bad_app.instance.service_name = "a/b".into();
        assert!(Plan::new(&cfg, &with_app(&[], bad_app), 0).is_err());
        let bad_mapping = app(&["a.B"]).with_mapping("/dubbo", vec!["a/B".into()]);
        assert!(Plan::new(&cfg, &with_app(&[], bad_mapping), 0).is_err());
    }

    #[test]
    fn the_instance_goes_on_the_lease_in_javas_json_under_its_root() {
        let instance = app(&["a.B", "c.D"]);
        let json = instance.instance.to_java_json();
        let only = plan(with_app(&[], instance.clone()));
        assert_eq!(
            only.keys,
            [(
                "/services/demo/10.0.0.1:30000".to_owned(),
                KeyValue::Text(json.clone())
            )]
        );
        assert_eq!(
            only.ranges,
            ["/services/"],
            "no interface-level watch in instance mode"
        );
        assert!(only.parents.is_empty() && only.mapping.is_none());
        assert!(only
            .summary
            .starts_with("instance demo at 10.0.0.1:30000 (revision "));
        assert_eq!(KeyValue::Text(json.clone()).for_lease(7), json);
        assert_eq!(KeyValue::LeaseId.for_lease(0x1f), "31");

        let both = plan(with_app(
            &["dubbo://10.0.0.1:30000/a.B?interface=a.B&side=provider"],
            instance.clone().with_services_root("/apps/services"),
        ));
        assert_eq!(both.keys.len(), 2);
        assert_eq!(both.keys[1].0, "/apps/services/demo/10.0.0.1:30000");
        assert_eq!(both.ranges, ["/dubbo/", "/apps/services/"]);
        // A services root inside the registry root is watched by the registry root's watch.
        let nested = plan(with_app(
            &["dubbo://10.0.0.1:30000/a.B?interface=a.B&side=provider"],
            instance.with_services_root("/dubbo/services"),
        ));
        assert_eq!(nested.ranges, ["/dubbo/"]);
    }

    #[test]
    fn mappings_are_dubbo_gos_keys_without_the_metadata_service() {
        let instance = app(&["a.B"]).with_mapping(
            "/meta",
            vec![
                "a.B".into(),
                "org.apache.dubbo.metadata.MetadataService".into(),
                "a.B".into(),
                "c.D".into(),
            ],
        );
        let p = plan(with_app(&[], instance));
        let m = p.mapping.unwrap();
        assert_eq!(m.application, "demo");
        assert_eq!(m.keys, ["/meta/mapping/a.B", "/meta/mapping/c.D"]);
        let none =
            app(&["a.B"]).with_mapping("/meta", vec!["org.apache.dubbo.metadata.MetadataService".into()]);
        assert_eq!(plan(with_app(&[], none)).mapping, None);
    }

    #[test]
    fn an_update_deletes_what_went_puts_what_came_and_rewrites_a_new_revision() {
        const A: &str = "dubbo://10.0.0.1:30000/a.B?interface=a.B&side=provider";
        const C: &str = "dubbo://10.0.0.1:30000/c.D?interface=c.D&side=provider";
        let before = plan(with_app(&[A], app(&["a.B"])));
        let after = plan(with_app(&[A, C], app(&["a.B", "c.D"])));
        assert_eq!(before.changes_to(&before), Changes::default());
        assert!(before.changes_to(&before).is_empty());
        let changes = before.changes_to(&after);
        assert!(changes.deletes.is_empty());
        // The new URL key and the instance (same key, new revision in its value).
        assert_eq!(changes.puts.len(), 2);
        assert_eq!(changes.puts[0], after.keys[1]);
        assert_eq!(changes.puts[1], after.keys[2]);
        assert_eq!(before.keys[1].0, after.keys[2].0);
        assert_ne!(before.keys[1].1, after.keys[2].1);
        assert_eq!(
            changes.parents,
            [("/dubbo/c.D".to_owned(), after.parents[1].1.clone())]
        );
        let back = after.changes_to(&before);
        assert_eq!(back.deletes, [after.keys[1].0.clone()]);
        assert_eq!(back.puts, [before.keys[1].clone()]);
        assert!(back.parents.is_empty(), "parents are persistent: never deleted");
    }
}
