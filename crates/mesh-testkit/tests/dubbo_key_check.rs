//! The independent decoder (`scripts/dubbo_key_check.py`, Python standard library only) against keys written
//! as Java 2.7 / Java 3.3 / dubbo-go write them (`dubbo_writers`): it accepts them, matches them by Java's
//! `UrlUtils.isMatch`, and rejects keys Java would drop. Also read back from a real etcd.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Stdio};

use mesh_testkit::dubbo_writers::{self as dw, put::BlockingWriter, Provider};
use mesh_testkit::etcd::EtcdServer;
use serde_json::Value;

const IFACE: &str = "com.example.Echo";

fn script() -> String {
    format!("{}/scripts/dubbo_key_check.py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the checker over `keys` (stdin) with `args`; returns (exit code, report).
fn check(keys: &[String], args: &[&str]) -> (i32, Value) {
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(keys.join("\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code().unwrap(), report)
}

fn addresses(report: &Value, query: &str) -> Vec<String> {
    let mut v: Vec<String> = report["matches"][query]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn provider(port: u16) -> Provider {
    Provider::new(IFACE, "127.0.0.1", port)
}

#[test]
fn writers_keys_pass_and_match_like_java() {
    let regs = [
        dw::java27_provider(dw::DEFAULT_ROOT, &provider(1)),
        dw::java27_provider(dw::DEFAULT_ROOT, &provider(2).group("g1").version("1.0")),
        dw::java33_provider(dw::DEFAULT_ROOT, &provider(3).group("g2").version("1.0")),
        dw::java33_provider(dw::DEFAULT_ROOT, &provider(4).version("2.0")),
        dw::java27_provider(dw::DEFAULT_ROOT, &provider(5).param("enabled", "false")),
        dw::dubbo_go_provider("dubbo", &provider(6).group("g1").version("1.0")),
    ];
    let mut keys: Vec<String> = regs.iter().map(|r| r.key.clone()).collect();
    keys.extend(regs[0].parents.iter().map(|p| p.key.clone()));
    keys.push(dw::java27_consumer(dw::DEFAULT_ROOT, IFACE, "127.0.0.1", "c", 1).key);
    let (code, report) = check(
        &keys,
        &[
            "--match",
            &format!("interface={IFACE}"),
            "--match",
            &format!("interface={IFACE}&group=g1&version=1.0"),
            "--match",
            &format!("interface={IFACE}&group=*&version=1.0"),
            "--match",
            &format!("interface={IFACE}&group=g1,g2&version=1.0"),
            "--match",
            &format!("interface={IFACE}&version=*"),
            "--match",
            &format!("interface={IFACE}&version=*&enabled=*"),
            "--match",
            "interface=com.example.Other",
        ],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
    assert_eq!(report["urls"].as_array().unwrap().len(), 7);
    assert_eq!(report["parents"].as_array().unwrap().len(), 2);
    let m = |q: &str| addresses(&report, q);
    // No group / no version matches only the provider with neither (5 is disabled).
    assert_eq!(m(&format!("interface={IFACE}")), ["127.0.0.1:1"]);
    assert_eq!(
        m(&format!("interface={IFACE}&group=g1&version=1.0")),
        ["127.0.0.1:2", "127.0.0.1:6"]
    );
    assert_eq!(
        m(&format!("interface={IFACE}&group=*&version=1.0")),
        ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:6"]
    );
    assert_eq!(
        m(&format!("interface={IFACE}&group=g1,g2&version=1.0")),
        ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:6"]
    );
    // version=* with no group: providers without a group, any version.
    assert_eq!(
        m(&format!("interface={IFACE}&version=*")),
        ["127.0.0.1:1", "127.0.0.1:4"]
    );
    assert_eq!(
        m(&format!("interface={IFACE}&version=*&enabled=*")),
        ["127.0.0.1:1", "127.0.0.1:4", "127.0.0.1:5"]
    );
    assert!(m("interface=com.example.Other").is_empty());
    let sk: Vec<&str> = report["matches"][&format!("interface={IFACE}&group=g1&version=1.0")]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service_key"].as_str().unwrap())
        .collect();
    assert_eq!(sk, ["g1/com.example.Echo:1.0", "g1/com.example.Echo:1.0"]);
}

#[test]
fn simplified_keys_need_the_flag() {
    let key = dw::java33_simplified_provider(dw::DEFAULT_ROOT, &provider(7), &[]).key;
    let (code, report) = check(std::slice::from_ref(&key), &[]);
    assert_eq!(code, 1);
    assert!(report["errors"][0]["error"].as_str().unwrap().contains("lacks"));
    let (code, report) = check(
        &[key],
        &["--simplified", "--match", &format!("interface={IFACE}")],
    );
    assert_eq!(code, 0, "{report:#}");
    // The interface of a simplified URL comes from its path.
    assert_eq!(addresses(&report, &format!("interface={IFACE}")), ["127.0.0.1:7"]);
}

#[test]
fn keys_java_would_drop_are_errors() {
    let good = dw::java27_provider(dw::DEFAULT_ROOT, &provider(8));
    let service = format!("/dubbo/{IFACE}/providers/");
    let unencoded_slash = format!("{service}{}", good.url);
    let lower_hex = good.key.replace("%3A", "%3a");
    let no_scheme = format!("{service}{}", dw::java_url_encode("127.0.0.1:8/x?a=b"));
    let unsorted_url = good.url.replace("anyhost=true&application=", "application=");
    let unsorted = format!("{service}{}&anyhost=true", dw::java_url_encode(&unsorted_url));
    let unsorted = unsorted.replace("&anyhost=true", &dw::java_url_encode("&anyhost=true"));
    let wrong_iface = format!(
        "/dubbo/com.example.Other/providers/{}",
        good.key.rsplit('/').next().unwrap()
    );
    let go_star = dw::dubbo_go_provider("dubbo", &provider(9).param("methods", "*")).key;
    for (key, error) in [
        (&unencoded_slash, "segments after the root"),
        (&lower_hex, "not Java URLEncoder output"),
        (&no_scheme, "no '://'"),
        (&unsorted, "not sorted"),
        (&wrong_iface, "is not the key's interface"),
        (&go_star, "not Java URLEncoder output"),
    ] {
        let (code, report) = check(std::slice::from_ref(key), &[]);
        assert_eq!(code, 1, "{key}: {report:#}");
        let got = report["errors"][0]["error"].as_str().unwrap();
        assert!(got.contains(error), "{key}: {got}");
    }
    // Go's `*` escape is still a key Java reads: accepted with --any-encoding.
    let (code, report) = check(&[go_star], &["--any-encoding"]);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn reads_a_real_etcd_through_the_json_gateway() {
    let etcd = EtcdServer::start().unwrap();
    let mut w = BlockingWriter::connect(etcd.client_url()).unwrap();
    w.register(&dw::java27_provider(dw::DEFAULT_ROOT, &provider(10)))
        .unwrap();
    w.register(&dw::dubbo_go_provider("dubbo", &provider(11)))
        .unwrap();
    // Outside the root: not read.
    w.register(&dw::java27_provider("/other", &provider(12))).unwrap();
    let out = Command::new("python3")
        .arg(script())
        .args([
            "--etcd",
            etcd.client_url(),
            "--match",
            &format!("interface={IFACE}"),
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(
        addresses(&report, &format!("interface={IFACE}")),
        ["127.0.0.1:10", "127.0.0.1:11"]
    );
    let parents: Vec<&str> = report["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        parents,
        [
            "/dubbo",
            "/dubbo/com.example.Echo",
            "/dubbo/com.example.Echo/configurators",
            "/dubbo/com.example.Echo/providers"
        ]
    );
    w.close().unwrap();
}
