//! A JSON tree that keeps object members in the order they were written (a POJO's fields are written in
//! that order), parsed and printed with serde_json.
//!
//! serde_json's own `Value` sorts object keys unless its `preserve_order` feature is on, and turning that on
//! would change every other user of serde_json in the workspace (feature unification), hence this type.
//! Parsing inherits serde_json's nesting limit (128).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::TypeError;

/// A JSON number as serde_json reads it: integers exactly (within i64/u64), others as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
}

impl Number {
    /// The number as an i64, if it is an integer that fits.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::UInt(u) => i64::try_from(u).ok(),
            Number::Float(_) => None,
        }
    }

    /// The number as an f64 (rounded for huge integers).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }
}

impl fmt::Display for Number {
    /// Integers in decimal; floats in the shortest form that reads back to the same f64 (`1.5`, `1e300`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Number::Int(i) => write!(f, "{i}"),
            Number::UInt(u) => write!(f, "{u}"),
            Number::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Json>),
    /// Members in document order (duplicates kept).
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON text (surrounding whitespace allowed, nothing else after it).
    pub fn parse(text: &[u8]) -> Result<Json, TypeError> {
        serde_json::from_slice(text).map_err(|e| TypeError::Json(e.to_string()))
    }

    /// The compact JSON text.
    pub fn to_text(&self) -> String {
        // Serializing this type into a String cannot fail: every key is a string, floats are finite
        // (non-finite ones are written as null by serde_json).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// The first member named `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(Number::Int(i)) => s.serialize_i64(*i),
            Json::Number(Number::UInt(u)) => s.serialize_u64(*u),
            Json::Number(Number::Float(f)) => s.serialize_f64(*f),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(Number::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::UInt(v),
        }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(Number::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        // No pre-sizing from a size hint: vectors grow only as elements really arrive.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_member_order_and_duplicates() {
        let j = Json::parse(br#"{"z":1,"a":[true,null,"x"],"z":-2.5}"#).unwrap();
        assert_eq!(
            j,
            Json::Object(vec![
                ("z".into(), Json::Number(Number::Int(1))),
                (
                    "a".into(),
                    Json::Array(vec![Json::Bool(true), Json::Null, Json::String("x".into())])
                ),
                ("z".into(), Json::Number(Number::Float(-2.5))),
            ])
        );
        assert_eq!(j.to_text(), r#"{"z":1,"a":[true,null,"x"],"z":-2.5}"#);
        assert_eq!(j.get("z"), Some(&Json::Number(Number::Int(1))));
    }

    #[test]
    fn numbers() {
        let j = Json::parse(b"[18446744073709551615, -9223372036854775808, 1e2, 0.1]").unwrap();
        assert_eq!(
            j,
            Json::Array(vec![
                Json::Number(Number::UInt(u64::MAX)),
                Json::Number(Number::Int(i64::MIN)),
                Json::Number(Number::Float(100.0)),
                Json::Number(Number::Float(0.1)),
            ])
        );
        assert_eq!(Number::Float(0.1).to_string(), "0.1");
        assert_eq!(Number::Float(100.0).to_string(), "100.0");
        assert_eq!(Number::UInt(u64::MAX).as_i64(), None);
    }

    #[test]
    fn errors_not_panics() {
        for bad in [&b""[..], b"[", b"{\"a\"}", b"[1,]", b"1 2", b"\xff", b"nul"] {
            assert!(matches!(Json::parse(bad), Err(TypeError::Json(_))), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(Json::parse(deep.as_bytes()).is_err());
    }
}
