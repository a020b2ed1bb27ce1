//! Dubbo's routing rules from Dubbo's own config center on etcd, end to end: three provider simulators
//! registered as a Java 2.7 provider of application `shop` registers itself (no provider agent), a consumer
//! agent of application `web`, and condition-router / tag-router YAML written where Dubbo Admin writes it
//! (`/dubbo/config/dubbo/<key>`). Each phase sends a known number of calls and the simulators' counts are
//! checked exactly at the end; a bad rule put later leaves the previous one in force. Loopback only; bounded
//! waits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::free_port;

mod common;
use common::*;
use mesh_testkit::dubbo_writers::java_url_encode;

/// The key a Java 2.7 provider of application `shop` at `port` writes (`EtcdRegistry.toUrlPath`), with
/// extra parameters (sorted, as Java sorts them).
fn provider_key(port: u16, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("anyhost", "true".to_owned()),
        ("application", "shop".to_owned()),
        ("dubbo", "2.0.2".to_owned()),
        ("generic", "false".to_owned()),
        ("interface", IFACE.to_owned()),
        ("methods", "hash".to_owned()),
        ("pid", "4242".to_owned()),
        ("release", "2.7.23".to_owned()),
        ("side", "provider".to_owned()),
        ("timestamp", "1764950400000".to_owned()),
    ];
    params.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!("dubbo://127.0.0.1:{port}/{IFACE}?{}", query.join("&"));
    format!(
        "/dubbo/{}/providers/{}",
        java_url_encode(IFACE),
        java_url_encode(&url)
    )
}

fn rule_key(name: &str) -> String {
    format!("/dubbo/config/dubbo/{name}")
}

/// One call with an optional `tag`; returns the HTTP status.
fn call_tagged(port: u16, tag: Option<&str>, param: &str) -> u16 {
    let inv = mesh_http::Invocation {
        interface: IFACE.into(),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![param.into()],
        version: None,
        group: None,
        tag: tag.map(Into::into),
        force_tag: false,
        attachments: Vec::new(),
    };
    post_form(port, &inv).0
}

/// The rules epoch the test's own watcher has seen (it watches the same etcd as the consumer).
fn rules_epoch(w: &mesh_registry::WatcherHandle) -> u64 {
    w.latest().map_or(0, |s| s.dubbo_rules().epoch())
}

/// Puts `value` at config key `name` and waits until the test's watcher holds a new rule index, then a
/// little longer for the consumer's watcher, which reads the same revision.
fn put_rule(etcd: &EtcdServer, w: &mesh_registry::WatcherHandle, name: &str, value: &str) {
    let before = rules_epoch(w);
    etcdctl(etcd, &["put", &rule_key(name), value]);
    wait_until(
        &format!("rule {name} in the snapshot"),
        Duration::from_secs(10),
        || rules_epoch(w) > before,
    );
    std::thread::sleep(Duration::from_millis(300));
}

/// Puts a value the consumer must reject at `name`, then a good rule at a key no call uses, and waits for
/// that one: by then the bad value has been read (same watch stream, earlier revision).
fn put_bad_rule(etcd: &EtcdServer, w: &mesh_registry::WatcherHandle, name: &str, value: &str, marker: &str) {
    let before = rules_epoch(w);
    etcdctl(etcd, &["put", &rule_key(name), value]);
    assert_eq!(rules_epoch(w), before, "a rejected rule changes nothing");
    put_rule(
        etcd,
        w,
        &format!("{marker}.condition-router"),
        "conditions: ['=> host = 10.255.255.1']\n",
    );
}

#[test]
fn condition_and_tag_routers_from_the_config_center_route_calls() {
    let etcd = EtcdServer::start().unwrap();
    let (mut sim_a, port_a) = sim(&["--latency-ms", "1", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "1", "--name", "b"]);
    let (mut sim_c, port_c) = sim(&["--latency-ms", "1", "--name", "c"]);
    // Plain Dubbo providers of application `shop`; a carries `env=gray` for the v3.0 tag rule's `match`.
    etcdctl(
        &etcd,
        &[
            "put",
            &provider_key(port_a, &[("env", "gray")]),
            "7587886432851234567",
        ],
    );
    etcdctl(&etcd, &["put", &provider_key(port_b, &[]), "7587886432851234568"]);
    etcdctl(&etcd, &["put", &provider_key(port_c, &[]), "7587886432851234569"]);
    let w = watch(&etcd);
    wait_until("three providers discovered", Duration::from_secs(10), || {
        registered(&w, port_a) && registered(&w, port_b) && registered(&w, port_c)
    });

    // 1. A service-scope condition rule (key `<interface>::`: no version, no group) sends every call to c.
    put_rule(
        &etcd,
        &w,
        &format!("{IFACE}::.condition-router"),
        &format!(
            "configVersion: v3.0\nscope: service\nkey: {IFACE}\nforce: true\nenabled: true\nruntime: true\n\
             conditions:\n  - method = hash => port = {port_c}\n"
        ),
    );
    let ca = free_port().unwrap();
    let consumer = consumer_agent(ca, &["--etcd", etcd.client_url(), "--application", "web"]);
    let mut warm = 0;
    wait_until("consumer serves", Duration::from_secs(10), || {
        warm += 1;
        call_tagged(ca, None, "w") == 200
    });
    for i in 0..20 {
        assert_eq!(call_tagged(ca, None, &format!("s{i}")), 200);
    }

    // 2. A broken YAML at the same key: rejected, the rule above stays in force.
    put_bad_rule(
        &etcd,
        &w,
        &format!("{IFACE}::.condition-router"),
        "conditions: [=> port = ",
        "marker1",
    );
    for i in 0..20 {
        assert_eq!(call_tagged(ca, None, &format!("k{i}")), 200);
    }

    // 3. The service rule goes; the providers' tag rule (Dubbo 3 `match` on `env`) puts a in group `gray`.
    let before = rules_epoch(&w);
    etcdctl(&etcd, &["del", &rule_key(&format!("{IFACE}::.condition-router"))]);
    wait_until("service rule deleted", Duration::from_secs(10), || {
        rules_epoch(&w) > before
    });
    put_rule(
        &etcd,
        &w,
        "shop.tag-router",
        "configVersion: v3.0\nforce: true\nenabled: true\nkey: shop\ntags:\n  - name: gray\n    match:\n\
         \x20     - key: env\n        value:\n          exact: gray\n",
    );
    for i in 0..10 {
        assert_eq!(call_tagged(ca, Some("gray"), &format!("g{i}")), 200);
    }

    // 4. The consumer application's rule (`web.condition-router`): untagged calls, which the tag rule keeps
    //    off a, go to b only.
    put_rule(
        &etcd,
        &w,
        "web.condition-router",
        &format!("scope: application\nkey: web\nconditions:\n  - => port = {port_b}\n"),
    );
    for i in 0..20 {
        assert_eq!(call_tagged(ca, None, &format!("u{i}")), 200);
    }

    // 5. A tag rule Dubbo's model cannot use (an address that is no IP): rejected, `gray` still means a.
    put_bad_rule(
        &etcd,
        &w,
        "shop.tag-router",
        "force: true\ntags:\n  - name: gray\n    addresses: [shop-host-1:20880]\n",
        "marker2",
    );
    for i in 0..10 {
        assert_eq!(call_tagged(ca, Some("gray"), &format!("h{i}")), 200);
    }

    drop(consumer);
    let (sa, sb, sc) = (served(&mut sim_a), served(&mut sim_b), served(&mut sim_c));
    assert_eq!(
        (sa, sb, sc),
        (20, 20, warm + 40),
        "served a {sa}, b {sb}, c {sc} ({warm} calls to warm up)"
    );
}
