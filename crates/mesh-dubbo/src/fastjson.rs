//! fastjson (Dubbo serialization id 6): each field is one compact JSON text followed by `\n`.
//!
//! JSON carries fewer types than Hessian: ints that fit `i32` come back as [`Value::Int`], larger ones as
//! [`Value::Long`], objects as untyped maps, dates as milliseconds, binaries as base64 strings (fastjson's
//! own choices), NaN/infinity as `null`. Hessian back-references cannot be written.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::error::CodecError;
use crate::value::{List, Map, Value};

type Result<T> = std::result::Result<T, CodecError>;

/// Reads one JSON value per line from a whole body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// True when only blank lines are left (Java's reader treats a blank line as the end).
    pub fn is_empty(&self) -> bool {
        self.buf[self.pos..]
            .iter()
            .all(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        if rest.is_empty() {
            return Err(CodecError::truncated("fastjson line", self.pos, 1));
        }
        let (line, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], n + 1),
            None => (rest, rest.len()),
        };
        self.pos += used;
        Ok(line.strip_suffix(b"\r").unwrap_or(line))
    }

    pub fn read_value(&mut self) -> Result<Value<'a>> {
        let at = self.pos;
        let line = self.line()?;
        serde_json::from_slice(line).map_err(|e| CodecError::Json(format!("at offset {at}: {e}")))
    }

    pub fn read_string(&mut self) -> Result<Cow<'a, str>> {
        match self.read_value()? {
            Value::String(s) => Ok(s),
            other => Err(CodecError::BadField {
                field: "string",
                expected: "string",
                found: other.kind(),
            }),
        }
    }

    pub fn read_nullable_string(&mut self) -> Result<Option<Cow<'a, str>>> {
        match self.read_value()? {
            Value::String(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(CodecError::BadField {
                field: "string",
                expected: "string",
                found: other.kind(),
            }),
        }
    }
}

/// Writes `v` as one line of compact JSON.
pub fn write_value(buf: &mut BytesMut, v: &Value<'_>) -> Result<()> {
    let start = buf.len();
    let mut w = buf.writer();
    if let Err(e) = serde_json::to_writer(&mut w, &Json(v)) {
        buf.truncate(start);
        return Err(CodecError::Json(e.to_string()));
    }
    buf.put_u8(b'\n');
    Ok(())
}

/// Writes a string as one line of JSON.
pub fn write_str(buf: &mut BytesMut, s: &str) {
    // Serializing a str into memory cannot fail.
    let _ = serde_json::to_writer(buf.writer(), s);
    buf.put_u8(b'\n');
}

/// Writes a JSON object line from string keys and values.
pub fn write_object<'x, 'v: 'x, I>(buf: &mut BytesMut, entries: I) -> Result<()>
where
    I: IntoIterator<Item = (&'x str, &'x Value<'v>)>,
{
    let start = buf.len();
    let mut ser = serde_json::Serializer::new(buf.writer());
    let res = (|| {
        let mut map = ser.serialize_map(None)?;
        for (k, v) in entries {
            map.serialize_entry(k, &Json(v))?;
        }
        SerializeMap::end(map)
    })();
    if let Err(e) = res {
        buf.truncate(start);
        return Err(CodecError::Json(e.to_string()));
    }
    buf.put_u8(b'\n');
    Ok(())
}

/// Serializes a [`Value`] as fastjson would.
struct Json<'r, 'a>(&'r Value<'a>);

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i32(*i),
            Value::Long(l) | Value::Date(l) => s.serialize_i64(*l),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Double(_) => s.serialize_unit(),
            Value::String(v) => s.serialize_str(v),
            Value::Binary(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.items.len()))?;
                for item in &l.items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.entries.len()))?;
                for (k, v) in &m.entries {
                    map.serialize_entry(&Key(k), &Json(v))?;
                }
                map.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.fields.len()))?;
                for (k, v) in &o.fields {
                    map.serialize_entry(k.as_ref(), &Json(v))?;
                }
                map.end()
            }
            Value::Ref(_) => Err(ser::Error::custom(
                "a hessian back-reference has no fastjson form",
            )),
        }
    }
}

/// JSON object keys must be strings: scalars are written as their text.
struct Key<'r, 'a>(&'r Value<'a>);

impl Serialize for Key<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::String(v) => s.serialize_str(v),
            Value::Null => s.serialize_str("null"),
            Value::Bool(b) => s.collect_str(b),
            Value::Int(i) => s.collect_str(i),
            Value::Long(l) | Value::Date(l) => s.collect_str(l),
            Value::Double(d) => s.collect_str(d),
            other => Err(ser::Error::custom(format_args!(
                "a {} cannot be a fastjson key",
                other.kind()
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(i32::try_from(v).map_or(Value::Long(v), Value::Int))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => i32::try_from(v).map_or(Value::Long(v), Value::Int),
            Err(_) => Value::Double(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
        Ok(Value::Double(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Value::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(List {
            type_name: None,
            items,
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Value<'de>, Value<'de>>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(Map {
            type_name: None,
            entries,
        }))
    }
}
