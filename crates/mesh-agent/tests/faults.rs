//! Faults, overload and hostile input (issue 5), with real processes: a provider agent killed with
//! SIGKILL under load, etcd stopped and restarted under load, providers that answer slowly, never, with
//! status 100 or with garbage, malformed and trickled HTTP, malformed Dubbo frames, and the token between
//! agents. Each ends with every request answered (a success or a clear error, never a hang) and the agent
//! still serving. Loopback only; every wait is bounded; processes are stopped when their guards drop.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_dubbo::{Body, Codec, Decoded, Header, Response, RpcResult, Serialization, Status, Value};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::loadgen::{run_blocking, Summary};
use mesh_testkit::process::{free_port, ChildGuard};

mod common;
use common::*;

/// Every call sent got an answer: counted as ok or as a failure of some kind (loadgen's timeout would be
/// a failure kind of its own, so "answered" also means no `timeout`).
fn all_answered(s: &Summary) {
    assert_eq!(s.sent, s.ok + s.error_count(), "{s:?}");
    assert_eq!(s.errors_of("timeout"), 0, "calls hung: {s:?}");
}

fn sim_stats(g: &mut ChildGuard) -> serde_json::Value {
    let out = g.terminate().unwrap().stdout;
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"served\""))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn sigkill_of_a_provider_agent_under_load_loses_no_request() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (_sim_a, port_a) = sim(&["--latency-ms", "10", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "10", "--name", "b"]);
    let (pa, pb, ca) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let agent_a = provider_agent(pa, port_a, &["--etcd", &url]);
    let _agent_b = provider_agent(pb, port_b, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("both providers registered", Duration::from_secs(10), || {
        registered(&w, pa) && registered(&w, pb)
    });
    let _consumer = consumer_agent(ca, &["--etcd", &url]);
    wait_until("consumer serves", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let run = std::thread::spawn(move || run_blocking(http_load(ca, 32, 6), 1).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    // No deregistration, no drain: the lease stays in etcd for its TTL while the port is dead.
    agent_a.signal("KILL").unwrap();
    let s = run.join().unwrap();
    all_answered(&s);
    // Calls in flight on the dead connection are retried elsewhere (the service is idempotent), new
    // calls to the dead address fail to connect and go elsewhere, then the provider is ejected.
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!(s.ok > 1000, "{s:?}");
    assert_eq!(call(ca, IFACE, "after").0, 200);
    assert!(sim_stats(&mut sim_b)["served"].as_u64().unwrap() > 500);
}

#[test]
fn etcd_stopped_and_restarted_under_load_loses_no_request_and_registration_returns() {
    let mut etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (_sim, sim_port) = sim(&["--latency-ms", "5"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // A short lease: it expires while etcd is away, so the provider must register again on its return.
    let cfg = config_file(&dir, "[etcd]\nlease_ttl_s = 2\n");
    let _agent = provider_agent(pa, sim_port, &["--etcd", &url, "--config", &cfg]);
    {
        let w = watch(&etcd);
        wait_until("provider registered", Duration::from_secs(10), || {
            registered(&w, pa)
        });
    }
    let _consumer = consumer_agent(ca, &["--etcd", &url]);
    wait_until("consumer serves", Duration::from_secs(10), || {
        call(ca, IFACE, "warm").0 == 200
    });

    let run = std::thread::spawn(move || run_blocking(http_load(ca, 16, 8), 1).unwrap());
    std::thread::sleep(Duration::from_secs(1));
    etcd.stop().unwrap();
    // Longer than the lease TTL: the lease is gone when etcd comes back.
    std::thread::sleep(Duration::from_secs(4));
    etcd.restart().unwrap();
    let s = run.join().unwrap();
    all_answered(&s);
    assert_eq!(s.error_count(), 0, "calls failed during the etcd outage: {s:?}");
    // Back in the registry without a restart of anything.
    let w = watch(&etcd);
    wait_until("provider registered again", Duration::from_secs(15), || {
        registered(&w, pa)
    });
    assert_eq!(call(ca, IFACE, "after").0, 200);
}

/// A TCP server that accepts connections and reads everything, answering nothing (a hung provider).
fn black_hole() -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => conns.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            for c in &mut conns {
                let _ = c.set_nonblocking(true);
                let mut b = [0u8; 4096];
                let _ = c.read(&mut b);
            }
        }
    });
    (port, stop)
}

#[test]
fn a_provider_that_never_answers_is_ejected_and_every_call_is_answered() {
    // Round robin keeps sending its share to the silent provider until ejection takes it out; the
    // adaptive balancer (the default) also learns from the timeouts and the in-flight pile-up.
    for balancer in ["round_robin", "adaptive"] {
        silent_provider_case(balancer);
    }
}

fn silent_provider_case(balancer: &str) {
    let (_sim, sim_port) = sim(&["--latency-ms", "2"]);
    let (hole, stop) = black_hole();
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _good = provider_agent(pa, sim_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        &format!(
            "[consumer]\neject_failures = 3\neject_base_ms = 1000\nrequest_timeout_ms = 300\nheartbeat_ms = 0\n\
             balancer = \"{balancer}\"\n"
        ),
    );
    let providers = format!("{},{}", addr(pa), addr(hole));
    let _consumer = consumer_agent(ca, &["--provider", &providers, "--config", &cfg]);

    let started = Instant::now();
    let mut statuses = Vec::new();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..60)
                    .map(|i| {
                        let t0 = Instant::now();
                        let (status, body) = call(ca, IFACE, &format!("{t}-{i}"));
                        (status, body, t0.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        statuses.extend(w.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let timeouts = statuses.iter().filter(|(s, _, _)| *s == 504).count();
    let ok = statuses.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(
        ok + timeouts,
        statuses.len(),
        "{balancer}: only 200 or 504: {statuses:?}"
    );
    // Never longer than the call timeout plus slack: nobody hangs on the silent provider.
    assert!(
        statuses.iter().all(|(_, _, t)| *t < Duration::from_secs(2)),
        "{balancer}: {statuses:?}"
    );
    // The silent provider costs the calls that eject it (3, plus those already sent to it by the other
    // callers) and one probe per expired ejection (1 s, then 2 s, ...), not a share of all calls.
    assert!(
        timeouts <= 16,
        "{balancer}: {timeouts} timeouts of {} in {:?}",
        statuses.len(),
        started.elapsed()
    );
    let least = if balancer == "round_robin" { 3 } else { 1 };
    assert!(
        timeouts >= least,
        "{balancer}: the silent provider was never tried? {timeouts}"
    );
}

#[test]
fn heartbeats_find_a_silent_connection_and_idempotent_calls_move_on() {
    // With heartbeats every 200 ms a connection that answers nothing is declared dead after 600 ms; the
    // calls on it are retried on the good provider, so callers with a 5 s timeout never see an error.
    let (_sim, sim_port) = sim(&["--latency-ms", "2"]);
    let (hole, stop) = black_hole();
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _good = provider_agent(pa, sim_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        "[consumer]\nheartbeat_ms = 200\nrequest_timeout_ms = 5000\n",
    );
    let providers = format!("{},{}", addr(pa), addr(hole));
    let _consumer = consumer_agent(ca, &["--provider", &providers, "--config", &cfg]);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let t0 = Instant::now();
                        (call(ca, IFACE, &format!("{t}-{i}")).0, t0.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(all.iter().all(|(s, _)| *s == 200), "{all:?}");
    // Calls that went to the silent provider waited for the heartbeat verdict, not for the 5 s timeout.
    assert!(
        all.iter().all(|(_, t)| *t < Duration::from_millis(2500)),
        "{all:?}"
    );
}

#[test]
fn a_provider_answering_status_100_is_learnt_and_no_call_fails() {
    // The provider runs 4 calls at a time and does not say so: the consumer learns the limit from its
    // status-100 rejections and puts rejected calls back in its queue. One consumer shard: two shards learn
    // two limits independently over the same 4 threads and keep probing into each other's share, which on
    // a loaded box left a rejection for every 3-4 calls served (seen on the base commit too); what is
    // checked here is that one learnt limit stops the rejections.
    let (mut sim, sim_port) = sim(&["--latency-ms", "20", "--threads", "4"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "[consumer]\nretries = 10\n");
    let provider = addr(pa).to_string();
    let _consumer = consumer_agent(ca, &["--provider", &provider, "--config", &cfg, "--shards", "1"]);
    let s = run_blocking(http_load(ca, 16, 4), 1).unwrap();
    all_answered(&s);
    let stats = sim_stats(&mut sim);
    let (served, rejected) = (
        stats["served"].as_u64().unwrap(),
        stats["rejected"].as_u64().unwrap(),
    );
    assert!(
        rejected > 0,
        "the provider never rejected: the test does not test anything: {stats}"
    );
    assert!(s.ok > 500, "{s:?}");
    // Rejections fall once the limit is learnt: far fewer than calls served.
    assert!(rejected * 4 < served, "served {served}, rejected {rejected}");
    // Only 503s (a call rejected more than `retries` times), no other kind of failure.
    assert!(s.errors.keys().all(|k| k.contains("503")), "{s:?}");
    assert!(s.error_count() * 100 <= s.sent, "{s:?}");
}

/// Reads one HTTP response (head + Content-Length body) within `limit`; None on EOF or timeout.
fn read_response(s: &mut TcpStream, limit: Duration) -> Option<(u16, String)> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Some((head[9..12].parse().unwrap(), body));
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn malformed_and_trickled_http_get_clear_errors_and_the_agent_keeps_serving() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        "[consumer]\nrequest_read_timeout_ms = 600\nmax_body_bytes = 2048\nidle_timeout_ms = 1500\n",
    );
    let _consumer = consumer_agent(ca, &["--provider", &addr(pa).to_string(), "--config", &cfg]);
    let cases: [(&str, &[u8], u16); 5] = [
        (
            "request-line garbage",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            400,
        ),
        ("no method", b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (
            "oversize body",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n",
            413,
        ),
        (
            "header without colon",
            b"POST / HTTP/1.1\r\nHost x\r\nContent-Length: 0\r\n\r\n",
            400,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = TcpStream::connect(addr(ca)).unwrap();
        s.write_all(bytes).unwrap();
        let (status, body) =
            read_response(&mut s, Duration::from_secs(5)).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, want, "{what}: {body}");
        assert!(!body.is_empty(), "{what}: the error says why");
    }
    // Slowloris: 20 connections trickling a header byte every 100 ms. Each gets 408 once 600 ms have
    // passed since its first byte and is closed; a normal caller is served meanwhile.
    let trickles: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr(ca)).unwrap();
                s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
                let t0 = Instant::now();
                let _ = s.set_nonblocking(true);
                let mut answer = Vec::new();
                // Read before each write, and stop writing once the answer has come: a write after the
                // agent closed would make the kernel reset the connection.
                let mut closed = false;
                while t0.elapsed() < Duration::from_secs(5) && !closed {
                    let mut b = [0u8; 1024];
                    loop {
                        match s.read(&mut b) {
                            Ok(0) => {
                                closed = true;
                                break;
                            }
                            Ok(n) => answer.extend_from_slice(&b[..n]),
                            Err(_) => break,
                        }
                    }
                    if closed || !answer.is_empty() {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    if s.write_all(b"a").is_err() {
                        // Closed under our feet: what was sent before the close is still readable.
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut rest = Vec::new();
                        let _ = s.read_to_end(&mut rest);
                        answer.extend_from_slice(&rest);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (String::from_utf8_lossy(&answer).into_owned(), t0.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        call(ca, IFACE, "meanwhile"),
        (200, mesh_dubbo::java_string_hash("meanwhile").to_string())
    );
    for t in trickles {
        let (answer, took) = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    }
    assert_eq!(call(ca, IFACE, "after").0, 200);
    // A connection that sends nothing is closed after idle_timeout_ms (the shard's timer).
    let mut idle = TcpStream::connect(addr(ca)).unwrap();
    let t0 = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(idle.read(&mut b).unwrap_or(0), 0, "closed without an answer");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
}

/// A hash call to a provider agent as a consumer agent would send it, with extra attachments.
fn hash_request(id: u64, arg: &str, extra: &[(&str, &str)]) -> BytesMut {
    let codec = Codec::default();
    let head = mesh_dubbo::RequestHead {
        dubbo_version: "2.0.2",
        service: IFACE,
        version: Some("0.0.0"),
        method: "hash",
        param_types: "Ljava/lang/String;",
    };
    let path = Value::str(IFACE);
    let values: Vec<Value<'_>> = extra.iter().map(|(_, v)| Value::str(v)).collect();
    let mut atts: Vec<(&str, &Value<'_>)> = vec![("path", &path), ("interface", &path)];
    for ((k, _), v) in extra.iter().zip(&values) {
        atts.push((k, v));
    }
    let mut buf = BytesMut::new();
    codec
        .encode_request(
            &mut buf,
            Header::request(id, Serialization::Hessian2, true),
            &head,
            &[Value::str(arg)],
            atts,
        )
        .unwrap();
    buf
}

/// Reads one Dubbo frame within `limit`: (status, result as text or error message).
fn read_frame(s: &mut TcpStream, limit: Duration) -> Option<(u64, Status, String)> {
    read_frame_into(s, &mut BytesMut::new(), limit)
}

/// [`read_frame`] keeping what was read beyond the frame in `buf` for the next call.
fn read_frame_into(s: &mut TcpStream, buf: &mut BytesMut, limit: Duration) -> Option<(u64, Status, String)> {
    let codec = Codec::default();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Decoded::Frame(f)) = codec.decode_frame(buf) {
            let text = match codec.decode_body(&f.header, &f.body).unwrap() {
                Body::Response(Response::Ok {
                    result: RpcResult::Value(Value::Int(i)),
                    ..
                }) => i.to_string(),
                Body::Response(Response::Error { message, .. }) => message.into_owned(),
                other => format!("{other:?}"),
            };
            return Some((f.header.id, f.header.status, text));
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn malformed_dubbo_frames_from_either_side_fail_cleanly() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    // Consumer side of the provider agent: bad magic, then a frame announcing 2 GiB.
    for bad in [b"\x00\x01\x02\x03garbage-garbage-garbage".to_vec(), {
        let mut h = vec![0xda, 0xbb, 0xc2, 0x00];
        h.extend_from_slice(&7u64.to_be_bytes());
        h.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        h
    }] {
        let mut s = TcpStream::connect(addr(pa)).unwrap();
        s.write_all(&bad).unwrap();
        // An error frame (best effort) and then the close: never a hang.
        let t0 = Instant::now();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut rest);
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "provider agent kept a broken connection open"
        );
    }
    // Still serving well-formed calls.
    let mut s = TcpStream::connect(addr(pa)).unwrap();
    s.write_all(&hash_request(9, "ok", &[])).unwrap();
    let (id, status, text) = read_frame(&mut s, Duration::from_secs(5)).unwrap();
    assert_eq!(
        (id, status, text),
        (9, Status::OK, mesh_dubbo::java_string_hash("ok").to_string())
    );

    // Provider side of the consumer agent: a "provider agent" answering garbage, then one answering a
    // header whose length is beyond the frame cap. The consumer answers 502 at once and keeps serving.
    for answer in [b"HTTP/1.1 200 OK\r\n\r\nnot dubbo at all".to_vec(), {
        let mut h = vec![0xda, 0xbb, 0x02, 20];
        h.extend_from_slice(&1u64.to_be_bytes());
        h.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        h
    }] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().take(8) {
                let Ok(mut s) = s else { continue };
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&answer).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let ca = free_port().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_file(&dir, "[consumer]\neject_failures = 0\n");
        let _consumer = consumer_agent(ca, &["--provider", &fake.to_string(), "--config", &cfg]);
        for i in 0..3 {
            let t0 = Instant::now();
            let (status, body) = call(ca, IFACE, &format!("x{i}"));
            // The first call gets the decoding error; the connection then counts as a failed dial and
            // the next calls may find the provider backing off (503, nothing sent) or get 502 again.
            if i == 0 {
                assert_eq!(status, 502, "{body}");
                assert!(body.contains("undecodable"), "{body}");
            } else {
                assert!(status == 502 || status == 503, "{status} {body}");
                assert!(!body.is_empty());
            }
            assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        }
    }
}

#[test]
fn the_token_between_agents_is_required() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--no-register", "--token", "s3cret"]);
    let p = addr(pa).to_string();
    let (good, wrong, none) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let _c1 = consumer_agent(good, &["--provider", &p, "--token", "s3cret"]);
    let _c2 = consumer_agent(wrong, &["--provider", &p, "--token", "guess"]);
    let _c3 = consumer_agent(none, &["--provider", &p]);
    assert_eq!(
        call(good, IFACE, "t"),
        (200, mesh_dubbo::java_string_hash("t").to_string())
    );
    for port in [wrong, none] {
        let (status, body) = call(port, IFACE, "t");
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("Invalid token"), "{body}");
    }
    // Direct Dubbo without a token: refused with status 40 and the reason.
    let mut s = TcpStream::connect(addr(pa)).unwrap();
    s.write_all(&hash_request(3, "t", &[])).unwrap();
    let (_, status, text) = read_frame(&mut s, Duration::from_secs(5)).unwrap();
    assert_eq!(status, Status::BAD_REQUEST, "{text}");
    assert!(text.contains("Invalid token"), "{text}");
}

#[test]
fn the_timeout_attachment_bounds_the_provider_agents_wait() {
    // The local provider takes 3 s; a caller saying `timeout = 200` gets status 31 after about 200 ms
    // instead of holding a slot for 3 s (the agent's own limit is 5 s).
    let (_sim, sim_port) = sim(&["--latency-ms", "3000"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let mut s = TcpStream::connect(addr(pa)).unwrap();
    let t0 = Instant::now();
    s.write_all(&hash_request(5, "slow", &[("timeout", "200")]))
        .unwrap();
    let (id, status, text) = read_frame(&mut s, Duration::from_secs(5)).unwrap();
    let took = t0.elapsed();
    assert_eq!((id, status), (5, Status::SERVER_TIMEOUT), "{text}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn a_flooding_consumer_connection_is_throttled_not_buffered_without_bound() {
    // max_inflight_per_connection = 8 against a 200 ms provider with room for 1000: 64 pipelined calls on
    // one connection are all answered, but never more than 8 at a time reach the provider.
    let (mut sim, sim_port) = sim(&["--latency-ms", "200"]);
    let pa = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "[provider]\nmax_inflight_per_connection = 8\n");
    let _provider = provider_agent(pa, sim_port, &["--no-register", "--config", &cfg]);
    let mut s = TcpStream::connect(addr(pa)).unwrap();
    let mut all = BytesMut::new();
    for id in 0..64u64 {
        all.extend_from_slice(&hash_request(id, &format!("f{id}"), &[]));
    }
    s.write_all(&all).unwrap();
    let mut got = Vec::new();
    let mut buf = BytesMut::new();
    for _ in 0..64 {
        let (id, status, _) = read_frame_into(&mut s, &mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(status, Status::OK);
        got.push(id);
    }
    got.sort_unstable();
    assert_eq!(got, (0..64).collect::<Vec<_>>());
    let stats = sim_stats(&mut sim);
    assert!(stats["max_inflight"].as_u64().unwrap() <= 8, "{stats}");
}

#[test]
fn a_service_rate_limit_answers_429_beyond_it() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let (pa, ca) = (free_port().unwrap(), free_port().unwrap());
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        &format!("[consumer.services.\"{IFACE}\"]\nrate_limit = 20\n"),
    );
    let _consumer = consumer_agent(ca, &["--provider", &addr(pa).to_string(), "--config", &cfg]);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| call(ca, IFACE, &format!("{t}-{i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<(u16, String)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let ok = all.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = all.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok + limited.len(), all.len(), "{all:?}");
    assert!(!limited.is_empty(), "160 calls at once never hit a limit of 20/s");
    assert!(
        limited[0].1.contains("rate limit of 20 calls/s"),
        "{:?}",
        limited[0]
    );
    // One second of burst plus 20 per second while the calls ran (both shards together), with slack.
    let bound = 20.0 + 20.0 * elapsed + 4.0;
    assert!(
        (ok as f64) <= bound,
        "{ok} calls passed in {elapsed:.2} s (bound {bound:.0})"
    );
}
