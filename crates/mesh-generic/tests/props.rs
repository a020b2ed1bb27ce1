//! Properties of the type mapping: every supported type's values survive JSON (answer rendering, then the
//! argument mapping by the same declared type), as a tree and as text, and as form text; anything else is an
//! error, never a panic.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use mesh_dubbo::{List, Map, Object, Value};
use mesh_generic::bignum::{big_decimal_value, big_integer_value};
use mesh_generic::{
    from_json, infer, parse_invoke_body, parse_java_name, parse_type_list, text_of, to_json, typed_text,
    JavaType, Json, Number, Primitive, RenderLimits,
};
use proptest::prelude::*;

/// Structural equality that treats NaN as equal to NaN and tells -0.0 from 0.0 (Debug text does both).
fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn owned(s: String) -> Value<'static> {
    Value::String(Cow::Owned(s))
}

/// A value that keeps its form when its type is not declared (`Object` positions): what `infer` gives back
/// for the JSON `to_json` writes.
fn untyped_value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::Int),
        any::<i64>()
            .prop_filter("outside int", |l| i32::try_from(*l).is_err())
            .prop_map(Value::Long),
        any::<f64>()
            .prop_filter("finite, not integral", |d| d.is_finite() && d.fract() != 0.0)
            .prop_map(Value::Double),
        any::<String>().prop_map(owned),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| Value::List(List {
                type_name: None,
                items
            })),
            proptest::collection::btree_map("[a-z]{1,6}", inner.clone(), 0..4).prop_map(|m| Value::Map(
                Map {
                    type_name: None,
                    entries: m.into_iter().map(|(k, v)| (owned(k), v)).collect(),
                }
            )),
            (
                "[a-z]{1,5}(\\.[A-Z][a-z]{0,5}){1,2}",
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
            )
                .prop_filter("not a recognised class", |(c, _)| matches!(
                    parse_java_name(c),
                    Ok(JavaType::Class(_))
                ))
                .prop_map(|(class, fields)| Value::Object(Object {
                    class: Cow::Owned(class),
                    fields: fields
                        .into_iter()
                        .filter(|(k, _)| k != "class")
                        .map(|(k, v)| (Cow::Owned(k), v))
                        .collect(),
                })),
        ]
    })
}

/// A scalar type with a value of it.
fn scalar() -> impl Strategy<Value = (JavaType, Value<'static>)> {
    let p = JavaType::Primitive;
    let b = JavaType::Boxed;
    prop_oneof![
        any::<bool>().prop_map(move |v| (p(Primitive::Boolean), Value::Bool(v))),
        any::<i8>().prop_map(move |v| (p(Primitive::Byte), Value::Int(v.into()))),
        any::<i16>().prop_map(move |v| (b(Primitive::Short), Value::Int(v.into()))),
        any::<i32>().prop_map(move |v| (p(Primitive::Int), Value::Int(v))),
        any::<i64>().prop_map(move |v| (b(Primitive::Long), Value::Long(v))),
        any::<f32>().prop_map(move |v| (p(Primitive::Float), Value::Double(f64::from(v)))),
        any::<f64>().prop_map(move |v| (b(Primitive::Double), Value::Double(v))),
        any::<char>()
            .prop_filter("one UTF-16 unit", |c| c.len_utf16() == 1)
            .prop_map(move |c| (p(Primitive::Char), owned(c.to_string()))),
        any::<String>().prop_map(|s| (JavaType::String, owned(s))),
        any::<i64>().prop_map(|ms| (JavaType::Date, Value::Date(ms))),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(move |bytes| (
            JavaType::Array(Box::new(p(Primitive::Byte))),
            Value::Binary(Cow::Owned(bytes))
        )),
        any::<String>().prop_map(move |s| (JavaType::Array(Box::new(p(Primitive::Char))), owned(s))),
        "[+-]?[0-9]{1,30}(\\.[0-9]{0,10})?([eE][+-]?[0-9]{1,3})?".prop_map(|s| (
            JavaType::BigDecimal,
            big_decimal_value(Cow::Owned(s)).into_owned()
        )),
        "-?[1-9][0-9]{0,60}|0".prop_map(|s| (JavaType::BigInteger, big_integer_value(&s).unwrap())),
        Just((b(Primitive::Int), Value::Null)),
        Just((JavaType::Date, Value::Null)),
    ]
}

/// Any supported type with a value of it: scalars, arrays of them (typed lists), collections, maps, POJOs
/// and `Object`.
fn typed_value() -> impl Strategy<Value = (JavaType, Value<'static>)> {
    prop_oneof![
        4 => scalar(),
        // (byte[] and char[] are binary and string, among the scalars; arrays of them are lists)
        1 => (scalar(), 0..4usize)
            .prop_filter("not byte[] or char[]", |((t, _), _)| {
                !matches!(t, JavaType::Primitive(Primitive::Byte | Primitive::Char))
            })
            .prop_flat_map(|((t, _), n)| {
            let t2 = t.clone();
            proptest::collection::vec(
                scalar().prop_filter_map("same type", move |(u, v)| (u == t2).then_some(v)),
                n..=n,
            )
            .prop_map(move |items| {
                let at = JavaType::Array(Box::new(t.clone()));
                let v = Value::List(List {
                    type_name: at.hessian_list_type().map(Cow::Owned),
                    items,
                });
                (at, v)
            })
        }),
        1 => proptest::collection::vec(untyped_value(), 0..4).prop_map(|items| (
            JavaType::Collection("java.util.List".into()),
            Value::List(List { type_name: None, items })
        )),
        1 => proptest::collection::btree_map(any::<String>(), untyped_value(), 0..4).prop_map(|m| (
            JavaType::Map("java.util.Map".into()),
            Value::Map(Map {
                type_name: None,
                entries: m.into_iter().map(|(k, v)| (owned(k), v)).collect(),
            })
        )),
        1 => untyped_value().prop_map(|v| (JavaType::Object, v)),
        1 => proptest::collection::btree_map("[a-z]{1,8}", untyped_value(), 0..5).prop_map(|fields| (
            JavaType::Class("com.example.Pojo".into()),
            Value::Object(Object {
                class: Cow::Borrowed("com.example.Pojo"),
                fields: fields
                    .into_iter()
                    .filter(|(k, _)| k != "class")
                    .map(|(k, v)| (Cow::Owned(k), v))
                    .collect(),
            })
        )),
    ]
}

/// Arbitrary JSON.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|i| Json::Number(Number::Int(i))),
        any::<u64>().prop_map(|u| Json::Number(Number::UInt(u))),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Json::Number(Number::Float(f))),
        any::<String>().prop_map(Json::String),
        Just(Json::String("class".into())),
        Just(Json::String("java.lang.Long".into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("class".to_owned()),
                        Just("value".to_owned()),
                        any::<String>()
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(Json::Object),
        ]
    })
}

/// Arbitrary type names, valid or not.
fn any_type() -> impl Strategy<Value = JavaType> {
    prop_oneof![
        typed_value().prop_map(|(t, _)| t),
        "[\\[]{0,3}[ZBCSIJFDL]([a-z/]{0,8};)?".prop_filter_map("parses", |s| parse_java_name(&s).ok()),
        "[a-z]{1,4}(\\.[A-Za-z$]{1,6}){0,3}(\\[\\]){0,2}"
            .prop_filter_map("parses", |s| parse_java_name(&s).ok()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip_by_declared_type((t, v) in typed_value()) {
        let json = to_json(&v, &RenderLimits::default()).unwrap();
        let back = from_json(&json, &t).unwrap_or_else(|e| panic!("{t}: {e}\n{json:?}"));
        prop_assert!(same(&back, &v), "tree: {t}\n{v:?}\n{back:?}");
        // Through the text too.
        let text = json.to_text();
        let back = from_json(&Json::parse(text.as_bytes()).unwrap(), &t).unwrap();
        prop_assert!(same(&back, &v), "text {text}: {t}\n{v:?}\n{back:?}");
    }

    #[test]
    fn form_text_round_trip_by_declared_type(
        (t, v) in typed_value().prop_filter(
            "an Object-typed field's text is JSON when it parses: the string \"12\" comes back as 12",
            |(t, v)| !(matches!(t, JavaType::Object) && matches!(v, Value::String(_))),
        )
    ) {
        let text = text_of(&v).into_owned();
        // A String (and char[]) argument "null" is the text null: only nullable non-strings read it as null.
        let back = typed_text(Cow::Borrowed(&text), &t).unwrap_or_else(|e| panic!("{t}: {e}: {text:?}"));
        prop_assert!(same(&back, &v), "{t} {text:?}\n{v:?}\n{back:?}");
    }

    #[test]
    fn descriptors_round_trip((t, _) in typed_value()) {
        prop_assert_eq!(parse_java_name(&t.descriptor()).unwrap(), t.clone());
        prop_assert_eq!(parse_java_name(&t.java_name()).unwrap(), t.clone());
        prop_assert_eq!(parse_type_list(&format!("{},{}", t.java_name(), t.descriptor())).unwrap(), vec![t.clone(), t]);
    }

    #[test]
    fn arbitrary_json_against_any_type_is_ok_or_an_error(json in any_json(), t in any_type()) {
        if let Ok(v) = from_json(&json, &t) {
            // What converts also renders (and encodes as Hessian).
            to_json(&v, &RenderLimits::default()).unwrap();
            let mut buf = bytes::BytesMut::new();
            mesh_dubbo::hessian::Encoder::new(&mut buf).write_value(&v).unwrap();
        }
        let _ = infer(&json);
        let text = json.to_text();
        let _ = typed_text(Cow::Borrowed(&text), &t);
    }

    #[test]
    fn arbitrary_text_is_ok_or_an_error(text in "\\PC{0,40}", t in any_type()) {
        let _ = typed_text(Cow::Borrowed(&text), &t);
        let _ = parse_type_list(&text);
        let _ = parse_java_name(&text);
        let _ = parse_invoke_body(text.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_as_a_body_are_ok_or_an_error(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_invoke_body(&body);
    }

    #[test]
    fn arbitrary_answers_render_or_fail_within_limits(v in untyped_value(), refs in proptest::collection::vec(0u32..40, 0..6)) {
        // Sprinkle back-references (cycles, shared values, out of range) into a list around the value.
        let mut items = vec![v];
        items.extend(refs.into_iter().map(Value::Ref));
        let root = Value::List(List { type_name: None, items: vec![Value::List(List { type_name: None, items }), Value::Ref(0)] });
        let limits = RenderLimits { max_depth: 32, max_nodes: 5_000, ..RenderLimits::default() };
        let _ = to_json(&root, &limits);
        let _ = text_of(&root);
    }
}
