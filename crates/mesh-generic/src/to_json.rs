//! Hessian values (a provider's answer) as JSON.
//!
//! | Hessian value | JSON |
//! |---|---|
//! | null, boolean, int, long | the same (longs exactly, even beyond 2^53) |
//! | double | a number; NaN and the infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | date | `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (UTC); outside years 0-9999 its milliseconds |
//! | string | a string |
//! | binary (`byte[]`) | standard base64 with padding |
//! | list (any type) | an array |
//! | map | an object; non-string keys as their JSON text |
//! | object `java.math.BigDecimal` / `BigInteger` | its decimal text as a string |
//! | any other object | `{"class": "<class>", <fields in order>}` |
//! | back-reference to an enclosing value (a cycle) | `{"$ref": n}`, n = the value's index in start order |
//!
//! Other back-references (a value shared twice) are expanded again. Both the nesting and the total number
//! of JSON values produced are limited ([`RenderLimits`]), so a small cyclic or heavily shared answer can
//! never blow up: past a limit the answer is an error, not a truncated document.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use mesh_dubbo::{Object, Value};

use crate::bignum::big_integer_text;
use crate::date::format_date;
use crate::json::{Json, Number};
use crate::TypeError;

/// Limits on rendering one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// Deepest nesting of the JSON produced (arrays and objects). Default 128.
    pub max_depth: usize,
    /// Most JSON values produced (every scalar, array and object counts one). Default 1,000,000.
    pub max_nodes: usize,
    /// Most bytes of strings produced (string values, base64, class and field names, map keys, number
    /// objects' text): a value shared many times may hold a long string. Default 64 MiB.
    pub max_bytes: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            max_depth: 128,
            max_nodes: 1_000_000,
            max_bytes: 64 << 20,
        }
    }
}

/// The JSON of `v`, with its back-references resolved against `v` itself (a response body's numbering
/// starts at its result value).
pub fn to_json(v: &Value<'_>, limits: &RenderLimits) -> Result<Json, TypeError> {
    let mut r = Renderer::new(v, limits);
    r.render(v, 0)
}

struct Renderer<'v, 'a> {
    /// Lists, maps and objects in start order (pre-order), as back-references number them.
    compounds: Vec<&'v Value<'a>>,
    /// A compound's index, by address.
    index: HashMap<*const Value<'a>, usize>,
    /// Indices of the compounds being rendered, outermost first.
    open: Vec<usize>,
    nodes: usize,
    bytes: usize,
    /// The text of number objects (`BigDecimal`, `BigInteger`) already rendered, by compound index: a
    /// `BigInteger`'s conversion is quadratic, and a shared one is converted once.
    number_texts: HashMap<usize, String>,
    limits: RenderLimits,
}

impl<'v, 'a> Renderer<'v, 'a> {
    fn new(root: &'v Value<'a>, limits: &RenderLimits) -> Self {
        let mut compounds = Vec::new();
        let mut stack = vec![root];
        // Iterative pre-order walk: children pushed in reverse so they pop in order.
        while let Some(v) = stack.pop() {
            match v {
                Value::List(l) => {
                    compounds.push(v);
                    stack.extend(l.items.iter().rev());
                }
                Value::Map(m) => {
                    compounds.push(v);
                    for (k, val) in m.entries.iter().rev() {
                        stack.push(val);
                        stack.push(k);
                    }
                }
                Value::Object(o) => {
                    compounds.push(v);
                    stack.extend(o.fields.iter().rev().map(|(_, f)| f));
                }
                _ => {}
            }
        }
        let index = compounds
            .iter()
            .enumerate()
            .map(|(i, v)| (*v as *const Value<'a>, i))
            .collect();
        Renderer {
            compounds,
            index,
            open: Vec::new(),
            nodes: 0,
            bytes: 0,
            number_texts: HashMap::new(),
            limits: *limits,
        }
    }

    fn count(&mut self) -> Result<(), TypeError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(TypeError::TooLarge {
                max: self.limits.max_nodes,
            });
        }
        Ok(())
    }

    /// Counts `n` bytes of string text against the limit.
    fn spend(&mut self, n: usize) -> Result<(), TypeError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return Err(TypeError::TooLong {
                max: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    fn render(&mut self, v: &'v Value<'a>, depth: usize) -> Result<Json, TypeError> {
        self.count()?;
        Ok(match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::Number(Number::Int(i64::from(*i))),
            Value::Long(l) => Json::Number(Number::Int(*l)),
            Value::Double(d) => double(*d),
            Value::Date(ms) => match format_date(*ms) {
                Some(s) => Json::String(s),
                None => Json::Number(Number::Int(*ms)),
            },
            Value::String(s) => {
                self.spend(s.len())?;
                Json::String(s.to_string())
            }
            Value::Binary(b) => {
                self.spend(b.len().div_ceil(3) * 4)?;
                Json::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::Ref(n) => {
                let n = *n as usize;
                match self.compounds.get(n) {
                    Some(target) if !self.open.contains(&n) => {
                        // A shared value: rendered again (counted against the limits).
                        self.nodes -= 1;
                        return self.render(target, depth);
                    }
                    _ => Json::Object(vec![("$ref".to_owned(), Json::Number(Number::Int(n as i64)))]),
                }
            }
            Value::List(_) | Value::Map(_) | Value::Object(_) => {
                if depth >= self.limits.max_depth {
                    return Err(TypeError::TooDeep {
                        max: self.limits.max_depth,
                    });
                }
                let me = self.index.get(&(v as *const Value<'a>)).copied();
                if let Some(i) = me {
                    self.open.push(i);
                }
                let out = self.compound(v, me, depth + 1);
                if me.is_some() {
                    self.open.pop();
                }
                out?
            }
        })
    }

    fn compound(&mut self, v: &'v Value<'a>, me: Option<usize>, depth: usize) -> Result<Json, TypeError> {
        Ok(match v {
            Value::List(l) => Json::Array(
                l.items
                    .iter()
                    .map(|item| self.render(item, depth))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(m) => {
                let mut members = Vec::with_capacity(m.entries.len().min(1024));
                for (k, val) in &m.entries {
                    let key = match self.render(k, depth)? {
                        Json::String(s) => s,
                        other => other.to_text(),
                    };
                    members.push((key, self.render(val, depth)?));
                }
                Json::Object(members)
            }
            Value::Object(o) => match self.number_text(o, me) {
                Some(text) => {
                    self.spend(text.len())?;
                    Json::String(text)
                }
                None => {
                    self.spend(o.class.len())?;
                    let mut members = Vec::with_capacity(o.fields.len() + 1);
                    members.push(("class".to_owned(), Json::String(o.class.to_string())));
                    for (name, val) in &o.fields {
                        self.spend(name.len())?;
                        members.push((name.to_string(), self.render(val, depth)?));
                    }
                    Json::Object(members)
                }
            },
            _ => Json::Null,
        })
    }

    /// [`value_type_text`], converted once per compound.
    fn number_text(&mut self, o: &Object<'_>, me: Option<usize>) -> Option<String> {
        if let Some(text) = me.and_then(|i| self.number_texts.get(&i)) {
            return Some(text.clone());
        }
        let text = value_type_text(o)?;
        if let Some(i) = me {
            self.number_texts.insert(i, text.clone());
        }
        Some(text)
    }
}

fn double(d: f64) -> Json {
    if d.is_nan() {
        Json::String("NaN".into())
    } else if d.is_infinite() {
        Json::String(if d > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Json::Number(Number::Float(d))
    }
}

/// The text of an object that stands for a number: `BigDecimal` (its `value` string) and `BigInteger` (its
/// `signum` and `mag`).
fn value_type_text(o: &Object<'_>) -> Option<String> {
    match &*o.class {
        "java.math.BigDecimal" => match &o.fields[..] {
            [(name, Value::String(s))] if name == "value" => Some(s.to_string()),
            _ => None,
        },
        "java.math.BigInteger" => big_integer_text(o),
        _ => None,
    }
}

/// The text a value stands for, as Java's `String.valueOf` would give it for strings, numbers, booleans
/// and null (a `String` borrows); dates as their milliseconds, `byte[]` as base64, `BigDecimal` and
/// `BigInteger` as their decimal text, and other structures as their JSON text. Used where Dubbo compares
/// arguments as strings (condition rules' `arguments[N]`, consistent hashing) and to write a form field.
pub fn text_of<'s>(v: &'s Value<'_>) -> Cow<'s, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Long(l) | Value::Date(l) => Cow::Owned(l.to_string()),
        Value::Double(d) if d.is_nan() => Cow::Borrowed("NaN"),
        Value::Double(d) if d.is_infinite() => Cow::Borrowed(if *d > 0.0 { "Infinity" } else { "-Infinity" }),
        // Shortest text that reads back to the same double (`1.0`, `0.1`, `1e300`).
        Value::Double(d) => Cow::Owned(format!("{d:?}")),
        Value::Binary(b) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)),
        other => text_of_within(other, &mut RenderLimits::default().max_nodes),
    }
}

/// [`text_of`] with a budget of JSON values shared by several calls: a structure is rendered only within
/// what is left of `budget`, and its text's length is taken from it (every JSON value takes at least one
/// byte); one past it is given as its kind (`list`, `map`, ...), and empties the budget. For values read
/// from the network, where back-references let a small input render large again and again: a Dubbo
/// request's arguments and attachments share a budget of the order of its size.
pub fn text_of_within<'s>(v: &'s Value<'_>, budget: &mut usize) -> Cow<'s, str> {
    let text = match v {
        Value::List(_) | Value::Map(_) | Value::Object(_) | Value::Ref(_) => {
            let text = match v {
                Value::Object(o) => value_type_text(o),
                _ => None,
            };
            let text = text.or_else(|| {
                let limits = RenderLimits {
                    max_nodes: *budget,
                    max_bytes: *budget,
                    ..RenderLimits::default()
                };
                to_json(v, &limits).ok().map(|j| j.to_text())
            });
            match text {
                Some(t) => t,
                None => {
                    *budget = 0;
                    return Cow::Borrowed(v.kind());
                }
            }
        }
        other => return text_of(other),
    };
    *budget = budget.saturating_sub(text.len());
    Cow::Owned(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bignum::big_integer_value;
    use crate::from_json::tests::obj;
    use mesh_dubbo::{List, Map};

    fn json(v: &Value<'_>) -> String {
        to_json(v, &RenderLimits::default()).unwrap().to_text()
    }

    #[test]
    fn shared_references_cannot_multiply_the_text_work() {
        // 1000 references to a list of 1000 ints: a million values from a few kilobytes.
        let inner = Value::List(List {
            type_name: None,
            items: (0..1000).map(Value::Int).collect(),
        });
        let mut items = vec![inner];
        items.extend((0..1000).map(|_| Value::Ref(1)));
        let big = Value::List(List {
            type_name: None,
            items,
        });
        let small = Value::List(List {
            type_name: None,
            items: vec![Value::Int(1), Value::str("a")],
        });
        let mut budget = 100_000;
        assert_eq!(text_of_within(&small, &mut budget), r#"[1,"a"]"#);
        assert_eq!(budget, 100_000 - 7);
        assert_eq!(text_of_within(&big, &mut budget), "list");
        assert_eq!(budget, 0);
        // Once spent, structures are their kinds; scalars and strings are still themselves.
        assert_eq!(text_of_within(&small, &mut budget), "list");
        assert_eq!(text_of_within(&Value::Int(7), &mut budget), "7");
        assert_eq!(text_of_within(&Value::str("s"), &mut budget), "s");
        // A number object costs its text.
        let mut budget = 10;
        let n = big_integer_value("123").unwrap();
        assert_eq!(text_of_within(&n, &mut budget), "123");
        assert_eq!(budget, 7);
        // text_of keeps its own (large) budget per value.
        assert_eq!(text_of(&small), r#"[1,"a"]"#);
        assert_eq!(text_of(&big), "list");
    }

    #[test]
    fn long_strings_shared_many_times_hit_the_byte_limit() {
        // 2,000 references to an object holding 10 kB of text: 20 MB of JSON from 16 kB.
        let holder = obj(
            "com.x.Note",
            vec![("text", Value::String("x".repeat(10_000).into()))],
        );
        let decimal = obj(
            "java.math.BigDecimal",
            vec![("value", Value::String("1".repeat(10_000).into()))],
        );
        for shared in [holder, decimal] {
            let mut items = vec![shared];
            items.extend((0..2_000).map(|_| Value::Ref(1)));
            let v = Value::List(List {
                type_name: None,
                items,
            });
            let limits = RenderLimits {
                max_bytes: 1 << 20,
                ..RenderLimits::default()
            };
            assert_eq!(
                to_json(&v, &limits).unwrap_err(),
                TypeError::TooLong { max: 1 << 20 }
            );
            assert!(to_json(&v, &RenderLimits::default()).is_ok());
        }
    }

    #[test]
    fn a_shared_big_integer_is_converted_once() {
        let n = big_integer_value(&"9".repeat(4000)).unwrap();
        let mut items = vec![n];
        items.extend((0..50).map(|_| Value::Ref(1)));
        let v = Value::List(List {
            type_name: None,
            items,
        });
        let mut r = Renderer::new(&v, &RenderLimits::default());
        let Json::Array(texts) = r.render(&v, 0).unwrap() else {
            panic!("an array");
        };
        assert_eq!(texts.len(), 51);
        assert!(texts.iter().all(|t| *t == Json::String("9".repeat(4000))));
        assert_eq!(r.number_texts.len(), 1);
    }

    #[test]
    fn scalars() {
        assert_eq!(json(&Value::Null), "null");
        assert_eq!(json(&Value::Bool(true)), "true");
        assert_eq!(json(&Value::Int(-3)), "-3");
        assert_eq!(json(&Value::Long(i64::MAX)), "9223372036854775807");
        assert_eq!(json(&Value::Double(0.5)), "0.5");
        assert_eq!(json(&Value::Double(f64::NAN)), "\"NaN\"");
        assert_eq!(json(&Value::Double(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(
            json(&Value::Date(1_714_566_600_250)),
            "\"2024-05-01T12:30:00.250Z\""
        );
        assert_eq!(json(&Value::Date(i64::MAX)), "9223372036854775807");
        assert_eq!(json(&Value::str("a\"b\n")), "\"a\\\"b\\n\"");
        assert_eq!(json(&Value::Binary(Cow::Borrowed(b"hi\xff"))), "\"aGn/\"");
    }

    #[test]
    fn structures_and_number_objects() {
        let user = obj(
            "com.x.User",
            vec![
                ("name", Value::str("ann")),
                (
                    "balance",
                    obj("java.math.BigDecimal", vec![("value", Value::str("1.50"))]),
                ),
                ("id", big_integer_value("-18446744073709551616").unwrap()),
                (
                    "tags",
                    Value::List(List {
                        type_name: Some("[string".into()),
                        items: vec![Value::str("a")],
                    }),
                ),
            ],
        );
        assert_eq!(
            json(&user),
            r#"{"class":"com.x.User","name":"ann","balance":"1.50","id":"-18446744073709551616","tags":["a"]}"#
        );
        let map = Value::Map(Map {
            type_name: None,
            entries: vec![
                (Value::str("k"), Value::Int(1)),
                (Value::Int(2), Value::Null),
                (Value::List(List::default()), Value::Bool(false)),
            ],
        });
        assert_eq!(json(&map), r#"{"k":1,"2":null,"[]":false}"#);
    }

    #[test]
    fn cycles_become_markers_and_shared_values_repeat() {
        // A Throwable whose cause is itself: object #0 refers to #0.
        let ex = obj(
            "java.lang.RuntimeException",
            vec![("detailMessage", Value::str("boom")), ("cause", Value::Ref(0))],
        );
        assert_eq!(
            json(&ex),
            r#"{"class":"java.lang.RuntimeException","detailMessage":"boom","cause":{"$ref":0}}"#
        );
        // The same map twice: [#0 list, #1 map, ref 1]
        let shared = Value::List(List {
            type_name: None,
            items: vec![
                Value::Map(Map {
                    type_name: None,
                    entries: vec![(Value::str("a"), Value::Int(1))],
                }),
                Value::Ref(1),
            ],
        });
        assert_eq!(json(&shared), r#"[{"a":1},{"a":1}]"#);
        // An out-of-range reference is a marker too.
        assert_eq!(json(&Value::Ref(7)), r#"{"$ref":7}"#);
    }

    #[test]
    fn sharing_bombs_hit_the_node_limit() {
        // #0 = [level 0, ..., level 39]; level i is #(i+1) and holds two references to level i+1 (#(i+2)):
        // 2^40 expansions.
        let mut levels = Vec::new();
        for i in 0..40u32 {
            let items = if i < 39 {
                vec![Value::Ref(i + 2), Value::Ref(i + 2)]
            } else {
                vec![Value::Int(1), Value::Int(1)]
            };
            levels.push(Value::List(List {
                type_name: None,
                items,
            }));
        }
        let root = Value::List(List {
            type_name: None,
            items: levels,
        });
        let limits = RenderLimits {
            max_depth: 1000,
            max_nodes: 10_000,
            ..RenderLimits::default()
        };
        assert_eq!(
            to_json(&root, &limits).unwrap_err(),
            TypeError::TooLarge { max: 10_000 }
        );
        let tight = RenderLimits {
            max_depth: 5,
            max_nodes: 1 << 30,
            ..RenderLimits::default()
        };
        assert_eq!(to_json(&root, &tight).unwrap_err(), TypeError::TooDeep { max: 5 });
    }

    #[test]
    fn string_views() {
        assert!(matches!(text_of(&Value::str("x")), Cow::Borrowed("x")));
        assert_eq!(text_of(&Value::Int(-4)), "-4");
        assert_eq!(text_of(&Value::Long(1 << 40)), "1099511627776");
        assert_eq!(text_of(&Value::Double(1.0)), "1.0");
        assert_eq!(text_of(&Value::Double(f64::INFINITY)), "Infinity");
        assert_eq!(text_of(&Value::Bool(false)), "false");
        assert_eq!(text_of(&Value::Null), "null");
        assert_eq!(text_of(&Value::Date(5)), "5");
        assert_eq!(text_of(&Value::Binary(Cow::Borrowed(b"hi"))), "aGk=");
        assert_eq!(text_of(&big_integer_value("99").unwrap()), "99");
        assert_eq!(
            text_of(&obj("java.math.BigDecimal", vec![("value", Value::str("2.50"))])),
            "2.50"
        );
        assert_eq!(
            text_of(&obj("a.B", vec![("x", Value::Int(1))])),
            r#"{"class":"a.B","x":1}"#
        );
    }
}
