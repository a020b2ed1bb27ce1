//! The agents in a Dubbo estate, with real parts: keys written into a real etcd exactly as Java 2.7, Java 3.3
//! (full and simplified) and dubbo-go write them (`mesh_testkit::dubbo_writers`, written from those sources and
//! not from mesh-registry), provider simulators and the sofa-rpc-node provider acting as plain Dubbo providers
//! (no provider agent), and the consumer agent finding and calling them; the provider agent's own keys read
//! back by an independent decoder (`mesh-testkit/scripts/dubbo_key_check.py`, Python's standard library) and
//! matched by Java's `UrlUtils.isMatch` rules. Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_testkit::dubbo_writers::{self as dw, put::BlockingWriter, Category, Provider};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::{free_port, ChildGuard};

mod common;
use common::*;

/// The fields of one HTTP call.
#[derive(Default, Clone, Copy)]
struct Form<'a> {
    group: Option<&'a str>,
    version: Option<&'a str>,
    tag: Option<&'a str>,
    /// The interface when not the challenge's.
    interface: Option<&'a str>,
}

impl<'a> Form<'a> {
    fn gv(group: Option<&'a str>, version: Option<&'a str>) -> Form<'a> {
        Form {
            group,
            version,
            tag: None,
            interface: None,
        }
    }
}

/// One HTTP/1.1 POST of `hash(param)` with the form's `group`, `version` and `tag`; returns (status, body).
fn call_form(port: u16, form: Form<'_>, param: &str) -> (u16, String) {
    let inv = mesh_http::Invocation {
        interface: form.interface.unwrap_or(IFACE).into(),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![param.into()],
        version: form.version.map(Into::into),
        group: form.group.map(Into::into),
        tag: form.tag.map(Into::into),
        force_tag: false,
        attachments: Vec::new(),
    };
    post_form(port, &inv)
}

/// `n` calls that must all answer 200 with the right hash.
fn calls_ok(port: u16, form: Form<'_>, n: usize, label: &str) {
    for i in 0..n {
        let p = format!("{label}-{i}");
        let (status, body) = call_form(port, form, &p);
        assert_eq!(status, 200, "{label} call {i}: {body}");
        assert_eq!(body, mesh_dubbo::java_string_hash(&p).to_string(), "{label}");
    }
}

/// A call that must find no provider: 404 or 503, the reason naming the service key.
fn no_provider(port: u16, form: Form<'_>, service_key: &str) {
    let (status, body) = call_form(port, form, "x");
    assert!(
        matches!(status, 404 | 503),
        "{service_key}: status {status}: {body}"
    );
    assert!(body.contains(service_key), "{service_key} not named in {body:?}");
}

/// A provider of the challenge's interface at a loopback port, started an hour ago (so Dubbo's default
/// 10-minute warm-up is over whatever the writer's timestamp unit).
fn provider(port: u16) -> Provider {
    let mut p = Provider::new(IFACE, "127.0.0.1", port);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    p.timestamp_ms = now_ms - 3_600_000;
    p
}

/// A consumer agent on one shard with round robin, so that shares are exact.
fn consumer_one_shard(port: u16, etcd: &EtcdServer, dir: &tempfile::TempDir, extra: &[&str]) -> ChildGuard {
    let cfg = config_file(dir, "[consumer]\nbalancer = \"round_robin\"\n");
    let mut args = vec!["--etcd", etcd.client_url(), "--config", &cfg, "--shards", "1"];
    args.extend_from_slice(extra);
    consumer_agent(port, &args)
}

/// Waits until the consumer serves `form` (the calls go to the warm-up simulator, never counted).
fn wait_serving(port: u16, form: Form<'_>) {
    wait_until("the consumer serves", Duration::from_secs(15), || {
        call_form(port, form, "warm").0 == 200
    });
}

const WARM: Form<'static> = Form {
    group: Some("warm"),
    version: None,
    tag: None,
    interface: None,
};

#[test]
fn java_2_7_3_3_and_go_keys_are_discovered_matched_and_called_directly() {
    let etcd = EtcdServer::start().unwrap();
    let (_warm, warm_port) = sim(&["--latency-ms", "1", "--name", "warm"]);
    let (mut plain, plain_port) = sim(&["--latency-ms", "1", "--name", "plain"]);
    let (mut v1, v1_port) = sim(&["--latency-ms", "1", "--name", "v1"]);
    let (mut g1, g1_port) = sim(&["--latency-ms", "1", "--name", "g1"]);
    let (mut g2, g2_port) = sim(&["--latency-ms", "1", "--name", "g2"]);
    let (mut g3, g3_port) = sim(&["--latency-ms", "1", "--name", "g3"]);
    let (mut off, off_port) = sim(&["--latency-ms", "1", "--name", "disabled"]);
    // Nothing listens here: a key that made the consumer call it would fail calls.
    let trap = free_port().unwrap();

    // Each provider process is a registry client of its own (Java: one lease per process).
    let mut writers = Vec::new();
    let mut register = |r: dw::Registration| {
        let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
        let written = w.register(&r).unwrap();
        writers.push(w);
        written
    };
    register(dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(warm_port).group("warm"),
    ));
    // Java 2.7, full parameter set, no group or version.
    let plain_key = register(dw::java27_provider(dw::DEFAULT_ROOT, &provider(plain_port)));
    // Java 3.3, full URL, version 1.0.0.
    let v1_key = register(dw::java33_provider(
        dw::DEFAULT_ROOT,
        &provider(v1_port).version("1.0.0"),
    ));
    // Java 3.3 simplified: no `interface`, `methods`, `timestamp`; the interface comes from the path.
    register(dw::java33_simplified_provider(
        dw::DEFAULT_ROOT,
        &provider(g1_port).group("g1").version("1.0.0"),
        &[],
    ));
    // dubbo-go: QueryEscape, empty value, a lease of its own, timestamp in seconds.
    register(dw::dubbo_go_provider(
        "dubbo",
        &provider(g2_port).group("g2").version("1.0.0"),
    ));
    // Java 2.7 simplified: no `side`, `interface`, `methods`.
    register(dw::java27_simplified_provider(
        dw::DEFAULT_ROOT,
        &provider(g3_port).group("g3").version("1.0.0"),
        &[],
    ));
    // A disabled provider in g1 (Dubbo skips `enabled=false`).
    register(dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(off_port)
            .group("g1")
            .version("1.0.0")
            .param("enabled", "false"),
    ));
    // Not providers: a consumer URL, a route rule and an override under their categories, each naming the
    // trap port; and a provider-looking URL under `consumers`.
    let trap_url = dw::java27_provider(dw::DEFAULT_ROOT, &provider(trap)).url;
    register(dw::java27_consumer(
        dw::DEFAULT_ROOT,
        IFACE,
        "127.0.0.1",
        "demo-consumer",
        1,
    ));
    for (category, url) in [
        (Category::Consumers, trap_url.clone()),
        (
            Category::Routers,
            format!(
                "route://127.0.0.1:{trap}/{IFACE}?category=routers&dynamic=false&enabled=true&force=false&name=r&priority=0&router=condition&rule=%3D%3E+host+%3D+127.0.0.1&runtime=false"
            ),
        ),
        (
            Category::Configurators,
            format!("override://127.0.0.1:{trap}/{IFACE}?category=configurators&dynamic=false&enabled=true&weight=200"),
        ),
    ] {
        register(dw::java_rule(dw::DEFAULT_ROOT, IFACE, category, &url));
    }

    // The v1 process also consumes the service: a second key on its lease.
    let v1_consumer = writers[2]
        .register(&dw::java27_consumer(
            dw::DEFAULT_ROOT,
            IFACE,
            "127.0.0.1",
            "v1-app",
            2,
        ))
        .unwrap();
    assert_eq!(v1_consumer.lease, v1_key.lease);

    let (ca, dir) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &dir, &[]);
    wait_serving(ca, WARM);

    // No group, no version: only the provider with neither.
    calls_ok(ca, Form::gv(None, None), 10, "plain");
    // version 1.0.0, no group: the Java 3.3 provider only.
    calls_ok(ca, Form::gv(None, Some("1.0.0")), 10, "v1");
    // g1 / 1.0.0: the simplified Java 3.3 provider; the disabled one never.
    calls_ok(ca, Form::gv(Some("g1"), Some("1.0.0")), 10, "g1");
    // g2 / 1.0.0: the dubbo-go provider.
    calls_ok(ca, Form::gv(Some("g2"), Some("1.0.0")), 10, "g2");
    // g3 / 1.0.0: the simplified Java 2.7 provider.
    calls_ok(ca, Form::gv(Some("g3"), Some("1.0.0")), 10, "g3");
    // A comma list of groups: both (round robin, equal weights: 10 each).
    calls_ok(ca, Form::gv(Some("g1,g2"), Some("1.0.0")), 20, "g1,g2");
    // group `*`: every group of version 1.0.0, the group-less one included (10 each).
    calls_ok(ca, Form::gv(Some("*"), Some("1.0.0")), 40, "*");
    // version `*` without a group: group-less providers of any version (plain and v1, 10 each).
    calls_ok(ca, Form::gv(None, Some("*")), 20, "v*");
    // Keys without a provider: named in the answer.
    no_provider(
        ca,
        Form::gv(Some("nope"), Some("1.0.0")),
        &format!("nope/{IFACE}:1.0.0"),
    );
    no_provider(ca, Form::gv(None, Some("9.9")), &format!("{IFACE}:9.9"));

    // The Java 2.7 provider goes away (its process ends: lease revoked) -> its key has no provider.
    let plain_lease = plain_key.lease.unwrap();
    // The plain provider's writer is the second one (after the warm-up provider's).
    writers[1].revoke(plain_lease).unwrap();
    wait_until("the revoked provider leaves", Duration::from_secs(10), || {
        let (status, _) = call_form(ca, Form::gv(None, None), "gone");
        status != 200
    });
    no_provider(ca, Form::gv(None, None), IFACE);
    // Java's `doUnregister` deletes one key and keeps the lease (other keys of the process share it).
    writers[2].unregister(&v1_key.key).unwrap();
    wait_until(
        "the unregistered provider leaves",
        Duration::from_secs(10),
        || call_form(ca, Form::gv(None, Some("1.0.0")), "gone").0 != 200,
    );
    no_provider(ca, Form::gv(None, Some("1.0.0")), &format!("{IFACE}:1.0.0"));
    assert_eq!(writers[2].lease_of(&v1_consumer.key).unwrap(), v1_key.lease);

    let counts = [
        served(&mut plain),
        served(&mut v1),
        served(&mut g1),
        served(&mut g2),
        served(&mut g3),
        served(&mut off),
    ];
    // plain: 10 + 10 (v*), v1: 10 + 10 (*) + 10 (v*), each + the calls of its removal wait that still
    // reached it.
    assert!(
        counts[0] >= 20 && counts[1] >= 30,
        "plain, v1, g1, g2, g3, disabled: {counts:?}"
    );
    assert_eq!(
        &counts[2..],
        [10 + 10 + 10, 10 + 10 + 10, 10 + 10, 0],
        "plain, v1, g1, g2, g3, disabled: {counts:?}"
    );
}

#[test]
fn weight_tag_and_token_of_java_urls_are_honoured() {
    let etcd = EtcdServer::start().unwrap();
    let (_warm, warm_port) = sim(&["--latency-ms", "1", "--name", "warm"]);
    let (mut light, light_port) = sim(&["--latency-ms", "1", "--name", "light"]);
    let (mut heavy, heavy_port) = sim(&["--latency-ms", "1", "--name", "heavy"]);
    let (mut gray, gray_port) = sim(&["--latency-ms", "1", "--name", "gray"]);
    let (mut untagged, untagged_port) = sim(&["--latency-ms", "1", "--name", "untagged"]);
    // The token has a space and a `+`: URLEncoder writes `a+b%2Bc/%3D` in the key, Dubbo's parser gives back
    // `a b+c/=`; decoding once too often or too rarely sends another token.
    let (mut locked, locked_port) = sim(&["--latency-ms", "1", "--name", "locked", "--token", "a b+c/="]);
    let (mut unknown, unknown_port) = sim(&["--latency-ms", "1", "--name", "unknown", "--token", "other"]);
    let (mut young, young_port) = sim(&["--latency-ms", "1", "--name", "young"]);
    let (mut old, old_port) = sim(&["--latency-ms", "1", "--name", "old"]);

    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(warm_port).group("warm"),
    ))
    .unwrap();
    // Weights 100 and 300 on version w.
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(light_port).version("w").weight(100),
    ))
    .unwrap();
    w.register(&dw::java33_provider(
        dw::DEFAULT_ROOT,
        &provider(heavy_port).version("w").weight(300),
    ))
    .unwrap();
    // `dubbo.tag` on version t.
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(gray_port).version("t").tag("gray"),
    ))
    .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(untagged_port).version("t"),
    ))
    .unwrap();
    // `token` on version k: sent as the attachment; on k2 the URL's token is not the provider's.
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(locked_port).version("k").token("a b+c/="),
    ))
    .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(unknown_port).version("k2").token("s3cret"),
    ))
    .unwrap();
    // Warm-up: a provider started now (Java timestamp in ms, Dubbo's default `warmup` of 10 minutes) weighs
    // max(1, uptime / (600000 / 100)) = 1 for its first 12 s, next to a provider started an hour ago (100).
    let mut fresh = provider(young_port).version("wu");
    fresh.timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    w.register(&dw::java27_provider(dw::DEFAULT_ROOT, &fresh))
        .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(old_port).version("wu"),
    ))
    .unwrap();

    let (ca, dir) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &dir, &[]);
    wait_serving(ca, WARM);

    calls_ok(ca, Form::gv(None, Some("w")), 40, "weights");
    calls_ok(ca, Form::gv(None, Some("wu")), 101, "warm-up");
    let tagged = Form {
        tag: Some("gray"),
        ..Form::gv(None, Some("t"))
    };
    calls_ok(ca, tagged, 10, "tagged");
    calls_ok(ca, Form::gv(None, Some("t")), 10, "untagged");
    calls_ok(ca, Form::gv(None, Some("k")), 5, "token");
    let (status, body) = call_form(ca, Form::gv(None, Some("k2")), "bad-token");
    assert!(
        status >= 500 && body.contains("Invalid token"),
        "the provider's token error comes back: {status} {body}"
    );

    assert_eq!(
        (served(&mut light), served(&mut heavy)),
        (10, 30),
        "weights 100:300 over 40 calls"
    );
    assert_eq!((served(&mut gray), served(&mut untagged)), (10, 10));
    assert_eq!((served(&mut locked), served(&mut unknown)), (5, 0));
    assert_eq!(
        (served(&mut young), served(&mut old)),
        (1, 100),
        "warm-up 1:100 over 101 calls"
    );
}

/// `weight=0` on a Java URL is how Dubbo users drain a provider: Dubbo's `AbstractLoadBalance.getWeight` is
/// `max(weight, 0)`; round robin and random never pick a 0 next to a positive weight, and a service whose
/// providers all weigh 0 is still served (round robin then takes the first, random any;
/// apache/dubbo 2.7.x `dubbo-cluster/.../loadbalance/{AbstractLoadBalance,RoundRobinLoadBalance,RandomLoadBalance}.java`).
#[test]
fn weight_zero_drains_a_java_provider_like_dubbo() {
    let etcd = EtcdServer::start().unwrap();
    let (_warm, warm_port) = sim(&["--latency-ms", "1", "--name", "warm"]);
    let (mut drained, drained_port) = sim(&["--latency-ms", "1", "--name", "drained"]);
    let (mut full, full_port) = sim(&["--latency-ms", "1", "--name", "full"]);
    let (mut alone, alone_port) = sim(&["--latency-ms", "1", "--name", "alone"]);
    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(warm_port).group("warm"),
    ))
    .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(drained_port).version("z").weight(0),
    ))
    .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(full_port).version("z"),
    ))
    .unwrap();
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(alone_port).version("z0").weight(0),
    ))
    .unwrap();
    let (ca, dir) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &dir, &[]);
    wait_serving(ca, WARM);
    // 101 calls: with weights 1:100 (a 0 read as 1) smooth round robin would pick the drained one once.
    calls_ok(ca, Form::gv(None, Some("z")), 101, "drain");
    calls_ok(ca, Form::gv(None, Some("z0")), 5, "all-zero");
    assert_eq!(
        (served(&mut drained), served(&mut full), served(&mut alone)),
        (0, 101, 5),
        "drained (weight 0), full (100), alone (weight 0, the only one)"
    );
}

/// Interface names with characters URL encoding changes (`$` of nested classes): Java's `URL.encode` and Go's
/// `QueryEscape` both write `%24` in the path and the URL; the consumer must find the provider under the decoded
/// name. The simulator exports only the challenge's interface, so reaching it shows as its own error (status 70
/// "Not found exported service"), unlike a 404 for an interface nobody registered.
#[test]
fn interface_names_that_need_encoding_are_found() {
    let etcd = EtcdServer::start().unwrap();
    let (mut java, java_port) = sim(&["--latency-ms", "1", "--name", "java"]);
    let (mut go, go_port) = sim(&["--latency-ms", "1", "--name", "go"]);
    let java_iface = "com.example.Outer$Inner";
    let go_iface = "com.example.Go$Svc";
    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    let j = w
        .register(&dw::java27_provider(
            dw::DEFAULT_ROOT,
            &Provider::new(java_iface, "127.0.0.1", java_port),
        ))
        .unwrap();
    assert!(j
        .key
        .starts_with("/dubbo/com.example.Outer%24Inner/providers/dubbo%3A%2F%2F"));
    let g = w
        .register(&dw::dubbo_go_provider(
            "dubbo",
            &Provider::new(go_iface, "127.0.0.1", go_port),
        ))
        .unwrap();
    assert!(g
        .key
        .starts_with("/dubbo/com.example.Go%24Svc/providers/dubbo%3A%2F%2F"));
    let (ca, dir) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &dir, &[]);
    for iface in [java_iface, go_iface] {
        let form = Form {
            interface: Some(iface),
            ..Form::default()
        };
        let mut last = (0, String::new());
        wait_until(
            "the consumer reaches the provider",
            Duration::from_secs(15),
            || {
                last = call_form(ca, form, "x");
                last.0 == 502
            },
        );
        assert!(
            last.1.contains("Not found exported service") && last.1.contains(iface),
            "{iface}: {last:?}"
        );
    }
    let missing = Form {
        interface: Some("com.example.Outer$Missing"),
        ..Form::default()
    };
    no_provider(ca, missing, "com.example.Outer$Missing");
    // Each simulator answered (with its error) at least once; nothing else reached them.
    for (name, g) in [("java", &mut java), ("go", &mut go)] {
        let out = g.terminate().unwrap().stdout;
        let line = out
            .lines()
            .rev()
            .find(|l| l.contains("\"errors\""))
            .unwrap()
            .to_owned();
        let stats: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(stats["errors"].as_u64().unwrap() >= 1, "{name}: {line}");
        assert_eq!(stats["served"].as_u64().unwrap(), 0, "{name}: {line}");
    }
}

#[test]
fn registry_root_is_the_dubbo_registry_group() {
    let etcd = EtcdServer::start().unwrap();
    let (mut a, a_port) = sim(&["--latency-ms", "1", "--name", "a"]);
    let (mut b, b_port) = sim(&["--latency-ms", "1", "--name", "b"]);
    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    // `etcd3://...?group=mesh` in Java; `registry.group: mesh` in dubbo-go.
    w.register(&dw::java27_provider("mesh", &provider(a_port)))
        .unwrap();
    // Under the default root: not this consumer's registry.
    w.register(&dw::java27_provider(dw::DEFAULT_ROOT, &provider(b_port)))
        .unwrap();
    let (ca, dir) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &dir, &["--etcd-root", "/mesh"]);
    wait_until("the consumer serves", Duration::from_secs(15), || {
        call_form(ca, Form::default(), "w").0 == 200
    });
    calls_ok(ca, Form::default(), 10, "root");
    let (sa, sb) = (served(&mut a), served(&mut b));
    assert!(sa >= 10 && sb == 0, "a {sa}, b {sb}");
}

#[test]
fn sofa_rpc_node_provider_registered_as_java_is_called_directly() {
    let (_node, node_port) = sofa_rpc_node_provider();

    let etcd = EtcdServer::start().unwrap();
    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    // The node provider answers `<interface>:1.0.0` (peers.md): registered as a Java 2.7 provider of it.
    w.register(&dw::java27_provider(
        dw::DEFAULT_ROOT,
        &provider(node_port).version("1.0.0"),
    ))
    .unwrap();
    let (ca, tmp) = (free_port().unwrap(), tempfile::tempdir().unwrap());
    let _consumer = consumer_one_shard(ca, &etcd, &tmp, &[]);
    let form = Form::gv(None, Some("1.0.0"));
    wait_until("the consumer serves", Duration::from_secs(15), || {
        call_form(ca, form, "w").0 == 200
    });
    for p in ["", "hello", "中文字符串", "x\u{1F600}y", &"Ab9".repeat(341)] {
        let (status, body) = call_form(ca, form, p);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, mesh_dubbo::java_string_hash(p).to_string(), "param {p:?}");
    }
    no_provider(ca, Form::gv(None, Some("2.0.0")), &format!("{IFACE}:2.0.0"));
}

/// Runs the independent decoder on the keys under `/dubbo` of `etcd`; returns its report.
fn decode(etcd: &EtcdServer, args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-testkit/scripts/dubbo_key_check.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--etcd", etcd.client_url()])
        .args(args)
        .output()
        .expect("python3 must be installed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    report
}

fn matched(report: &serde_json::Value, query: &str) -> Vec<String> {
    let mut v: Vec<String> = report["matches"][query]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn provider_agent_keys_pass_an_independent_decoder_and_dubbos_matching() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (mut sim_a, port_a) = sim(&["--latency-ms", "1", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "1", "--name", "b"]);
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let service = format!("g1/{IFACE}:1.0.0");
    let full = config_file(&dir, "[provider]\nweight = 250\ntag = \"gray\"\n");
    let _a = provider_agent(
        pa,
        port_a,
        &[
            "--etcd",
            &url,
            "--service",
            &service,
            "--config",
            &full,
            "--token",
            "p+q/r=%",
        ],
    );
    let dir_b = tempfile::tempdir().unwrap();
    let simplified = config_file(&dir_b, "[provider]\nsimplified = true\n");
    let _b = provider_agent(
        pb,
        port_b,
        &["--etcd", &url, "--service", &service, "--config", &simplified],
    );

    let q_exact = format!("interface={IFACE}&group=g1&version=1.0.0");
    let q_star = format!("interface={IFACE}&group=*&version=*");
    let q_none = format!("interface={IFACE}");
    let q_other = format!("interface={IFACE}&group=g2&version=1.0.0");
    let mut report = serde_json::Value::Null;
    wait_until("both provider agents registered", Duration::from_secs(15), || {
        report = decode(
            &etcd,
            &[
                "--simplified",
                "--require",
                "dubbo",
                "--match",
                &q_exact,
                "--match",
                &q_star,
                "--match",
                &q_none,
                "--match",
                &q_other,
            ],
        );
        matched(&report, &q_exact).len() == 2
    });
    let (a, b) = (addr(pa).to_string(), addr(pb).to_string());
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(matched(&report, &q_exact), both);
    assert_eq!(matched(&report, &q_star), both);
    assert!(matched(&report, &q_none).is_empty(), "{report:#}");
    assert!(matched(&report, &q_other).is_empty(), "{report:#}");
    // The full URL carries what a Java provider writes; the agent's weight and tag travel under Dubbo's names.
    let urls = report["urls"].as_array().unwrap();
    let url_of = |address: &str| {
        urls.iter()
            .find(|u| format!("{}:{}", u["host"].as_str().unwrap(), u["port"]) == address)
            .unwrap()
            .clone()
    };
    let full_url = url_of(&a);
    let params = &full_url["params"];
    for k in [
        "side",
        "dubbo",
        "release",
        "interface",
        "methods",
        "application",
        "timestamp",
    ] {
        assert!(params[k].is_string(), "{k} missing in {full_url:#}");
    }
    assert_eq!(params["side"], "provider");
    assert_eq!(params["group"], "g1");
    assert_eq!(params["version"], "1.0.0");
    assert_eq!(params["weight"], "250");
    assert_eq!(params["dubbo.tag"], "gray");
    // A token with URL syntax in it survives the key encoding (and the tagged calls below carry it back).
    assert_eq!(params["token"], "p+q/r=%");
    assert_eq!(full_url["category"], "providers");
    assert_eq!(full_url["interface"], IFACE);
    // The simplified URL is what Dubbo's simplification leaves: no `interface` or `methods`, the service key
    // parameters kept.
    let simple_url = url_of(&b);
    assert!(simple_url["params"]["interface"].is_null(), "{simple_url:#}");
    assert!(simple_url["params"]["methods"].is_null(), "{simple_url:#}");
    assert_eq!(simple_url["params"]["group"], "g1");
    assert_eq!(simple_url["params"]["version"], "1.0.0");
    let (ca, cdir) = (free_port().unwrap(), tempfile::tempdir().unwrap());

    // And the consumer agent finds both through the same keys, with the agent's tag as Dubbo's `dubbo.tag`:
    // tagged calls go to a only, untagged ones (the warm-up included) to the untagged b only.
    let _consumer = consumer_one_shard(ca, &etcd, &cdir, &[]);
    let form = Form::gv(Some("g1"), Some("1.0.0"));
    let mut warm = 0;
    wait_until("the consumer serves", Duration::from_secs(15), || {
        warm += 1;
        call_form(ca, form, "w").0 == 200
    });
    calls_ok(ca, form, 20, "untagged");
    let gray = Form {
        tag: Some("gray"),
        ..form
    };
    calls_ok(ca, gray, 10, "gray");
    let (sa, sb) = (served(&mut sim_a), served(&mut sim_b));
    assert_eq!((sa, sb), (10, 20 + warm), "a (gray), b");
}

#[test]
fn consumer_agent_consumer_urls_pass_the_independent_decoder() {
    let etcd = EtcdServer::start().unwrap();
    let service = format!("g1/{IFACE}:1.0.0");
    let (c1, c2) = (free_port().unwrap(), free_port().unwrap());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = config_file(&d1, &format!("[consumer]\nregister_services = [\"{service}\"]\n"));
    let simple = config_file(
        &d2,
        &format!("[consumer]\nregister_services = [\"{service}\"]\nsimplified = true\n"),
    );
    let _full = consumer_agent(c1, &["--etcd", etcd.client_url(), "--config", &full]);
    let _simple = consumer_agent(c2, &["--etcd", etcd.client_url(), "--config", &simple]);

    let providers = format!("interface={IFACE}&group=*&version=*");
    let mut report = serde_json::Value::Null;
    let consumers = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["urls"]
            .as_array()
            .map(|u| {
                u.iter()
                    .filter(|x| x["category"] == "consumers")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until("both consumer URLs registered", Duration::from_secs(15), || {
        report = decode(&etcd, &["--match", &providers]);
        consumers(&report).len() == 2
    });
    // Consumer URLs are not providers for anyone.
    assert!(matched(&report, &providers).is_empty(), "{report:#}");
    let urls = consumers(&report);
    for u in &urls {
        assert_eq!(u["protocol"], "consumer", "{u:#}");
        assert_eq!(u["interface"], IFACE, "{u:#}");
        assert_eq!(u["port"], 0, "{u:#}");
        let p = &u["params"];
        assert_eq!(p["category"], "consumers", "{u:#}");
        assert_eq!(p["check"], "false", "{u:#}");
        assert_eq!(p["group"], "g1", "{u:#}");
        assert_eq!(p["version"], "1.0.0", "{u:#}");
        assert!(p["dubbo"].is_string() && p["release"].is_string() && p["application"].is_string());
    }
    // The simplified one keeps Dubbo's consumer keys (application, version, group, dubbo, release) plus
    // category and check; the full one has side=consumer, interface and methods too.
    let mut key_sets: Vec<Vec<String>> = urls
        .iter()
        .map(|u| u["params"].as_object().unwrap().keys().cloned().collect())
        .collect();
    key_sets.sort_by_key(Vec::len);
    assert_eq!(
        key_sets[0],
        [
            "application",
            "category",
            "check",
            "dubbo",
            "group",
            "release",
            "version"
        ],
        "{report:#}"
    );
    for k in ["side", "interface", "methods", "timestamp"] {
        assert!(key_sets[1].iter().any(|x| x == k), "{k} in {:?}", key_sets[1]);
    }
}
