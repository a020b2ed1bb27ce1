//! Tag and condition routing through both agents with real etcd: providers register their tag, the rule
//! document of a service lives at `{prefix}/{service}/routing`, and a change takes effect on the next
//! snapshot. Loopback only; bounded waits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::{free_port, ChildGuard};

mod common;
use common::*;

/// One call with an optional `tag` form field; returns the HTTP status.
fn call_tagged(port: u16, tag: Option<&str>, param: &str) -> u16 {
    call_routed(port, tag, false, &[], param)
}

/// One call with an optional `tag`, `force_tag` and `attachment.<name>` form fields; returns the HTTP
/// status.
fn call_routed(
    port: u16,
    tag: Option<&str>,
    force_tag: bool,
    attachments: &[(&str, &str)],
    param: &str,
) -> u16 {
    let inv = mesh_http::Invocation {
        interface: IFACE.into(),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![param.into()],
        version: None,
        group: None,
        tag: tag.map(Into::into),
        force_tag,
        attachments: attachments.iter().map(|&(n, v)| (n.into(), v.into())).collect(),
    };
    post_form(port, &inv).0
}

/// Etcd and three provider simulators behind their provider agents, all registered: a tagged `gray` (its
/// `[provider]` section also holds `gray_extra`), b and c untagged; and a free port for the consumer.
struct ThreeProviders {
    // Dropped in this order: the agents before their simulators, etcd last.
    _agents: [ChildGuard; 3],
    sims: [ChildGuard; 3],
    /// The provider agents' ports (a, b, c).
    ports: [u16; 3],
    consumer: u16,
    w: mesh_registry::WatcherHandle,
    _dir: tempfile::TempDir,
    etcd: EtcdServer,
}

fn three_providers(gray_extra: &str) -> ThreeProviders {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (sim_a, port_a) = sim(&["--latency-ms", "1", "--name", "a"]);
    let (sim_b, port_b) = sim(&["--latency-ms", "1", "--name", "b"]);
    let (sim_c, port_c) = sim(&["--latency-ms", "1", "--name", "c"]);
    let (pa, pb, pc, ca) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let gray = config_file(&dir, &format!("[provider]\ntag = \"gray\"\n{gray_extra}"));
    let a = provider_agent(pa, port_a, &["--etcd", &url, "--config", &gray]);
    let b = provider_agent(pb, port_b, &["--etcd", &url]);
    let c = provider_agent(pc, port_c, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("three providers registered", Duration::from_secs(10), || {
        registered(&w, pa) && registered(&w, pb) && registered(&w, pc)
    });
    ThreeProviders {
        _agents: [a, b, c],
        sims: [sim_a, sim_b, sim_c],
        ports: [pa, pb, pc],
        consumer: ca,
        w,
        _dir: dir,
        etcd,
    }
}

impl ThreeProviders {
    /// Calls each simulator served (a, b, c); stops them.
    fn served(&mut self) -> (u64, u64, u64) {
        let [a, b, c] = &mut self.sims;
        (served(a), served(b), served(c))
    }
}

#[test]
fn tags_and_condition_rules_from_etcd_route_calls() {
    let mut p = three_providers("params = { zone = \"z1\" }\n");
    let ([pa, _, pc], ca, w) = (p.ports, p.consumer, &p.w);
    let snap = w.latest().unwrap();
    let eps = snap.endpoints(IFACE);
    let a = eps.iter().find(|e| e.addr == addr(pa)).unwrap();
    assert_eq!(a.tag.as_deref(), Some("gray"));
    assert_eq!(a.params.get("zone").map(String::as_str), Some("z1"));
    let _consumer = consumer_agent(ca, &["--etcd", p.etcd.client_url()]);

    // Tagged calls go to the gray provider only.
    let mut warm = 0;
    wait_until("consumer serves", Duration::from_secs(10), || {
        warm += 1;
        call_tagged(ca, Some("gray"), "w") == 200
    });
    for i in 0..20 {
        assert_eq!(call_tagged(ca, Some("gray"), &format!("g{i}")), 200);
    }
    // A condition rule from etcd: untagged calls (which only untagged providers serve) go to c only.
    let key = condition_router_key(IFACE);
    let rule = format!("{{\"conditions\": [\"method = hash => port = {pc}\"]}}");
    etcdctl(&p.etcd, &["put", &key, &rule]);
    wait_until("rules in the snapshot", Duration::from_secs(10), || {
        w.latest()
            .is_some_and(|s| s.dubbo_rules().service_condition(IFACE, "", "").is_some())
    });
    std::thread::sleep(Duration::from_millis(300)); // the consumer's watcher sees the same revision
    for i in 0..30 {
        assert_eq!(call_tagged(ca, None, &format!("u{i}")), 200);
    }
    // A tag nobody has falls back to untagged providers (Dubbo's rule without force), still routed to c.
    for i in 0..10 {
        assert_eq!(call_tagged(ca, Some("blue"), &format!("b{i}")), 200);
    }
    // A broken rule is reported and rejected: the rule before it stays in force (Dubbo's behaviour), c
    // still serves every untagged call.
    etcdctl(&p.etcd, &["put", &key, "{\"conditions\": [\"method = => =\"]}"]);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..40 {
        assert_eq!(call_tagged(ca, None, &format!("x{i}")), 200);
    }
    let (sa, sb, sc) = p.served();
    assert_eq!(sa, warm + 20, "gray calls: a {sa}, b {sb}, c {sc}");
    assert_eq!(
        (sb, sc),
        (0, 80),
        "the rule sent 80 calls to c: a {sa}, b {sb}, c {sc}"
    );
}

#[test]
fn attachments_and_forced_tags_route_as_dubbo_would() {
    let mut p = three_providers("");
    let ([_, pb, pc], ca, w) = (p.ports, p.consumer, &p.w);
    // Rules on a call attachment: user ann's calls go to c only, bob's to b only.
    let key = condition_router_key(IFACE);
    let rule = format!(
        "{{\"conditions\": [\"attachments[user] = ann => port = {pc}\", \
         \"attachments[user] = bob => port = {pb}\"]}}"
    );
    etcdctl(&p.etcd, &["put", &key, &rule]);
    wait_until("rules in the snapshot", Duration::from_secs(10), || {
        w.latest()
            .is_some_and(|s| s.dubbo_rules().service_condition(IFACE, "", "").is_some())
    });
    let _consumer = consumer_agent(ca, &["--etcd", p.etcd.client_url()]);
    let (ann, bob) = ([("user", "ann")], [("user", "bob")]);
    let mut warm = 0;
    wait_until("consumer serves", Duration::from_secs(10), || {
        warm += 1;
        call_routed(ca, None, false, &bob, "w") == 200
    });
    // One user after the other: a balancer alternating over b and c cannot pass for the rules.
    for i in 0..20 {
        assert_eq!(call_routed(ca, None, false, &ann, &format!("ann{i}")), 200);
    }
    for i in 0..20 {
        assert_eq!(call_routed(ca, None, false, &bob, &format!("bob{i}")), 200);
    }
    // A forced tag goes to its providers only, and never falls back when none has it.
    for i in 0..10 {
        assert_eq!(call_routed(ca, Some("gray"), true, &[], &format!("g{i}")), 200);
    }
    for i in 0..5 {
        assert_eq!(call_routed(ca, Some("blue"), true, &[], &format!("blue{i}")), 503);
    }
    let (sa, sb, sc) = p.served();
    assert_eq!(
        (sa, sb, sc),
        (10, warm + 20, 20),
        "a: forced gray, b: bob's (and the warm-up), c: ann's"
    );
}

#[test]
fn registered_weights_are_followed_and_warm_up_evens_young_providers() {
    // `consumer.balancer = "auto"`: different registered weights -> smooth weighted round robin, which gives
    // exact shares. With a warm-up period, young providers' weights collapse towards 1 (Dubbo's formula).
    for (warmup, want_b) in [(None, 150), (Some("600000"), 100)] {
        let etcd = EtcdServer::start().unwrap();
        let url = etcd.client_url().to_owned();
        let (mut sim_a, port_a) = sim(&["--latency-ms", "1", "--name", "a"]);
        let (mut sim_b, port_b) = sim(&["--latency-ms", "1", "--name", "b"]);
        let (pa, pb, ca) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_file(
            &dir,
            &warmup.map_or(String::new(), |w| format!("[provider]\nwarmup_ms = {w}\n")),
        );
        let _a = provider_agent(pa, port_a, &["--etcd", &url, "--weight", "100", "--config", &cfg]);
        let _b = provider_agent(pb, port_b, &["--etcd", &url, "--weight", "300", "--config", &cfg]);
        let w = watch(&etcd);
        wait_until("both registered", Duration::from_secs(10), || {
            registered(&w, pa) && registered(&w, pb)
        });
        let l = addr(ca).to_string();
        // One shard: one round-robin sequence, so the shares are exact.
        let _consumer = agent(&["consumer", "--listen", &l, "--etcd", &url, "--cores", "0"]);
        mesh_testkit::process::wait_for_port(addr(ca), Duration::from_secs(10)).unwrap();
        let mut warm = 0;
        wait_until("consumer serves", Duration::from_secs(10), || {
            warm += 1;
            call_tagged(ca, None, "w") == 200
        });
        for i in 0..(200 - warm) {
            assert_eq!(call_tagged(ca, None, &format!("c{i}")), 200);
        }
        let (sa, sb) = (served(&mut sim_a), served(&mut sim_b));
        assert_eq!(sa + sb, 200);
        assert!(
            sb.abs_diff(want_b) <= 3,
            "warm-up {warmup:?}: a {sa}, b {sb} (want b about {want_b})"
        );
    }
}

/// Where Dubbo's etcd config center keeps the service-scope condition router of `iface` (no version, no
/// group): `/dubbo/config/dubbo/<interface>:<version>:<group>.condition-router`. The rule bodies below are
/// JSON, which is YAML too.
fn condition_router_key(iface: &str) -> String {
    format!("/dubbo/config/dubbo/{iface}::.condition-router")
}
