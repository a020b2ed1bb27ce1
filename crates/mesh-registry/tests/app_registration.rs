//! Application-level registration (Dubbo 3) against a real etcd (from mesh-testkit): the instance key and
//! its Java-shaped value on the registrar's lease, re-registration after the lease is lost, updates when
//! the exported services change, and the interface-to-application mapping written by compare-and-swap
//! under concurrent writers. Every wait polls against a deadline.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mesh_registry::dubbo::app_registration::AppRegistration;
use mesh_registry::dubbo::instance::{InstanceShape, InstanceUse, ServiceInstance};
use mesh_registry::dubbo::mapping::parse_mapping;
use mesh_registry::dubbo::metadata_info::MetadataInfo;
use mesh_registry::dubbo::{DubboUrl, KeyEncoding, ProviderRegistration, RegistryRoot, ServiceKey};
use mesh_registry::{
    spawn_registrations, EtcdConfig, InstanceRegistration, RegistrarHandle, Registrations, RegistryError,
};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::etcd_kv::BlockingKv as Kv;
use mesh_testkit::process::wait_until;
use serde_json::Value as Json;

const PORT: u16 = 30_000;
const STARTED_MS: u64 = 1_764_900_000_000;

fn config(etcd: &EtcdServer, root: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.client_url().to_owned()],
        root: root.to_owned(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        retry_backoff_max: Duration::from_millis(500),
        ..EtcdConfig::default()
    }
}

/// The provider URL of `service` at 127.0.0.1:[`PORT`] for `app`, as the provider agent makes it.
fn url(app: &str, service: &str) -> DubboUrl {
    ProviderRegistration {
        service: ServiceKey::parse(service),
        addr: ([127, 0, 0, 1], PORT).into(),
        application: app.into(),
        weight: 100,
        threads: None,
        tag: None,
        warmup_ms: 0,
        timestamp_ms: STARTED_MS,
        token: None,
        methods: vec![],
        params: Default::default(),
    }
    .url()
}

fn app(name: &str, services: &[&str]) -> AppRegistration {
    AppRegistration {
        application: name.into(),
        host: "127.0.0.1".into(),
        port: PORT,
        provider_urls: services.iter().map(|s| url(name, s)).collect(),
    }
}

/// What the provider agent registers in `all` mode (`interfaces`) or `instance` mode, under `services_root`,
/// with the `MetadataInfo` it serves.
fn registrations(
    reg: &AppRegistration,
    interfaces: bool,
    services_root: &str,
    ttl: Duration,
) -> (Registrations, MetadataInfo) {
    let info = reg.metadata_info();
    let urls = if interfaces {
        reg.provider_urls.clone()
    } else {
        vec![]
    };
    let instance = InstanceRegistration::new(reg.instance(&info)).with_services_root(services_root);
    (Registrations::urls(urls, ttl).with_instance(instance), info)
}

fn up_to_date(registrar: &RegistrarHandle) {
    wait_until(Duration::from_secs(5), "the registrations in etcd", || {
        registrar.is_up_to_date()
    });
}

/// The value checked as Java Dubbo 3 writes it (fact sheet §4.1/§4.2: Gson over `DefaultServiceInstance`,
/// `rawAddress` null and so absent; metadata strings only), field by field as JSON.
fn check_java_shape(json: &str, reg: &AppRegistration, info: &MetadataInfo) {
    let value: Json = serde_json::from_str(json).unwrap();
    let obj = value.as_object().unwrap();
    let fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut expected = vec!["serviceName", "host", "port", "enabled", "healthy", "metadata"];
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "exactly Java's non-null fields: {json}");
    assert_eq!(obj["serviceName"], Json::from(reg.application.as_str()));
    assert_eq!(obj["host"], Json::from("127.0.0.1"));
    assert_eq!(obj["port"], Json::from(PORT), "port is a JSON number (Java int)");
    assert_eq!(
        (obj["enabled"].as_bool(), obj["healthy"].as_bool()),
        (Some(true), Some(true))
    );
    let meta = obj["metadata"].as_object().unwrap();
    assert!(meta.values().all(Json::is_string), "Map<String,String>: {json}");
    let text = |k: &str| {
        meta.get(k)
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(text("dubbo.metadata.revision"), info.revision);
    assert_eq!(info.revision.len(), 32, "Java's revision: MD5 hex");
    assert_ne!(info.revision, "0");
    assert_eq!(text("dubbo.metadata.storage-type"), "local");
    assert_eq!(text("meta-v"), "1.0.0");
    assert_eq!(text("timestamp"), STARTED_MS.to_string());
    // 3.x: a flat JSON map of the MetadataService URL's parameters plus port and protocol.
    let params: Json = serde_json::from_str(text("dubbo.metadata-service.url-params")).unwrap();
    let params = params.as_object().unwrap();
    assert!(params.values().all(Json::is_string), "flat map of strings");
    assert_eq!(params["version"], Json::from("1.0.0"));
    assert_eq!(params["side"], Json::from("provider"));
    assert_eq!(params["port"], Json::from(PORT.to_string()));
    assert_eq!(params["protocol"], Json::from("dubbo"));
    assert_eq!(params["dubbo"], Json::from("2.0.2"));
    assert!(params.contains_key("release"));
    let endpoints: Json = serde_json::from_str(text("dubbo.endpoints")).unwrap();
    assert_eq!(
        endpoints,
        serde_json::json!([{"port": PORT, "protocol": "dubbo"}])
    );
}

#[test]
fn the_instance_is_registered_in_javas_shape_on_the_lease_of_the_interface_keys() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/all");
    let kv = Kv::new(&etcd);
    let reg = app("orders", &["a.B", "g/c.D:1.0"]);
    let (regs, info) = registrations(&reg, true, "/t/all-services", Duration::from_secs(5));
    let registrar = spawn_registrations(cfg, regs).unwrap();
    up_to_date(&registrar);
    let key = format!("/t/all-services/orders/127.0.0.1:{PORT}");
    let (json, lease) = kv.get(&key).expect("the instance key");
    assert_eq!(Some(lease), registrar.lease_id(), "on the registrar's lease");
    check_java_shape(&json, &reg, &info);
    let (read, shape) = ServiceInstance::from_json(json.as_bytes()).unwrap();
    assert_eq!(shape, InstanceShape::Java);
    assert_eq!(read, reg.instance(&info));
    assert_eq!(
        read.usability(),
        InstanceUse::Use {
            revision: &info.revision
        }
    );
    // `all`: the interface-level keys too, on the same lease.
    let root = RegistryRoot::new("/t/all").unwrap();
    for u in &reg.provider_urls {
        let (value, url_lease) = kv
            .get(&root.url_key(u, KeyEncoding::JavaUrlEncoder).unwrap())
            .expect("the provider URL key");
        assert_eq!((value, url_lease), (lease.to_string(), lease));
    }
    registrar.deregister(Duration::from_secs(2)).unwrap();
    assert!(kv.get(&key).is_none(), "deregistering removes the instance");
    assert!(kv.keys("/t/all/a.B/providers/").is_empty());
}

#[test]
fn instance_mode_writes_only_the_instance_and_puts_it_back_after_a_lost_lease_or_a_delete() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/inst");
    let kv = Kv::new(&etcd);
    let reg = app("orders", &["a.B"]);
    let (regs, info) = registrations(&reg, false, "/services", Duration::from_secs(2));
    let registrar = spawn_registrations(cfg, regs).unwrap();
    up_to_date(&registrar);
    let key = format!("/services/orders/127.0.0.1:{PORT}");
    let (json, old_lease) = kv.get(&key).unwrap();
    assert!(
        kv.keys("/t/inst/").is_empty(),
        "no interface-level key in instance mode"
    );

    kv.revoke(old_lease);
    let took = wait_until(Duration::from_secs(3), "the instance on a new lease", || {
        kv.get(&key).is_some_and(|(_, l)| l != old_lease && l != 0)
    });
    eprintln!("instance re-registered {took:?} after the revocation");
    let (again, lease) = kv.get(&key).unwrap();
    assert_eq!(again, json, "the same value, revision {}", info.revision);
    up_to_date(&registrar);
    assert_eq!(registrar.lease_id(), Some(lease));

    kv.delete(&key);
    let took = wait_until(Duration::from_secs(2), "the instance back", || {
        kv.get(&key).is_some()
    });
    eprintln!("instance put back {took:?} after the delete");
    assert_eq!(kv.get(&key).unwrap(), (json, lease), "same value, same lease");
    registrar.deregister(Duration::from_secs(2)).unwrap();
    assert!(kv.get(&key).is_none());
}

#[test]
fn an_update_rewrites_the_revision_and_the_interface_keys_on_the_same_lease() {
    let etcd = EtcdServer::start().unwrap();
    let cfg = config(&etcd, "/t/update");
    let kv = Kv::new(&etcd);
    let key = format!("/services/orders/127.0.0.1:{PORT}");
    let root = RegistryRoot::new("/t/update").unwrap();
    let url_key = |service: &str| {
        root.url_key(&url("orders", service), KeyEncoding::JavaUrlEncoder)
            .unwrap()
    };
    let first = app("orders", &["a.B"]);
    let (regs, info1) = registrations(&first, true, "/services", Duration::from_secs(5));
    let registrar = spawn_registrations(cfg.clone(), regs).unwrap();
    up_to_date(&registrar);
    let lease = registrar.lease_id().unwrap();
    let revision = |json: &str| {
        ServiceInstance::from_json(json.as_bytes())
            .unwrap()
            .0
            .revision()
            .unwrap()
            .to_owned()
    };
    assert_eq!(revision(&kv.get(&key).unwrap().0), info1.revision);

    // One more service exported: new revision, one more URL key.
    let second = app("orders", &["a.B", "c.D"]);
    let (regs, info2) = registrations(&second, true, "/services", Duration::from_secs(5));
    assert_ne!(info1.revision, info2.revision);
    registrar.update(regs).unwrap();
    up_to_date(&registrar);
    let (json, instance_lease) = kv.get(&key).unwrap();
    assert_eq!((revision(&json), instance_lease), (info2.revision.clone(), lease));
    check_java_shape(&json, &second, &info2);
    assert_eq!(kv.get(&url_key("c.D")).map(|(_, l)| l), Some(lease));
    assert!(
        kv.get("/t/update/c.D").is_some(),
        "the new interface's parent key"
    );

    // a.B no longer exported: its URL key goes, the revision changes again.
    let third = app("orders", &["c.D"]);
    let (regs, info3) = registrations(&third, true, "/services", Duration::from_secs(5));
    registrar.update(regs).unwrap();
    up_to_date(&registrar);
    assert_eq!(revision(&kv.get(&key).unwrap().0), info3.revision);
    assert!(kv.get(&url_key("a.B")).is_none());
    assert!(kv.get(&url_key("c.D")).is_some());
    assert_eq!(registrar.lease_id(), Some(lease), "all on the one lease");

    // A registrar started without an instance cannot take one (it does not watch the services root).
    let urls_only = spawn_registrations(
        cfg,
        Registrations::urls(vec![url("other", "x.Y")], Duration::from_secs(5)),
    )
    .unwrap();
    let (regs, _) = registrations(&app("other", &["x.Y"]), true, "/services", Duration::from_secs(5));
    assert!(matches!(urls_only.update(regs), Err(RegistryError::Config(_))));
    urls_only.deregister(Duration::from_secs(2)).unwrap();

    // After the lease is lost, the latest registrations come back, not the first ones.
    kv.revoke(lease);
    wait_until(Duration::from_secs(3), "re-registration", || {
        kv.get(&key).is_some_and(|(_, l)| l != lease && l != 0)
    });
    assert_eq!(revision(&kv.get(&key).unwrap().0), info3.revision);
    assert!(kv.get(&url_key("a.B")).is_none());
    registrar.deregister(Duration::from_secs(2)).unwrap();
}

#[test]
fn concurrent_writers_of_one_mapping_all_end_up_in_it() {
    const WRITERS: usize = 6;
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    // A name written before (by a dubbo-go provider, say) is kept.
    kv.put("/t/meta/mapping/shared.Api", "legacy-app");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(WRITERS));
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let cfg = config(&etcd, "/t/mapping");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let name = format!("app{i}");
                let reg = AppRegistration {
                    port: PORT + u16::try_from(i).unwrap(),
                    ..app(&name, &["shared.Api", &format!("own{i}.Api")])
                };
                let interfaces = vec!["shared.Api".to_owned(), format!("own{i}.Api")];
                let instance = InstanceRegistration::new(reg.instance(&reg.metadata_info()))
                    .with_mapping("/t/meta", interfaces);
                let regs = Registrations::urls(vec![], Duration::from_secs(5)).with_instance(instance);
                barrier.wait();
                spawn_registrations(cfg, regs).unwrap()
            })
        })
        .collect();
    let registrars: Vec<RegistrarHandle> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = wait_until(Duration::from_secs(20), "every mapping written", || {
        registrars.iter().all(RegistrarHandle::is_mapped)
    });
    let conflicts: u64 = registrars.iter().map(RegistrarHandle::mapping_conflicts).sum();
    eprintln!(
        "{WRITERS} concurrent writers mapped in {took:?}, {conflicts} compare-and-swap(s) lost and retried"
    );
    let (value, lease) = kv.get("/t/meta/mapping/shared.Api").unwrap();
    assert_eq!(lease, 0, "mappings are not on a lease");
    let mut listed = parse_mapping(&value).unwrap();
    assert_eq!(listed.len(), WRITERS + 1, "{value}");
    listed.sort();
    let mut expected: Vec<String> = (0..WRITERS).map(|i| format!("app{i}")).collect();
    expected.push("legacy-app".into());
    expected.sort();
    assert_eq!(listed, expected, "every name, each once, none lost: {value}");
    assert!(
        value.starts_with("legacy-app,"),
        "appended to what was there: {value}"
    );
    for i in 0..WRITERS {
        assert_eq!(
            kv.get(&format!("/t/meta/mapping/own{i}.Api")).map(|(v, _)| v),
            Some(format!("app{i}"))
        );
    }
    for r in registrars {
        r.deregister(Duration::from_secs(2)).unwrap();
    }
    // Dubbo keeps mappings after the providers leave.
    assert_eq!(kv.get("/t/meta/mapping/shared.Api").map(|(v, _)| v), Some(value));
    assert!(kv.keys("/services/").is_empty());
}
