//! The consumer agent's Dubbo port end to end, with real processes (etcd, the provider simulator, provider
//! agents, the consumer agent): a Dubbo client talks to the consumer agent as if it were the provider.
//! Loopback only; every wait is bounded; every process is stopped when its guard drops.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_dubbo::{
    java_string_hash, Body, Codec, Decoded, Frame, Header, RequestHead, Response, RpcResult, Serialization,
    Status, Value,
};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::{free_port, wait_for_port, ChildGuard};
use mesh_testkit::sim::encode_hash_request;

mod common;
use common::*;

/// A Dubbo client connection to the consumer agent's Dubbo port.
struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(addr(port)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            buf: BytesMut::new(),
        }
    }

    fn send(&mut self, frames: &[u8]) {
        self.s.write_all(frames).unwrap();
    }

    /// The next frame within `limit`, or `None` when the connection closed or nothing came.
    fn read(&mut self, limit: Duration) -> Option<Frame> {
        let codec = Codec::default();
        self.s.set_read_timeout(Some(limit)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Ok(Decoded::Frame(f)) = codec.decode_frame(&mut self.buf) {
                return Some(f);
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// One call, answered: (status, the result as text or the error message).
    fn call(&mut self, frame: &[u8]) -> (Status, String) {
        self.send(frame);
        let f = self.read(Duration::from_secs(10)).expect("an answer");
        answer(&f)
    }
}

/// A Java 2.7 consumer's `hash(arg)` request.
fn hash(id: u64, arg: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_hash_request(&Codec::default(), &mut buf, id, Serialization::Hessian2, arg).unwrap();
    buf
}

/// A `hash("x")` request to any service key, two-way or not.
fn request(id: u64, interface: &str, group: Option<&str>, version: Option<&str>, two_way: bool) -> BytesMut {
    let group: Vec<(&str, &str)> = group.map(|g| ("group", g)).into_iter().collect();
    request_with(id, interface, version, two_way, "x", &group)
}

/// A `hash(arg)` request with the attachments `path`, `interface` and `extra`.
fn request_with(
    id: u64,
    interface: &str,
    version: Option<&str>,
    two_way: bool,
    arg: &str,
    extra: &[(&str, &str)],
) -> BytesMut {
    let head = RequestHead {
        dubbo_version: "2.0.2",
        service: interface,
        version: Some(version.unwrap_or("0.0.0")),
        method: "hash",
        param_types: "Ljava/lang/String;",
    };
    let path = Value::str(interface);
    let values: Vec<Value<'_>> = extra.iter().map(|(_, v)| Value::str(v)).collect();
    let mut atts = vec![("path", &path), ("interface", &path)];
    for ((k, _), v) in extra.iter().zip(&values) {
        atts.push((k, v));
    }
    let mut buf = BytesMut::new();
    Codec::default()
        .encode_request(
            &mut buf,
            Header::request(id, Serialization::Hessian2, two_way),
            &head,
            &[Value::str(arg)],
            atts,
        )
        .unwrap();
    buf
}

/// An answer's status and its result as text (an int in decimal) or its error message.
fn answer(f: &Frame) -> (Status, String) {
    let text = match Codec::default().decode_body(&f.header, &f.body).unwrap() {
        Body::Response(Response::Ok {
            result: RpcResult::Value(Value::Int(i)),
            ..
        }) => i.to_string(),
        Body::Response(Response::Error { message, .. }) => message.into_owned(),
        other => format!("{other:?}"),
    };
    (f.header.status, text)
}

fn consumer_with_dubbo_port(extra: &[&str]) -> (ChildGuard, u16, u16) {
    let (http, dubbo) = (free_port().unwrap(), free_port().unwrap());
    let d = addr(dubbo).to_string();
    let mut args = vec!["--dubbo-listen", d.as_str()];
    args.extend_from_slice(extra);
    let g = consumer_agent(http, &args);
    wait_for_port(addr(dubbo), Duration::from_secs(10)).unwrap();
    (g, http, dubbo)
}

#[test]
fn a_dubbo_client_calls_providers_found_in_etcd_through_the_consumers_port() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (mut sim, sim_port) = sim(&["--latency-ms", "5"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("the provider registered", Duration::from_secs(10), || {
        registered(&w, pa)
    });
    let (_consumer, http, port) = consumer_with_dubbo_port(&["--etcd", &url]);
    let mut served = 0u64;
    wait_until("the consumer routes", Duration::from_secs(10), || {
        let ok = call(http, IFACE, "warm").0 == 200;
        served += u64::from(ok);
        ok
    });

    let mut c = Client::connect(port);
    // The provider's answer, with the client's own id (Java 3.x ids may be negative: any 64 bits).
    for (id, arg) in [(42u64, "hello"), (u64::MAX - 3, "中文"), (0, "")] {
        c.send(&hash(id, arg));
        let f = c.read(Duration::from_secs(10)).unwrap();
        assert_eq!(f.header.id, id);
        assert_eq!(answer(&f), (Status::OK, java_string_hash(arg).to_string()));
        served += 1;
    }

    // A heartbeat is answered by the agent with the same id.
    let mut hb = BytesMut::new();
    Codec::default().encode_heartbeat(&mut hb, 7, Serialization::Hessian2, true);
    c.send(&hb);
    let f = c.read(Duration::from_secs(5)).unwrap();
    assert_eq!((f.header.id, f.header.status), (7, Status::OK));
    assert!(f.header.is_event() && !f.header.is_request());

    // Pipelined: 64 calls in one write; every answer comes back under its own id.
    let mut batch = BytesMut::new();
    let mut want = HashMap::new();
    for id in 1000..1064u64 {
        let arg = format!("p{id}");
        batch.extend_from_slice(&hash(id, &arg));
        want.insert(id, java_string_hash(&arg).to_string());
    }
    c.send(&batch);
    for _ in 0..64 {
        let f = c.read(Duration::from_secs(10)).unwrap();
        let expected = want.remove(&f.header.id).expect("an id of the batch, once");
        assert_eq!(answer(&f), (Status::OK, expected));
    }
    served += 64;

    // A one-way call is sent on and not answered: the next answer is the next two-way call's.
    c.send(&request(5000, IFACE, None, None, false));
    c.send(&hash(5001, "after one-way"));
    let f = c.read(Duration::from_secs(10)).unwrap();
    assert_eq!(f.header.id, 5001);
    served += 2;

    // No provider: status 70 naming the service key, as the HTTP path builds it.
    let (status, why) = c.call(&request(
        6000,
        "com.example.Missing",
        Some("g"),
        Some("1.0"),
        true,
    ));
    assert_eq!(status, Status::SERVICE_ERROR, "{why}");
    assert!(why.contains("g/com.example.Missing:1.0"), "{why}");
    let (status, why) = c.call(&request(6001, "com.example.Missing", None, None, true));
    assert_eq!(status, Status::SERVICE_ERROR, "{why}");
    assert!(why.contains("service com.example.Missing"), "{why}");
    // The connection still serves.
    assert_eq!(c.call(&hash(6002, "still")).0, Status::OK);
    served += 1;

    // A frame over the size limit: status 40 with its id, then the connection closes.
    let mut huge = BytesMut::new();
    Header {
        body_len: 0x7fff_ffff,
        ..Header::request(6003, Serialization::Hessian2, true)
    }
    .write(&mut huge);
    c.send(&huge);
    let f = c.read(Duration::from_secs(5)).unwrap();
    assert_eq!((f.header.id, f.header.status), (6003, Status::BAD_REQUEST));
    assert!(
        c.read(Duration::from_secs(5)).is_none(),
        "closed after a broken frame"
    );

    assert_eq!(common::served(&mut sim), served);
}

#[test]
fn timeouts_and_overload_become_the_statuses_dubbo_clients_know() {
    let (_slow, slow_port) = sim(&["--latency-ms", "3000"]);
    let pa = free_port().unwrap();
    let _slow_agent = provider_agent(pa, slow_port, &["--no-register"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        "[consumer]\nrequest_timeout_ms = 300\n[consumer.services.\"a.Limited\"]\nrate_limit = 1\n",
    );
    let (_consumer, _, port) =
        consumer_with_dubbo_port(&["--provider", &addr(pa).to_string(), "--config", &cfg]);
    let mut c = Client::connect(port);
    // No answer within the call's timeout: 31 (SERVER_TIMEOUT), in about the timeout.
    let t0 = Instant::now();
    let (status, why) = c.call(&hash(1, "slow"));
    assert_eq!(status, Status::SERVER_TIMEOUT, "{why}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // Over the rate limit (1 call/s over both shards): 100 (SERVER_THREADPOOL_EXHAUSTED_ERROR). The
    // first call may pass (and time out: the slow provider serves every key here).
    let answers: Vec<(Status, String)> = (0..4)
        .map(|i| c.call(&request(10 + i, "a.Limited", None, None, true)))
        .collect();
    let limited: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == Status::SERVER_THREADPOOL_EXHAUSTED)
        .collect();
    assert!(!limited.is_empty(), "{answers:?}");
    assert!(limited[0].1.contains("rate limit"), "{answers:?}");
}

#[test]
fn calls_fail_over_when_a_provider_agent_is_killed() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (_sim_a, port_a) = sim(&["--latency-ms", "10", "--name", "a"]);
    let (_sim_b, port_b) = sim(&["--latency-ms", "10", "--name", "b"]);
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let agent_a = provider_agent(pa, port_a, &["--etcd", &url]);
    let _agent_b = provider_agent(pb, port_b, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("both providers registered", Duration::from_secs(10), || {
        registered(&w, pa) && registered(&w, pb)
    });
    let (_consumer, http, port) = consumer_with_dubbo_port(&["--etcd", &url]);
    wait_until("the consumer routes", Duration::from_secs(10), || {
        call(http, IFACE, "warm").0 == 200
    });
    // Batches of pipelined calls for 3 s; provider agent A is killed (no drain, its lease stays) after 1 s.
    let client = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        let t0 = Instant::now();
        let mut id = 0u64;
        let mut bad = Vec::new();
        while t0.elapsed() < Duration::from_secs(3) {
            let mut batch = BytesMut::new();
            let mut want = HashMap::new();
            for _ in 0..16 {
                id += 1;
                let arg = format!("f{id}");
                batch.extend_from_slice(&hash(id, &arg));
                want.insert(id, java_string_hash(&arg).to_string());
            }
            c.send(&batch);
            for _ in 0..16 {
                let f = c.read(Duration::from_secs(10)).expect("an answer");
                let got = answer(&f);
                if want.remove(&f.header.id) != Some(got.1.clone()) || got.0 != Status::OK {
                    bad.push((f.header.id, got));
                }
            }
        }
        (id, bad)
    });
    std::thread::sleep(Duration::from_secs(1));
    agent_a.signal("KILL").unwrap();
    let (calls, bad) = client.join().unwrap();
    assert!(calls > 100, "{calls} calls");
    assert!(bad.is_empty(), "{} of {calls} calls failed: {bad:?}", bad.len());
}

#[test]
fn condition_rules_see_the_dubbo_calls_arguments_and_attachments() {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (mut sim_a, port_a) = sim(&["--latency-ms", "1", "--name", "a"]);
    let (mut sim_b, port_b) = sim(&["--latency-ms", "1", "--name", "b"]);
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let _agent_a = provider_agent(pa, port_a, &["--etcd", &url]);
    let _agent_b = provider_agent(pb, port_b, &["--etcd", &url]);
    let w = watch(&etcd);
    wait_until("both providers registered", Duration::from_secs(10), || {
        registered(&w, pa) && registered(&w, pb)
    });
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        "{{\"conditions\": [\"arguments[0] = left => port = {pa}\", \"attachments[user] = bob => port = {pb}\"]}}"
    );
    let cfg = config_file(&dir, &format!("[consumer.routing]\n\"{IFACE}\" = '{rules}'\n"));
    let (_consumer, _, port) = consumer_with_dubbo_port(&["--etcd", &url, "--config", &cfg]);
    let mut c = Client::connect(port);
    let mut id = 0;
    let mut warm = 0;
    wait_until("the consumer routes", Duration::from_secs(10), || {
        id += 1;
        let ok = c.call(&request_with(id, IFACE, None, true, "left", &[])).0 == Status::OK;
        warm += u64::from(ok);
        ok
    });
    // One kind after the other: a balancer alternating over a and b cannot pass for the rules.
    for _ in 0..20 {
        id += 1;
        assert_eq!(
            c.call(&request_with(id, IFACE, None, true, "left", &[])).0,
            Status::OK
        );
    }
    for _ in 0..20 {
        id += 1;
        let bob = request_with(id, IFACE, None, true, "right", &[("user", "bob")]);
        assert_eq!(c.call(&bob).0, Status::OK);
    }
    assert_eq!(
        (common::served(&mut sim_a), common::served(&mut sim_b)),
        (warm + 20, 20)
    );
}

#[test]
fn on_stop_the_client_hears_readonly_and_gets_its_answers_before_the_close() {
    let (_sim, sim_port) = sim(&["--latency-ms", "600"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--no-register"]);
    let (mut consumer, _, port) = consumer_with_dubbo_port(&["--provider", &addr(pa).to_string()]);
    let mut c = Client::connect(port);
    assert_eq!(c.call(&hash(1, "before")).0, Status::OK);
    c.send(&hash(2, "in flight"));
    std::thread::sleep(Duration::from_millis(150));
    consumer.signal_term().unwrap();
    let t0 = Instant::now();
    let mut frames = Vec::new();
    while let Some(f) = c.read(Duration::from_secs(5)) {
        frames.push(f);
    }
    // The connection closed after the answer: the reads ended on EOF, not on their 5 s timeout.
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let readonly = frames
        .iter()
        .position(|f| f.header.is_request() && f.header.is_event())
        .expect("a READONLY event");
    let body = Codec::default()
        .decode_body(&frames[readonly].header, &frames[readonly].body)
        .unwrap();
    assert_eq!(body, Body::Event(mesh_dubbo::Event::ReadOnly));
    let answered: Vec<_> = frames.iter().filter(|f| !f.header.is_event()).collect();
    assert_eq!(answered.len(), 1, "{frames:?}");
    assert_eq!(answered[0].header.id, 2);
    assert_eq!(
        answer(answered[0]),
        (Status::OK, java_string_hash("in flight").to_string())
    );
    let done = consumer.terminate().unwrap();
    assert!(done.status.success(), "{:?}", done.status);
}

#[test]
fn the_agents_token_goes_with_each_dubbo_call_replacing_a_clients_own() {
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let pa = free_port().unwrap();
    let _provider = provider_agent(pa, sim_port, &["--no-register", "--token", "s3cret"]);
    let (_consumer, _, port) =
        consumer_with_dubbo_port(&["--provider", &addr(pa).to_string(), "--token", "s3cret"]);
    let mut c = Client::connect(port);
    // Spliced into the client's attachments (passed through otherwise unchanged).
    let (status, text) = c.call(&request_with(1, IFACE, None, true, "t", &[]));
    assert_eq!((status, text), (Status::OK, java_string_hash("t").to_string()));
    // The client's own token (and timeout) kept only where the agent has nothing to say: a different
    // token is replaced (the request is written again), the same one passed through.
    for (id, theirs) in [(2, "guess"), (3, "s3cret")] {
        let with_token = request_with(
            id,
            IFACE,
            None,
            true,
            "u",
            &[("token", theirs), ("timeout", "4000")],
        );
        let (status, text) = c.call(&with_token);
        assert_eq!(status, Status::OK, "client token {theirs}: {text}");
    }
    // Without the agent's token the provider agent refuses (the check is real).
    let (_plain, _, other) = consumer_with_dubbo_port(&["--provider", &addr(pa).to_string()]);
    let (status, text) = Client::connect(other).call(&hash(4, "t"));
    assert_eq!(status, Status::BAD_REQUEST, "{text}");
    assert!(text.contains("Invalid token"), "{text}");
}
