//! The agent pair end to end, with real processes: etcd, the provider simulator, the third-party
//! sofa-rpc-node provider, both agents, and the load generator. Loopback only; every wait is bounded;
//! every process is stopped when its guard drops.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::loadgen::run_blocking;
use mesh_testkit::process::{free_port, wait_for_port, ChildGuard};

mod common;
use common::*;

#[test]
fn provider_registers_survives_lease_loss_and_deregisters_on_sigterm() {
    let etcd = EtcdServer::start().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        &format!("[etcd]\nendpoints = [\"{}\"]\nlease_ttl_s = 2\n[provider]\nweight = 200\nmax_concurrency = 150\n", etcd.client_url()),
    );
    let mut agent = provider_agent(port, sim_port, &["--config", &cfg]);
    let w = watch(&etcd);
    wait_until("the provider's registration", Duration::from_secs(10), || {
        registered(&w, port)
    });
    let snap = w.latest().unwrap();
    let eps = snap.endpoints(IFACE);
    let ep = eps.iter().find(|e| e.addr == addr(port)).unwrap();
    assert_eq!((ep.weight, ep.max_concurrency), (200, Some(150)));
    // Registered as a Dubbo provider: Java's key, the lease id as value, the parent key for Dubbo Admin.
    let keys = etcdctl(&etcd, &["get", "--prefix", &format!("/dubbo/{IFACE}/providers/")]);
    let mut lines = keys.lines();
    let key = lines.next().unwrap_or_default();
    assert!(
        key.starts_with(&format!(
            "/dubbo/{IFACE}/providers/dubbo%3A%2F%2F127.0.0.1%3A{port}%2F{IFACE}%3F"
        )),
        "{keys}"
    );
    assert!(
        key.contains("%26weight%3D200") && key.contains("%26threads%3D150"),
        "{key}"
    );
    let value = lines.next().unwrap_or_default();
    assert!(
        value.parse::<i64>().is_ok_and(|l| l > 0),
        "the value is the lease id: {keys}"
    );
    assert!(!etcdctl(&etcd, &["get", &format!("/dubbo/{IFACE}")])
        .trim()
        .is_empty());

    // Lose the lease behind the agent's back: it must put itself back, under a new lease.
    let leases = etcdctl(&etcd, &["lease", "list"]);
    let old: Vec<&str> = leases
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(old.len(), 1, "{leases}");
    etcdctl(&etcd, &["lease", "revoke", old[0]]);
    wait_until(
        "re-registration under a new lease",
        Duration::from_secs(10),
        || {
            let now = etcdctl(&etcd, &["lease", "list"]);
            registered(&w, port)
                && now
                    .lines()
                    .skip(1)
                    .any(|l| !l.trim().is_empty() && l.trim() != old[0])
        },
    );

    // Planned stop: the registration goes away, the process exits cleanly.
    let t0 = Instant::now();
    let done = agent.terminate().unwrap();
    assert!(done.status.success() && !done.killed, "{:?}", done.status);
    assert!(t0.elapsed() < Duration::from_secs(8));
    wait_until("deregistration", Duration::from_secs(5), || !registered(&w, port));
    assert!(etcdctl(
        &etcd,
        &[
            "get",
            "--prefix",
            &format!("/dubbo/{IFACE}/providers/"),
            "--keys-only"
        ]
    )
    .trim()
    .is_empty());
}

#[test]
fn http_through_both_agents_to_the_sofa_rpc_node_provider() {
    let (_node, node_port) = sofa_rpc_node_provider();

    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, node_port, &["--no-register"]);
    let _consumer = consumer_agent(ca, &["--provider", &addr(pa).to_string()]);

    for p in ["", "hello", "中文字符串", "x\u{1F600}y", &"Ab9".repeat(341)] {
        let (status, body) = call(ca, IFACE, p);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, mesh_dubbo::java_string_hash(p).to_string(), "param {p:?}");
    }
    // The provider's own error comes back as a 5xx naming its Dubbo status.
    let (status, body) = call(ca, "com.example.Missing", "x");
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("80 SERVER_ERROR") && body.contains("not found service"),
        "{body}"
    );
}

#[test]
fn fastjson_provider_under_load_answers_every_call() {
    let (mut sim, sim_port) = sim(&["--latency-ms", "5", "--serialization", "fastjson"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register", "--serialization", "fastjson"]);
    let _consumer = consumer_agent(ca, &["--provider", &addr(pa).to_string()]);
    let mut cfg = http_load(ca, 32, 3);
    cfg.warmup = Duration::from_millis(500);
    let s = run_blocking(cfg, 1).unwrap();
    assert_eq!(s.error_count(), 0, "{:?}", s.errors);
    assert!(s.ok > 100, "{s:?}");
    let stats = sim.terminate().unwrap().stdout;
    assert!(stats.contains("\"served\""), "{stats}");
}

#[test]
fn providers_joining_and_leaving_mid_run_lose_no_request() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (mut sim_a, port_a) = sim(&["--latency-ms", "10", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "10", "--name", "b"]);
    let (pa, pb, ca) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let mut agent_a = provider_agent(pa, port_a, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("provider a registered", Duration::from_secs(10), || {
        registered(&w, pa)
    });
    let _consumer = consumer_agent(ca, &["--etcd", &url]);

    let cfg = http_load(ca, 32, 7);
    let load = std::thread::spawn(move || run_blocking(cfg, 1).unwrap());

    std::thread::sleep(Duration::from_secs(2));
    let _agent_b = provider_agent(pb, port_b, &["--etcd", &url]);
    wait_until("provider b registered", Duration::from_secs(10), || {
        registered(&w, pb)
    });
    std::thread::sleep(Duration::from_secs(1));
    // Planned stop of a, under load.
    let done = agent_a.terminate().unwrap();
    assert!(done.status.success(), "{:?}", done.status);

    let s = load.join().unwrap();
    assert_eq!(
        s.error_count(),
        0,
        "requests failed while providers joined and left: {:?}",
        s.errors
    );
    assert!(s.ok > 500, "{s:?}");
    let served = |g: &mut ChildGuard| -> u64 {
        let out = g.terminate().unwrap().stdout;
        let line = out
            .lines()
            .rev()
            .find(|l| l.contains("\"served\""))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["served"]
            .as_u64()
            .unwrap()
    };
    let (a, b) = (served(&mut sim_a), served(&mut sim_b));
    assert!(a > 0 && b > 0, "both providers served calls: a {a}, b {b}");
}

/// Sends raw bytes on one connection and reads until `n` HTTP responses have arrived (or EOF).
fn raw_exchange(port: u16, bytes: &[u8], n: usize) -> Vec<(u16, String)> {
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        // Parse every complete response in the buffer.
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, rest)) = text.split_once("\r\n\r\n") else {
                break;
            };
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if rest.len() < len {
                break;
            }
            out.push((head[9..12].parse().unwrap(), rest[..len].to_owned()));
            buf.drain(..head.len() + 4 + len);
        }
        if out.len() >= n {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    out
}

fn form_request(param: &str, extra_headers: &str) -> String {
    let body = format!(
        "interface={IFACE}&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter={param}"
    );
    format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn http_front_pipelines_in_order_and_maps_errors_to_statuses() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let _consumer = consumer_agent(
        ca,
        &[
            "--provider",
            &addr(pa).to_string(),
            "--request-timeout-ms",
            "1500",
        ],
    );

    // Three pipelined requests in one write (the middle one percent-encoded): three answers, in order.
    let mut wire = String::new();
    for p in ["a", "hello%20world%21", "Zz9"] {
        wire.push_str(&form_request(p, ""));
    }
    let got = raw_exchange(ca, wire.as_bytes(), 3);
    let want: Vec<(u16, String)> = ["a", "hello world!", "Zz9"]
        .iter()
        .map(|p| (200, mesh_dubbo::java_string_hash(p).to_string()))
        .collect();
    assert_eq!(got, want);

    // A chunked body works; a malformed request is a 400 with a reason; an oversize one a 413 (decided
    // from the header, before the body is sent); a GET a 405.
    let body =
        format!("interface={IFACE}&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=hi");
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    assert_eq!(
        raw_exchange(ca, chunked.as_bytes(), 1),
        vec![(200, mesh_dubbo::java_string_hash("hi").to_string())]
    );
    let bad = raw_exchange(ca, b"GARBAGE\r\n\r\n", 1);
    assert_eq!(bad[0].0, 400, "{bad:?}");
    let big = raw_exchange(
        ca,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
        1,
    );
    assert_eq!(big[0].0, 413, "{big:?}");
    let get = raw_exchange(ca, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    assert_eq!(get[0].0, 405, "{get:?}");
    let form = raw_exchange(ca, form_request("x&parameter=y", "").as_bytes(), 1);
    assert_eq!(form[0].0, 400, "two parameters for one type: {form:?}");
}

#[test]
fn upstream_failures_map_to_502_503_504() {
    // A provider agent whose local provider is slower than the consumer's timeout: 504.
    let (_slow, slow_port) = sim(&["--latency-ms", "3000"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, slow_port, &["--no-register"]);
    let _consumer = consumer_agent(
        ca,
        &["--provider", &addr(pa).to_string(), "--request-timeout-ms", "300"],
    );
    let (status, body) = call(ca, IFACE, "x");
    assert_eq!(status, 504, "{body}");

    // A provider agent that is not running: 503 (the call never reached anyone).
    let dead = free_port().unwrap();
    let cb = free_port().unwrap();
    let _consumer_b = consumer_agent(cb, &["--provider", &addr(dead).to_string()]);
    let (status, body) = call(cb, IFACE, "x");
    assert_eq!(status, 503, "{body}");

    // A provider agent whose local provider is gone: the agent answers status 60, the consumer 503.
    let (pc, cc) = (free_port().unwrap(), free_port().unwrap());
    let gone = free_port().unwrap();
    let _provider_c = provider_agent(pc, gone, &["--no-register"]);
    let _consumer_c = consumer_agent(cc, &["--provider", &addr(pc).to_string()]);
    let (status, body) = call(cc, IFACE, "x");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("60 SERVICE_NOT_FOUND"), "{body}");
}

#[test]
fn calls_beyond_the_providers_cap_wait_instead_of_being_rejected() {
    // The provider runs 5 calls at a time (status 100 beyond that) and says so when registering; 20
    // concurrent callers must all be served, none sent to be rejected.
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (mut sim, sim_port) = sim(&["--latency-ms", "100", "--threads", "5"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--etcd", &url, "--max-concurrency", "5"]);
    let w = watch(&etcd);
    wait_until("provider registered", Duration::from_secs(10), || {
        registered(&w, pa)
    });
    let l = addr(ca).to_string();
    let _consumer = agent(&["consumer", "--listen", &l, "--etcd", &url, "--cores", "0"]);
    wait_for_port(addr(ca), Duration::from_secs(10)).unwrap();
    // First call also waits for the consumer's first snapshot.
    wait_until("consumer sees the provider", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let callers: Vec<_> = (0..20)
        .map(|i| std::thread::spawn(move || call(ca, IFACE, &format!("p{i}"))))
        .collect();
    for (i, c) in callers.into_iter().enumerate() {
        let (status, body) = c.join().unwrap();
        assert_eq!(
            (status, body),
            (200, mesh_dubbo::java_string_hash(&format!("p{i}")).to_string())
        );
    }
    let out = sim.terminate().unwrap().stdout;
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"rejected\""))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let stats: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(stats["rejected"], 0, "{line}");
    assert!(stats["max_inflight"].as_u64().unwrap() <= 5, "{line}");
}

#[test]
fn pipelined_calls_over_a_cap_of_one_are_served_back_to_back() {
    // Review finding: the second of two pipelined calls waited in the queue for the full queue timeout
    // (then 503) because nothing woke the queue when the first answer arrived.
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (_sim, sim_port) = sim(&["--latency-ms", "100", "--threads", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--etcd", &url, "--max-concurrency", "1"]);
    let w = watch(&etcd);
    wait_until("provider registered", Duration::from_secs(10), || {
        registered(&w, pa)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "[consumer]\nqueue_timeout_ms = 5000\n");
    let l = addr(ca).to_string();
    let _consumer = agent(&[
        "consumer", "--config", &cfg, "--listen", &l, "--etcd", &url, "--cores", "0",
    ]);
    wait_for_port(addr(ca), Duration::from_secs(10)).unwrap();
    wait_until("consumer sees the provider", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let t0 = Instant::now();
    let wire = format!("{}{}", form_request("one", ""), form_request("two", ""));
    let got = raw_exchange(ca, wire.as_bytes(), 2);
    let want: Vec<(u16, String)> = ["one", "two"]
        .iter()
        .map(|p| (200, mesh_dubbo::java_string_hash(p).to_string()))
        .collect();
    assert_eq!(got, want);
    // Two 100 ms calls one after the other: far below the 5 s queue timeout.
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
}

#[test]
fn continue_is_sent_once_and_http10_keep_alive_is_explicit() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let _consumer = consumer_agent(ca, &["--provider", &addr(pa).to_string()]);

    // Expect: 100-continue with the body arriving in three pieces: one interim response, then the answer.
    let body =
        format!("interface={IFACE}&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=abc");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = TcpStream::connect(addr(ca)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for piece in [&body[..10], &body[10..20], &body[20..]] {
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(piece.as_bytes()).unwrap();
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert_eq!(resp.matches("100 Continue").count(), 1, "{resp}");
    assert!(
        resp.ends_with(&mesh_dubbo::java_string_hash("abc").to_string()),
        "{resp}"
    );

    // HTTP/1.0 asking for keep-alive gets it said back, and the connection stays usable.
    let req10 = form_request("k", "Connection: keep-alive\r\n").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut s = TcpStream::connect(addr(ca)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..2 {
        s.write_all(req10.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(
            text.starts_with("http/1.1 200") && text.contains("connection: keep-alive"),
            "{text}"
        );
    }
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_the_consumer_drain() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let mut consumer = consumer_agent(
        ca,
        &[
            "--provider",
            &addr(pa).to_string(),
            "--request-timeout-ms",
            "5000",
        ],
    );
    let _idle = TcpStream::connect(addr(ca)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let done = consumer.terminate().unwrap();
    assert!(done.status.success() && !done.killed, "{:?}", done.status);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain took {:?}",
        t0.elapsed()
    );
}

/// The sum of key and value bytes under `prefix`, and the keys.
fn stored(etcd: &EtcdServer, prefix: &str) -> (usize, Vec<String>) {
    let out = etcdctl(etcd, &["get", "--prefix", prefix]);
    let lines: Vec<&str> = out.lines().collect();
    let bytes = lines.iter().map(|l| l.len()).sum();
    let keys = lines.iter().step_by(2).map(|k| k.to_string()).collect();
    (bytes, keys)
}

#[test]
fn consumer_urls_are_registered_and_simplified_urls_are_smaller() {
    let etcd = EtcdServer::start().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (full_port, simple_port, consumer_port) =
        (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let ep = etcd.client_url();
    // One directory per config file (`config_file` names it agent.toml).
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let simple_cfg = config_file(
        &dirs[0],
        &format!(
            "[etcd]\nendpoints = [\"{ep}\"]\n[provider]\nservices = [\"g/com.x.Full:1.0\"]\nsimplified = true\n\
             extra_keys = [\"zone\"]\nmax_concurrency = 40\ntag = \"blue\"\n[provider.params]\nzone = \"z1\"\nowner = \"ops\"\n"
        ),
    );
    let full_cfg = config_file(
        &dirs[1],
        &format!(
            "[etcd]\nendpoints = [\"{ep}\"]\n[provider]\nservices = [\"g/com.x.Full:1.0\"]\n\
             max_concurrency = 40\ntag = \"blue\"\n[provider.params]\nzone = \"z1\"\nowner = \"ops\"\n"
        ),
    );
    let _full = provider_agent(full_port, sim_port, &["--config", &full_cfg]);
    let _simple = provider_agent(simple_port, sim_port, &["--config", &simple_cfg]);
    let consumer_cfg = config_file(
        &dirs[2],
        &format!(
            "[etcd]\nendpoints = [\"{ep}\"]\n[consumer]\napplication = \"shop\"\n\
             register_services = [\"g/com.x.Full:1.0\"]\n"
        ),
    );
    let _consumer = consumer_agent(consumer_port, &["--config", &consumer_cfg]);
    let w = watch(&etcd);
    wait_until(
        "both providers and the consumer URL",
        Duration::from_secs(10),
        || {
            w.latest()
                .is_some_and(|s| s.endpoints("g/com.x.Full:1.0").len() == 2)
                && !stored(&etcd, "/dubbo/com.x.Full/consumers/").1.is_empty()
        },
    );
    // Both read back with the agent's settings: simplification kept what the consumer needs.
    let snap = w.latest().unwrap();
    for e in snap.endpoints("g/com.x.Full:1.0") {
        assert_eq!(
            (e.max_concurrency, e.tag.as_deref()),
            (Some(40), Some("blue")),
            "{e:?}"
        );
        assert_eq!(e.params.get("zone").map(String::as_str), Some("z1"));
    }
    let (full_bytes, full_keys) = stored(
        &etcd,
        &format!("/dubbo/com.x.Full/providers/dubbo%3A%2F%2F127.0.0.1%3A{full_port}%2F"),
    );
    let (simple_bytes, simple_keys) = stored(
        &etcd,
        &format!("/dubbo/com.x.Full/providers/dubbo%3A%2F%2F127.0.0.1%3A{simple_port}%2F"),
    );
    assert_eq!((full_keys.len(), simple_keys.len()), (1, 1));
    for dropped in [
        "methods%3D",
        "owner%3D",
        "generic%3D",
        "dynamic%3D",
        "timestamp%3D",
    ] {
        assert!(
            !simple_keys[0].contains(dropped),
            "{dropped} in {}",
            simple_keys[0]
        );
    }
    eprintln!(
        "bytes in etcd per provider (key + value): full {full_bytes}, simplified {simple_bytes} ({:.0} % saved)",
        100.0 * (1.0 - simple_bytes as f64 / full_bytes as f64)
    );
    assert!(simple_bytes < full_bytes);
    let (_, consumer_keys) = stored(&etcd, "/dubbo/com.x.Full/consumers/");
    assert_eq!(consumer_keys.len(), 1);
    assert!(
        consumer_keys[0]
            .starts_with("/dubbo/com.x.Full/consumers/consumer%3A%2F%2F127.0.0.1%2Fcom.x.Full%3F")
            && consumer_keys[0].contains("application%3Dshop")
            && consumer_keys[0].contains("category%3Dconsumers"),
        "{consumer_keys:?}"
    );
    // The consumer URL is not a provider: the consumer's own snapshot lists the two providers only.
    assert_eq!(w.latest().unwrap().endpoint_count(), 2);
}
