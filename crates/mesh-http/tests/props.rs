//! Property tests: chunked and form round trips, pipelines, and split consistency over arbitrary bytes.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use mesh_dubbo::Value;
use mesh_http::{encode_form, parse_form, parse_request, HttpError, HttpRequest, Invocation, Limits, Parse};
use proptest::prelude::*;

/// Chunk-encodes `body` with the given chunk sizes (cycled; 0 means 1), optional extensions and trailers.
fn chunk_encode(body: &[u8], sizes: &[usize], ext: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        i += 1;
        if i % 2 == 0 {
            out.extend_from_slice(format!("{n:X}").as_bytes());
        } else {
            out.extend_from_slice(format!("{n:x}").as_bytes());
        }
        if ext {
            out.extend_from_slice(b" ; name=\"v\\\"al\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(if ext { &b"000;last\r\n"[..] } else { b"0\r\n" });
    if trailers {
        out.extend_from_slice(b"X-Checksum: abc\r\nX-Empty:\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn chunked_request(body: &[u8], sizes: &[usize], ext: bool, trailers: bool) -> Vec<u8> {
    let mut req = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&chunk_encode(body, sizes, ext, trailers));
    req
}

fn length_request(body: &[u8]) -> Vec<u8> {
    let mut req = format!("POST /len HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    req
}

fn parse(buf: &[u8]) -> Result<Parse<HttpRequest<'_>>, HttpError> {
    parse_request(buf, &Limits::default())
}

/// The result of parsing a prefix must be Partial or equal to the result of the whole.
fn check_prefix_consistency(buf: &[u8], limits: &Limits) {
    let full = parse_request(buf, limits);
    let mut last_continue = false;
    for k in 0..buf.len() {
        let prefix = parse_request(&buf[..k], limits);
        match (&prefix, &full) {
            (Ok(Parse::Partial { send_continue }), _) => {
                assert!(
                    !last_continue || *send_continue,
                    "send_continue turned off at {k}"
                );
                last_continue = *send_continue;
            }
            (Ok(Parse::Complete(p)), Ok(Parse::Complete(f))) => {
                assert_eq!(p, f, "prefix {k} completes differently");
                assert!(p.consumed <= k);
            }
            (Err(p), Err(f)) => assert_eq!(p, f, "prefix {k} fails differently"),
            _ => panic!("prefix {k}: {prefix:?}, whole: {full:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chunked_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        sizes in proptest::collection::vec(1usize..600, 1..8),
        ext in any::<bool>(),
        trailers in any::<bool>(),
    ) {
        let req = chunked_request(&body, &sizes, ext, trailers);
        let Ok(Parse::Complete(r)) = parse(&req) else { panic!("not complete") };
        prop_assert_eq!(&r.body[..], &body[..]);
        prop_assert_eq!(r.consumed, req.len());
        // One data chunk (or none) is borrowed, several are joined.
        prop_assert_eq!(matches!(r.body, Cow::Borrowed(_)), body.len() <= sizes[0]);
    }

    #[test]
    fn chunked_every_split_is_partial(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        sizes in proptest::collection::vec(1usize..50, 1..4),
        ext in any::<bool>(),
        trailers in any::<bool>(),
    ) {
        let req = chunked_request(&body, &sizes, ext, trailers);
        for k in 0..req.len() {
            let partial = matches!(parse(&req[..k]), Ok(Parse::Partial { send_continue: false }));
            prop_assert!(partial, "split at {}", k);
        }
        check_prefix_consistency(&req, &Limits::default());
    }

    #[test]
    fn chunked_body_limit(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        sizes in proptest::collection::vec(1usize..100, 1..4),
        max in 0usize..300,
    ) {
        let limits = Limits { max_body_bytes: max, ..Limits::default() };
        let req = chunked_request(&body, &sizes, false, false);
        match parse_request(&req, &limits) {
            Ok(Parse::Complete(r)) => {
                prop_assert!(body.len() <= max);
                prop_assert_eq!(&r.body[..], &body[..]);
            }
            Err(e) => {
                prop_assert!(body.len() > max, "{}", e);
                prop_assert_eq!(e, HttpError::BodyTooLarge { max });
            }
            Ok(Parse::Partial { .. }) => prop_assert!(false, "partial"),
        }
    }

    #[test]
    fn pipelined_mix(
        bodies in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>(), 1usize..64), 1..8),
    ) {
        let mut buf = Vec::new();
        for (body, chunked, size) in &bodies {
            if *chunked {
                buf.extend_from_slice(&chunked_request(body, &[*size], false, false));
            } else {
                buf.extend_from_slice(&length_request(body));
            }
        }
        let mut off = 0;
        for (body, chunked, _) in &bodies {
            let Ok(Parse::Complete(r)) = parse(&buf[off..]) else { panic!("not complete at {off}") };
            prop_assert_eq!(&r.body[..], &body[..]);
            prop_assert_eq!(r.path, if *chunked { "/chunked" } else { "/len" });
            off += r.consumed;
        }
        prop_assert_eq!(off, buf.len());
        let rest_is_partial = matches!(parse(&buf[off..]), Ok(Parse::Partial { send_continue: false }));
        prop_assert!(rest_is_partial);
    }

    #[test]
    fn arbitrary_bytes_are_consistent(
        prefix in prop_oneof![
            Just(b"POST / HTTP/1.1\r\n".to_vec()),
            Just(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
            Just(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n".to_vec()),
            Just(Vec::new()),
        ],
        tail in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), Just(b'0'), Just(b';'), any::<u8>()], 0..120),
        small in any::<bool>(),
    ) {
        let buf = [prefix, tail].concat();
        let limits = if small {
            Limits { max_head_bytes: 40, max_headers: 2, max_body_bytes: 16, max_form_fields: 4 }
        } else {
            Limits::default()
        };
        check_prefix_consistency(&buf, &limits);
    }

    #[test]
    fn form_round_trip(
        interface in "\\PC{1,40}",
        method in "\\PC{1,20}",
        typed in proptest::collection::vec(typed_arg(), 0..5),
        version in proptest::option::of("\\PC{1,10}"),
        group in proptest::option::of(any::<String>().prop_filter("non-empty", |s| !s.is_empty())),
    ) {
        let inv = Invocation {
            interface: Cow::Owned(interface),
            method: Cow::Owned(method),
            param_types: Cow::Owned(typed.iter().map(|(d, _)| *d).collect::<String>()),
            args: typed.into_iter().map(|(_, v)| v).collect(),
            version: version.map(Cow::Owned),
            group: group.map(Cow::Owned),
            tag: None,
            force_tag: false,
            attachments: Vec::new(),
        };
        let mut body = Vec::new();
        encode_form(&inv, &mut body);
        let back = parse_form(&body, &Limits::default()).unwrap();
        prop_assert_eq!(&back, &inv);
        // Through a whole request too.
        let req = length_request(&body);
        let Ok(Parse::Complete(r)) = parse(&req) else { panic!("not complete") };
        prop_assert_eq!(parse_form(&r.body, &Limits::default()).unwrap(), inv);
    }

    #[test]
    fn form_values_without_escapes_are_borrowed(arg in "[A-Za-z0-9]{0,1024}") {
        let body = format!("interface=com.example.I&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter={arg}");
        let inv = parse_form(body.as_bytes(), &Limits::default()).unwrap();
        prop_assert!(matches!(inv.args[0], Value::String(Cow::Borrowed(_))));
        prop_assert!(matches!(inv.param_types, Cow::Borrowed(_)));
        prop_assert_eq!(inv.args[0].as_str(), Some(&arg[..]));
    }

    #[test]
    fn form_never_panics(body in proptest::collection::vec(
        prop_oneof![Just(b'%'), Just(b'&'), Just(b'='), Just(b'+'), any::<u8>()], 0..200)) {
        if let Ok(inv) = parse_form(&body, &Limits::default()) {
            prop_assert_eq!(inv.args.len(), mesh_dubbo::descriptor::count(&inv.param_types).unwrap());
        }
    }
}

/// One argument with its descriptor: a value of every kind the form's text can carry.
fn typed_arg() -> impl Strategy<Value = (&'static str, Value<'static>)> {
    use mesh_dubbo::{List, Map};
    prop_oneof![
        any::<String>().prop_map(|s| ("Ljava/lang/String;", Value::String(Cow::Owned(s)))),
        any::<i32>().prop_map(|i| ("I", Value::Int(i))),
        any::<i64>().prop_map(|i| ("Ljava/lang/Long;", Value::Long(i))),
        any::<bool>().prop_map(|b| ("Z", Value::Bool(b))),
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(|d| ("D", Value::Double(d))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| ("[B", Value::Binary(Cow::Owned(b)))),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4).prop_map(|m| (
            "Ljava/util/Map;",
            Value::Map(Map {
                type_name: None,
                entries: m
                    .into_iter()
                    .map(|(k, v)| (Value::String(Cow::Owned(k)), Value::String(Cow::Owned(v))))
                    .collect(),
            })
        )),
        proptest::collection::vec(proptest::collection::vec(any::<i64>(), 0..3), 0..3).prop_map(|rows| (
            "[[J",
            Value::List(List {
                type_name: Some("[[long".into()),
                items: rows
                    .into_iter()
                    .map(|r| Value::List(List {
                        type_name: Some("[long".into()),
                        items: r.into_iter().map(Value::Long).collect(),
                    }))
                    .collect(),
            })
        )),
    ]
}
