//! A form field's text as an argument of its declared Java type.
//!
//! | declared type | field text |
//! |---|---|
//! | `String` | the text as it is (borrowed: no copy) |
//! | `int`, `long`, `short`, `byte` and boxes | decimal integer in the type's range |
//! | `double`, `float` and boxes | decimal (`1.5`, `1e3`), `NaN`, `Infinity`, `-Infinity`; `float` in its range |
//! | `boolean`, `Boolean` | `true` or `false` (any case) |
//! | `char`, `Character` | exactly one UTF-16 unit |
//! | `BigDecimal` / `BigInteger` | the number's decimal text |
//! | `Date` | milliseconds, or an RFC 3339 date-time |
//! | `byte[]` | base64 (standard or URL-safe, padding optional) |
//! | `char[]` | the text |
//! | other arrays, collections, maps, POJOs | a JSON value (see [`crate::from_json`]) |
//! | `Object` | a JSON value if the text is one, else the text as a string |
//!
//! For every type but `String`, `char[]`, `byte[]` (where `null` is base64 for the bytes `9e e9 65`) and
//! primitives, the text `null` is a Java null.

use std::borrow::Cow;

use mesh_dubbo::Value;

use crate::bignum::{big_decimal_value, big_integer_value, is_decimal};
use crate::date::parse_date;
use crate::from_json::{base64_binary, from_json, infer};
use crate::java_type::{JavaType, Primitive};
use crate::json::Json;
use crate::TypeError;

/// The Hessian value of the form text `text` as an argument of type `t`. A `String` argument keeps
/// borrowing `text`.
pub fn typed_text<'a>(text: Cow<'a, str>, t: &JavaType) -> Result<Value<'a>, TypeError> {
    let bad = |problem| TypeError::mismatch(t, problem);
    match t {
        JavaType::String => return Ok(Value::String(text)),
        JavaType::Array(c) if **c == JavaType::Primitive(Primitive::Char) => return Ok(Value::String(text)),
        // `null` is also the base64 of three bytes (9e e9 65): a byte[] field is always base64.
        JavaType::Array(c) if **c == JavaType::Primitive(Primitive::Byte) => {}
        JavaType::Primitive(_) => {}
        _ if &*text == "null" => return Ok(Value::Null),
        _ => {}
    }
    match t {
        JavaType::Primitive(p) | JavaType::Boxed(p) => match p {
            Primitive::Boolean => {
                if text.eq_ignore_ascii_case("true") {
                    Ok(Value::Bool(true))
                } else if text.eq_ignore_ascii_case("false") {
                    Ok(Value::Bool(false))
                } else {
                    Err(bad("expected true or false"))
                }
            }
            Primitive::Char => {
                let mut units = text.encode_utf16();
                match (units.next(), units.next()) {
                    (Some(_), None) => Ok(Value::String(text)),
                    _ => Err(bad("expected exactly one character")),
                }
            }
            Primitive::Float | Primitive::Double => {
                let x = match &*text {
                    "NaN" => f64::NAN,
                    "Infinity" | "+Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    s if s
                        .bytes()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) =>
                    {
                        s.parse::<f64>().map_err(|_| bad("not a number"))?
                    }
                    _ => return Err(bad("not a number")),
                };
                parse_float(x, *p, t)
            }
            _ => {
                let i = text.parse::<i128>().map_err(|_| bad("not an integer"))?;
                parse_integral(i, *p, t)
            }
        },
        JavaType::BigDecimal if is_decimal(&text) => Ok(big_decimal_value(text)),
        JavaType::BigDecimal => Err(bad("not a decimal number")),
        JavaType::BigInteger => big_integer_value(&text).ok_or_else(|| bad("not an integer")),
        JavaType::Date => parse_date(&text)
            .map(Value::Date)
            .ok_or_else(|| bad("expected integer milliseconds or an RFC 3339 date-time")),
        JavaType::Array(c) if **c == JavaType::Primitive(Primitive::Byte) => base64_binary(&text)
            .map(|b| Value::Binary(Cow::Owned(b)))
            .ok_or_else(|| bad("not base64")),
        JavaType::Object => match Json::parse(text.as_bytes()) {
            Ok(json) => infer(&json),
            Err(_) => Ok(Value::String(text)),
        },
        JavaType::String => Ok(Value::String(text)),
        JavaType::Array(_) | JavaType::Collection(_) | JavaType::Map(_) | JavaType::Class(_) => {
            let json = Json::parse(text.as_bytes())?;
            from_json(&json, t)
        }
    }
}

/// An integer as Java primitive `p` (boxed or not), range-checked.
pub(crate) fn parse_integral(i: i128, p: Primitive, t: &JavaType) -> Result<Value<'static>, TypeError> {
    let range = || TypeError::mismatch(t, "out of range");
    Ok(match p {
        Primitive::Byte => Value::Int(i8::try_from(i).map_err(|_| range())?.into()),
        Primitive::Short => Value::Int(i16::try_from(i).map_err(|_| range())?.into()),
        Primitive::Int => Value::Int(i32::try_from(i).map_err(|_| range())?),
        Primitive::Long => Value::Long(i64::try_from(i).map_err(|_| range())?),
        Primitive::Float | Primitive::Double => return parse_float(i as f64, p, t),
        Primitive::Boolean | Primitive::Char => return Err(TypeError::mismatch(t, "not a number type")),
    })
}

/// A number as Java `float` or `double` (Hessian has only doubles: a float is rounded to `f32` first, as
/// Java's value would be). A finite number beyond `float`'s range is refused.
pub(crate) fn parse_float(x: f64, p: Primitive, t: &JavaType) -> Result<Value<'static>, TypeError> {
    match p {
        Primitive::Float => {
            let f = x as f32;
            if x.is_finite() && !f.is_finite() {
                return Err(TypeError::mismatch(t, "out of range"));
            }
            Ok(Value::Double(f64::from(f)))
        }
        Primitive::Double => Ok(Value::Double(x)),
        _ => Err(TypeError::mismatch(t, "not a floating-point type")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::java_type::parse_java_name;
    use mesh_dubbo::{List, Object};

    fn text(s: &str, t: &str) -> Result<Value<'static>, TypeError> {
        typed_text(Cow::Borrowed(s), &parse_java_name(t).unwrap()).map(Value::into_owned)
    }

    #[test]
    fn strings_stay_borrowed() {
        let body = String::from("héllo wörld");
        let v = typed_text(Cow::Borrowed(&body[..]), &JavaType::String).unwrap();
        assert!(matches!(v, Value::String(Cow::Borrowed(s)) if std::ptr::eq(s, &body[..])));
        // "null" is a string for String, null for Integer
        assert_eq!(text("null", "java.lang.String").unwrap(), Value::str("null"));
        assert_eq!(text("null", "java.lang.Integer").unwrap(), Value::Null);
        assert_eq!(text("", "Ljava/lang/String;").unwrap(), Value::str(""));
    }

    #[test]
    fn every_primitive_and_box() {
        for (s, t, v) in [
            ("42", "I", Value::Int(42)),
            ("-2147483648", "java.lang.Integer", Value::Int(i32::MIN)),
            ("9223372036854775807", "J", Value::Long(i64::MAX)),
            ("+5", "java.lang.Long", Value::Long(5)),
            ("127", "B", Value::Int(127)),
            ("-32768", "java.lang.Short", Value::Int(-32768)),
            ("TRUE", "Z", Value::Bool(true)),
            ("false", "java.lang.Boolean", Value::Bool(false)),
            ("1.5", "D", Value::Double(1.5)),
            ("1e3", "java.lang.Double", Value::Double(1000.0)),
            ("-Infinity", "D", Value::Double(f64::NEG_INFINITY)),
            ("0.1", "F", Value::Double(f64::from(0.1f32))),
            ("中", "C", Value::str("中")),
            ("x", "java.lang.Character", Value::str("x")),
        ] {
            assert_eq!(text(s, t).unwrap(), v, "{s} as {t}");
        }
        assert!(matches!(text("NaN", "java.lang.Float").unwrap(), Value::Double(d) if d.is_nan()));
        for (s, t) in [
            ("2147483648", "I"),
            ("128", "B"),
            ("40000", "S"),
            ("1.0", "I"),
            (" 1", "I"),
            ("", "I"),
            ("0x10", "J"),
            ("yes", "Z"),
            ("1e39", "F"),
            ("inf", "D"),
            ("", "C"),
            ("ab", "C"),
            ("😀", "C"),
            ("null", "I"),
            ("null", "C"),
        ] {
            let e = text(s, t).unwrap_err();
            assert!(matches!(e, TypeError::Mismatch { .. }), "{s:?} as {t}: {e}");
        }
        assert_eq!(text("128", "B").unwrap_err().to_string(), "byte: out of range");
    }

    #[test]
    fn big_numbers_dates_binary() {
        assert_eq!(
            text("-1.50E+3", "java.math.BigDecimal").unwrap(),
            Value::Object(Object {
                class: "java.math.BigDecimal".into(),
                fields: vec![("value".into(), Value::str("-1.50E+3"))]
            })
        );
        assert!(text("1.5.1", "java.math.BigDecimal").is_err());
        assert_eq!(
            text("-7", "java.math.BigInteger").unwrap(),
            big_integer_value("-7").unwrap()
        );
        assert!(text("7.0", "java.math.BigInteger").is_err());
        assert_eq!(
            text("86400000", "java.util.Date").unwrap(),
            Value::Date(86_400_000)
        );
        assert_eq!(
            text("1970-01-02T00:00:00Z", "java.util.Date").unwrap(),
            Value::Date(86_400_000)
        );
        assert_eq!(text("null", "java.util.Date").unwrap(), Value::Null);
        assert!(text("tomorrow", "java.util.Date").is_err());
        assert_eq!(
            text("aGk=", "[B").unwrap(),
            Value::Binary(Cow::Owned(b"hi".to_vec()))
        );
        assert_eq!(
            text("aGk", "byte[]").unwrap(),
            Value::Binary(Cow::Owned(b"hi".to_vec()))
        );
        assert!(text("a", "[B").is_err());
        assert_eq!(text("hi", "[C").unwrap(), Value::str("hi"));
        // found by fuzzing: `null` is base64 too
        assert_eq!(
            text("null", "[B").unwrap(),
            Value::Binary(Cow::Owned(vec![0x9e, 0xe9, 0x65]))
        );
    }

    #[test]
    fn structures_are_json() {
        assert_eq!(
            text("[1,2]", "int[]").unwrap(),
            Value::List(List {
                type_name: Some("[int".into()),
                items: vec![Value::Int(1), Value::Int(2)]
            })
        );
        assert_eq!(
            text("[\"a\"]", "java.util.List").unwrap(),
            Value::List(List {
                type_name: None,
                items: vec![Value::str("a")]
            })
        );
        assert!(matches!(
            text("{\"a\":1}", "java.util.Map").unwrap(),
            Value::Map(_)
        ));
        assert!(matches!(text("{\"a\":1}", "com.x.P").unwrap(), Value::Object(_)));
        assert!(matches!(text("[1,", "int[]").unwrap_err(), TypeError::Json(_)));
        assert!(matches!(text("{", "com.x.P").unwrap_err(), TypeError::Json(_)));
        // Object: JSON if it is JSON, else the text
        assert_eq!(text("12", "java.lang.Object").unwrap(), Value::Int(12));
        assert_eq!(text("\"12\"", "java.lang.Object").unwrap(), Value::str("12"));
        assert_eq!(
            text("plain words", "java.lang.Object").unwrap(),
            Value::str("plain words")
        );
    }
}
