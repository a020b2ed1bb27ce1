//! JSON to Hessian values: by the declared Java type ([`from_json`]), or by what the JSON looks like when
//! the type says nothing (`java.lang.Object`, collection elements, map values, POJO fields: [`infer`]).
//!
//! Dubbo's generic-call conventions: a JSON object with a `class` member is an object of that class (the
//! other members are its fields, in order); other objects are maps; arrays are lists (typed `[int`,
//! `[string`, ... when the declared type is a Java array). Numbers are range-checked against the declared
//! type; numeric strings are accepted for numbers (as Dubbo's `PojoUtils` does). In an untyped position a
//! `{"class": "<value type>", "value": ...}` object gives that type to its `value` (`java.lang.Long`,
//! `java.math.BigDecimal`, `java.util.Date`, `int[]`, ...).

use std::borrow::Cow;

use base64::Engine as _;
use mesh_dubbo::{List, Map, Object, Value};

use crate::bignum::{big_decimal_value, big_integer_value, is_decimal};
use crate::date::parse_date;
use crate::form_text::{parse_float, parse_integral};
use crate::java_type::{parse_java_name, JavaType, Primitive};
use crate::json::{Json, Number};
use crate::TypeError;

/// Deepest nesting of lists, maps and objects in one argument (the Hessian codec's own limit).
pub const MAX_DEPTH: usize = mesh_dubbo::hessian::DEFAULT_MAX_DEPTH;

/// The Hessian value of `json` as an argument of type `t`.
pub fn from_json(json: &Json, t: &JavaType) -> Result<Value<'static>, TypeError> {
    typed(json, t, 0)
}

/// The Hessian value of `json` where no type is declared.
pub fn infer(json: &Json) -> Result<Value<'static>, TypeError> {
    inferred(json, 0)
}

fn enter(depth: usize) -> Result<usize, TypeError> {
    if depth >= MAX_DEPTH {
        return Err(TypeError::TooDeep { max: MAX_DEPTH });
    }
    Ok(depth + 1)
}

fn typed(json: &Json, t: &JavaType, depth: usize) -> Result<Value<'static>, TypeError> {
    let bad = |problem| Err(TypeError::mismatch(t, problem));
    if let Json::Null = json {
        return if t.is_nullable() {
            Ok(Value::Null)
        } else {
            bad("null for a primitive")
        };
    }
    match t {
        JavaType::Primitive(p) | JavaType::Boxed(p) => primitive(json, *p, t),
        JavaType::String => match json {
            Json::String(s) => Ok(Value::String(Cow::Owned(s.clone()))),
            _ => bad("expected a JSON string"),
        },
        JavaType::Object => inferred(json, depth),
        JavaType::BigDecimal => match json {
            Json::String(s) if is_decimal(s) => Ok(big_decimal_value(Cow::Owned(s.clone()))),
            Json::Number(n) if n.as_f64().is_finite() => Ok(big_decimal_value(Cow::Owned(n.to_string()))),
            Json::String(_) => bad("not a decimal number"),
            _ => bad("expected a decimal string or number"),
        },
        JavaType::BigInteger => match json {
            Json::String(s) => big_integer_value(s).ok_or_else(|| TypeError::mismatch(t, "not an integer")),
            Json::Number(n @ (Number::Int(_) | Number::UInt(_))) => {
                big_integer_value(&n.to_string()).ok_or_else(|| TypeError::mismatch(t, "not an integer"))
            }
            _ => bad("expected an integer string or number"),
        },
        JavaType::Date => match json {
            Json::Number(n) => n.as_i64().map(Value::Date).ok_or_else(|| {
                TypeError::mismatch(t, "expected integer milliseconds or an RFC 3339 date-time")
            }),
            Json::String(s) => parse_date(s).map(Value::Date).ok_or_else(|| {
                TypeError::mismatch(t, "expected integer milliseconds or an RFC 3339 date-time")
            }),
            _ => bad("expected integer milliseconds or an RFC 3339 date-time"),
        },
        JavaType::Array(c) => array(json, t, c, depth),
        JavaType::Collection(_) => match json {
            Json::Array(items) => {
                let depth = enter(depth)?;
                let items = items
                    .iter()
                    .map(|j| inferred(j, depth))
                    .collect::<Result<_, _>>()?;
                Ok(Value::List(List {
                    type_name: None,
                    items,
                }))
            }
            _ => bad("expected a JSON array"),
        },
        JavaType::Map(_) => match json {
            Json::Object(members) => untyped_map(members, depth),
            _ => bad("expected a JSON object"),
        },
        JavaType::Class(name) => match json {
            Json::Object(members) => pojo(members, name, depth),
            // An enum constant by name: hessian-lite writes enums as an object with a `name` field.
            Json::String(s) => Ok(Value::Object(Object {
                class: Cow::Owned(name.clone()),
                fields: vec![(Cow::Borrowed("name"), Value::String(Cow::Owned(s.clone())))],
            })),
            _ => bad("expected a JSON object (or an enum constant's name)"),
        },
    }
}

fn primitive(json: &Json, p: Primitive, t: &JavaType) -> Result<Value<'static>, TypeError> {
    let bad = |problem| Err(TypeError::mismatch(t, problem));
    match (p, json) {
        (Primitive::Boolean, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (Primitive::Boolean, Json::String(s)) => {
            crate::form_text::typed_text(Cow::Borrowed(s), t).map(Value::into_owned)
        }
        (Primitive::Boolean, _) => bad("expected true or false"),
        (Primitive::Char, Json::String(s)) => {
            crate::form_text::typed_text(Cow::Borrowed(s), t).map(Value::into_owned)
        }
        (Primitive::Char, _) => bad("expected a one-character string"),
        (Primitive::Float | Primitive::Double, Json::Number(n)) => parse_float(n.as_f64(), p, t),
        (_, Json::Number(n)) => match n {
            Number::Int(i) => parse_integral(i128::from(*i), p, t),
            Number::UInt(u) => parse_integral(i128::from(*u), p, t),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 1e19 => parse_integral(*f as i128, p, t),
            Number::Float(_) => bad("not an integer"),
        },
        (_, Json::String(s)) => crate::form_text::typed_text(Cow::Borrowed(s), t).map(Value::into_owned),
        _ => bad("expected a number"),
    }
}

fn array(json: &Json, t: &JavaType, c: &JavaType, depth: usize) -> Result<Value<'static>, TypeError> {
    let bad = |problem| Err(TypeError::mismatch(t, problem));
    match (c, json) {
        // byte[] is Hessian binary: base64 text, or an array of byte values.
        (JavaType::Primitive(Primitive::Byte), Json::String(s)) => base64_binary(s)
            .map(|b| Value::Binary(Cow::Owned(b)))
            .ok_or_else(|| TypeError::mismatch(t, "not base64")),
        (JavaType::Primitive(Primitive::Byte), Json::Array(items)) => {
            let mut bytes = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::Number(n) => match n.as_i64() {
                        Some(b @ -128..=255) => bytes.push(b as u8),
                        _ => return bad("a byte out of -128..255"),
                    },
                    _ => return bad("expected numbers in the array"),
                }
            }
            Ok(Value::Binary(Cow::Owned(bytes)))
        }
        // char[] is a Hessian string.
        (JavaType::Primitive(Primitive::Char), Json::String(s)) => Ok(Value::String(Cow::Owned(s.clone()))),
        (_, Json::Array(items)) => {
            let depth = enter(depth)?;
            let items = items
                .iter()
                .map(|j| typed(j, c, depth))
                .collect::<Result<Vec<_>, _>>()?;
            if let JavaType::Primitive(Primitive::Char) = c {
                // char[] given as an array of one-character strings: still a Hessian string.
                let s: String = items.iter().filter_map(Value::as_str).collect();
                return Ok(Value::String(Cow::Owned(s)));
            }
            Ok(Value::List(List {
                type_name: t.hessian_list_type().map(Cow::Owned),
                items,
            }))
        }
        _ => bad("expected a JSON array"),
    }
}

/// Standard base64 with or without padding, or the URL-safe alphabet.
pub(crate) fn base64_binary(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

fn untyped_map(members: &[(String, Json)], depth: usize) -> Result<Value<'static>, TypeError> {
    let depth = enter(depth)?;
    let entries = members
        .iter()
        .map(|(k, v)| Ok((Value::String(Cow::Owned(k.clone())), inferred(v, depth)?)))
        .collect::<Result<_, TypeError>>()?;
    Ok(Value::Map(Map {
        type_name: None,
        entries,
    }))
}

/// A POJO: `class` member (if a string) or the declared class; the other members are its fields.
fn pojo(members: &[(String, Json)], declared: &str, depth: usize) -> Result<Value<'static>, TypeError> {
    let class_at = members
        .iter()
        .position(|(k, v)| k == "class" && matches!(v, Json::String(_)));
    let class = match class_at.map(|i| &members[i].1) {
        Some(Json::String(c)) => {
            // A `class` member naming a value type or an array in a POJO position gives that type.
            match parse_java_name(c) {
                Ok(JavaType::Class(name)) => name,
                Ok(other) => return tagged(members, &other, depth),
                Err(e) => return Err(e),
            }
        }
        _ => declared.to_owned(),
    };
    let depth = enter(depth)?;
    let fields = members
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != class_at)
        .map(|(_, (k, v))| Ok((Cow::Owned(k.clone()), inferred(v, depth)?)))
        .collect::<Result<_, TypeError>>()?;
    Ok(Value::Object(Object {
        class: Cow::Owned(class),
        fields,
    }))
}

/// `{"class": "<type>", "value": ...}` for a type that is not a POJO: the value by that type (collections
/// and maps: the members other than `class`, as a map of that class).
fn tagged(members: &[(String, Json)], t: &JavaType, depth: usize) -> Result<Value<'static>, TypeError> {
    match t {
        JavaType::Map(name) => {
            let rest: Vec<(String, Json)> = members.iter().filter(|(k, _)| k != "class").cloned().collect();
            let Value::Map(mut m) = untyped_map(&rest, depth)? else {
                return Err(TypeError::mismatch(t, "expected a JSON object"));
            };
            m.type_name = Some(Cow::Owned(name.clone()));
            Ok(Value::Map(m))
        }
        _ => {
            let value = members
                .iter()
                .find(|(k, _)| k == "value")
                .map(|(_, v)| v)
                .ok_or_else(|| TypeError::mismatch(t, "a `class` object without `value`"))?;
            typed(value, t, depth)
        }
    }
}

fn inferred(json: &Json, depth: usize) -> Result<Value<'static>, TypeError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(Number::Int(i)) => match i32::try_from(*i) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Long(*i),
        },
        Json::Number(n) => Value::Double(n.as_f64()),
        Json::String(s) => Value::String(Cow::Owned(s.clone())),
        Json::Array(items) => {
            let depth = enter(depth)?;
            Value::List(List {
                type_name: None,
                items: items
                    .iter()
                    .map(|j| inferred(j, depth))
                    .collect::<Result<_, _>>()?,
            })
        }
        Json::Object(members) => {
            if members
                .iter()
                .any(|(k, v)| k == "class" && matches!(v, Json::String(_)))
            {
                pojo(members, "", depth)?
            } else {
                untyped_map(members, depth)?
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::java_type::parse_java_name;

    fn conv(json: &str, t: &str) -> Result<Value<'static>, TypeError> {
        from_json(
            &Json::parse(json.as_bytes()).unwrap(),
            &parse_java_name(t).unwrap(),
        )
    }

    /// An object of `class` with `fields`.
    pub(crate) fn obj(class: &str, fields: Vec<(&str, Value<'static>)>) -> Value<'static> {
        Value::Object(Object {
            class: Cow::Owned(class.into()),
            fields: fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into()), v))
                .collect(),
        })
    }

    #[test]
    fn numbers_by_declared_type_with_ranges() {
        assert_eq!(conv("7", "int").unwrap(), Value::Int(7));
        assert_eq!(conv("\"7\"", "java.lang.Integer").unwrap(), Value::Int(7));
        assert_eq!(conv("7", "long").unwrap(), Value::Long(7));
        assert_eq!(conv("-128", "byte").unwrap(), Value::Int(-128));
        assert_eq!(conv("32767", "short").unwrap(), Value::Int(32767));
        assert_eq!(conv("2.0", "int").unwrap(), Value::Int(2));
        assert_eq!(conv("2", "double").unwrap(), Value::Double(2.0));
        assert_eq!(conv("0.1", "float").unwrap(), Value::Double(f64::from(0.1f32)));
        assert_eq!(conv("true", "boolean").unwrap(), Value::Bool(true));
        assert_eq!(conv("\"x\"", "char").unwrap(), Value::str("x"));
        assert_eq!(conv("null", "java.lang.Long").unwrap(), Value::Null);
        for (json, t) in [
            ("128", "byte"),
            ("-32769", "short"),
            ("2147483648", "int"),
            ("9223372036854775808", "long"),
            ("1.5", "int"),
            ("1e300", "float"),
            ("null", "int"),
            ("\"x\"", "int"),
            ("1", "boolean"),
            ("\"ab\"", "char"),
            ("[]", "long"),
            ("{}", "double"),
        ] {
            let e = conv(json, t).unwrap_err();
            assert!(matches!(e, TypeError::Mismatch { .. }), "{json} as {t}: {e}");
        }
        let e = conv("2147483648", "java.lang.Integer").unwrap_err();
        assert_eq!(e.to_string(), "java.lang.Integer: out of range");
    }

    #[test]
    fn strings_binary_decimals_dates() {
        assert_eq!(
            conv("\"héllo\"", "java.lang.String").unwrap(),
            Value::str("héllo")
        );
        assert!(conv("5", "java.lang.String").is_err());
        assert_eq!(
            conv("\"AQL/\"", "byte[]").unwrap(),
            Value::Binary(Cow::Owned(vec![1, 2, 255]))
        );
        assert_eq!(
            conv("\"AQL_\"", "[B").unwrap(),
            Value::Binary(Cow::Owned(vec![1, 2, 255]))
        );
        assert_eq!(
            conv("[1,-1,255]", "byte[]").unwrap(),
            Value::Binary(Cow::Owned(vec![1, 255, 255]))
        );
        assert!(conv("\"%%\"", "byte[]").is_err());
        assert!(conv("[256]", "byte[]").is_err());
        assert_eq!(conv("\"abc\"", "char[]").unwrap(), Value::str("abc"));
        assert_eq!(conv("[\"a\",\"b\"]", "char[]").unwrap(), Value::str("ab"));
        assert_eq!(
            conv("\"1.50\"", "java.math.BigDecimal").unwrap(),
            obj("java.math.BigDecimal", vec![("value", Value::str("1.50"))])
        );
        assert_eq!(
            conv("0.1", "java.math.BigDecimal").unwrap(),
            obj("java.math.BigDecimal", vec![("value", Value::str("0.1"))])
        );
        assert!(conv("\"1,5\"", "java.math.BigDecimal").is_err());
        assert_eq!(
            conv("\"12\"", "java.math.BigInteger").unwrap(),
            big_integer_value("12").unwrap()
        );
        assert_eq!(
            conv("12", "java.math.BigInteger").unwrap(),
            big_integer_value("12").unwrap()
        );
        assert!(conv("1.5", "java.math.BigInteger").is_err());
        assert_eq!(conv("1000", "java.util.Date").unwrap(), Value::Date(1000));
        assert_eq!(
            conv("\"1970-01-01T00:00:01Z\"", "java.util.Date").unwrap(),
            Value::Date(1000)
        );
        assert!(conv("\"yesterday\"", "java.util.Date").is_err());
        assert!(conv("1.5", "java.util.Date").is_err());
    }

    #[test]
    fn arrays_are_typed_lists() {
        assert_eq!(
            conv("[1,2]", "int[]").unwrap(),
            Value::List(List {
                type_name: Some("[int".into()),
                items: vec![Value::Int(1), Value::Int(2)]
            })
        );
        assert_eq!(
            conv("[\"a\",null]", "[Ljava/lang/String;").unwrap(),
            Value::List(List {
                type_name: Some("[string".into()),
                items: vec![Value::str("a"), Value::Null]
            })
        );
        assert_eq!(
            conv("[[1]]", "long[][]").unwrap(),
            Value::List(List {
                type_name: Some("[[long".into()),
                items: vec![Value::List(List {
                    type_name: Some("[long".into()),
                    items: vec![Value::Long(1)]
                })]
            })
        );
        let e = conv("[1,\"x\"]", "int[]").unwrap_err();
        assert_eq!(e.to_string(), "int: not an integer");
        assert!(conv("[null]", "int[]").is_err());
        assert!(conv("{}", "int[]").is_err());
    }

    #[test]
    fn collections_maps_and_pojos() {
        assert_eq!(
            conv("[1, 3000000000, 1.5, \"s\", null, true]", "java.util.List").unwrap(),
            Value::List(List {
                type_name: None,
                items: vec![
                    Value::Int(1),
                    Value::Long(3_000_000_000),
                    Value::Double(1.5),
                    Value::str("s"),
                    Value::Null,
                    Value::Bool(true)
                ]
            })
        );
        assert_eq!(
            conv("{\"b\":1,\"a\":{\"class\":\"x.Y\",\"n\":2}}", "java.util.Map").unwrap(),
            Value::Map(Map {
                type_name: None,
                entries: vec![
                    (Value::str("b"), Value::Int(1)),
                    (Value::str("a"), obj("x.Y", vec![("n", Value::Int(2))])),
                ]
            })
        );
        // a declared POJO class; `class` overrides it (a subclass); members keep their order
        assert_eq!(
            conv("{\"name\":\"ann\",\"age\":3}", "com.x.User").unwrap(),
            obj(
                "com.x.User",
                vec![("name", Value::str("ann")), ("age", Value::Int(3))]
            )
        );
        assert_eq!(
            conv("{\"age\":3,\"class\":\"com.x.Admin\"}", "com.x.User").unwrap(),
            obj("com.x.Admin", vec![("age", Value::Int(3))])
        );
        // an enum constant by name
        assert_eq!(
            conv("\"RED\"", "com.x.Color").unwrap(),
            obj("com.x.Color", vec![("name", Value::str("RED"))])
        );
        // tagged value types in untyped positions
        assert_eq!(
            conv(
                "[{\"class\":\"java.lang.Long\",\"value\":5},{\"class\":\"java.math.BigDecimal\",\"value\":\"1.5\"},{\"class\":\"java.util.Date\",\"value\":0}]",
                "java.lang.Object"
            )
            .unwrap(),
            Value::List(List {
                type_name: None,
                items: vec![
                    Value::Long(5),
                    obj("java.math.BigDecimal", vec![("value", Value::str("1.5"))]),
                    Value::Date(0)
                ]
            })
        );
        assert_eq!(
            conv("{\"class\":\"java.util.TreeMap\",\"k\":1}", "java.lang.Object").unwrap(),
            Value::Map(Map {
                type_name: Some("java.util.TreeMap".into()),
                entries: vec![(Value::str("k"), Value::Int(1))]
            })
        );
        assert!(conv("{\"class\":\"java.lang.Long\"}", "java.lang.Object").is_err());
        assert!(conv("{\"class\":\"no good\"}", "java.lang.Object").is_err());
        assert!(conv("[1]", "java.util.Map").is_err());
        assert!(conv("{}", "java.util.List").is_err());
        assert!(conv("5", "com.x.User").is_err());
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(conv(&ok, "java.lang.Object").is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            conv(&deep, "java.lang.Object").unwrap_err(),
            TypeError::TooDeep { max: MAX_DEPTH }
        );
    }
}
