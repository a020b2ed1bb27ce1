//! The consumer's application-level discovery and migration against a real etcd (mesh-testkit) and real
//! MetadataService servers (mesh-testkit's provider simulator, which answers `getMetadataInfo` over Dubbo
//! as a Java 3.3 provider does). Instances are hand-written JSON in Java's (Gson, camelCase) and dubbo-go's
//! (`encoding/json`, PascalCase) shapes, as the fact sheet (`shared/dubbo-discovery.md` §4) shows them; the
//! mapping key is dubbo-go's comma list. Every wait polls against a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_registry::app_discovery::AppDiscoveryConfig;
use mesh_registry::dubbo::migration::{MigrationStep, Source as Model, StepInForce};
use mesh_registry::dubbo::{KeyEncoding, ProviderRegistration, RegistryRoot, ServiceKey};
use mesh_registry::{spawn_watcher, EtcdConfig, MigrationDefaults, Snapshot, Source, WatcherHandle};
use mesh_testkit::dubbo_writers::app_level::ServiceDescription;
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::etcd_kv::BlockingKv as Kv;
use mesh_testkit::sim::metadata_service::SimMetadata;
use mesh_testkit::sim::{self, SimConfig, SimHandle};

const APP: &str = "shop";
const INTERFACE: &str = "org.demo.Cart";
const SERVICE: &str = "org.demo.Cart:1.0.0";
/// Interface-level providers (never called: only listed).
const IFACE_PORTS: [u16; 2] = [40001, 40002];
const WAIT: Duration = Duration::from_secs(15);

/// Two MetadataService servers of application `shop` (the same services, hence the same revision).
struct Providers {
    metadata: Arc<SimMetadata>,
    java: SimHandle,
    go: SimHandle,
}

impl Providers {
    fn start() -> Self {
        let cart = ServiceDescription {
            name: INTERFACE.into(),
            group: None,
            version: Some("1.0.0".into()),
            protocol: "dubbo".into(),
            // 0: the consumer takes the instance's `dubbo.endpoints` port (Java's getServiceUrlsCache)
            port: 0,
            path: INTERFACE.into(),
            params: [
                ("application".to_owned(), APP.to_owned()),
                ("methods".to_owned(), "add,list".to_owned()),
                ("weight".to_owned(), "33".to_owned()),
            ]
            .into(),
        };
        let metadata = Arc::new(SimMetadata::new(APP, &[cart]));
        let cfg = || SimConfig {
            latency: Duration::ZERO,
            metadata: Some(Arc::clone(&metadata)),
            ..SimConfig::default()
        };
        let java = sim::spawn(cfg()).unwrap();
        let go = sim::spawn(cfg()).unwrap();
        Providers { metadata, java, go }
    }

    fn revision(&self) -> &str {
        self.metadata.revision()
    }

    fn app_ports(&self) -> BTreeSet<u16> {
        [self.java.port(), self.go.port()].into()
    }
}

/// A Java 3.3 instance value (Gson over `DefaultServiceInstance`), hand-written.
fn java_instance(port: u16, revision: &str) -> String {
    format!(
        r#"{{"serviceName":"{APP}","host":"127.0.0.1","port":{port},"enabled":true,"healthy":true,"metadata":{{"dubbo.metadata.revision":"{revision}","dubbo.metadata.storage-type":"local","meta-v":"1.0.0","dubbo.metadata-service.url-params":"{{\"version\":\"1.0.0\",\"dubbo\":\"2.0.2\",\"release\":\"3.3.1\",\"side\":\"provider\",\"port\":\"{port}\",\"protocol\":\"dubbo\"}}","dubbo.endpoints":"[{{\"port\":{port},\"protocol\":\"dubbo\"}}]","timestamp":"1700000000000"}}}}"#
    )
}

/// A dubbo-go instance value (`encoding/json` over `registry.DefaultServiceInstance`, no tags), hand-written,
/// without the inline `ServiceMetadata` (so the MetadataService is asked).
fn go_instance(port: u16, revision: &str) -> String {
    format!(
        r#"{{"ID":"127.0.0.1:{port}","ServiceName":"{APP}","Host":"127.0.0.1","Port":{port},"Weight":0,"Enable":true,"Healthy":true,"Metadata":{{"dubbo.metadata.revision":"{revision}","dubbo.metadata.storage-type":"local","dubbo.metadata-service.url-params":"{{\"port\":\"{port}\",\"protocol\":\"dubbo\",\"version\":\"1.0.0\"}}","dubbo.endpoints":"[{{\"port\":{port},\"protocol\":\"dubbo\"}}]"}},"ServiceMetadata":null,"Address":"127.0.0.1:{port}","GroupName":"","Tag":""}}"#
    )
}

fn instance_key(port: u16) -> String {
    format!("/services/{APP}/127.0.0.1:{port}")
}

/// The interface-level provider key of `port`, as the provider agent writes it.
fn provider_key(port: u16) -> String {
    let url = ProviderRegistration {
        service: ServiceKey::parse(SERVICE),
        addr: ([127, 0, 0, 1], port).into(),
        application: APP.into(),
        weight: 100,
        threads: None,
        tag: None,
        warmup_ms: 0,
        timestamp_ms: 1_764_900_000_000,
        token: None,
        methods: vec![],
        params: Default::default(),
    }
    .url();
    RegistryRoot::new("/dubbo")
        .unwrap()
        .url_key(&url, KeyEncoding::JavaUrlEncoder)
        .unwrap()
}

/// The estate: two interface-level providers, the Java and the Go instance, and the mapping key.
fn write_estate(kv: &Kv, p: &Providers) {
    for port in IFACE_PORTS {
        kv.put(&provider_key(port), "");
    }
    kv.put(
        &instance_key(p.java.port()),
        &java_instance(p.java.port(), p.revision()),
    );
    kv.put(
        &instance_key(p.go.port()),
        &go_instance(p.go.port(), p.revision()),
    );
    kv.put(
        &format!("/dubbo/mapping/{INTERFACE}"),
        &format!("other-app, {APP}"),
    );
}

fn watcher(etcd: &EtcdServer, apps: AppDiscoveryConfig) -> WatcherHandle {
    let cfg = EtcdConfig {
        endpoints: vec![etcd.client_url().to_owned()],
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        retry_backoff_max: Duration::from_millis(500),
        app_discovery: Some(Box::new(apps)),
        ..EtcdConfig::default()
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    // the test reads the handle's newest snapshot; the channel is drained by a thread of its own
    std::thread::spawn(move || while rx.recv().is_ok() {});
    spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap()
}

fn step(step: MigrationStep, threshold: Option<f32>) -> AppDiscoveryConfig {
    AppDiscoveryConfig {
        migration: MigrationDefaults { step, threshold },
        ..AppDiscoveryConfig::default()
    }
}

/// The ports (and weights) the newest snapshot lists for [`SERVICE`].
fn ports(snapshot: &Snapshot) -> BTreeSet<u16> {
    snapshot
        .providers(SERVICE)
        .map(|p| p.iter().map(|e| e.addr.port()).collect())
        .unwrap_or_default()
}

/// Waits until the newest snapshot lists exactly `want` for [`SERVICE`]; returns it.
fn wait_for(w: &WatcherHandle, want: &BTreeSet<u16>, what: &str) -> Arc<Snapshot> {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = w.latest();
        if let Some(s) = last.as_ref().filter(|s| ports(s) == *want) {
            return Arc::clone(s);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: wanted {want:?}, last snapshot lists {:?}",
            last.as_deref().map(ports)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_migration_step_reaches_its_addresses_in_java_and_go_shapes() {
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    let p = Providers::start();
    write_estate(&kv, &p);
    let iface: BTreeSet<u16> = IFACE_PORTS.into();

    // FORCE_INTERFACE: interface-level only, and no MetadataService call at all (Dubbo subscribes to
    // interface-level only then).
    let w = watcher(&etcd, step(MigrationStep::ForceInterface, None));
    wait_for(&w, &iface, "FORCE_INTERFACE");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.metadata.calls(), 0, "FORCE_INTERFACE calls no MetadataService");
    w.stop().unwrap();

    // APPLICATION_FIRST (Dubbo's default, threshold 0.0): application-level as soon as it has addresses;
    // both instances share one revision: one MetadataService call.
    let w = watcher(&etcd, AppDiscoveryConfig::default());
    let s = wait_for(&w, &p.app_ports(), "APPLICATION_FIRST");
    assert_eq!(p.metadata.calls(), 1, "one call per revision");
    let e = s.providers(SERVICE).unwrap().iter().next().cloned().unwrap();
    assert_eq!(e.weight, 33, "the ServiceInfo's weight");
    assert_eq!(e.params.get("application").map(String::as_str), Some(APP));
    w.stop().unwrap();

    // APPLICATION_FIRST with threshold 1.5: 2 application-level / 2 interface-level < 1.5: interface-level.
    let w = watcher(&etcd, step(MigrationStep::ApplicationFirst, Some(1.5)));
    wait_for(&w, &iface, "APPLICATION_FIRST, threshold 1.5");
    // a third interface-level provider goes... and two more instances would be needed: stays
    w.stop().unwrap();

    // FORCE_APPLICATION: application-level only; an instance leaving takes its address with it.
    let w = watcher(&etcd, step(MigrationStep::ForceApplication, None));
    wait_for(&w, &p.app_ports(), "FORCE_APPLICATION");
    kv.delete(&instance_key(p.go.port()));
    let s = wait_for(&w, &[p.java.port()].into(), "FORCE_APPLICATION, Go instance gone");
    assert_eq!(s.departed(), [p.go.addr()]);
    // skipped instances (revision "0", disabled, unhealthy) are not used
    let port = p.go.port();
    let zero = go_instance(port, "0");
    kv.put(&instance_key(port), &zero);
    let disabled = java_instance(port, p.revision()).replace("\"enabled\":true", "\"enabled\":false");
    kv.put(&instance_key(port), &disabled);
    let unhealthy = go_instance(port, p.revision()).replace("\"Healthy\":true", "\"Healthy\":false");
    kv.put(&instance_key(port), &unhealthy);
    std::thread::sleep(Duration::from_millis(500));
    wait_for(&w, &[p.java.port()].into(), "skipped instances");
    // back, healthy: listed again without another call (the revision is cached)
    let calls = p.metadata.calls();
    kv.put(&instance_key(port), &go_instance(port, p.revision()));
    wait_for(&w, &p.app_ports(), "the Go instance back");
    assert_eq!(p.metadata.calls(), calls, "a known revision is not fetched again");
    w.stop().unwrap();
}

#[test]
fn the_config_centers_migration_rule_switches_the_step_without_dropping_addresses() {
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    let p = Providers::start();
    write_estate(&kv, &p);
    let iface: BTreeSet<u16> = IFACE_PORTS.into();
    let rule_key = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration";
    // a rule already there at start: FORCE_INTERFACE
    kv.put(rule_key, "key: web\nstep: FORCE_INTERFACE\n");
    let w = watcher(
        &etcd,
        AppDiscoveryConfig {
            application: Some("web".into()),
            ..AppDiscoveryConfig::default()
        },
    );
    wait_for(&w, &iface, "rule FORCE_INTERFACE");
    // the rule names this interface: FORCE_APPLICATION for it
    kv.put(
        rule_key,
        "key: web\nstep: FORCE_INTERFACE\ninterfaces:\n  - serviceKey: org.demo.Cart:1.0.0\n    step: FORCE_APPLICATION\n",
    );
    let s = wait_for(&w, &p.app_ports(), "rule: interface entry FORCE_APPLICATION");
    // the switch removed only interface-level addresses (none is in both lists here), in one snapshot
    let gone: BTreeSet<u16> = s.departed().iter().map(|a| a.port()).collect();
    assert_eq!(gone, iface);
    // a broken rule keeps the one in force
    kv.put(rule_key, "step: SIDEWAYS\n");
    std::thread::sleep(Duration::from_millis(500));
    wait_for(&w, &p.app_ports(), "a broken rule changes nothing");
    // by application entry: FORCE_INTERFACE for applications mapped to `shop`
    kv.put(
        rule_key,
        "step: FORCE_APPLICATION\napplications:\n  - serviceKey: shop\n    step: FORCE_INTERFACE\n",
    );
    wait_for(&w, &iface, "rule: application entry FORCE_INTERFACE");
    // the rule is deleted: the consumer's own step (APPLICATION_FIRST: application-level)
    kv.delete(rule_key);
    wait_for(&w, &p.app_ports(), "rule deleted");
    w.stop().unwrap();
}

#[test]
fn provided_by_finds_applications_without_a_mapping_key() {
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    let p = Providers::start();
    kv.put(
        &instance_key(p.java.port()),
        &java_instance(p.java.port(), p.revision()),
    );
    let mut apps = step(MigrationStep::ForceApplication, None);
    let w = watcher(&etcd, apps.clone());
    // no mapping and no provided_by: no application provides the interface
    std::thread::sleep(Duration::from_millis(500));
    wait_for(&w, &BTreeSet::new(), "no mapping");
    assert_eq!(
        p.metadata.calls(),
        0,
        "instances of unmapped applications are not asked"
    );
    w.stop().unwrap();
    apps.provided_by = [(INTERFACE.to_owned(), vec![APP.to_owned()])].into();
    let w = watcher(&etcd, apps);
    wait_for(&w, &[p.java.port()].into(), "provided_by");
    // the mapping key appearing later (naming another application) does not override provided_by
    kv.put(&format!("/dubbo/mapping/{INTERFACE}"), "other-app");
    std::thread::sleep(Duration::from_millis(500));
    wait_for(&w, &[p.java.port()].into(), "provided_by wins");
    w.stop().unwrap();
}

/// The step the newest snapshot shows for [`SERVICE`] once `pred` holds for it.
fn wait_for_step(
    w: &WatcherHandle,
    what: &str,
    pred: impl Fn(&StepInForce) -> bool,
) -> (Arc<Snapshot>, StepInForce) {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = w.latest();
        let state = last.as_ref().and_then(|s| s.migration().get(SERVICE).copied());
        if let (Some(s), Some(state)) = (last.as_ref(), state.filter(|st| pred(st))) {
            return (Arc::clone(s), state);
        }
        assert!(Instant::now() < deadline, "{what}: last state {state:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_rule_without_force_keeps_interface_level_and_force_switches_after_the_delay() {
    let etcd = EtcdServer::start().unwrap();
    let kv = Kv::new(&etcd);
    // interface-level providers and the mapping, but no instance: no application-level address
    for port in IFACE_PORTS {
        kv.put(&provider_key(port), "");
    }
    kv.put(&format!("/dubbo/mapping/{INTERFACE}"), APP);
    let iface: BTreeSet<u16> = IFACE_PORTS.into();
    let rule_key = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration";
    let w = watcher(
        &etcd,
        AppDiscoveryConfig {
            application: Some("web".into()),
            ..AppDiscoveryConfig::default()
        },
    );
    wait_for(&w, &iface, "APPLICATION_FIRST on interface-level");
    wait_for_step(&w, "APPLICATION_FIRST shown", |s| {
        *s == StepInForce {
            step: MigrationStep::ApplicationFirst,
            source: Model::Interface,
            asked: None,
        }
    });

    // not forced: refused, the interface-level list stays
    kv.put(rule_key, "key: web\nstep: FORCE_APPLICATION\nforce: false\n");
    let (s, state) = wait_for_step(&w, "refused", |s| s.asked.is_some_and(|a| a.refused));
    assert_eq!(ports(&s), iface);
    assert_eq!(
        (state.step, state.source),
        (MigrationStep::ApplicationFirst, Model::Interface)
    );
    assert_eq!(state.asked.unwrap().step, MigrationStep::ForceApplication);

    // forced, with a delay: switched by the watcher's own wake-up (nothing else happens in etcd), not
    // before the delay
    let put_at = Instant::now();
    kv.put(
        rule_key,
        "key: web\nstep: FORCE_APPLICATION\nforce: true\ndelay: 1\n",
    );
    let (s, _) = wait_for_step(&w, "forced switch", |s| {
        s.step == MigrationStep::ForceApplication && s.source == Model::Application
    });
    assert!(
        put_at.elapsed() >= Duration::from_secs(1),
        "switched {:?} after the rule, before its delay",
        put_at.elapsed()
    );
    assert!(s.providers(SERVICE).is_none(), "no application-level provider");
    w.stop().unwrap();
}
