//! The value model shared by the Hessian 2 and fastjson codecs.
//!
//! Strings and binaries borrow from the decoded frame body whenever the wire bytes can be used as they are
//! (the common case: ASCII or plain UTF-8 without surrogate pairs, one chunk), so decoding a request whose
//! arguments are strings allocates nothing per field. [`Value::into_owned`] detaches a value from its buffer.
//!
//! Hessian back-references (`Q n`) are kept as [`Value::Ref`] instead of being resolved: the graph may be
//! cyclic (a Java `Throwable` refers to itself as its `cause`), and resolving by copy would let a small frame
//! expand exponentially. The encoder writes them back as they were.

use std::borrow::Cow;

/// One decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// Java `int` (and `short`/`byte`, which Hessian writes as int).
    Int(i32),
    /// Java `long`.
    Long(i64),
    Double(f64),
    /// `java.util.Date`: milliseconds since the Unix epoch.
    Date(i64),
    String(Cow<'a, str>),
    Binary(Cow<'a, [u8]>),
    List(List<'a>),
    Map(Map<'a>),
    Object(Object<'a>),
    /// Back-reference to the n-th list, map or object (in order of their start) of the same body.
    Ref(u32),
}

/// A list or Java array; `type_name` is Hessian's type string (e.g. `[string`, `java.util.ArrayList`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct List<'a> {
    pub type_name: Option<Cow<'a, str>>,
    pub items: Vec<Value<'a>>,
}

/// A map; `type_name` is set for typed maps (`M`), `None` for Hessian's untyped `H` map (a `HashMap`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map<'a> {
    pub type_name: Option<Cow<'a, str>>,
    pub entries: Vec<(Value<'a>, Value<'a>)>,
}

/// An object instance: class name and its fields in class-definition order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a> {
    pub class: Cow<'a, str>,
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Value<'a> {
    /// A borrowed string value.
    pub fn str(s: &'a str) -> Self {
        Value::String(Cow::Borrowed(s))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an `i64`, if it is an int or a long.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(i64::from(v)),
            Value::Long(v) => Some(v),
            _ => None,
        }
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Double(_) => "double",
            Value::Date(_) => "date",
            Value::String(_) => "string",
            Value::Binary(_) => "binary",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Object(_) => "object",
            Value::Ref(_) => "ref",
        }
    }

    /// Detach the value from the buffer it was decoded from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(v) => Value::Int(v),
            Value::Long(v) => Value::Long(v),
            Value::Double(v) => Value::Double(v),
            Value::Date(v) => Value::Date(v),
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
            Value::Binary(b) => Value::Binary(Cow::Owned(b.into_owned())),
            Value::List(l) => Value::List(List {
                type_name: owned_opt(l.type_name),
                items: l.items.into_iter().map(Value::into_owned).collect(),
            }),
            Value::Map(m) => Value::Map(Map {
                type_name: owned_opt(m.type_name),
                entries: m
                    .entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            }),
            Value::Object(o) => Value::Object(Object {
                class: Cow::Owned(o.class.into_owned()),
                fields: o
                    .fields
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            }),
            Value::Ref(n) => Value::Ref(n),
        }
    }
}

fn owned_opt(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    s.map(|s| Cow::Owned(s.into_owned()))
}

/// `Value::from` for the scalar types that map one to one onto a variant.
macro_rules! value_from_scalar {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for Value<'_> {
                fn from(v: $ty) -> Self {
                    Value::$variant(v)
                }
            }
        )*
    };
}

value_from_scalar!(i32 => Int, i64 => Long, bool => Bool, f64 => Double);

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::String(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::String(Cow::Owned(v))
    }
}
