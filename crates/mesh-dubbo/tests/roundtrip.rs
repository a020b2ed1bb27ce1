//! Property tests: encode -> decode is the identity, for Hessian values, whole messages in both
//! serializations, and frames cut at arbitrary points.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::borrow::Cow;

use bytes::BytesMut;
use mesh_dubbo::hessian::{Decoder, Encoder, DEFAULT_MAX_DEPTH};
use mesh_dubbo::{
    Body, Codec, Decoded, Header, List, Map, Object, Request, Response, RpcResult, Serialization, Status,
    Value,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn double() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE,
        (-40_000i32..40_000).prop_map(f64::from),
        any::<i32>().prop_map(|m| 0.001 * f64::from(m)),
        Just(-0.0),
    ]
}

/// Strings: arbitrary Unicode (including non-BMP), ASCII, and long ones that need chunking.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[a-zA-Z0-9]{0,64}",
        1 => "[\u{10000}-\u{10ffff}a]{0,40}",
        1 => (0usize..80_000, prop_oneof![Just('a'), Just('中'), Just('\u{1F600}')]).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

fn leaf() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::Int),
        prop_oneof![any::<i64>(), -300_000i64..300_000].prop_map(Value::Long),
        double().prop_map(Value::Double),
        any::<i64>().prop_map(Value::Date),
        (0i64..1_000_000).prop_map(|m| Value::Date(m * 60_000)),
        string().prop_map(|s| Value::String(s.into())),
        prop_oneof![vec(any::<u8>(), 0..40), vec(any::<u8>(), 0..140_000)]
            .prop_map(|b| Value::Binary(b.into())),
    ]
}

fn type_name() -> impl Strategy<Value = Option<Cow<'static, str>>> {
    prop_oneof![
        Just(None),
        prop_oneof![
            Just("[string"),
            Just("java.util.ArrayList"),
            Just("java.util.TreeMap"),
            Just("[object")
        ]
        .prop_map(|s| Some(Cow::Borrowed(s))),
        "[a-z.]{1,20}".prop_map(|s| Some(Cow::Owned(s))),
    ]
}

fn value() -> impl Strategy<Value = Value<'static>> {
    leaf().prop_recursive(6, 200, 12, |inner| {
        prop_oneof![
            (
                type_name(),
                prop_oneof![vec(inner.clone(), 0..12), vec(Just(Value::Int(1)), 0..600)]
            )
                .prop_map(|(type_name, items)| Value::List(List { type_name, items })),
            (type_name(), vec((inner.clone(), inner.clone()), 0..8))
                .prop_map(|(type_name, entries)| Value::Map(Map { type_name, entries })),
            (
                prop_oneof![Just("com.example.User"), Just("a.B")],
                vec(("[a-z]{1,6}", inner), 0..5)
            )
                .prop_map(|(class, fields)| {
                    Value::Object(Object {
                        class: class.into(),
                        fields: fields.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                    })
                }),
        ]
    })
}

fn encode(values: &[Value<'_>]) -> BytesMut {
    let mut buf = BytesMut::new();
    let mut e = Encoder::new(&mut buf);
    for v in values {
        e.write_value(v).unwrap();
    }
    buf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn hessian_values_round_trip(values in vec(value(), 1..4)) {
        // Several values in one body share class definitions and the type table.
        let buf = encode(&values);
        let mut d = Decoder::new(&buf);
        for v in &values {
            prop_assert_eq!(&d.read_value().unwrap(), v);
        }
        prop_assert!(d.is_empty());
    }

    #[test]
    fn decoding_is_prefix_safe(v in value(), cut in any::<prop::sample::Index>()) {
        // Every strict prefix of an encoding is a clean error, never a panic or a wrong value.
        let buf = encode(std::slice::from_ref(&v));
        let n = cut.index(buf.len());
        prop_assert!(Decoder::new(&buf[..n]).read_value().is_err());
    }

    #[test]
    fn hessian_messages_round_trip_through_split_frames(
        args in vec(value(), 0..4),
        atts in vec(("[a-z._]{1,12}", value()), 0..4),
        result in prop_oneof![value().prop_map(RpcResult::Value), Just(RpcResult::Null), value().prop_map(RpcResult::Exception)],
        with_atts in any::<bool>(),
        id in any::<u64>(),
        cuts in vec(1usize..5000, 1..6),
    ) {
        let codec = Codec::default();
        let req = Request {
            dubbo_version: "2.0.2".into(),
            service: "com.example.Svc".into(),
            version: None,
            method: "m".into(),
            param_types: "Ljava/lang/Object;".repeat(args.len()).into(),
            args,
            attachments: atts.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
        };
        let resp = Response::Ok {
            result,
            attachments: with_atts.then(|| req.attachments.clone()),
        };
        let err = Response::Error { status: Status::SERVER_THREADPOOL_EXHAUSTED, message: "pool \u{1F600} full".into() };
        let mut wire = BytesMut::new();
        codec.encode_request_message(&mut wire, Header::request(id, Serialization::Hessian2, true), &req).unwrap();
        codec.encode_response(&mut wire, id, Serialization::Hessian2, &resp).unwrap();
        codec.encode_response(&mut wire, id ^ 1, Serialization::Hessian2, &err).unwrap();

        let want = [Body::Request(req), Body::Response(resp), Body::Response(err)];
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Decoded::Frame(f) = codec.decode_frame(&mut buf).unwrap() {
                got.push(codec.decode_body(&f.header, &f.body).unwrap().into_owned());
            }
        }
        prop_assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g, w);
        }
    }
}

/// Values fastjson can carry without losing their type.
fn json_value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::Int),
        any::<i64>()
            .prop_filter("outside i32", |l| i32::try_from(*l).is_err())
            .prop_map(Value::Long),
        proptest::num::f64::NORMAL.prop_map(Value::Double),
        string().prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 100, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(|items| Value::List(List {
                type_name: None,
                items
            })),
            vec((string(), inner), 0..6).prop_map(|e| Value::Map(Map {
                type_name: None,
                entries: e.into_iter().map(|(k, v)| (Value::String(k.into()), v)).collect(),
            })),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fastjson_messages_round_trip(
        args in vec(json_value(), 0..4),
        atts in vec(("[a-z]{1,8}", json_value()), 0..4),
        result in json_value(),
        version in proptest::option::of("[0-9.]{1,6}"),
    ) {
        let codec = Codec::default();
        let req = Request {
            dubbo_version: "2.0.1".into(),
            service: "com.example.Svc".into(),
            version: version.map(Cow::Owned),
            method: "m".into(),
            param_types: "Ljava/lang/Object;".repeat(args.len()).into(),
            args,
            attachments: atts.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
        };
        let resp = Response::Ok { result: RpcResult::Value(result), attachments: Some(req.attachments.clone()) };
        let mut wire = BytesMut::new();
        codec.encode_request_message(&mut wire, Header::request(1, Serialization::FastJson, true), &req).unwrap();
        codec.encode_response(&mut wire, 1, Serialization::FastJson, &resp).unwrap();
        let Decoded::Frame(f1) = codec.decode_frame(&mut wire).unwrap() else { panic!() };
        let Decoded::Frame(f2) = codec.decode_frame(&mut wire).unwrap() else { panic!() };
        prop_assert_eq!(codec.decode_body(&f1.header, &f1.body).unwrap(), Body::Request(req));
        prop_assert_eq!(codec.decode_body(&f2.header, &f2.body).unwrap(), Body::Response(resp));
    }
}

#[test]
fn nesting_up_to_the_limit_round_trips() {
    for make in [
        |v: Value<'static>| {
            Value::List(List {
                type_name: None,
                items: vec![v],
            })
        },
        |v: Value<'static>| {
            Value::Map(Map {
                type_name: Some("java.util.TreeMap".into()),
                entries: vec![(Value::Int(0), v)],
            })
        },
        |v: Value<'static>| {
            Value::Object(Object {
                class: "N".into(),
                fields: vec![("next".into(), v)],
            })
        },
    ] {
        let mut v = Value::str("leaf");
        for _ in 0..DEFAULT_MAX_DEPTH {
            v = make(v);
        }
        let buf = encode(std::slice::from_ref(&v));
        assert_eq!(Decoder::new(&buf).read_value().unwrap(), v);
        let deeper = make(v);
        let mut out = BytesMut::new();
        assert!(Encoder::new(&mut out).write_value(&deeper).is_err());
    }
}

#[test]
fn empty_and_huge_collections_round_trip() {
    let huge = Value::List(List {
        type_name: Some("[int".into()),
        items: (0..200_000).map(Value::Int).collect(),
    });
    let map = Value::Map(Map {
        type_name: None,
        entries: (0..50_000)
            .map(|i| (Value::Int(i), Value::Long(-i64::from(i))))
            .collect(),
    });
    let values = [
        Value::List(List::default()),
        Value::Map(Map::default()),
        huge,
        map,
    ];
    let buf = encode(&values);
    let mut d = Decoder::new(&buf);
    for v in &values {
        assert_eq!(&d.read_value().unwrap(), v);
    }
}
