//! Golden bytes: Java hessian-lite output quoted in the project's protocol fact sheet (marked [V] there),
//! and edge cases of the grammar.

use std::borrow::Cow;

use bytes::BytesMut;

use super::{Decoder, Encoder};
use crate::error::CodecError;
use crate::value::{List, Map, Object, Value};

fn enc(v: &Value<'_>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Encoder::new(&mut buf).write_value(v).unwrap();
    buf.to_vec()
}

fn dec(b: &[u8]) -> Value<'_> {
    let mut d = Decoder::new(b);
    let v = d.read_value().unwrap();
    assert!(d.is_empty(), "trailing bytes after {v:?}");
    v
}

fn s(x: &str) -> Value<'_> {
    Value::str(x)
}

fn h(hex: &str) -> Vec<u8> {
    let hex: String = hex.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A short string as its tag + bytes.
fn sb(x: &str) -> Vec<u8> {
    let mut v = vec![x.len() as u8];
    v.extend_from_slice(x.as_bytes());
    v
}

#[test]
fn java_ints_and_longs() {
    assert_eq!(enc(&Value::Int(-1_234_567)), h("49 ff ed 29 79"));
    assert_eq!(enc(&Value::Int(42)), h("ba"));
    for (v, b) in [
        (0, "90"),
        (-16, "80"),
        (47, "bf"),
        (48, "c830"),
        (-2048, "c000"),
        (2047, "cfff"),
    ] {
        assert_eq!(enc(&Value::Int(v)), h(b), "{v}");
        assert_eq!(dec(&h(b)), Value::Int(v));
    }
    for (v, b) in [
        (0i64, "e0"),
        (-8, "d8"),
        (15, "ef"),
        (2047, "ffff"),
        (262_143, "3fffff"),
        (-262_144, "380000"),
    ] {
        assert_eq!(enc(&Value::Long(v)), h(b), "{v}");
        assert_eq!(dec(&h(b)), Value::Long(v));
    }
    assert_eq!(enc(&Value::Long(i64::from(i32::MIN))), h("59 80000000"));
    assert_eq!(enc(&Value::Long(i64::MAX)), h("4c 7fffffffffffffff"));
}

#[test]
fn doubles_in_every_form() {
    assert_eq!(enc(&Value::Double(0.5)), h("5f 00 00 01 f4"));
    assert_eq!(dec(&h("5f 00 00 01 f4")), Value::Double(0.5));
    assert_eq!(enc(&Value::Double(0.0)), h("5b"));
    assert_eq!(enc(&Value::Double(1.0)), h("5c"));
    assert_eq!(enc(&Value::Double(-128.0)), h("5d 80"));
    assert_eq!(enc(&Value::Double(32767.0)), h("5e 7fff"));
    assert_eq!(
        enc(&Value::Double(std::f64::consts::PI)),
        h("44 400921fb54442d18")
    );
    // -0.0 must keep its sign: only the 8-byte form can carry it.
    let neg0 = enc(&Value::Double(-0.0));
    assert_eq!(neg0, h("44 8000000000000000"));
    let Value::Double(back) = dec(&neg0) else { panic!() };
    assert!(back == 0.0 && back.is_sign_negative());
    let Value::Double(nan) = dec(&enc(&Value::Double(f64::NAN))) else {
        panic!()
    };
    assert!(nan.is_nan());
}

#[test]
fn dates() {
    assert_eq!(enc(&Value::Date(1_700_000_000_000)), h("4a 0000018bcfe56800"));
    // Whole minutes use the compact form.
    assert_eq!(enc(&Value::Date(60_000 * 5)), h("4b 00000005"));
    assert_eq!(dec(&h("4b 00000005")), Value::Date(300_000));
}

#[test]
fn strings_count_utf16_units_and_use_surrogate_pairs() {
    assert_eq!(enc(&s("\u{1F600}")), h("02 eda0bd edb880"));
    assert_eq!(dec(&h("02 eda0bd edb880")), s("\u{1F600}"));
    // A real 4-byte UTF-8 sequence, as some non-Java writers send it, counts as two units.
    assert_eq!(dec(&h("02 f09f9880")), s("\u{1F600}"));
    // Lone surrogates (legal in Java strings) become U+FFFD rather than failing.
    assert_eq!(dec(&h("02 eda0bd 41")), s("\u{FFFD}A"));
    assert_eq!(dec(&h("01 edb880")), s("\u{FFFD}"));

    let a32 = "a".repeat(32);
    assert_eq!(enc(&s(&a32))[..2], h("30 20")[..]);
    let a1024 = "a".repeat(1024);
    assert_eq!(enc(&s(&a1024))[..3], h("53 04 00")[..]);
    let a40000 = "x".repeat(40_000);
    let e = enc(&s(&a40000));
    assert_eq!(e[..3], h("52 80 00")[..]);
    assert_eq!(e[3 + 32768..3 + 32768 + 3], h("53 1c 40")[..]);
    assert_eq!(dec(&e), s(&a40000));
}

#[test]
fn chunks_never_split_a_surrogate_pair() {
    // 32767 ASCII units then an emoji: the first chunk must stop at 32767 units.
    let text = format!("{}\u{1F600}{}", "a".repeat(32_767), "b".repeat(10));
    let e = enc(&s(&text));
    assert_eq!(e[..3], h("52 7f ff")[..]);
    assert_eq!(dec(&e), s(&text));
}

#[test]
fn decoded_strings_borrow_from_the_body() {
    let b = h("05 68656c6c6f");
    let Value::String(Cow::Borrowed(x)) = Decoder::new(&b).read_value().unwrap() else {
        panic!("ASCII string was copied")
    };
    assert_eq!(x, "hello");
    let cjk = enc(&s("中文字符串"));
    assert!(matches!(
        Decoder::new(&cjk).read_value().unwrap(),
        Value::String(Cow::Borrowed(_))
    ));
}

#[test]
fn binaries_in_every_form() {
    assert_eq!(
        enc(&Value::Binary(Cow::Borrowed(&[0, 1, 2, 0xfa, 0xff]))),
        h("25 000102faff")
    );
    let b20000: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    // hessian-lite's chunking (A 8189, A 8189, B 3622) must decode too.
    let mut java = Vec::new();
    for (tag, range) in [(b'A', 0..8189), (b'A', 8189..16378), (b'B', 16378..20000)] {
        java.push(tag);
        java.extend_from_slice(&((range.end - range.start) as u16).to_be_bytes());
        java.extend_from_slice(&b20000[range]);
    }
    assert_eq!(dec(&java), Value::Binary(Cow::Owned(b20000.clone())));
    assert_eq!(
        dec(&enc(&Value::Binary(Cow::Borrowed(&b20000)))),
        Value::Binary(Cow::Owned(b20000.clone()))
    );
    let b100k = vec![7u8; 100_000];
    assert_eq!(
        dec(&enc(&Value::Binary(Cow::Borrowed(&b100k)))),
        Value::Binary(Cow::Owned(b100k.clone()))
    );
}

#[test]
fn typed_arrays_and_type_references() {
    let arr = Value::List(List {
        type_name: Some("[string".into()),
        items: vec![s("a"), s("b")],
    });
    let mut want = h("72");
    want.extend(sb("[string"));
    want.extend(h("01 61 01 62"));
    assert_eq!(enc(&arr), want);
    assert_eq!(dec(&want), arr);

    // The second use of a type is written as its index.
    let two = Value::List(List {
        type_name: None,
        items: vec![arr.clone(), arr.clone()],
    });
    let e = enc(&two);
    assert_eq!(e[e.len() - 6..], h("72 90 01 61 01 62")[..]);
    assert_eq!(dec(&e), two);
}

#[test]
fn fixed_and_variable_lists_and_maps() {
    // Variable-length forms (U/W) decode; the encoder writes fixed-length ones.
    let mut typed_var = h("55");
    typed_var.extend(sb("java.util.ArrayList"));
    typed_var.extend(h("91 92 5a"));
    assert_eq!(
        dec(&typed_var),
        Value::List(List {
            type_name: Some("java.util.ArrayList".into()),
            items: vec![Value::Int(1), Value::Int(2)]
        })
    );
    assert_eq!(
        dec(&h("57 91 4e 5a")),
        Value::List(List {
            type_name: None,
            items: vec![Value::Int(1), Value::Null]
        })
    );
    // X: long untyped fixed list.
    let ten = Value::List(List {
        type_name: None,
        items: vec![Value::Int(0); 10],
    });
    assert_eq!(enc(&ten)[..2], h("58 9a")[..]);
    assert_eq!(dec(&enc(&ten)), ten);

    let mut typed_map = h("4d");
    typed_map.extend(sb("java.util.TreeMap"));
    typed_map.extend(h("01 61 91 5a"));
    let m = Value::Map(Map {
        type_name: Some("java.util.TreeMap".into()),
        entries: vec![(s("a"), Value::Int(1))],
    });
    assert_eq!(dec(&typed_map), m);
    assert_eq!(enc(&m), typed_map);
}

#[test]
fn java_runtime_exception_with_self_reference() {
    // RuntimeException("boom") as hessian-lite writes it: its cause is itself (a back-reference to #0).
    let mut b = h("43");
    b.extend(sb("java.lang.RuntimeException"));
    b.push(0x94);
    for f in ["suppressedExceptions", "stackTrace", "cause", "detailMessage"] {
        b.extend(sb(f));
    }
    b.extend(h("60 70"));
    b.extend(sb("java.util.Collections$EmptyList"));
    b.push(0x70);
    b.extend(sb("[java.lang.StackTraceElement"));
    b.extend(h("51 90"));
    b.extend(sb("boom"));
    let v = dec(&b);
    let want = Value::Object(Object {
        class: "java.lang.RuntimeException".into(),
        fields: vec![
            (
                "suppressedExceptions".into(),
                Value::List(List {
                    type_name: Some("java.util.Collections$EmptyList".into()),
                    items: vec![],
                }),
            ),
            (
                "stackTrace".into(),
                Value::List(List {
                    type_name: Some("[java.lang.StackTraceElement".into()),
                    items: vec![],
                }),
            ),
            ("cause".into(), Value::Ref(0)),
            ("detailMessage".into(), s("boom")),
        ],
    });
    assert_eq!(v, want);
    assert_eq!(enc(&want), b, "re-encoding reproduces Java's bytes");
}

#[test]
fn same_map_twice_is_a_reference() {
    let mut d = Decoder::new(&[0x48, 0x5a, 0x51, 0x90]);
    assert_eq!(d.read_value().unwrap(), Value::Map(Map::default()));
    assert_eq!(d.read_value().unwrap(), Value::Ref(0));
}

#[test]
fn objects_reuse_class_definitions() {
    let user = |n: &'static str, a| {
        Value::Object(Object {
            class: "com.example.User".into(),
            fields: vec![("name".into(), s(n)), ("age".into(), Value::Int(a))],
        })
    };
    let list = Value::List(List {
        type_name: None,
        items: vec![user("ann", 30), user("bob", 40)],
    });
    let e = enc(&list);
    assert_eq!(e.iter().filter(|&&b| b == b'C').count(), 1);
    assert_eq!(dec(&e), list);
    // 17 distinct classes: the 17th instance needs the long `O` form.
    let many: Vec<Value<'_>> = (0..17)
        .map(|i| {
            Value::Object(Object {
                class: format!("C{i}").into(),
                fields: vec![("x".into(), Value::Int(i))],
            })
        })
        .collect();
    let l = Value::List(List {
        type_name: None,
        items: many,
    });
    assert_eq!(dec(&enc(&l)), l);
}

#[test]
fn definitions_and_types_are_found_again_among_many() {
    // A{x}, A{y}, then A{x} and A{y} again: two definitions, the later instances refer to them (0x60,
    // 0x61); the same for list types.
    let a = |field: &'static str| {
        Value::Object(Object {
            class: "A".into(),
            fields: vec![(field.into(), Value::Int(1))],
        })
    };
    let typed = |t: &'static str| {
        Value::List(List {
            type_name: Some(t.into()),
            items: vec![],
        })
    };
    let mut items = vec![a("x"), a("y"), a("x"), a("y")];
    items.extend([typed("[a.B"), typed("[a.C"), typed("[a.B")]);
    // Enough distinct definitions that a scan of them per object would show (the encoder indexes them).
    items.extend((0..2000).map(|i| {
        Value::Object(Object {
            class: "A".into(),
            fields: vec![(format!("f{i}").into(), Value::Null)],
        })
    }));
    items.push(a("y"));
    let l = Value::List(List {
        type_name: None,
        items,
    });
    let e = enc(&l);
    assert_eq!(dec(&e), l);
    let defs_of_a = e.windows(3).filter(|w| *w == [b'C', 0x01, b'A']).count();
    assert_eq!(defs_of_a, 2002);
    // The last instance (A{y}, definition 1) is `60+1` then its field.
    assert_eq!(&e[e.len() - 2..], &[0x61, 0x91]);
}

#[test]
fn malformed_input_is_a_typed_error() {
    let err = |b: &[u8]| Decoder::new(b).read_value().unwrap_err();
    assert!(matches!(err(&[]), CodecError::Truncated { .. }));
    assert!(matches!(err(&h("05 6162")), CodecError::Truncated { .. }));
    assert!(matches!(err(&h("49 00 00")), CodecError::Truncated { .. }));
    assert!(matches!(
        err(&h("40")),
        CodecError::UnexpectedTag { tag: 0x40, .. }
    ));
    assert!(matches!(err(&h("5a")), CodecError::UnexpectedTag { .. }));
    // Reference to a value that does not exist.
    assert!(matches!(
        err(&h("51 90")),
        CodecError::BadReference { what: "value", .. }
    ));
    // Inside a list (ref #0), a reference to #1.
    assert!(matches!(
        err(&h("79 51 91")),
        CodecError::BadReference {
            index: 1,
            count: 1,
            ..
        }
    ));
    // Instance of an undefined class; type index with an empty type table.
    assert!(matches!(
        err(&h("60")),
        CodecError::BadReference { what: "class", .. }
    ));
    assert!(matches!(
        err(&h("70 90")),
        CodecError::BadReference { what: "type", .. }
    ));
    // A list claiming more elements than there are bytes is refused before allocating.
    assert!(matches!(
        err(&h("58 49 7fffffff 90")),
        CodecError::BadLength { .. }
    ));
    assert!(matches!(err(&h("58 49 80000000")), CodecError::BadLength { .. }));
    // Bad UTF-8 continuation byte.
    assert!(matches!(err(&h("01 c3 41")), CodecError::BadUtf8(_)));
    assert!(matches!(err(&h("01 ff")), CodecError::BadUtf8(_)));
    // A string chunk followed by a non-string tag.
    assert!(matches!(
        err(&h("52 0001 61 90")),
        CodecError::UnexpectedTag { what: "string", .. }
    ));
    // Unterminated map.
    assert!(matches!(err(&h("48 01 61")), CodecError::Truncated { .. }));
}

#[test]
fn nesting_is_limited() {
    let deep = |n: usize| {
        let mut b = vec![0x79u8; n];
        b.push(0x4e);
        b
    };
    assert!(Decoder::new(&deep(64)).read_value().is_ok());
    assert_eq!(
        Decoder::new(&deep(65)).read_value().unwrap_err(),
        CodecError::TooDeep(64)
    );
    assert_eq!(
        Decoder::with_max_depth(&deep(10), 5).read_value().unwrap_err(),
        CodecError::TooDeep(5)
    );
    // Deep maps too, and the encoder refuses what the decoder would refuse.
    let mut v = Value::Null;
    for _ in 0..65 {
        v = Value::Map(Map {
            type_name: None,
            entries: vec![(Value::Int(1), v)],
        });
    }
    let mut buf = BytesMut::new();
    assert_eq!(
        Encoder::new(&mut buf).write_value(&v).unwrap_err(),
        CodecError::TooDeep(64)
    );
}

#[test]
fn a_huge_class_definition_does_not_multiply_memory() {
    // Found by review during fuzzing: class "x" declaring 100,000 (empty-named) fields, then 64 nested
    // instances. Each instance used to reserve room for every field up front (64 x 100,000 x 104 bytes);
    // now the body ends long before, with an error, having allocated little.
    let n: i32 = 100_000;
    let mut b = vec![0x43, 0x01, b'x', 0x49];
    b.extend_from_slice(&n.to_be_bytes());
    b.extend(std::iter::repeat_n(0u8, n as usize));
    b.extend(std::iter::repeat_n(0x60u8, 64));
    assert!(matches!(
        Decoder::new(&b).read_value().unwrap_err(),
        CodecError::TooDeep(64) | CodecError::Truncated { .. }
    ));
}
