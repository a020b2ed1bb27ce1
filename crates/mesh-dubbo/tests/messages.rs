//! Message and frame layer: golden bytes from the protocol fact sheet (Java hessian-lite output and the
//! 2018 demo agent's fastjson format), streaming behaviour of the frame decoder, limits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use bytes::{BufMut, BytesMut};
use mesh_dubbo::frame::{decode_frame, encode_frame, HEADER_LEN};
use mesh_dubbo::message::result_flag;
use mesh_dubbo::{
    Body, Codec, CodecError, Decoded, Event, Header, List, Request, RequestHead, Response, RpcResult,
    Serialization, Status, Value,
};

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn hash_head(version: Option<&str>) -> RequestHead<'_> {
    RequestHead {
        dubbo_version: "2.0.2",
        service: IFACE,
        version,
        method: "hash",
        param_types: "Ljava/lang/String;",
    }
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn medium(s: &str) -> Vec<u8> {
    let mut v = vec![0x30 + (s.len() >> 8) as u8, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

#[test]
fn hash_request_matches_java_bytes() {
    // Fact sheet §2 worked example: IHelloService.hash("abc"), id 1, attachments {path}: 165-byte body.
    let mut want = hex::decode("dabbc2000000000000000001000000a5").unwrap();
    want.extend(short("2.0.2"));
    want.extend(medium(IFACE));
    want.extend(short("0.0.0"));
    want.extend(short("hash"));
    want.extend(short("Ljava/lang/String;"));
    want.extend(short("abc"));
    want.push(b'H');
    want.extend(short("path"));
    want.extend(medium(IFACE));
    want.push(b'Z');

    let codec = Codec::default();
    let mut buf = BytesMut::new();
    let path = Value::str(IFACE);
    codec
        .encode_request(
            &mut buf,
            Header::request(1, Serialization::Hessian2, true),
            &hash_head(Some("0.0.0")),
            &[Value::str("abc")],
            [("path", &path)],
        )
        .unwrap();
    assert_eq!(hex::encode(&buf), hex::encode(&want));
    assert_eq!(buf.len() - HEADER_LEN, 165);
}

#[test]
fn generic_invoke_matches_java_bytes() {
    // Fact sheet §7: $invoke("sayHello", String[]{"java.lang.String"}, Object[]{"world"}), generic=true.
    let desc = "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;";
    let args = [
        Value::str("sayHello"),
        Value::List(List {
            type_name: Some("[string".into()),
            items: vec![Value::str("java.lang.String")],
        }),
        Value::List(List {
            type_name: Some("[object".into()),
            items: vec![Value::str("world")],
        }),
    ];
    let head = RequestHead {
        dubbo_version: "2.0.2",
        service: "demo.Greeter",
        version: None,
        method: "$invoke",
        param_types: desc,
    };
    let generic = Value::str("true");
    let mut buf = BytesMut::new();
    Codec::default()
        .encode_request(
            &mut buf,
            Header::request(7, Serialization::Hessian2, true),
            &head,
            &args,
            [("generic", &generic)],
        )
        .unwrap();
    let mut tail = short("$invoke");
    tail.extend(medium(desc));
    tail.extend(short("sayHello"));
    tail.push(0x71);
    tail.extend(short("[string"));
    tail.extend(short("java.lang.String"));
    tail.push(0x71);
    tail.extend(short("[object"));
    tail.extend(short("world"));
    tail.push(b'H');
    tail.extend(short("generic"));
    tail.extend(short("true"));
    tail.push(b'Z');
    assert!(buf.ends_with(&tail), "{}", hex::encode(&buf));
    // The null service version is written as N.
    assert_eq!(buf[HEADER_LEN + 6 + 13], b'N');
}

#[test]
fn responses_match_java_bytes() {
    let codec = Codec::default();
    let enc = |r: &Response<'_>| {
        let mut b = BytesMut::new();
        codec
            .encode_response(&mut b, 5, Serialization::Hessian2, r)
            .unwrap();
        b[HEADER_LEN..].to_vec()
    };
    // Integer 42 for a 2.0.2 caller: 94 ba 48 05 "dubbo" 05 "2.0.2" 5a; for 2.0.1: 91 ba.
    let with = Response::Ok {
        result: RpcResult::Value(Value::Int(42)),
        attachments: Some(vec![("dubbo".into(), Value::str("2.0.2"))]),
    };
    let mut want = vec![0x94, 0xba, b'H'];
    want.extend(short("dubbo"));
    want.extend(short("2.0.2"));
    want.push(b'Z');
    assert_eq!(enc(&with), want);
    assert_eq!(
        enc(&Response::Ok {
            result: RpcResult::Value(Value::Int(42)),
            attachments: None
        }),
        [0x91, 0xba]
    );
    assert_eq!(
        enc(&Response::Ok {
            result: RpcResult::Null,
            attachments: None
        }),
        [0x92]
    );
    assert_eq!(
        enc(&Response::Ok {
            result: RpcResult::Null,
            attachments: Some(vec![])
        }),
        [0x95, b'H', b'Z']
    );
    // Error status: the body is only the message.
    let msg = "Fail to decode request due to: x";
    let err = Response::Error {
        status: Status::BAD_REQUEST,
        message: msg.into(),
    };
    assert_eq!(enc(&err), medium(msg));
    let mut b = BytesMut::new();
    codec
        .encode_response(&mut b, 5, Serialization::Hessian2, &err)
        .unwrap();
    assert_eq!(b[3], 40);

    // All six result flags decode.
    for flag in 0..=5 {
        let mut body = BytesMut::new();
        let mut e = mesh_dubbo::hessian::Encoder::new(&mut body);
        e.write_int(flag);
        if flag != result_flag::NULL_VALUE && flag != result_flag::NULL_VALUE_WITH_ATTACHMENTS {
            e.write_str("v");
        }
        if flag >= 3 {
            e.write_map_begin();
            e.write_end();
        }
        let h = Header::response(1, Serialization::Hessian2, Status::OK);
        let Body::Response(Response::Ok { result, attachments }) = codec.decode_body(&h, &body).unwrap()
        else {
            panic!()
        };
        assert_eq!(attachments.is_some(), flag >= 3);
        match flag % 3 {
            0 => assert_eq!(result, RpcResult::Exception(Value::str("v"))),
            1 => assert_eq!(result, RpcResult::Value(Value::str("v"))),
            _ => assert_eq!(result, RpcResult::Null),
        }
    }
    let h = Header::response(1, Serialization::Hessian2, Status::OK);
    assert_eq!(
        codec.decode_body(&h, &[0x96]).unwrap_err(),
        CodecError::BadResultFlag(6)
    );
}

#[test]
fn fastjson_is_the_2018_demo_format() {
    // The demo agent's request body: one JSON text per line, version null.
    let codec = Codec::default();
    let mut buf = BytesMut::new();
    let path = Value::str(IFACE);
    let head = RequestHead {
        dubbo_version: "2.0.1",
        ..hash_head(None)
    };
    codec
        .encode_request(
            &mut buf,
            Header::request(0, Serialization::FastJson, true),
            &head,
            &[Value::str("a\"b\n中")],
            [("path", &path)],
        )
        .unwrap();
    assert_eq!(buf[2], 0xc6);
    let body = std::str::from_utf8(&buf[HEADER_LEN..]).unwrap();
    assert_eq!(
        body,
        format!("\"2.0.1\"\n\"{IFACE}\"\nnull\n\"hash\"\n\"Ljava/lang/String;\"\n\"a\\\"b\\n中\"\n{{\"path\":\"{IFACE}\"}}\n")
    );
    let header = Header::parse(buf[..HEADER_LEN].try_into().unwrap()).unwrap();
    let Body::Request(req) = codec.decode_body(&header, &buf[HEADER_LEN..]).unwrap() else {
        panic!()
    };
    assert_eq!(req.version, None);
    assert_eq!(req.args, vec![Value::str("a\"b\n中")]);
    assert_eq!(req.attachment("path"), Some(&Value::str(IFACE)));

    // The provider's answers: `1\n<int>\n` (2.0.1), `4\n<v>\n{"dubbo":"2.0.2"}\n`, errors as a JSON string,
    // CRLF line ends tolerated.
    let h = Header::response(0, Serialization::FastJson, Status::OK);
    for (body, want) in [
        (&b"1\n-1234\n"[..], RpcResult::Value(Value::Int(-1234))),
        (b"1\r\n-1234\r\n", RpcResult::Value(Value::Int(-1234))),
        (b"2\n", RpcResult::Null),
        (b"1\n12345678901\n", RpcResult::Value(Value::Long(12_345_678_901))),
        (b"1\n1.5\n", RpcResult::Value(Value::Double(1.5))),
    ] {
        let Body::Response(Response::Ok { result, .. }) = codec.decode_body(&h, body).unwrap() else {
            panic!()
        };
        assert_eq!(result, want);
    }
    let Body::Response(Response::Ok { result, attachments }) =
        codec.decode_body(&h, b"4\n7\n{\"dubbo\":\"2.0.2\"}\n").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (result, attachments),
        (
            RpcResult::Value(Value::Int(7)),
            Some(vec![("dubbo".into(), Value::str("2.0.2"))])
        )
    );
    let he = Header::response(0, Serialization::FastJson, Status::SERVICE_ERROR);
    assert_eq!(
        codec.decode_body(&he, b"\"boom\"\n").unwrap(),
        Body::Response(Response::Error {
            status: Status(70),
            message: "boom".into()
        })
    );
    // Our response encoding is what the demo decoder sliced: flag line, value line.
    let mut out = BytesMut::new();
    codec
        .encode_response(
            &mut out,
            9,
            Serialization::FastJson,
            &Response::Ok {
                result: RpcResult::Value(Value::Int(99_162_322)),
                attachments: None,
            },
        )
        .unwrap();
    assert_eq!(&out[HEADER_LEN..], b"1\n99162322\n");
    // Heartbeat: body `null\n`.
    out.clear();
    codec.encode_heartbeat(&mut out, 1, Serialization::FastJson, true);
    assert_eq!((out[2], &out[HEADER_LEN..]), (0xe6, &b"null\n"[..]));
    assert!(matches!(
        codec.decode_body(&h, b"not json\n"),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn events() {
    let codec = Codec::default();
    let mut buf = BytesMut::new();
    codec
        .encode_event(
            &mut buf,
            Header::request(0, Serialization::Hessian2, false),
            &Event::ReadOnly,
        )
        .unwrap();
    // One-way event request "R": flag a2, body 01 52.
    assert_eq!(
        hex::encode(&buf),
        "dabba200000000000000000000000002".to_owned() + "0152"
    );
    let header = Header::parse(buf[..16].try_into().unwrap()).unwrap();
    assert_eq!(
        codec.decode_body(&header, &buf[16..]).unwrap(),
        Body::Event(Event::ReadOnly)
    );
    // dubbo-go appends an extra N after heartbeat bodies: trailing bytes are ignored.
    let h = Header {
        flag: 0x22,
        ..Header::response(3, Serialization::Hessian2, Status::OK)
    };
    assert_eq!(
        codec.decode_body(&h, &[0x4e, 0x4e]).unwrap(),
        Body::Event(Event::Heartbeat)
    );
}

fn three_frames() -> (BytesMut, Vec<u64>) {
    let codec = Codec::default();
    let mut buf = BytesMut::new();
    let path = Value::str(IFACE);
    for (id, arg) in [(1u64, ""), (2, "hello"), (u64::MAX, &*"z".repeat(3000))] {
        codec
            .encode_request(
                &mut buf,
                Header::request(id, Serialization::Hessian2, true),
                &hash_head(Some("0.0.0")),
                &[Value::str(arg)],
                [("path", &path)],
            )
            .unwrap();
    }
    (buf, vec![1, 2, u64::MAX])
}

#[test]
fn many_frames_in_one_read() {
    let (mut buf, ids) = three_frames();
    let mut got = Vec::new();
    while let Decoded::Frame(f) = decode_frame(&mut buf, 1 << 20).unwrap() {
        got.push(f.header.id);
    }
    assert_eq!(got, ids);
    assert!(buf.is_empty());
    assert_eq!(
        decode_frame(&mut buf, 1 << 20).unwrap(),
        Decoded::NeedMore(HEADER_LEN)
    );
}

#[test]
fn frames_split_over_many_reads() {
    let (all, ids) = three_frames();
    for step in [1, 2, 7, 16, 17, 100, 4096] {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in all.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                match decode_frame(&mut buf, 1 << 20).unwrap() {
                    Decoded::Frame(f) => {
                        let Body::Request(r) = Codec::default().decode_body(&f.header, &f.body).unwrap()
                        else {
                            panic!()
                        };
                        assert_eq!(r.method, "hash");
                        got.push(f.header.id);
                    }
                    Decoded::NeedMore(n) => {
                        assert!(n >= 1);
                        break;
                    }
                }
            }
        }
        assert_eq!(got, ids, "step {step}");
    }
}

#[test]
fn need_more_says_how_many_bytes() {
    let (all, _) = three_frames();
    let first_len = HEADER_LEN + u32::from_be_bytes(all[12..16].try_into().unwrap()) as usize;
    let mut buf = BytesMut::from(&all[..10]);
    assert_eq!(decode_frame(&mut buf, 1 << 20).unwrap(), Decoded::NeedMore(6));
    let mut buf = BytesMut::from(&all[..20]);
    assert_eq!(
        decode_frame(&mut buf, 1 << 20).unwrap(),
        Decoded::NeedMore(first_len - 20)
    );
    assert_eq!(buf.len(), 20, "nothing consumed");
}

#[test]
fn bad_magic_and_oversize_are_refused_from_the_header() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    assert_eq!(
        decode_frame(&mut buf, 1024).unwrap_err(),
        CodecError::BadMagic(0x4745)
    );
    // Two bytes are enough to know.
    let mut buf = BytesMut::from(&[0xca, 0xfe][..]);
    assert_eq!(
        decode_frame(&mut buf, 1024).unwrap_err(),
        CodecError::BadMagic(0xcafe)
    );
    // A header claiming 1 GiB is refused at once (nothing reserved), and so is a "negative" i32 length.
    let mut h = BytesMut::new();
    Header {
        body_len: 1 << 30,
        ..Header::request(1, Serialization::Hessian2, true)
    }
    .write(&mut h);
    let cap = h.capacity();
    assert_eq!(
        decode_frame(&mut h, 8 << 20).unwrap_err(),
        CodecError::BodyTooLarge {
            len: 1 << 30,
            max: 8 << 20
        }
    );
    assert_eq!(h.capacity(), cap);
    let mut h = BytesMut::new();
    Header {
        body_len: 0x8000_0000,
        ..Header::request(1, Serialization::Hessian2, true)
    }
    .write(&mut h);
    assert!(matches!(
        decode_frame(&mut h, usize::MAX).unwrap_err(),
        CodecError::BodyTooLarge { .. }
    ));
    // Exactly at the limit is fine.
    let mut f = BytesMut::new();
    Header {
        body_len: 4,
        ..Header::request(1, Serialization::Hessian2, true)
    }
    .write(&mut f);
    f.put_slice(b"abcd");
    assert!(matches!(decode_frame(&mut f, 4).unwrap(), Decoded::Frame(_)));
}

#[test]
fn encoder_patches_length_and_undoes_failed_frames() {
    let mut buf = BytesMut::from(&b"keep"[..]);
    encode_frame(
        &mut buf,
        Header::response(3, Serialization::Hessian2, Status::OK),
        100,
        |b| {
            b.put_slice(&[0x91, 0x90]);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(
        hex::encode(&buf[4..]),
        "dabb0214000000000000000300000002".to_owned() + "9190"
    );
    let before = buf.clone();
    let err = encode_frame(
        &mut buf,
        Header::response(4, Serialization::Hessian2, Status::OK),
        100,
        |b| {
            b.put_slice(&[0u8; 101]);
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(err, CodecError::BodyTooLarge { len: 101, max: 100 });
    assert_eq!(buf, before, "the oversize frame was removed");

    // Request-level checks: argument count against the descriptor; unsupported serialization.
    let codec = Codec {
        max_body: 64,
        ..Codec::default()
    };
    let mut out = BytesMut::new();
    let none: [(&str, &Value<'_>); 0] = [];
    let e = codec
        .encode_request(
            &mut out,
            Header::request(1, Serialization::Hessian2, true),
            &hash_head(None),
            &[],
            none,
        )
        .unwrap_err();
    assert_eq!(
        e,
        CodecError::ArgumentCount {
            count: 0,
            expected: 1
        }
    );
    let big = "x".repeat(100);
    let e = codec
        .encode_request(
            &mut out,
            Header::request(1, Serialization::Hessian2, true),
            &hash_head(None),
            &[Value::str(&big)],
            none,
        )
        .unwrap_err();
    assert!(matches!(e, CodecError::BodyTooLarge { .. }));
    assert!(out.is_empty());
    let kryo = Header {
        flag: 0xc8,
        ..Header::request(1, Serialization::Hessian2, true)
    };
    assert_eq!(
        codec.decode_body(&kryo, b"").unwrap_err(),
        CodecError::UnsupportedSerialization(8)
    );
}

#[test]
fn request_decoding_reports_bad_fields() {
    let codec = Codec::default();
    let h = Header::request(1, Serialization::Hessian2, true);
    // Method name is an int.
    let mut body = BytesMut::new();
    let mut e = mesh_dubbo::hessian::Encoder::new(&mut body);
    for s in ["2.0.2", IFACE, "0.0.0"] {
        e.write_str(s);
    }
    e.write_int(3);
    assert_eq!(
        codec.decode_body(&h, &body).unwrap_err(),
        CodecError::BadField {
            field: "method",
            expected: "string",
            found: "int"
        }
    );
    // Descriptor promises an argument the body does not have.
    let mut body = BytesMut::new();
    let mut e = mesh_dubbo::hessian::Encoder::new(&mut body);
    for s in ["2.0.2", IFACE, "0.0.0", "hash", "Ljava/lang/String;"] {
        e.write_str(s);
    }
    assert!(matches!(
        codec.decode_body(&h, &body).unwrap_err(),
        CodecError::Truncated { .. }
    ));
    // A request without an attachments map (old clients) decodes with none.
    let mut e = mesh_dubbo::hessian::Encoder::new(&mut body);
    e.write_str("x");
    let Body::Request(r) = codec.decode_body(&h, &body).unwrap() else {
        panic!()
    };
    assert!(r.attachments.is_empty());
    let owned: Request<'static> = Request {
        args: r.args.into_iter().map(Value::into_owned).collect(),
        ..Request {
            dubbo_version: "2.0.2".into(),
            service: IFACE.into(),
            version: None,
            method: "hash".into(),
            param_types: "Ljava/lang/String;".into(),
            args: vec![],
            attachments: vec![],
        }
    };
    assert_eq!(owned.args, vec![Value::str("x")]);
}

#[test]
fn attachments_count_toward_the_nesting_limit() {
    // The attachments map is a nesting level for the decoder, so the encoder must count it too: a request
    // our own decoder would refuse is refused when encoding.
    let mut v = Value::Null;
    for _ in 0..64 {
        v = Value::List(List {
            type_name: None,
            items: vec![v],
        });
    }
    let mut buf = BytesMut::new();
    let head = RequestHead {
        param_types: "",
        ..hash_head(None)
    };
    let err = Codec::default()
        .encode_request(
            &mut buf,
            Header::request(1, Serialization::Hessian2, true),
            &head,
            &[],
            [("deep", &v)],
        )
        .unwrap_err();
    assert_eq!(err, CodecError::TooDeep(64));
    assert!(buf.is_empty());
}
