//! The body of a JSON generic call (dubbo-go-pixiu's two shapes), and the arguments it becomes: typed
//! Hessian arguments of the real method, or Dubbo's generic `$invoke(String, String[], Object[])`.
//!
//! Bodies:
//! * a JSON array: the arguments (Pixiu's `directdubboproxy`); any other JSON value that is not the typed
//!   shape below is one argument; an empty body is no argument;
//! * `{"types": "java.lang.String,int" | ["java.lang.String", "int"], "values": [...] | <one value>}`
//!   (Pixiu's `dubboproxy` mode): an object whose members are `values` and optionally `types`, nothing else.

use std::borrow::Cow;

use mesh_dubbo::{List, Value};

use crate::from_json::{from_json, infer};
use crate::java_type::{parse_java_name, parse_type_list, JavaType, MAX_PARAMS};
use crate::json::Json;
use crate::TypeError;

/// Dubbo's generic method.
pub const GENERIC_METHOD: &str = "$invoke";
/// The descriptor of `$invoke(String method, String[] types, Object[] args)`.
pub const GENERIC_DESCRIPTOR: &str = "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;";

/// A parsed generic-call body.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeBody {
    /// The parameter types the body gives (`types`), if any.
    pub types: Option<Vec<JavaType>>,
    /// The arguments.
    pub values: Vec<Json>,
}

/// Parses a generic-call body (see the module docs).
pub fn parse_invoke_body(body: &[u8]) -> Result<InvokeBody, TypeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(InvokeBody {
            types: None,
            values: Vec::new(),
        });
    }
    let json = Json::parse(body)?;
    let body = match json {
        Json::Array(values) => InvokeBody { types: None, values },
        Json::Object(members)
            if members.iter().any(|(k, _)| k == "values")
                && members.iter().all(|(k, _)| k == "values" || k == "types") =>
        {
            let mut types = None;
            let mut values = Vec::new();
            for (k, v) in members {
                if k == "types" {
                    types = Some(parse_types_member(&v)?);
                } else {
                    values = match v {
                        Json::Array(items) => items,
                        one => vec![one],
                    };
                }
            }
            InvokeBody { types, values }
        }
        one => InvokeBody {
            types: None,
            values: vec![one],
        },
    };
    if body.values.len() > MAX_PARAMS {
        return Err(TypeError::TooManyTypes { max: MAX_PARAMS });
    }
    Ok(body)
}

/// `types` as a comma-separated string (or descriptor string) or an array of type names.
fn parse_types_member(v: &Json) -> Result<Vec<JavaType>, TypeError> {
    match v {
        Json::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Json::String(s) => parse_type_list(s),
        Json::Array(items) => {
            if items.len() > MAX_PARAMS {
                return Err(TypeError::TooManyTypes { max: MAX_PARAMS });
            }
            items
                .iter()
                .map(|t| match t {
                    Json::String(s) => parse_java_name(s),
                    _ => Err(TypeError::BadTypeName("`types` items must be strings")),
                })
                .collect()
        }
        _ => Err(TypeError::BadTypeName(
            "`types` must be a string or an array of strings",
        )),
    }
}

/// Why argument `index` (0-based) could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {index}: {error}")]
pub struct ArgumentError {
    pub index: usize,
    pub error: TypeError,
}

/// Each value as its declared type (the counts must match: checked by the caller).
pub fn typed_arguments(types: &[JavaType], values: &[Json]) -> Result<Vec<Value<'static>>, ArgumentError> {
    types
        .iter()
        .zip(values)
        .enumerate()
        .map(|(index, (t, v))| from_json(v, t).map_err(|error| ArgumentError { index, error }))
        .collect()
}

/// The three arguments of `$invoke`: the method name, the Java names of its types (`String[]`; null when
/// the types are not known: Dubbo's `GenericFilter` then finds the method by name), and the values
/// (`Object[]`): POJOs, collections and maps as generic maps and lists (a `class` member kept, which the
/// provider's `PojoUtils.realize` turns back into objects); values of value types (primitives, boxes,
/// `String`, `BigDecimal`, `BigInteger`, `Date`, arrays of them such as `byte[]`) converted by their declared
/// type, as in a typed call.
pub fn generic_arguments(
    method: &str,
    types: Option<&[JavaType]>,
    values: &[Json],
) -> Result<[Value<'static>; 3], ArgumentError> {
    let names = match types {
        Some(types) => Value::List(List {
            type_name: Some(Cow::Borrowed("[string")),
            items: types
                .iter()
                .map(|t| Value::String(Cow::Owned(t.java_name())))
                .collect(),
        }),
        None => Value::Null,
    };
    let args = values
        .iter()
        .enumerate()
        .map(|(index, v)| {
            match types.and_then(|t| t.get(index)).filter(|t| t.is_value_type()) {
                // A value type goes as that Java type: PojoUtils passes it through, while it cannot make a
                // byte[] of a base64 string, or a Date of an RFC 3339 one.
                Some(t) => from_json(v, t),
                None => generic_value(v),
            }
            .map_err(|error| ArgumentError { index, error })
        })
        .collect::<Result<_, _>>()?;
    Ok([
        Value::String(Cow::Owned(method.to_owned())),
        names,
        Value::List(List {
            type_name: Some(Cow::Borrowed("[object")),
            items: args,
        }),
    ])
}

/// A JSON value as Dubbo's generic form (what `PojoUtils.generalize` gives and `PojoUtils.realize` takes):
/// objects with a `class` member (POJOs, enums) as maps that keep `class`, other objects as maps, arrays as
/// lists, numbers by size; a `{"class": "<value type>", "value": ..}` tag gives its value that type, and
/// `BigDecimal` / `BigInteger` stay themselves (`PojoUtils` passes numbers through). Nesting is limited as
/// in a typed call ([`crate::from_json::MAX_DEPTH`]).
fn generic_value(v: &Json) -> Result<Value<'static>, TypeError> {
    let mut value = infer(v)?;
    normalise_generic(&mut value);
    Ok(value)
}

/// Objects other than `BigDecimal` / `BigInteger` become maps with their `class` first, at every level.
fn normalise_generic(v: &mut Value<'static>) {
    match v {
        Value::Object(o) if !is_number_class(&o.class) => {
            let mut entries = Vec::with_capacity(o.fields.len() + 1);
            entries.push((Value::str("class"), Value::String(std::mem::take(&mut o.class))));
            for (k, mut f) in std::mem::take(&mut o.fields) {
                normalise_generic(&mut f);
                entries.push((Value::String(k), f));
            }
            *v = Value::Map(mesh_dubbo::Map {
                type_name: None,
                entries,
            });
        }
        Value::Map(m) => m.entries.iter_mut().for_each(|(_, val)| normalise_generic(val)),
        Value::List(l) => l.items.iter_mut().for_each(normalise_generic),
        _ => {}
    }
}

/// The number classes the agent writes as objects (hessian-lite's forms of them).
fn is_number_class(class: &str) -> bool {
    matches!(class, "java.math.BigDecimal" | "java.math.BigInteger")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::java_type::Primitive;
    use crate::json::Number;
    use mesh_dubbo::Map;

    #[test]
    fn both_pixiu_shapes() {
        let b = parse_invoke_body(br#"["tc", 18]"#).unwrap();
        assert_eq!(b.types, None);
        assert_eq!(
            b.values,
            vec![Json::String("tc".into()), Json::Number(Number::Int(18))]
        );
        let b = parse_invoke_body(br#"{"types":"java.lang.String,java.lang.Integer","values":["tc",18]}"#)
            .unwrap();
        assert_eq!(
            b.types,
            Some(vec![JavaType::String, JavaType::Boxed(Primitive::Int)])
        );
        assert_eq!(b.values.len(), 2);
        let b = parse_invoke_body(br#"{"values":"only","types":["java.lang.String"]}"#).unwrap();
        assert_eq!(b.values, vec![Json::String("only".into())]);
        assert_eq!(b.types, Some(vec![JavaType::String]));
        // any other object is one argument
        let b = parse_invoke_body(br#"{"name":"ann","values":[1]}"#).unwrap();
        assert_eq!(b.values.len(), 1);
        assert!(matches!(b.values[0], Json::Object(_)));
        assert_eq!(parse_invoke_body(b" \n").unwrap().values, vec![]);
        assert_eq!(
            parse_invoke_body(b"5").unwrap().values,
            vec![Json::Number(Number::Int(5))]
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(parse_invoke_body(b"[1,"), Err(TypeError::Json(_))));
        assert!(matches!(
            parse_invoke_body(br#"{"types":5,"values":[]}"#),
            Err(TypeError::BadTypeName(_))
        ));
        assert!(matches!(
            parse_invoke_body(br#"{"types":["int",1],"values":[]}"#),
            Err(TypeError::BadTypeName(_))
        ));
        assert!(parse_invoke_body(br#"{"types":"in t","values":[1]}"#).is_err());
        let many = format!("[{}1]", "1,".repeat(MAX_PARAMS));
        assert_eq!(
            parse_invoke_body(many.as_bytes()).unwrap_err(),
            TypeError::TooManyTypes { max: MAX_PARAMS }
        );
    }

    #[test]
    fn typed_arguments_name_the_failing_index() {
        let types = parse_type_list("java.lang.String,int").unwrap();
        let values = parse_invoke_body(br#"["a", 5]"#).unwrap().values;
        assert_eq!(
            typed_arguments(&types, &values).unwrap(),
            vec![Value::str("a"), Value::Int(5)]
        );
        let values = parse_invoke_body(br#"["a", "x"]"#).unwrap().values;
        let e = typed_arguments(&types, &values).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.to_string(), "parameter 1: int: not an integer");
    }

    #[test]
    fn generic_invoke_arguments() {
        let types = parse_type_list("java.lang.String,com.x.User,int[]").unwrap();
        let values = parse_invoke_body(
            br#"["a", {"class":"com.x.User","name":"ann","boss":{"class":"com.x.User"}}, [1]]"#,
        )
        .unwrap()
        .values;
        let [m, t, a] = generic_arguments("hello", Some(&types), &values).unwrap();
        assert_eq!(m, Value::str("hello"));
        assert_eq!(
            t,
            Value::List(List {
                type_name: Some("[string".into()),
                items: vec![
                    Value::str("java.lang.String"),
                    Value::str("com.x.User"),
                    Value::str("int[]")
                ]
            })
        );
        let boss = Value::Map(Map {
            type_name: None,
            entries: vec![(Value::str("class"), Value::str("com.x.User"))],
        });
        assert_eq!(
            a,
            Value::List(List {
                type_name: Some("[object".into()),
                items: vec![
                    Value::str("a"),
                    Value::Map(Map {
                        type_name: None,
                        entries: vec![
                            (Value::str("class"), Value::str("com.x.User")),
                            (Value::str("name"), Value::str("ann")),
                            (Value::str("boss"), boss),
                        ]
                    }),
                    // int[] is a value type: a typed list, as in a typed call
                    Value::List(List {
                        type_name: Some("[int".into()),
                        items: vec![Value::Int(1)]
                    }),
                ]
            })
        );
        // value types are converted by their type: byte[] from base64, Date from RFC 3339, long as long
        let types = parse_type_list("byte[],java.util.Date,long,java.lang.Object").unwrap();
        let vals = parse_invoke_body(br#"["aGk=", "1970-01-01T00:00:01Z", 5, "aGk="]"#)
            .unwrap()
            .values;
        let [_, _, a2] = generic_arguments("m", Some(&types), &vals).unwrap();
        assert_eq!(
            a2,
            Value::List(List {
                type_name: Some("[object".into()),
                items: vec![
                    Value::Binary(Cow::Owned(b"hi".to_vec())),
                    Value::Date(1000),
                    Value::Long(5),
                    Value::str("aGk="),
                ]
            })
        );
        assert_eq!(
            generic_arguments(
                "m",
                Some(&types),
                &parse_invoke_body(br#"["%%", 0, 0, 0]"#).unwrap().values
            )
            .unwrap_err()
            .index,
            0
        );
        let [_, unknown, _] = generic_arguments("hello", None, &values).unwrap();
        assert_eq!(unknown, Value::Null);
    }

    #[test]
    fn generic_values_keep_value_types_and_class_tags_at_every_level() {
        // PojoUtils passes numbers (BigDecimal, BigInteger, Long, ...) through: they must stay themselves,
        // not become maps with a `class` key, which it would try to build field by field.
        let values = parse_invoke_body(
            br#"[{"class":"java.math.BigDecimal","value":"1.50"},
                 {"price":{"class":"java.math.BigDecimal","value":"2.5"},"n":{"class":"java.math.BigInteger","value":"7"}},
                 {"class":"java.lang.Long","value":4},
                 {"class":"com.x.Color","name":"RED"}]"#,
        )
        .unwrap()
        .values;
        let [_, _, args] = generic_arguments("m", None, &values).unwrap();
        let Value::List(args) = args else {
            panic!("a list");
        };
        let decimal = |s: &'static str| crate::bignum::big_decimal_value(Cow::Borrowed(s)).into_owned();
        assert_eq!(args.items[0], decimal("1.50"));
        assert_eq!(
            args.items[1],
            Value::Map(Map {
                type_name: None,
                entries: vec![
                    (Value::str("price"), decimal("2.5")),
                    (Value::str("n"), crate::bignum::big_integer_value("7").unwrap()),
                ]
            })
        );
        assert_eq!(args.items[2], Value::Long(4));
        // An enum (or any other POJO) is a map with its class, as PojoUtils.generalize gives it.
        assert_eq!(
            args.items[3],
            Value::Map(Map {
                type_name: None,
                entries: vec![
                    (Value::str("class"), Value::str("com.x.Color")),
                    (Value::str("name"), Value::str("RED")),
                ]
            })
        );
    }

    #[test]
    fn generic_values_are_limited_in_depth() {
        let deep = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        let values = parse_invoke_body(deep.as_bytes()).unwrap().values;
        assert_eq!(
            generic_arguments("m", None, &values).unwrap_err().error,
            TypeError::TooDeep {
                max: crate::from_json::MAX_DEPTH
            }
        );
    }
}
