//! Interop with third-party Dubbo peers (npm packages pinned in tests/interop/package.json, installed by
//! `scripts/setup.sh` / `.ci/run`):
//! * frames our codec encodes are answered correctly by sofa-rpc-node + dubbo-remoting (hessian.js), and
//!   our decoder reads its answers;
//! * dubbo2.js (its own framing and hessian.js copy) calls a small server built on our codec and gets the
//!   right answers.
//!
//! Everything is on 127.0.0.1, every wait is bounded, and every child process is killed on drop.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_dubbo::{
    java_string_hash, Body, Codec, Decoded, Event, Frame, Header, List, Map, RequestHead, Response,
    RpcResult, Serialization, Status, Value,
};

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(args: &[&str]) -> Command {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/sofa-rpc-node").exists() && dir.join("node_modules/dubbo2.js").exists(),
        "the npm peers are not installed: run `bash scripts/setup.sh` (or `npm ci` in {})",
        dir.display()
    );
    let mut c = Command::new("node");
    c.args(args).current_dir(dir);
    c
}

/// Starts provider.js and returns it with its port (waits at most 20 s for `LISTENING <port>`).
fn start_provider() -> (Peer, u16) {
    let child = node(&["provider.js", "0"])
        .env("INTEROP_MAX_LIFETIME_SECS", "120")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed");
    let mut peer = Peer(child);
    let stdout = peer.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("provider did not start within 20 s");
    let port = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    (peer, port)
}

/// Reads frames until every id in `want` has an answer (at most 20 s).
fn read_answers(sock: &mut TcpStream, codec: &Codec, mut want: usize) -> HashMap<u64, Frame> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut got = HashMap::new();
    let mut chunk = [0u8; 16 * 1024];
    while want > 0 {
        while let Decoded::Frame(f) = codec.decode_frame(&mut buf).unwrap() {
            got.insert(f.header.id, f);
            want -= 1;
        }
        if want == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out with {want} answers missing; got ids {:?}",
            got.keys()
        );
        let n = sock.read(&mut chunk).expect("read from provider");
        assert!(
            n > 0,
            "provider closed the connection with {want} answers missing"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    got
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[test]
fn our_requests_get_correct_answers_from_sofa_rpc_node() {
    let (_peer, port) = start_provider();
    let codec = Codec::default();
    let mut sock = connect(port);

    let long = "x\u{1F600}y中".repeat(12_000); // 60,000 UTF-16 units: two string chunks, pairs at chunk edges
    let args: Vec<String> = vec![
        String::new(),
        "hello".into(),
        "中文字符串".into(),
        "x\u{1F600}y".into(),
        "a".repeat(1000),
        "Zz09".repeat(256),
        long,
    ];
    let path = Value::str(IFACE);
    let mut buf = BytesMut::new();
    // Pipelined: all requests in one write, answers matched by id.
    for (i, a) in args.iter().enumerate() {
        let head = RequestHead {
            dubbo_version: "2.0.2",
            service: IFACE,
            version: Some("0.0.0"),
            method: "hash",
            param_types: "Ljava/lang/String;",
        };
        codec
            .encode_request(
                &mut buf,
                Header::request(100 + i as u64, Serialization::Hessian2, true),
                &head,
                &[Value::str(a)],
                [("path", &path)],
            )
            .unwrap();
    }
    // A heartbeat and an error call travel in the same write.
    codec.encode_heartbeat(&mut buf, 7, Serialization::Hessian2, true);
    let fail = RequestHead {
        dubbo_version: "2.0.2",
        service: IFACE,
        version: Some("0.0.0"),
        method: "fail",
        param_types: "Ljava/lang/String;",
    };
    codec
        .encode_request(
            &mut buf,
            Header::request(8, Serialization::Hessian2, true),
            &fail,
            &[Value::str("boom")],
            [("path", &path)],
        )
        .unwrap();
    sock.write_all(&buf).unwrap();

    let answers = read_answers(&mut sock, &codec, args.len() + 2);
    for (i, a) in args.iter().enumerate() {
        let f = &answers[&(100 + i as u64)];
        assert_eq!(f.header.status, Status::OK);
        let body = codec.decode_body(&f.header, &f.body).unwrap();
        let want = Value::Int(java_string_hash(a));
        assert_eq!(
            body,
            Body::Response(Response::Ok {
                result: RpcResult::Value(want),
                attachments: None
            }),
            "hash of arg #{i} ({} chars)",
            a.chars().count()
        );
    }
    let hb = &answers[&7];
    assert!(hb.header.is_event() && !hb.header.is_request());
    assert_eq!(
        codec.decode_body(&hb.header, &hb.body).unwrap(),
        Body::Event(Event::Heartbeat)
    );
    let err = &answers[&8];
    assert_eq!(
        codec.decode_body(&err.header, &err.body).unwrap(),
        Body::Response(Response::Error {
            status: Status::SERVER_ERROR,
            message: "boom".into()
        })
    );
}

#[test]
fn values_we_encode_are_read_by_hessian_js() {
    // echo(Object) returns its argument as hessian.js decoded it, re-encoded by hessian.js: what comes back
    // must be the value we sent, modulo the type information hessian.js drops (listed per case).
    let (_peer, port) = start_provider();
    let codec = Codec::default();
    let mut sock = connect(port);
    let s = Value::str;
    let untyped = |items: Vec<Value<'static>>| {
        Value::List(List {
            type_name: None,
            items,
        })
    };
    let cases: Vec<(Value<'static>, Value<'static>)> = vec![
        (Value::Null, Value::Null),
        (Value::Bool(true), Value::Bool(true)),
        (Value::Int(-262_145), Value::Int(-262_145)),
        (Value::Int(i32::MIN), Value::Int(i32::MIN)),
        (
            Value::Long(i64::from(i32::MAX) + 1),
            Value::Long(i64::from(i32::MAX) + 1),
        ),
        (
            Value::Double(std::f64::consts::E),
            Value::Double(std::f64::consts::E),
        ),
        (Value::Double(-12.345), Value::Double(-12.345)),
        (Value::Date(1_700_000_000_123), Value::Date(1_700_000_000_123)),
        (s("x\u{1F600}y"), s("x\u{1F600}y")),
        (
            Value::Binary(vec![0u8, 1, 2, 255].into()),
            Value::Binary(vec![0u8, 1, 2, 255].into()),
        ),
        (
            Value::Binary(vec![9u8; 70_000].into()),
            Value::Binary(vec![9u8; 70_000].into()),
        ),
        (
            untyped(vec![Value::Int(1), s("two"), Value::Null]),
            untyped(vec![Value::Int(1), s("two"), Value::Null]),
        ),
        // Typed arrays come back untyped.
        (
            Value::List(List {
                type_name: Some("[string".into()),
                items: vec![s("a"), s("b")],
            }),
            untyped(vec![s("a"), s("b")]),
        ),
        (
            Value::Map(Map {
                type_name: None,
                entries: vec![(s("k"), s("v")), (s("n"), Value::Int(5))],
            }),
            Value::Map(Map {
                type_name: None,
                entries: vec![(s("k"), s("v")), (s("n"), Value::Int(5))],
            }),
        ),
    ];
    let mut buf = BytesMut::new();
    let head = RequestHead {
        dubbo_version: "2.0.2",
        service: IFACE,
        version: Some("0.0.0"),
        method: "echo",
        param_types: "Ljava/lang/Object;",
    };
    for (i, (v, _)) in cases.iter().enumerate() {
        let none: [(&str, &Value<'_>); 0] = [];
        codec
            .encode_request(
                &mut buf,
                Header::request(i as u64, Serialization::Hessian2, true),
                &head,
                std::slice::from_ref(v),
                none,
            )
            .unwrap();
    }
    sock.write_all(&buf).unwrap();
    let answers = read_answers(&mut sock, &codec, cases.len());
    for (i, (sent, want)) in cases.iter().enumerate() {
        let f = &answers[&(i as u64)];
        let body = codec
            .decode_body(&f.header, &f.body)
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        let Body::Response(Response::Ok {
            result: RpcResult::Value(got),
            ..
        }) = body
        else {
            panic!("case {i} ({sent:?}): {body:?}")
        };
        assert_eq!(&got, want, "case {i}: sent {sent:?}");
    }
}

/// A minimal blocking Dubbo server on our codec: answers `hash(String)` and heartbeats.
fn serve_hash(listener: TcpListener, stop: mpsc::Receiver<()>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let codec = Codec::default();
        let mut served = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conns: Vec<(TcpStream, BytesMut)> = Vec::new();
        while Instant::now() < deadline && stop.try_recv().is_err() {
            if let Ok((s, _)) = listener.accept() {
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                conns.push((s, BytesMut::new()));
            }
            for (sock, buf) in conns.iter_mut() {
                let mut chunk = [0u8; 8192];
                match sock.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => continue,
                }
                let mut out = BytesMut::new();
                while let Decoded::Frame(f) = codec.decode_frame(buf).unwrap() {
                    let ser = f.header.serialization().unwrap();
                    match codec.decode_body(&f.header, &f.body).unwrap() {
                        Body::Event(Event::Heartbeat) => {
                            codec.encode_heartbeat(&mut out, f.header.id, ser, false)
                        }
                        Body::Request(req) => {
                            assert_eq!((req.service.as_ref(), req.method.as_ref()), (IFACE, "hash"));
                            let arg = req.args[0].as_str().unwrap();
                            let result = RpcResult::Value(Value::Int(java_string_hash(arg)));
                            // Answer like Java does for a 2.0.2 caller: value with attachments.
                            let atts = Some(vec![("dubbo".into(), Value::str("2.0.2"))]);
                            codec
                                .encode_response(
                                    &mut out,
                                    f.header.id,
                                    ser,
                                    &Response::Ok {
                                        result,
                                        attachments: atts,
                                    },
                                )
                                .unwrap();
                            served += 1;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                sock.write_all(&out).unwrap();
            }
        }
        served
    })
}

#[test]
fn dubbo2js_consumer_is_answered_by_our_codec() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = mpsc::channel();
    let server = serve_hash(listener, stop_rx);

    let long = "\u{1F600}b".repeat(20_000);
    let args = ["", "hello", "中文字符串", "x\u{1F600}y", &long];
    let mut cmd = node(&["consumer.js", &port.to_string()]);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let out = cmd.output().expect("run consumer.js");
    let _ = stop_tx.send(());
    let served = server.join().unwrap();

    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "consumer.js failed: {stdout}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), args.len(), "{stdout}");
    for (line, arg) in lines.iter().zip(args) {
        assert_eq!(line["arg"].as_str(), Some(arg));
        assert_eq!(
            line["result"].as_i64(),
            Some(i64::from(java_string_hash(arg))),
            "{line}"
        );
    }
    assert_eq!(served, args.len());
}

const TYPES: &str = "org.apache.dubbo.mesh.TypesService";
const POJO: &str = "org.apache.dubbo.mesh.Pojo";

fn pojo_value() -> Value<'static> {
    // Fields in the order Java's hessian writes them (primitives first), as the provider answers.
    Value::Object(mesh_dubbo::Object {
        class: POJO.into(),
        fields: vec![
            ("age".into(), Value::Int(42)),
            ("id".into(), Value::Long(9_007_199_254_740_993)),
            ("score".into(), Value::Double(2.5)),
            ("active".into(), Value::Bool(true)),
            ("name".into(), Value::str("n\u{1F600}")),
            (
                "tags".into(),
                Value::List(List {
                    type_name: None,
                    items: vec![Value::str("t1"), Value::str("t2")],
                }),
            ),
        ],
    })
}

/// Sends `(method, descriptor, arg)` calls to the node provider's TypesService, pipelined; returns the decoded
/// answers in call order.
fn call_types(port: u16, calls: &[(&str, &str, Value<'static>)]) -> Vec<Body<'static>> {
    let codec = Codec::default();
    let mut sock = connect(port);
    let mut buf = BytesMut::new();
    let path = Value::str(TYPES);
    for (i, (method, desc, arg)) in calls.iter().enumerate() {
        let head = RequestHead {
            dubbo_version: "2.0.2",
            service: TYPES,
            version: Some("1.0.0"),
            method,
            param_types: desc,
        };
        codec
            .encode_request(
                &mut buf,
                Header::request(i as u64, Serialization::Hessian2, true),
                &head,
                std::slice::from_ref(arg),
                [("path", &path)],
            )
            .unwrap();
    }
    sock.write_all(&buf).unwrap();
    let answers = read_answers(&mut sock, &codec, calls.len());
    (0..calls.len())
        .map(|i| {
            let f = &answers[&(i as u64)];
            codec.decode_body(&f.header, &f.body).unwrap().into_owned()
        })
        .collect()
}

#[test]
fn the_node_types_service_reads_our_typed_values_and_answers_them() {
    // The provider checks with hessian.js that each argument arrived as the declared Java type (else status 80),
    // and echoes it with the same wire types: what we decode must be what we sent.
    let (_peer, port) = start_provider();
    let s = Value::str;
    let list = Value::List(List {
        type_name: None,
        items: vec![
            Value::Int(1),
            s("two"),
            Value::Null,
            Value::Double(2.5),
            Value::Long(1 << 40),
            Value::Bool(true),
        ],
    });
    let map = Value::Map(Map {
        type_name: None,
        entries: vec![(s("a"), Value::Int(1)), (s("b"), s("x")), (s("c"), Value::Null)],
    });
    let echoes: Vec<(&str, &str, Value<'static>)> = vec![
        ("echoInt", "I", Value::Int(0)),
        ("echoInt", "I", Value::Int(i32::MIN)),
        ("echoInt", "I", Value::Int(i32::MAX)),
        ("echoLong", "J", Value::Long(0)),
        ("echoLong", "J", Value::Long(i64::MAX)),
        ("echoLong", "J", Value::Long(i64::MIN)),
        ("echoLong", "J", Value::Long(-262_145)),
        ("echoDouble", "D", Value::Double(0.0)),
        ("echoDouble", "D", Value::Double(-0.1)),
        ("echoDouble", "D", Value::Double(1e300)),
        ("echoDouble", "D", Value::Double(12.25)),
        ("echoBoolean", "Z", Value::Bool(false)),
        ("echoBoolean", "Z", Value::Bool(true)),
        ("echoString", "Ljava/lang/String;", s("")),
        ("echoString", "Ljava/lang/String;", s("x\u{1F600}y中")),
        ("echoBytes", "[B", Value::Binary(vec![].into())),
        ("echoBytes", "[B", Value::Binary(vec![0u8, 1, 2, 255].into())),
        ("echoList", "Ljava/util/List;", list),
        ("echoMap", "Ljava/util/Map;", map),
        ("echoPojo", "Lorg/apache/dubbo/mesh/Pojo;", pojo_value()),
    ];
    let answers = call_types(port, &echoes);
    for ((method, _, sent), got) in echoes.iter().zip(&answers) {
        let Body::Response(Response::Ok {
            result: RpcResult::Value(v),
            ..
        }) = got
        else {
            panic!("{method}({sent:?}): {got:?}")
        };
        assert_eq!(v, sent, "{method}");
    }

    let others: Vec<(&str, &str, Value<'static>)> = vec![
        ("throwException", "Ljava/lang/String;", s("bad input")),
        ("returnNull", "Ljava/lang/String;", s("x")),
        ("echoString", "Ljava/lang/String;", Value::Null),
        // Wrong wire type for the declared one: the provider's hessian.js check refuses it.
        ("echoLong", "J", Value::Int(5)),
        ("echoDouble", "D", Value::Long(1)),
        ("echoInt", "I", s("5")),
        // Wrong descriptor.
        ("echoLong", "I", Value::Long(5)),
    ];
    let answers = call_types(port, &others);
    let Body::Response(Response::Ok {
        result: RpcResult::Exception(Value::Object(e)),
        ..
    }) = &answers[0]
    else {
        panic!("{:?}", answers[0])
    };
    assert_eq!(e.class, "java.lang.IllegalArgumentException");
    assert!(
        e.fields.contains(&("detailMessage".into(), s("bad input"))),
        "{e:?}"
    );
    for a in &answers[1..3] {
        assert_eq!(
            a,
            &Body::Response(Response::Ok {
                result: RpcResult::Null,
                attachments: None
            })
        );
    }
    for (a, want) in answers[3..].iter().zip([
        "expected long, got hessian int",
        "expected double, got hessian long",
        "expected int, got hessian string",
        "parameter types \"I\", declared \"J\"",
    ]) {
        let Body::Response(Response::Error { status, message }) = a else {
            panic!("{a:?}")
        };
        assert_eq!(*status, Status::SERVER_ERROR);
        assert!(message.contains(want), "{message}");
    }
}

#[test]
fn the_node_types_service_serves_generic_invoke_as_javas_generic_filter() {
    // $invoke(String, String[], Object[]) with generic=true: a POJO travels as a map with its `class`, the
    // answer is generalized (a map with `class`), numbers are converted to the declared type, and a thrown
    // exception comes back as GenericException.
    let (_peer, port) = start_provider();
    let codec = Codec::default();
    let mut sock = connect(port);
    let s = Value::str;
    let strings = |v: &[&'static str]| {
        Value::List(List {
            type_name: Some("[string".into()),
            items: v.iter().map(|x| s(x)).collect(),
        })
    };
    let objects = |v: Vec<Value<'static>>| {
        Value::List(List {
            type_name: Some("[object".into()),
            items: v,
        })
    };
    let pojo_map = Value::Map(Map {
        type_name: None,
        entries: vec![
            (s("class"), s(POJO)),
            (s("name"), s("n")),
            (s("age"), Value::Int(3)),
            (s("id"), Value::Int(7)),
        ],
    });
    let calls: Vec<[Value<'static>; 3]> = vec![
        [s("echoPojo"), strings(&[POJO]), objects(vec![pojo_map])],
        [s("echoLong"), strings(&["long"]), objects(vec![Value::Int(5)])],
        [
            s("throwException"),
            strings(&["java.lang.String"]),
            objects(vec![s("bad input")]),
        ],
        [s("echoBytes"), strings(&["byte[]"]), objects(vec![s("AAE=")])],
    ];
    let path = Value::str(TYPES);
    let generic = Value::str("true");
    let mut buf = BytesMut::new();
    for (i, args) in calls.iter().enumerate() {
        let head = RequestHead {
            dubbo_version: "2.0.2",
            service: TYPES,
            version: Some("1.0.0"),
            method: "$invoke",
            param_types: "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;",
        };
        codec
            .encode_request(
                &mut buf,
                Header::request(i as u64, Serialization::Hessian2, true),
                &head,
                args,
                [("path", &path), ("generic", &generic)],
            )
            .unwrap();
    }
    sock.write_all(&buf).unwrap();
    let answers = read_answers(&mut sock, &codec, calls.len());
    let body = |i: u64| {
        let f = &answers[&i];
        codec.decode_body(&f.header, &f.body).unwrap().into_owned()
    };
    let Body::Response(Response::Ok {
        result: RpcResult::Value(Value::Map(m)),
        ..
    }) = body(0)
    else {
        panic!("{:?}", body(0))
    };
    let get = |k: &str| {
        m.entries
            .iter()
            .find(|(x, _)| x.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("class"), Some(s(POJO)));
    assert_eq!(get("id"), Some(Value::Long(7)), "realized to the declared long");
    assert_eq!(
        get("score"),
        Some(Value::Double(0.0)),
        "missing field: Java's default"
    );
    assert_eq!(
        body(1),
        Body::Response(Response::Ok {
            result: RpcResult::Value(Value::Long(5)),
            attachments: None
        })
    );
    for (i, (class, message)) in [
        (2, ("java.lang.IllegalArgumentException", "bad input")),
        (
            3,
            ("java.lang.IllegalArgumentException", "argument type mismatch"),
        ),
    ] {
        let Body::Response(Response::Ok {
            result: RpcResult::Exception(Value::Object(e)),
            ..
        }) = body(i)
        else {
            panic!("{:?}", body(i))
        };
        assert_eq!(e.class, "org.apache.dubbo.rpc.service.GenericException");
        assert!(e.fields.contains(&("exceptionClass".into(), s(class))), "{e:?}");
        assert!(
            e.fields.contains(&("exceptionMessage".into(), s(message))),
            "{e:?}"
        );
    }
}

/// The calls the node consumers make, as `(method, arg)`; each must come back equal (longs beyond 2^53 are given
/// as strings to JavaScript and come back as exact JSON integers).
fn node_cases() -> Vec<(&'static str, serde_json::Value, serde_json::Value)> {
    use serde_json::json;
    let same = |m, v: serde_json::Value| (m, v.clone(), v);
    vec![
        same("echoInt", json!(0)),
        same("echoInt", json!(i32::MIN)),
        same("echoLong", json!(0)),
        ("echoLong", json!(i64::MAX.to_string()), json!(i64::MAX)),
        ("echoLong", json!(i64::MIN.to_string()), json!(i64::MIN)),
        same("echoDouble", json!(-0.1)),
        same("echoDouble", json!(1e300)),
        same("echoBoolean", json!(false)),
        same("echoString", json!("")),
        same("echoString", json!("x\u{1F600}y中")),
        same("echoBytes", json!("AAEC/w==")),
        same("echoList", json!([1, "two", null, 2.5, true])),
        same("echoMap", json!({"a": 1, "b": "x", "c": null, "d": [1]})),
        (
            "echoPojo",
            json!({"name": "n", "age": 42, "id": "9007199254740993", "score": 2.5, "active": true, "tags": ["t"]}),
            json!({"class": POJO, "age": 42, "id": 9_007_199_254_740_993_i64, "score": 2.5, "active": true, "name": "n", "tags": ["t"]}),
        ),
    ]
}

#[test]
fn dubbo2js_and_sofa_consumers_get_every_type_back_from_the_node_provider() {
    let (_peer, port) = start_provider();
    let cases = node_cases();
    let mut arg: Vec<serde_json::Value> = cases
        .iter()
        .map(|(m, a, _)| serde_json::json!({"method": m, "arg": a}))
        .collect();
    arg.push(serde_json::json!({"method": "throwException", "arg": "bad input"}));
    arg.push(serde_json::json!({"method": "returnNull", "arg": "x"}));
    for client in ["dubbo2js", "sofa"] {
        let out = node(&[
            "types_consumer.js",
            client,
            &port.to_string(),
            &serde_json::Value::Array(arg.clone()).to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{client}: {stdout}");
        let lines: Vec<serde_json::Value> =
            stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), cases.len() + 2, "{client}: {stdout}");
        for ((method, _, want), line) in cases.iter().zip(&lines) {
            assert_eq!(line["method"], *method, "{line}");
            assert!(
                line["sentOk"].is_null() && line["typeOk"].is_null(),
                "{client}: {line}"
            );
            assert_eq!(
                (line["status"].as_u64(), line["flag"].as_u64()),
                (Some(20), Some(1)),
                "{line}"
            );
            assert_eq!(&line["result"], want, "{client}: {line}");
        }
        let e = &lines[cases.len()];
        assert_eq!(
            (e["flag"].as_u64(), e["exception"].as_str(), e["message"].as_str()),
            (
                Some(0),
                Some("java.lang.IllegalArgumentException"),
                Some("bad input")
            ),
            "{e}"
        );
        let n = &lines[cases.len() + 1];
        assert_eq!(
            (n["flag"].as_u64(), &n["result"]),
            (Some(2), &serde_json::Value::Null),
            "{n}"
        );
    }
}
