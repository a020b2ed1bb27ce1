//! Decoding bytes written by third-party implementations (hessian.js, sofa-rpc-node, dubbo2.js) must give
//! exactly the values their index / README describe; re-encoding must give bytes they would accept.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::borrow::Cow;
use std::path::PathBuf;

use bytes::BytesMut;
use mesh_dubbo::hessian::{Decoder, Encoder};
use mesh_dubbo::{Body, Codec, Decoded, Event, Response, RpcResult, Status, Value};
use serde_json::Value as Json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read_hex(rel: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir().join(rel)).unwrap();
    hex::decode(text.trim()).unwrap()
}

/// The value an index.json entry describes.
fn expected(e: &Json) -> Value<'static> {
    let ty = e["type"].as_str().unwrap();
    let v = &e["value"];
    match ty {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool().unwrap()),
        "int" => Value::Int(v.as_i64().unwrap() as i32),
        "long" => Value::Long(v.as_i64().unwrap_or_else(|| v.as_str().unwrap().parse().unwrap())),
        "double" => Value::Double(v.as_f64().unwrap()),
        "string" => match &e["value_repeat"] {
            Json::Array(r) => Value::String(
                r[0].as_str()
                    .unwrap()
                    .repeat(r[1].as_u64().unwrap() as usize)
                    .into(),
            ),
            _ => Value::String(v.as_str().unwrap().to_owned().into()),
        },
        "date_ms" => Value::Date(v.as_i64().unwrap()),
        "binary" => Value::Binary(hex::decode(e["hex"].as_str().unwrap()).unwrap().into()),
        "list" => Value::List(mesh_dubbo::List {
            type_name: None,
            items: v.as_array().unwrap().iter().map(json_value).collect(),
        }),
        "typed_list" => Value::List(mesh_dubbo::List {
            type_name: Some(format!("[{}", e["elem"].as_str().unwrap()).into()),
            items: v.as_array().unwrap().iter().map(json_value).collect(),
        }),
        "map" => Value::Map(mesh_dubbo::Map {
            type_name: None,
            entries: v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (Value::String(k.clone().into()), json_value(v)))
                .collect(),
        }),
        "object" => object(e),
        other => panic!("index.json type {other} not understood"),
    }
}

fn object(e: &Json) -> Value<'static> {
    let fields = e["fields"].as_object().unwrap();
    Value::Object(mesh_dubbo::Object {
        class: e["class"].as_str().unwrap().to_owned().into(),
        // The class definitions in these vectors list fields in this order (checked by the bytes).
        fields: ["name", "age"]
            .iter()
            .map(|k| (Cow::Owned(k.to_string()), json_value(&fields[*k])))
            .collect(),
    })
}

fn json_value(v: &Json) -> Value<'static> {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(n.as_i64().unwrap() as i32),
        Json::String(s) => Value::String(s.clone().into()),
        Json::Object(o) if o.contains_key("class") => object(v),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn every_hessian_js_value_decodes_to_its_index_entry() {
    let index: Json =
        serde_json::from_str(&std::fs::read_to_string(dir().join("hessian2-hessianjs/index.json")).unwrap())
            .unwrap();
    let entries = index.as_array().unwrap();
    assert_eq!(entries.len(), 45, "all vectors are checked");
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let bytes = read_hex(&format!("hessian2-hessianjs/{}", e["file"].as_str().unwrap()));
        assert_eq!(bytes.len() as u64, e["bytes"].as_u64().unwrap(), "{name}: size");
        let mut d = Decoder::new(&bytes);
        let got = d.read_value().unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(d.is_empty(), "{name}: trailing bytes");
        assert_eq!(got, expected(e), "{name}");

        // Our encoder chooses the same compact forms as hessian.js for all of these.
        let mut buf = BytesMut::new();
        Encoder::new(&mut buf).write_value(&got).unwrap();
        assert_eq!(hex::encode(&buf), hex::encode(&bytes), "{name}: re-encoded bytes");
    }
}

fn frame(rel: &str) -> (mesh_dubbo::Frame, usize) {
    let bytes = read_hex(&format!("frames/{rel}.hex"));
    let mut buf = BytesMut::from(&bytes[..]);
    match Codec::default().decode_frame(&mut buf).unwrap() {
        Decoded::Frame(f) => (f, buf.len()),
        other => panic!("{rel}: {other:?}"),
    }
}

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

#[test]
fn captured_requests() {
    let codec = Codec::default();
    for (name, version, atts) in [
        (
            "req_dubbo2js_hash_hello",
            "2.0.2",
            vec![
                ("application", Value::str("dubbo2.js")),
                ("interface", Value::str(IFACE)),
                ("path", Value::str(IFACE)),
                ("timeout", Value::Int(5000)),
                ("version", Value::str("0.0.0")),
            ],
        ),
        (
            "req_sofa-rpc-node_hash_hello_attach-traceid",
            "5.3.0",
            vec![
                ("dubbo", Value::str("5.3.0")),
                ("group", Value::str("SOFA")),
                ("path", Value::str(IFACE)),
                ("traceid", Value::str("abc123")),
            ],
        ),
    ] {
        let (f, rest) = frame(name);
        assert_eq!(rest, 0);
        assert_eq!((f.header.flag, f.header.id), (0xc2, 1));
        assert!(f.header.is_request() && f.header.is_two_way() && !f.header.is_event());
        let Body::Request(req) = codec.decode_body(&f.header, &f.body).unwrap() else {
            panic!("{name}")
        };
        assert_eq!(req.dubbo_version, version);
        assert_eq!(req.service, IFACE);
        assert_eq!(req.version.as_deref(), Some(""));
        assert_eq!(req.method, "hash");
        assert_eq!(req.param_types, "Ljava/lang/String;");
        assert_eq!(req.args, vec![Value::str("hello")]);
        let got: Vec<_> = req
            .attachments
            .iter()
            .map(|(k, v)| (k.as_ref(), v.clone()))
            .collect();
        assert_eq!(got, atts, "{name}");

        // Re-encoding the decoded request gives the captured frame back, byte for byte.
        let mut out = BytesMut::new();
        codec.encode_request_message(&mut out, f.header, &req).unwrap();
        assert_eq!(
            hex::encode(&out),
            hex::encode(read_hex(&format!("frames/{name}.hex"))),
            "{name}"
        );
    }
}

#[test]
fn captured_responses_and_heartbeats() {
    let codec = Codec::default();
    let ok = |name: &str, want: i32| {
        let (f, _) = frame(name);
        assert_eq!(
            (f.header.flag, f.header.status, f.header.id),
            (0x02, Status::OK, 0)
        );
        let body = codec.decode_body(&f.header, &f.body).unwrap();
        assert_eq!(
            body,
            Body::Response(Response::Ok {
                result: RpcResult::Value(Value::Int(want)),
                attachments: None
            })
        );
        let mut out = BytesMut::new();
        let Body::Response(r) = body else { unreachable!() };
        codec
            .encode_response(&mut out, 0, mesh_dubbo::Serialization::Hessian2, &r)
            .unwrap();
        assert_eq!(
            hex::encode(&out),
            hex::encode(read_hex(&format!("frames/{name}.hex")))
        );
    };
    ok("resp_provider_hash_hello_99162322", 99_162_322);
    ok("resp_provider_hash_empty_0", 0);
    assert_eq!(mesh_dubbo::java_string_hash("hello"), 99_162_322);

    for (name, id, msg) in [
        (
            "resp_provider_status80_exhausted_id1",
            1,
            "Thread pool is EXHAUSTED! (max-concurrency 1)",
        ),
        (
            "resp_provider_status80_service_not_found",
            0,
            "not found service: com.alibaba.dubbo.performance.demo.provider.IHelloServicX",
        ),
    ] {
        let (f, _) = frame(name);
        assert_eq!((f.header.status, f.header.id), (Status::SERVER_ERROR, id));
        assert_eq!(f.header.status.name(), "SERVER_ERROR");
        let body = codec.decode_body(&f.header, &f.body).unwrap();
        assert_eq!(
            body,
            Body::Response(Response::Error {
                status: Status(80),
                message: msg.into()
            })
        );
    }

    let (req, _) = frame("heartbeat_req_sofa-rpc-node_id3");
    assert!(req.header.is_request() && req.header.is_two_way() && req.header.is_event());
    assert_eq!(
        codec.decode_body(&req.header, &req.body).unwrap(),
        Body::Event(Event::Heartbeat)
    );
    let (resp, _) = frame("heartbeat_resp_provider_id3");
    assert!(!resp.header.is_request() && resp.header.is_event() && resp.header.status.is_ok());
    assert_eq!(
        codec.decode_body(&resp.header, &resp.body).unwrap(),
        Body::Event(Event::Heartbeat)
    );

    // Our heartbeats are byte-identical to sofa-rpc-node's request and the provider's answer.
    let mut out = BytesMut::new();
    codec.encode_heartbeat(&mut out, 3, mesh_dubbo::Serialization::Hessian2, true);
    assert_eq!(
        hex::encode(&out),
        hex::encode(read_hex("frames/heartbeat_req_sofa-rpc-node_id3.hex"))
    );
    out.clear();
    codec.encode_heartbeat(&mut out, 3, mesh_dubbo::Serialization::Hessian2, false);
    assert_eq!(
        hex::encode(&out),
        hex::encode(read_hex("frames/heartbeat_resp_provider_id3.hex"))
    );
}
