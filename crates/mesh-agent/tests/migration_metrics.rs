//! Dubbo 3 migration rule `force` end to end, seen where an operator sees it: a consumer agent
//! (`consumer.application = web`, Dubbo's default APPLICATION_FIRST) in front of an interface-level-only
//! provider agent (a Dubbo 2.7 style estate: no instance), the rule
//! `/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration` written with etcdctl. A switch to
//! FORCE_APPLICATION without `force` is refused (no application-level address): the calls keep working on
//! interface-level addresses and `mesh_registry_migration_step` still says APPLICATION_FIRST/interface;
//! with `force: true` it switches (and there is no provider left to call). `promtool check metrics` passes.
//! Real etcd, the agent binary, the provider simulator; every wait bounded.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::free_port;

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const RULE_KEY: &str = "/dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/web.migration";

/// The `mesh_registry_migration_step` series of `/metrics`: (service, step, model) of each line valued 1.
fn step_series(admin: u16) -> Vec<(String, String, String)> {
    let (status, metrics) = admin_get(admin, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("mesh_registry_migration_step{"))
        .filter_map(|l| l.strip_suffix("} 1"))
        .map(|labels| {
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_default()
                    .to_owned()
            };
            (label("service"), label("step"), label("model"))
        })
        .collect()
}

/// `/registry`'s `snapshot.migration` object.
fn migration_json(admin: u16) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/registry");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["snapshot"]["migration"].clone()
}

#[test]
fn an_unforced_switch_without_addresses_is_refused_and_a_forced_one_switches_in_the_step_gauge() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1", "--name", "legacy"]);
    let provider_cfg = config_file(
        &dir,
        &format!(
            "[provider]\napplication = \"legacy\"\nregister_mode = \"interface\"\n[etcd]\nendpoints = [\"{}\"]\n\
             lease_ttl_s = 5\n",
            etcd.client_url()
        ),
    );
    let provider_port = free_port().unwrap();
    let _provider = provider_agent(provider_port, sim_port, &["--config", &provider_cfg]);
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let admin_listen = format!("127.0.0.1:{admin}");
    let _consumer = consumer_agent(
        port,
        &[
            "--etcd",
            etcd.client_url(),
            "--application",
            "web",
            "--admin-listen",
            &admin_listen,
        ],
    );
    wait_until("a first answer on interface-level addresses", WAIT, || {
        call(port, IFACE, "x").0 == 200
    });
    let service = {
        let m = migration_json(admin);
        let keys: Vec<String> = m.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 1, "one service key: {m}");
        keys[0].clone()
    };
    assert!(service.contains(IFACE), "{service}");
    let series = |step: &str, model: &str| (service.clone(), step.to_owned(), model.to_owned());
    assert_eq!(step_series(admin), [series("APPLICATION_FIRST", "interface")]);

    // FORCE_APPLICATION without force: no application-level address -> refused, interface-level stays.
    etcdctl(
        &etcd,
        &[
            "put",
            RULE_KEY,
            "key: web\nstep: FORCE_APPLICATION\nforce: false\n",
        ],
    );
    wait_until("the switch refused", WAIT, || {
        migration_json(admin)[&service]["asked"]["state"] == "refused"
    });
    let m = migration_json(admin);
    assert_eq!(m[&service]["step"], "APPLICATION_FIRST", "{m}");
    assert_eq!(m[&service]["asked"]["step"], "FORCE_APPLICATION", "{m}");
    assert_eq!(step_series(admin), [series("APPLICATION_FIRST", "interface")]);
    for i in 0..10 {
        let (status, body) = call(port, IFACE, &format!("r{i}"));
        assert_eq!(status, 200, "call {i} after the refused switch: {body}");
    }
    promtool_passes(&admin_get(admin, "/metrics").1);

    // force: true -> FORCE_APPLICATION whatever the addresses (none: the service has no provider now).
    etcdctl(
        &etcd,
        &[
            "put",
            RULE_KEY,
            "key: web\nstep: FORCE_APPLICATION\nforce: true\n",
        ],
    );
    wait_until("the forced switch in the gauge", WAIT, || {
        step_series(admin) == [series("FORCE_APPLICATION", "application")]
    });
    assert!(migration_json(admin)[&service].get("asked").is_none());
    let (status, body) = call(port, IFACE, "after");
    assert_ne!(status, 200, "no application-level provider to call: {body}");
    promtool_passes(&admin_get(admin, "/metrics").1);
}
