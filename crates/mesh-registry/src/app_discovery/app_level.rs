//! The application-level provider lists, pure: instances (by etcd key) and the `MetadataInfo` of their
//! revision give endpoints per service key ([`crate::dubbo::instance_providers`], the same [`Endpoint`]s
//! as the interface-level path), kept only for the applications that provide the service's interface (the
//! mapping key `/dubbo/mapping/<interface>`, or `provided_by` from the configuration, which wins as Dubbo's
//! `provided-by` does).
//!
//! Every change is reported as the `(service key, address)` pairs whose endpoint may have changed; the
//! caller reads the endpoint in force with [`AppLevel::endpoint`]. Several instances may give the same
//! `(service key, address)` (two keys for one process, a restart under a new key): the newest listed wins
//! and, when it goes, the one before it comes back.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::dubbo::instance::ServiceInstance;
use crate::dubbo::metadata_info::MetadataInfo;
use crate::dubbo::{instance_providers, Discovered, ServiceKey};
use crate::Endpoint;

/// A `(service key, address)` whose application-level endpoint may have changed.
pub(crate) type Touched = (Arc<str>, SocketAddr);

/// The instances (etcd keys) listing one `(service key, address)`, with their endpoint, oldest first.
type Holders = Vec<(Vec<u8>, Arc<Endpoint>)>;

/// One instance and what it gives.
#[derive(Debug)]
struct Instance {
    instance: ServiceInstance,
    /// Its revision's metadata, once resolved.
    info: Option<Arc<MetadataInfo>>,
    /// The `(service key, address)` pairs it lists now.
    gives: Vec<Touched>,
}

/// Application-level endpoints per service key (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct AppLevel {
    instances: HashMap<Vec<u8>, Instance>,
    /// Per service key and address, the instances (etcd keys) listing it with their endpoint, oldest first.
    lists: HashMap<Arc<str>, HashMap<SocketAddr, Holders>>,
    /// Interface -> applications, from the mapping keys.
    mapping: HashMap<String, Vec<String>>,
    /// Interface -> applications, from the configuration (wins over the mapping).
    provided_by: BTreeMap<String, Vec<String>>,
    /// Services of instances skipped (not Dubbo, bad port, ...) since the last [`AppLevel::take_skipped`]:
    /// a count and the first reason.
    skipped: (usize, Option<String>),
}

impl AppLevel {
    /// Application-level lists with `provided_by` (interface -> applications) from the configuration.
    pub(crate) fn new(provided_by: BTreeMap<String, Vec<String>>) -> Self {
        AppLevel {
            provided_by,
            ..AppLevel::default()
        }
    }

    /// The applications that provide `interface`: `provided_by`, else the mapping key's (empty: none known).
    pub(crate) fn applications(&self, interface: &str) -> &[String] {
        self.provided_by
            .get(interface)
            .or_else(|| self.mapping.get(interface))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether some interface maps to `app`.
    pub(crate) fn is_mapped(&self, app: &str) -> bool {
        self.provided_by
            .values()
            .chain(self.mapping.values())
            .any(|apps| apps.iter().any(|a| a == app))
    }

    /// An instance was put at `key`, with its revision's metadata when it is resolved already.
    pub(crate) fn put_instance(
        &mut self,
        key: &[u8],
        instance: ServiceInstance,
        info: Option<Arc<MetadataInfo>>,
        touched: &mut Vec<Touched>,
    ) {
        self.withdraw(key, touched);
        let gives = self.gives(key, &instance, info.as_deref(), touched);
        self.instances.insert(
            key.to_vec(),
            Instance {
                instance,
                info,
                gives,
            },
        );
    }

    /// The instance at `key` is gone (or no longer usable).
    pub(crate) fn remove_instance(&mut self, key: &[u8], touched: &mut Vec<Touched>) {
        self.withdraw(key, touched);
        self.instances.remove(key);
    }

    /// The metadata of the instances at `keys` is resolved (their revision's `MetadataInfo`).
    pub(crate) fn set_metadata(
        &mut self,
        keys: &[Vec<u8>],
        info: &Arc<MetadataInfo>,
        touched: &mut Vec<Touched>,
    ) {
        for key in keys {
            self.withdraw(key, touched);
            let Some(instance) = self.instances.remove(key.as_slice()) else {
                continue;
            };
            self.put_instance(key, instance.instance, Some(Arc::clone(info)), touched);
        }
    }

    /// The mapping of `interface` is now `apps` (empty: the key is gone). Every instance is listed again
    /// (a mapping changes when an application starts providing an interface: rarely).
    pub(crate) fn set_mapping(&mut self, interface: &str, apps: Vec<String>, touched: &mut Vec<Touched>) {
        let unchanged = self
            .mapping
            .get(interface)
            .map_or(apps.is_empty(), |old| *old == apps);
        if unchanged {
            return;
        }
        if apps.is_empty() {
            self.mapping.remove(interface);
        } else {
            self.mapping.insert(interface.to_owned(), apps);
        }
        self.relist(touched);
    }

    /// The interfaces with a mapping key.
    pub(crate) fn mapped_interfaces(&self) -> impl Iterator<Item = &String> + '_ {
        self.mapping.keys()
    }

    /// The endpoint listed for `service` at `addr` (the newest instance's), if any.
    pub(crate) fn endpoint(&self, service: &str, addr: SocketAddr) -> Option<&Arc<Endpoint>> {
        self.lists.get(service)?.get(&addr)?.last().map(|(_, e)| e)
    }

    /// The endpoints listed for `service`, by address.
    pub(crate) fn endpoints(&self, service: &str) -> BTreeMap<SocketAddr, Arc<Endpoint>> {
        self.lists.get(service).map_or_else(BTreeMap::new, |by_addr| {
            by_addr
                .iter()
                .filter_map(|(addr, holders)| holders.last().map(|(_, e)| (*addr, Arc::clone(e))))
                .collect()
        })
    }

    /// How many addresses `service` has.
    pub(crate) fn count(&self, service: &str) -> usize {
        self.lists.get(service).map_or(0, HashMap::len)
    }

    /// The service keys listed.
    pub(crate) fn services(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.lists.keys()
    }

    /// Services skipped since the last call: how many, and the first (`instance: reason`).
    pub(crate) fn take_skipped(&mut self) -> Option<(usize, String)> {
        let (count, first) = std::mem::take(&mut self.skipped);
        first.map(|f| (count, f))
    }

    /// Lists every instance again (after a mapping change).
    fn relist(&mut self, touched: &mut Vec<Touched>) {
        let keys: Vec<Vec<u8>> = self.instances.keys().cloned().collect();
        for key in keys {
            self.withdraw(&key, touched);
            if let Some(instance) = self.instances.remove(key.as_slice()) {
                self.put_instance(&key, instance.instance, instance.info, touched);
            }
        }
    }

    /// Takes the pairs the instance at `key` lists out of the lists.
    fn withdraw(&mut self, key: &[u8], touched: &mut Vec<Touched>) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        for (service, addr) in std::mem::take(&mut instance.gives) {
            if let Some(by_addr) = self.lists.get_mut(&service) {
                if let Some(holders) = by_addr.get_mut(&addr) {
                    holders.retain(|(k, _)| k.as_slice() != key);
                    if holders.is_empty() {
                        by_addr.remove(&addr);
                    }
                }
                if by_addr.is_empty() {
                    self.lists.remove(&service);
                }
            }
            touched.push((service, addr));
        }
    }

    /// Lists what `instance` at `key` gives with `info`, for the applications mapped to each interface.
    fn gives(
        &mut self,
        key: &[u8],
        instance: &ServiceInstance,
        info: Option<&MetadataInfo>,
        touched: &mut Vec<Touched>,
    ) -> Vec<Touched> {
        let Some(info) = info else {
            return Vec::new();
        };
        let mut gives = Vec::new();
        for provider in instance_providers(instance, info) {
            match provider.discovered {
                Discovered::Provider { service, endpoint } => {
                    let interface = ServiceKey::parse(&service).interface;
                    if !self.applications(&interface).contains(&instance.service_name) {
                        continue;
                    }
                    let service: Arc<str> = match self.lists.get_key_value(service.as_str()) {
                        Some((k, _)) => Arc::clone(k),
                        None => Arc::from(service),
                    };
                    let addr = endpoint.addr;
                    let holders = self
                        .lists
                        .entry(Arc::clone(&service))
                        .or_default()
                        .entry(addr)
                        .or_default();
                    holders.retain(|(k, _)| k.as_slice() != key);
                    holders.push((key.to_vec(), Arc::new(endpoint)));
                    touched.push((Arc::clone(&service), addr));
                    gives.push((service, addr));
                }
                Discovered::Skipped(why) => {
                    self.skipped.0 += 1;
                    if self.skipped.1.is_none() {
                        self.skipped.1 = Some(format!(
                            "{}:{} service {}: {why}",
                            instance.host, instance.port, provider.match_key
                        ));
                    }
                }
            }
        }
        gives
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::instance::REVISION_KEY;
    use crate::dubbo::metadata_info::ServiceInfo;

    fn service(interface: &str, version: &str) -> ServiceInfo {
        ServiceInfo {
            name: interface.into(),
            group: None,
            version: Some(version.into()),
            protocol: Some("dubbo".into()),
            port: -1,
            path: Some(interface.into()),
            params: [("weight".to_owned(), "10".to_owned())].into(),
        }
    }

    fn instance(app: &str, host: &str, port: u16) -> ServiceInstance {
        let mut i = ServiceInstance::new(app, host, port);
        i.metadata.insert(REVISION_KEY.into(), "r1".into());
        i
    }

    fn info(app: &str, services: &[(&str, &str)]) -> Arc<MetadataInfo> {
        Arc::new(MetadataInfo::new(
            app,
            services.iter().map(|(i, v)| service(i, v)),
        ))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn instances_give_endpoints_only_for_mapped_applications() {
        let mut lists = AppLevel::new(BTreeMap::new());
        let mut touched = Vec::new();
        let shop = info("shop", &[("a.Cart", "1.0.0"), ("a.Pay", "2.0.0")]);
        lists.put_instance(
            b"/services/shop/10.0.0.1:20880",
            instance("shop", "10.0.0.1", 20880),
            Some(Arc::clone(&shop)),
            &mut touched,
        );
        assert_eq!(lists.count("a.Cart:1.0.0"), 0, "no mapping yet: nothing");
        assert!(touched.is_empty());
        lists.set_mapping("a.Cart", vec!["shop".into()], &mut touched);
        assert_eq!(lists.count("a.Cart:1.0.0"), 1);
        assert_eq!(lists.count("a.Pay:2.0.0"), 0, "a.Pay is not mapped to shop");
        assert_eq!(touched, [(Arc::from("a.Cart:1.0.0"), addr("10.0.0.1:20880"))]);
        let e = lists.endpoint("a.Cart:1.0.0", addr("10.0.0.1:20880")).unwrap();
        assert_eq!(e.weight, 10);
        assert!(lists.is_mapped("shop") && !lists.is_mapped("other"));

        // an instance whose metadata is not resolved yet lists nothing; once resolved it does
        touched.clear();
        lists.put_instance(
            b"/services/shop/10.0.0.2:20880",
            instance("shop", "10.0.0.2", 20880),
            None,
            &mut touched,
        );
        assert_eq!(lists.count("a.Cart:1.0.0"), 1);
        lists.set_metadata(&[b"/services/shop/10.0.0.2:20880".to_vec()], &shop, &mut touched);
        assert_eq!(lists.count("a.Cart:1.0.0"), 2);
        assert_eq!(touched, [(Arc::from("a.Cart:1.0.0"), addr("10.0.0.2:20880"))]);

        // provided_by wins over the mapping
        let mut by_config = AppLevel::new([("a.Cart".to_owned(), vec!["other".to_owned()])].into());
        by_config.set_mapping("a.Cart", vec!["shop".into()], &mut touched);
        by_config.put_instance(
            b"k",
            instance("shop", "10.0.0.1", 20880),
            Some(Arc::clone(&shop)),
            &mut touched,
        );
        assert_eq!(by_config.count("a.Cart:1.0.0"), 0);
        assert_eq!(by_config.applications("a.Cart"), ["other"]);

        // removing the mapping withdraws the instances' endpoints
        touched.clear();
        lists.set_mapping("a.Cart", vec![], &mut touched);
        assert_eq!(lists.count("a.Cart:1.0.0"), 0);
        assert_eq!(touched.len(), 2);
        assert!(lists.services().next().is_none());
    }

    #[test]
    fn the_newest_instance_of_an_address_wins_and_the_older_comes_back() {
        let mut lists = AppLevel::new([("a.Cart".to_owned(), vec!["shop".to_owned()])].into());
        let mut touched = Vec::new();
        let old = info("shop", &[("a.Cart", "1.0.0")]);
        let mut new_service = service("a.Cart", "1.0.0");
        new_service.params.insert("weight".into(), "20".into());
        let new = Arc::new(MetadataInfo::new("shop", [new_service]));
        lists.put_instance(
            b"k1",
            instance("shop", "10.0.0.1", 20880),
            Some(old),
            &mut touched,
        );
        lists.put_instance(
            b"k2",
            instance("shop", "10.0.0.1", 20880),
            Some(new),
            &mut touched,
        );
        let at = addr("10.0.0.1:20880");
        assert_eq!(lists.endpoint("a.Cart:1.0.0", at).unwrap().weight, 20);
        assert_eq!(lists.count("a.Cart:1.0.0"), 1);
        lists.remove_instance(b"k2", &mut touched);
        assert_eq!(lists.endpoint("a.Cart:1.0.0", at).unwrap().weight, 10);
        lists.remove_instance(b"k1", &mut touched);
        assert!(lists.endpoint("a.Cart:1.0.0", at).is_none());
        assert!(lists.instances.is_empty());
    }

    #[test]
    fn services_that_cannot_be_called_are_counted_for_one_log_line() {
        let mut lists = AppLevel::new([("a.Cart".to_owned(), vec!["shop".to_owned()])].into());
        let mut touched = Vec::new();
        let mut tri = service("a.Cart", "1.0.0");
        tri.protocol = Some("tri".into());
        let info = Arc::new(MetadataInfo::new("shop", [tri, service("a.Cart", "2.0.0")]));
        lists.put_instance(
            b"k",
            instance("shop", "10.0.0.1", 20880),
            Some(info),
            &mut touched,
        );
        assert_eq!(lists.count("a.Cart:2.0.0"), 1);
        let (count, first) = lists.take_skipped().unwrap();
        assert_eq!(count, 1);
        assert!(first.contains("10.0.0.1:20880"), "{first}");
        assert!(lists.take_skipped().is_none());
    }
}
