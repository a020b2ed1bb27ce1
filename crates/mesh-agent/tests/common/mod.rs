//! Helpers shared by the end-to-end test files: real processes on loopback, bounded waits.

#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_registry::dubbo::{Category, DubboUrl, RegistryKey, RegistryRoot};
use mesh_registry::{spawn_watcher, EtcdConfig, Snapshot, Source};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::{cargo_bin, wait_for_port, ChildGuard};

pub(crate) const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(crate) fn agent(args: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh-agent"));
    cmd.args(args);
    ChildGuard::spawn(&mut cmd)
        .unwrap()
        .with_grace(Duration::from_secs(8))
}

/// The provider simulator on a free port.
pub(crate) fn sim(extra: &[&str]) -> (ChildGuard, u16) {
    let bin = cargo_bin("provider-sim")
        .expect("build the testkit binaries first: cargo build -p mesh-testkit --bins");
    let mut cmd = Command::new(bin);
    cmd.args(["--port", "0", "--workers", "1"]).args(extra);
    let mut g = ChildGuard::spawn(&mut cmd).unwrap();
    let port = g.listening_port(Duration::from_secs(10)).unwrap();
    (g, port)
}

pub(crate) fn provider_agent(listen: u16, dubbo: u16, extra: &[&str]) -> ChildGuard {
    let (l, d) = (addr(listen).to_string(), addr(dubbo).to_string());
    let mut args = vec![
        "provider", "--listen", &l, "--dubbo", &d, "--cores", "0", "--shards", "1",
    ];
    args.extend_from_slice(extra);
    let g = agent(&args);
    wait_for_port(addr(listen), Duration::from_secs(10)).unwrap();
    g
}

pub(crate) fn consumer_agent(listen: u16, extra: &[&str]) -> ChildGuard {
    let l = addr(listen).to_string();
    let mut args = vec!["consumer", "--listen", &l, "--cores", "0,1"];
    args.extend_from_slice(extra);
    let g = agent(&args);
    wait_for_port(addr(listen), Duration::from_secs(10)).unwrap();
    g
}

/// One HTTP/1.1 POST of the challenge form; returns (status, body).
pub(crate) fn call(port: u16, interface: &str, param: &str) -> (u16, String) {
    let inv = mesh_http::Invocation {
        interface: interface.into(),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![param.into()],
        version: None,
        group: None,
        tag: None,
        force_tag: false,
        attachments: Vec::new(),
    };
    post_form(port, &inv)
}

/// One HTTP/1.1 POST of `inv` as the challenge form to the consumer at `port`; returns (status, body).
pub(crate) fn post_form(port: u16, inv: &mesh_http::Invocation<'_>) -> (u16, String) {
    let mut body = BytesMut::new();
    mesh_http::encode_form(inv, &mut body);
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8(resp).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The `served` count of a simulator's stats line (stops it).
pub(crate) fn served(g: &mut ChildGuard) -> u64 {
    let out = g.terminate().unwrap().stdout;
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"served\""))
        .unwrap_or_else(|| panic!("no stats line in {out}"))
        .to_owned();
    serde_json::from_str::<serde_json::Value>(&line).unwrap()["served"]
        .as_u64()
        .unwrap()
}

pub(crate) fn watch(etcd: &EtcdServer) -> mesh_registry::WatcherHandle {
    let (tx, _rx) = crossbeam_channel::unbounded::<Arc<Snapshot>>();
    spawn_watcher(
        Source::Etcd(EtcdConfig::with_endpoints([etcd.client_url()])),
        vec![tx],
    )
    .unwrap()
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn registered(w: &mesh_registry::WatcherHandle, port: u16) -> bool {
    w.latest()
        .is_some_and(|s| s.endpoints(IFACE).iter().any(|e| e.addr == addr(port)))
}

pub(crate) fn etcdctl(etcd: &EtcdServer, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.client_url())
        .args(args)
        .output()
        .expect("etcdctl (Debian etcd-client) must be installed");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The keys under `prefix`, read with `etcdctl`.
pub(crate) fn etcd_keys(etcd: &EtcdServer, prefix: &str) -> Vec<String> {
    etcdctl(etcd, &["get", prefix, "--prefix", "--keys-only"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The provider URLs registered under the default root `/dubbo/` (interface level), read back from etcd.
pub(crate) fn registered_provider_urls(etcd: &EtcdServer) -> Vec<DubboUrl> {
    let root = RegistryRoot::default();
    etcd_keys(etcd, "/dubbo/")
        .iter()
        .filter_map(|k| match root.parse_key(k.as_bytes()) {
            Ok(RegistryKey::Url(u)) if u.category == Category::Providers => Some(u.url),
            _ => None,
        })
        .collect()
}

pub(crate) fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("agent.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// An HTTP answer: status, `Content-Type` (lower case, empty when absent) and body.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// One HTTP/1.1 `POST path` to the consumer at `port` with `headers`, `content_type` and `body`
/// (`Connection: close`, a 10 s read timeout); returns the answer.
pub(crate) fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> HttpAnswer {
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8(resp).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    HttpAnswer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// `application/x-www-form-urlencoded` text of `fields` (every byte but unreserved ones percent-encoded).
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// A closed-loop HTTP load on the consumer agent at `port`: `connections` for `secs` seconds after a 200 ms
/// warm-up, a call that takes over 10 s counted as a timeout.
pub(crate) fn http_load(port: u16, connections: usize, secs: u64) -> mesh_testkit::loadgen::LoadConfig {
    let mut cfg =
        mesh_testkit::loadgen::LoadConfig::new(format!("http://127.0.0.1:{port}/").parse().unwrap());
    cfg.connections = connections;
    cfg.duration = Duration::from_secs(secs);
    cfg.warmup = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(10);
    cfg
}

/// The third-party sofa-rpc-node Dubbo provider (`crates/mesh-dubbo/tests/interop/provider.js`, installed by
/// `scripts/setup.sh`) on a free port, stopped when the guard drops (and after 120 s in any case).
pub(crate) fn sofa_rpc_node_provider() -> (ChildGuard, u16) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-dubbo/tests/interop");
    assert!(
        dir.join("node_modules/sofa-rpc-node").exists(),
        "run `bash scripts/setup.sh` (npm ci in {})",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.args(["provider.js", "0"])
        .current_dir(&dir)
        .env("INTEROP_MAX_LIFETIME_SECS", "120");
    let mut node = ChildGuard::spawn(&mut cmd).unwrap();
    let port = node.listening_port(Duration::from_secs(20)).unwrap();
    (node, port)
}

/// `promtool check metrics` on a scraped `/metrics`: passes, or the test fails with what it said.
pub(crate) fn promtool_passes(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP request with no body to an agent's port (admin endpoints): the status and the body.
pub(crate) fn admin_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8(resp).unwrap();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// `GET path` on an agent's port (see [`admin_request`]).
pub(crate) fn admin_get(port: u16, path: &str) -> (u16, String) {
    admin_request(port, "GET", path)
}

/// A provider agent of application `app` registering in `mode` (`register_mode`) in etcd, in front of a
/// simulator answering in `latency_ms`: (agent, simulator, agent's port).
pub(crate) fn provider_in_mode(
    etcd: &EtcdServer,
    dir: &tempfile::TempDir,
    app: &str,
    mode: &str,
    latency_ms: u32,
) -> (ChildGuard, ChildGuard, u16) {
    let latency = latency_ms.to_string();
    let (sim, sim_port) = sim(&["--latency-ms", &latency, "--name", app]);
    let cfg = config_file(
        dir,
        &format!(
            "[provider]\napplication = \"{app}\"\nregister_mode = \"{mode}\"\n[etcd]\nendpoints = [\"{}\"]\nlease_ttl_s = 5\n",
            etcd.client_url()
        ),
    );
    let port = mesh_testkit::process::free_port().unwrap();
    let agent = provider_agent(port, sim_port, &["--config", &cfg]);
    (agent, sim, port)
}
