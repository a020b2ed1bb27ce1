//! Form bodies into invocations: the challenge's body, borrowing, normalisation and every error.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use mesh_dubbo::Value;
use mesh_http::{encode_form, parse_form, HttpError, Invocation, Limits};

const IFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

fn parse(body: &str) -> Result<Invocation<'_>, HttpError> {
    parse_form(body.as_bytes(), &Limits::default())
}

fn err(body: &str) -> (u16, String) {
    let e = parse(body).unwrap_err();
    assert!(!e.closes_connection(), "{e}");
    (e.status(), e.to_string())
}

#[test]
fn challenge_body_borrows_everything() {
    let body = format!(
        "interface={IFACE}&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=Ab3xYz09"
    );
    let inv = parse(&body).unwrap();
    assert_eq!(inv.interface, IFACE);
    assert_eq!(inv.method, "hash");
    assert_eq!(inv.param_types, "Ljava/lang/String;");
    assert_eq!(inv.args, [Value::str("Ab3xYz09")]);
    assert_eq!((inv.version, inv.group), (None, None));
    assert!(matches!(inv.interface, Cow::Borrowed(_)));
    assert!(matches!(inv.method, Cow::Borrowed(_)));
    assert!(
        matches!(inv.param_types, Cow::Borrowed(_)),
        "escaped descriptor interned"
    );
    assert!(matches!(inv.args[0], Value::String(Cow::Borrowed(_))));
}

#[test]
fn unescaped_descriptor_and_empty_parameter() {
    let body = format!("interface={IFACE}&method=hash&parameterTypesString=Ljava/lang/String;&parameter=");
    let inv = parse(&body).unwrap();
    assert_eq!(inv.param_types, "Ljava/lang/String;");
    assert_eq!(inv.args, [Value::str("")]);
    // A pair without '=' is an empty value too.
    let body = format!("interface={IFACE}&method=hash&parameterTypesString=Ljava/lang/String;&parameter");
    let inv = parse(&body).unwrap();
    assert_eq!(inv.args, [Value::str("")]);
    // A 1024-character parameter (the challenge's largest).
    let long = "x".repeat(1024);
    let body = format!("interface=I&method=m&parameterTypesString=Ljava%2Flang%2FString%3B&parameter={long}");
    let inv = parse(&body).unwrap();
    assert_eq!(inv.args[0].as_str().unwrap().len(), 1024);
}

#[test]
fn decoding_allocates_only_escaped_values() {
    let inv = parse("interface=a.B&method=m%C3%A9thod&parameterTypesString=Ljava/lang/String;Ljava/lang/String;&parameter=1&parameter=a+b%2Bc%25&version=1.0.0&group=g%20x").unwrap();
    assert_eq!(inv.method, "méthod");
    assert!(matches!(inv.method, Cow::Owned(_)));
    assert_eq!(inv.param_types, "Ljava/lang/String;Ljava/lang/String;");
    assert_eq!(inv.args, [Value::str("1"), Value::str("a b+c%")]);
    assert!(matches!(inv.args[0], Value::String(Cow::Borrowed(_))));
    assert!(matches!(inv.args[1], Value::String(Cow::Owned(_))));
    assert_eq!(inv.version.as_deref(), Some("1.0.0"));
    assert_eq!(inv.group.as_deref(), Some("g x"));
}

#[test]
fn java_type_names_are_normalised() {
    let inv = parse("interface=I&method=m&parameterTypesString=java.lang.String%2Cint%2C+long%5B%5D&parameter=a&parameter=1&parameter=%5B5%5D").unwrap();
    assert_eq!(inv.param_types, "Ljava/lang/String;I[J");
    assert_eq!(
        inv.args,
        [
            Value::str("a"),
            Value::Int(1),
            Value::List(mesh_dubbo::List {
                type_name: Some("[long".into()),
                items: vec![Value::Long(5)]
            })
        ]
    );
    let inv = parse("interface=I&method=m&parameterTypesString=java.lang.String&parameter=a").unwrap();
    assert_eq!(inv.param_types, "Ljava/lang/String;");
    assert!(matches!(inv.param_types, Cow::Borrowed(_)));
    let inv = parse(
        "interface=I&method=m&parameterTypesString=[Ljava.lang.String;,java.util.Map&parameter=%5B%22a%22%5D&parameter=%7B%7D",
    )
    .unwrap();
    assert_eq!(inv.param_types, "[Ljava/lang/String;Ljava/util/Map;");
}

#[test]
fn no_arg_methods() {
    for body in [
        "interface=I&method=m&parameterTypesString=",
        "interface=I&method=m",
        "method=m&&interface=I&",
    ] {
        let inv = parse(body).unwrap();
        assert_eq!(inv.param_types, "");
        assert!(inv.args.is_empty());
    }
}

#[test]
fn field_order_and_unknown_fields() {
    let inv = parse(
        "parameter=p1&x=%ZZ&parameterTypesString=java.lang.String,java.lang.String&foo&method=m&parameter=p2&interface=I&version=&group=",
    )
    .unwrap();
    assert_eq!(inv.args, [Value::str("p1"), Value::str("p2")]);
    assert_eq!(
        (inv.version, inv.group),
        (None, None),
        "empty version/group mean none"
    );
    // Field names are decoded too.
    let inv = parse("interfac%65=I&meth%6Fd=m&parameter%54ypesString=J&param%65ter=5").unwrap();
    assert_eq!(
        (&*inv.interface, &*inv.method, &*inv.param_types),
        ("I", "m", "J")
    );
    // Names are case-sensitive: `Interface` is an unknown field.
    assert_eq!(
        err("Interface=I&method=m"),
        (400, "missing form field: interface".into())
    );
}

#[test]
fn errors() {
    for (body, reason) in [
        ("method=m", "missing form field: interface"),
        ("interface=&method=m", "missing form field: interface"),
        ("interface=I", "missing form field: method"),
        ("interface=I&method=", "missing form field: method"),
        ("", "missing form field: interface"),
        ("interface=I&interface=J&method=m", "duplicate form field: interface"),
        ("interface=I&method=m&method=m", "duplicate form field: method"),
        ("interface=I&method=m&parameterTypesString=I&parameterTypesString=I&parameter=1", "duplicate form field: parameterTypesString"),
        ("interface=I&method=m&version=1&version=1", "duplicate form field: version"),
        ("interface=I&method=m&group=1&group=1", "duplicate form field: group"),
        ("interface=I%2&method=m", "form field interface: invalid percent-escape"),
        ("interface=I&method=%", "form field method: invalid percent-escape"),
        ("interface=I&method=m&parameterTypesString=%GG", "form field parameterTypesString: invalid percent-escape"),
        ("interface=I&method=m&parameterTypesString=I&parameter=%zz", "form field parameter: invalid percent-escape"),
        ("interface=I&method=m&version=%", "form field version: invalid percent-escape"),
        ("interface=I&method=m&group=%1", "form field group: invalid percent-escape"),
        ("interface=I&method=m&parameterTypesString=I&parameter=%FF", "form field parameter: invalid UTF-8"),
        ("interface=%C3%28&method=m", "form field interface: invalid UTF-8"),
        ("inter%ZZface=I&method=m", "form field field name: invalid percent-escape"),
        ("interface=I&method=m&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=a&parameter=b&parameter=c", "3 parameters for 1 parameter types"),
        ("interface=I&method=m&parameterTypesString=IJ&parameter=1", "1 parameters for 2 parameter types"),
        ("interface=I&method=m&parameter=1", "1 parameters for 0 parameter types"),
        ("interface=I&method=m&parameterTypesString=Ljava%2Flang%2FString", "parameterTypesString: not a descriptor or a list of Java type names"),
        ("interface=I&method=m&parameterTypesString=java.lang.String,,int", "parameterTypesString: empty type name"),
        ("interface=I&method=m&parameterTypesString=java lang", "parameterTypesString: not a descriptor or a list of Java type names"),
        ("interface=I&method=m&parameterTypesString=V&parameter=1", "parameterTypesString: void is not a parameter type"),
        // typed arguments: the index (from 0) and the type are named, never the value
        ("interface=I&method=m&parameterTypesString=Ljava%2Flang%2FString%3BI&parameter=a&parameter=x1", "parameter 1 (int): not an integer"),
        ("interface=I&method=m&parameterTypesString=B&parameter=300", "parameter 0 (byte): out of range"),
        ("interface=I&method=m&parameterTypesString=java.lang.Boolean&parameter=yes", "parameter 0 (java.lang.Boolean): expected true or false"),
        ("interface=I&method=m&parameterTypesString=%5BB&parameter=%25%25", "parameter 0 (byte[]): not base64"),
        ("interface=I&method=m&parameterTypesString=java.util.Date&parameter=soon", "parameter 0 (java.util.Date): expected integer milliseconds or an RFC 3339 date-time"),
        ("interface=I&method=m&parameterTypesString=java.util.List&parameter=%5B1", "parameter 0 (java.util.List): invalid JSON: EOF while parsing a list at line 1 column 2"),
        ("interface=I&method=m&parameterTypesString=int%5B%5D&parameter=%5B%22a%22%5D", "parameter 0 (int[]): int: not an integer"),
    ] {
        assert_eq!(err(body), (400, reason.to_owned()), "{body}");
    }
    // Non-UTF-8 bytes straight in the body.
    let e = parse_form(b"interface=\xff&method=m", &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "form field interface: invalid UTF-8");
    // ...are fine in an unknown field, whose value is never looked at.
    parse_form(b"x=\xff%&interface=I&method=m", &Limits::default()).unwrap();
}

#[test]
fn field_count_limit() {
    let limits = Limits {
        max_form_fields: 4,
        ..Limits::default()
    };
    parse_form(b"interface=I&method=m&a=1&b=2&&&", &limits).unwrap();
    let e = parse_form(b"interface=I&method=m&a=1&b=2&c", &limits).unwrap_err();
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "more than 4 form fields")
    );
    let e = parse_form(b"parameter&parameter&parameter&parameter&parameter", &limits).unwrap_err();
    assert_eq!(e, HttpError::TooManyFormFields { max: 4 });
}

#[test]
fn encode_matches_the_challenge_consumer() {
    let inv = Invocation {
        interface: IFACE.into(),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec!["abc".into()],
        version: None,
        group: None,
        tag: None,
        force_tag: false,
        attachments: Vec::new(),
    };
    let mut out = Vec::new();
    encode_form(&inv, &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        format!("interface={IFACE}&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=abc")
    );
    assert_eq!(parse_form(&out, &Limits::default()).unwrap(), inv);
    let mut b = bytes::BytesMut::new();
    encode_form(
        &Invocation {
            version: Some("1.0".into()),
            group: Some("a b".into()),
            tag: Some("gray".into()),
            ..inv.clone()
        },
        &mut b,
    );
    assert!(b.ends_with(b"&version=1.0&group=a+b&tag=gray"));
    // `dubbo.tag` is the same field; an empty tag is none.
    let tagged = parse_form(b"interface=I&method=m&dubbo.tag=blue", &Limits::default()).unwrap();
    assert_eq!(tagged.tag.as_deref(), Some("blue"));
    let untagged = parse_form(b"interface=I&method=m&tag=", &Limits::default()).unwrap();
    assert_eq!(untagged.tag, None);
    assert!(parse_form(b"interface=I&method=m&tag=a&dubbo.tag=b", &Limits::default()).is_err());
}
