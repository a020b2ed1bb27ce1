//! `mesh-agent decode`: hex in, one Dubbo frame (or one bare Hessian 2 value) out as pretty JSON.
//!
//! The JSON is produced by [`Serialize`] wrappers over the codec's types rather than through
//! `serde_json::Value`, so keys keep wire order (attachments, object fields, map entries) and nothing is
//! copied. Rendering of a [`Value`]:
//!
//! | value | JSON |
//! |---|---|
//! | null, bool, int, long, string | the same |
//! | double | a number; NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | date | `{"$date": ms}` |
//! | binary | `{"$binary": "hex"}` |
//! | untyped list | an array |
//! | typed list | `{"$type": T, "items": [...]}` |
//! | untyped map with distinct string keys (none starting with `$`) | an object |
//! | any other map | `{"$type": T or null, "entries": [[k, v], ...]}` |
//! | object | `{"$class": C, "fields": {...}}` (`[[name, v], ...]` if a field name repeats) |
//! | back-reference | `{"$ref": n}` |
//!
//! Maps whose keys start with `$` take the `entries` form so that no map can be mistaken for one of the
//! `$` forms above.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use clap::Args;
use mesh_dubbo::frame::{HEADER_LEN, MAGIC};
use mesh_dubbo::hessian::Decoder;
use mesh_dubbo::{Body, Codec, Decoded, Event, Header, Request, Response, RpcResult, Status, Value};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// The bytes as hex (whitespace ignored, optional 0x prefix; several arguments are concatenated).
    /// Read from stdin when absent or `-`.
    #[arg(value_name = "HEX")]
    hex: Vec<String>,

    /// Decode one bare Hessian 2 value instead of a Dubbo frame.
    #[arg(long)]
    hessian: bool,
}

pub(crate) fn run(args: &DecodeArgs) -> Result<()> {
    let text = if args.hex.is_empty() || args.hex == ["-"] {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        buf
    } else {
        args.hex.concat().into_bytes()
    };
    let bytes = parse_hex(&text)?;
    let codec = Codec::default();
    let mut out = Vec::new();
    if args.hessian {
        render_hessian(&codec, &bytes, &mut out)?;
    } else {
        render_frame(&codec, &bytes, &mut out)?;
    }
    out.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .context("writing output")
}

/// Hex digits to bytes: ASCII whitespace anywhere is skipped, a leading `0x` / `0X` is allowed.
fn parse_hex(text: &[u8]) -> Result<Vec<u8>> {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let text = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (i, &b) in text.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        let Some(nibble) = (b as char).to_digit(16) else {
            let shown = if b.is_ascii_graphic() {
                format!("{:?}", b as char)
            } else {
                format!("byte 0x{b:02x}")
            };
            bail!("invalid hex: unexpected {shown} at offset {}", start + i);
        };
        digits += 1;
        // `to_digit(16)` is below 16, so the cast is lossless.
        let nibble = nibble as u8;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    if high.is_some() {
        bail!("invalid hex: odd number of digits ({digits})");
    }
    if out.is_empty() {
        bail!("empty input: no hex digits");
    }
    Ok(out)
}

fn render_frame(codec: &Codec, bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut buf = BytesMut::from(bytes);
    let frame = match codec.decode_frame(&mut buf)? {
        Decoded::Frame(frame) => frame,
        Decoded::NeedMore(n) if bytes.len() < HEADER_LEN => bail!(
            "incomplete frame: {} bytes given, at least {n} more needed (the header alone is {HEADER_LEN})",
            bytes.len()
        ),
        Decoded::NeedMore(n) => {
            let body_len = bytes
                .get(12..16)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            bail!(
                "incomplete frame: the header announces a {body_len}-byte body, {n} more byte{} needed",
                if n == 1 { " is" } else { "s are" }
            )
        }
    };
    let header = &frame.header;
    let body = match header.serialization() {
        Ok(_) => BodyJson::Decoded(codec.decode_body(header, &frame.body).context("bad frame body")?),
        Err(e) => BodyJson::Undecoded {
            reason: e.to_string(),
            hex: hex::encode(&frame.body),
        },
    };
    let json = FrameJson {
        header: HeaderJson(header),
        body,
        trailing_bytes: buf.len(),
    };
    serde_json::to_writer_pretty(out, &json).context("rendering JSON")
}

fn render_hessian(codec: &Codec, bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut decoder = Decoder::with_max_depth(bytes, codec.max_depth);
    let value = decoder.read_value().context("bad hessian value")?;
    let json = HessianJson {
        kind: value.kind(),
        value: Json(&value),
        bytes: decoder.position(),
        trailing_bytes: decoder.rest().len(),
    };
    serde_json::to_writer_pretty(out, &json).context("rendering JSON")
}

#[derive(Serialize)]
struct HessianJson<'v, 'a> {
    kind: &'static str,
    value: Json<'v, 'a>,
    /// Bytes the value took.
    bytes: usize,
    trailing_bytes: usize,
}

#[derive(Serialize)]
struct FrameJson<'a> {
    header: HeaderJson<'a>,
    body: BodyJson<'a>,
    trailing_bytes: usize,
}

struct HeaderJson<'h>(&'h Header);

impl Serialize for HeaderJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("magic", &format!("0x{MAGIC:04x}"))?;
        m.serialize_entry("flag", &format!("0x{:02x}", h.flag))?;
        m.serialize_entry("request", &h.is_request())?;
        m.serialize_entry("two_way", &h.is_two_way())?;
        m.serialize_entry("event", &h.is_event())?;
        let ser_name = h.serialization().map_or("unsupported", |s| s.name());
        m.serialize_entry(
            "serialization",
            &IdName {
                id: h.serialization_id(),
                name: ser_name,
            },
        )?;
        // Requests carry no status (Java writes 0 there); only responses have one worth naming.
        let st = if h.is_request() {
            StatusJson {
                code: h.status.0,
                name: "none (request)",
            }
        } else {
            status(h.status)
        };
        m.serialize_entry("status", &st)?;
        m.serialize_entry("id", &h.id)?;
        m.serialize_entry("body_len", &h.body_len)?;
        m.end()
    }
}

#[derive(Serialize)]
struct IdName {
    id: u8,
    name: &'static str,
}

#[derive(Serialize)]
struct StatusJson {
    code: u8,
    name: &'static str,
}

fn status(s: Status) -> StatusJson {
    StatusJson {
        code: s.0,
        name: s.name(),
    }
}

enum BodyJson<'a> {
    Decoded(Body<'a>),
    /// A serialization this codec does not speak: the body as it came.
    Undecoded {
        reason: String,
        hex: String,
    },
}

impl Serialize for BodyJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            BodyJson::Undecoded { reason, hex } => {
                m.serialize_entry("kind", "undecoded")?;
                m.serialize_entry("reason", reason)?;
                m.serialize_entry("hex", hex)?;
            }
            BodyJson::Decoded(Body::Request(r)) => {
                let Request {
                    dubbo_version,
                    service,
                    version,
                    method,
                    param_types,
                    args,
                    attachments,
                } = r;
                m.serialize_entry("kind", "request")?;
                m.serialize_entry("dubbo_version", dubbo_version)?;
                m.serialize_entry("service", service)?;
                m.serialize_entry("version", version)?;
                m.serialize_entry("method", method)?;
                m.serialize_entry("param_types", param_types)?;
                m.serialize_entry("args", &Seq(args))?;
                m.serialize_entry("attachments", &Named(attachments))?;
            }
            BodyJson::Decoded(Body::Response(Response::Ok { result, attachments })) => {
                m.serialize_entry("kind", "response")?;
                match result {
                    RpcResult::Value(v) => {
                        m.serialize_entry("result", "value")?;
                        m.serialize_entry("value", &Json(v))?;
                    }
                    RpcResult::Null => m.serialize_entry("result", "null")?,
                    RpcResult::Exception(v) => {
                        m.serialize_entry("result", "exception")?;
                        m.serialize_entry("exception", &Json(v))?;
                    }
                }
                m.serialize_entry("attachments", &attachments.as_deref().map(Named))?;
            }
            BodyJson::Decoded(Body::Response(Response::Error { status: st, message })) => {
                m.serialize_entry("kind", "response")?;
                m.serialize_entry("result", "error")?;
                m.serialize_entry("status", &status(*st))?;
                m.serialize_entry("message", message)?;
            }
            BodyJson::Decoded(Body::Event(e)) => {
                m.serialize_entry("kind", "event")?;
                match e {
                    Event::Heartbeat => m.serialize_entry("event", "heartbeat")?,
                    Event::ReadOnly => m.serialize_entry("event", "read_only")?,
                    Event::Writeable => m.serialize_entry("event", "writeable")?,
                    Event::Other(v) => {
                        m.serialize_entry("event", "other")?;
                        m.serialize_entry("value", &Json(v))?;
                    }
                }
            }
        }
        m.end()
    }
}

/// A [`Value`] rendered as described in the module documentation.
struct Json<'v, 'a>(&'v Value<'a>);

/// Values as a JSON array.
struct Seq<'v, 'a>(&'v [Value<'a>]);

/// Map entries as `[[k, v], ...]`.
struct Entries<'v, 'a>(&'v [(Value<'a>, Value<'a>)]);

/// Name / value pairs (object fields, attachments): an object when the names are distinct, else
/// `[[name, v], ...]` so that no pair is lost to a JSON reader keeping only the last duplicate.
struct Named<'v, 'a>(&'v [(Cow<'a, str>, Value<'a>)]);

fn distinct<'s>(keys: impl ExactSizeIterator<Item = &'s str>) -> bool {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.into_iter().all(|k| seen.insert(k))
}

fn single<S: Serializer, V: Serialize + ?Sized>(s: S, key: &str, v: &V) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(key, v)?;
    m.end()
}

impl Serialize for Json<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i32(*i),
            Value::Long(l) => s.serialize_i64(*l),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Double(d) if d.is_nan() => s.serialize_str("NaN"),
            Value::Double(d) if *d > 0.0 => s.serialize_str("Infinity"),
            Value::Double(_) => s.serialize_str("-Infinity"),
            Value::Date(ms) => single(s, "$date", ms),
            Value::String(st) => s.serialize_str(st),
            Value::Binary(b) => single(s, "$binary", &hex::encode(b)),
            Value::List(l) => match &l.type_name {
                None => Seq(&l.items).serialize(s),
                Some(t) => {
                    let mut m = s.serialize_map(Some(2))?;
                    m.serialize_entry("$type", t)?;
                    m.serialize_entry("items", &Seq(&l.items))?;
                    m.end()
                }
            },
            Value::Map(map) => {
                let plain = map.type_name.is_none()
                    && map
                        .entries
                        .iter()
                        .all(|(k, _)| k.as_str().is_some_and(|k| !k.starts_with('$')))
                    && distinct(map.entries.iter().map(|(k, _)| k.as_str().unwrap_or_default()));
                if plain {
                    s.collect_map(
                        map.entries
                            .iter()
                            .map(|(k, v)| (k.as_str().unwrap_or_default(), Json(v))),
                    )
                } else {
                    let mut m = s.serialize_map(Some(2))?;
                    m.serialize_entry("$type", &map.type_name)?;
                    m.serialize_entry("entries", &Entries(&map.entries))?;
                    m.end()
                }
            }
            Value::Object(o) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("$class", &o.class)?;
                m.serialize_entry("fields", &Named(&o.fields))?;
                m.end()
            }
            Value::Ref(n) => single(s, "$ref", n),
        }
    }
}

impl Serialize for Seq<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&Json(v))?;
        }
        seq.end()
    }
}

impl Serialize for Entries<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, v)| (Json(k), Json(v))))
    }
}

impl Serialize for Named<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if distinct(self.0.iter().map(|(k, _)| k.as_ref())) {
            s.collect_map(self.0.iter().map(|(k, v)| (k.as_ref(), Json(v))))
        } else {
            s.collect_seq(self.0.iter().map(|(k, v)| (k.as_ref(), Json(v))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(v: &Value<'_>) -> String {
        serde_json::to_string(&Json(v)).expect("renders")
    }

    #[test]
    fn hex_input_forms() {
        assert_eq!(parse_hex(b"  0xDA bb\n0c\t").expect("ok"), vec![0xda, 0xbb, 0x0c]);
        assert_eq!(parse_hex(b"dabb").expect("ok"), vec![0xda, 0xbb]);
        assert!(parse_hex(b"zz").is_err());
        assert!(parse_hex(b"abc").is_err());
        assert!(parse_hex(b"  \n").is_err());
        assert!(parse_hex("é0".as_bytes()).is_err());
    }

    #[test]
    fn doubles_and_specials() {
        assert_eq!(render(&Value::Double(12.25)), "12.25");
        assert_eq!(render(&Value::Double(f64::NAN)), "\"NaN\"");
        assert_eq!(render(&Value::Double(f64::INFINITY)), "\"Infinity\"");
        assert_eq!(render(&Value::Double(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(render(&Value::Date(5)), r#"{"$date":5}"#);
        assert_eq!(
            render(&Value::Binary(Cow::Borrowed(&[0, 0xff]))),
            r#"{"$binary":"00ff"}"#
        );
        assert_eq!(render(&Value::Ref(2)), r#"{"$ref":2}"#);
        assert_eq!(render(&Value::Long(i64::MIN)), i64::MIN.to_string());
    }

    #[test]
    fn maps_keep_order_and_fall_back_to_entries() {
        let map = |type_name: Option<&'static str>, entries: Vec<(Value<'static>, Value<'static>)>| {
            Value::Map(mesh_dubbo::Map {
                type_name: type_name.map(Cow::Borrowed),
                entries,
            })
        };
        let kv = |k: &'static str, v: i32| (Value::str(k), Value::Int(v));
        assert_eq!(
            render(&map(None, vec![kv("b", 1), kv("a", 2)])),
            r#"{"b":1,"a":2}"#
        );
        assert_eq!(
            render(&map(None, vec![kv("a", 1), kv("a", 2)])),
            r#"{"$type":null,"entries":[["a",1],["a",2]]}"#
        );
        assert_eq!(
            render(&map(None, vec![kv("$ref", 1)])),
            r#"{"$type":null,"entries":[["$ref",1]]}"#
        );
        assert_eq!(
            render(&map(None, vec![(Value::Int(1), Value::Null)])),
            r#"{"$type":null,"entries":[[1,null]]}"#
        );
        assert_eq!(
            render(&map(Some("java.util.TreeMap"), vec![kv("a", 1)])),
            r#"{"$type":"java.util.TreeMap","entries":[["a",1]]}"#
        );
    }

    #[test]
    fn objects_and_lists() {
        let obj = Value::Object(mesh_dubbo::Object {
            class: Cow::Borrowed("C"),
            fields: vec![
                (Cow::Borrowed("z"), Value::Int(1)),
                (Cow::Borrowed("a"), Value::Null),
            ],
        });
        assert_eq!(render(&obj), r#"{"$class":"C","fields":{"z":1,"a":null}}"#);
        let dup = Value::Object(mesh_dubbo::Object {
            class: Cow::Borrowed("C"),
            fields: vec![
                (Cow::Borrowed("x"), Value::Int(1)),
                (Cow::Borrowed("x"), Value::Int(2)),
            ],
        });
        assert_eq!(render(&dup), r#"{"$class":"C","fields":[["x",1],["x",2]]}"#);
        let typed = Value::List(mesh_dubbo::List {
            type_name: Some(Cow::Borrowed("[string")),
            items: vec![Value::str("a")],
        });
        assert_eq!(render(&typed), r#"{"$type":"[string","items":["a"]}"#);
        let untyped = Value::List(mesh_dubbo::List {
            type_name: None,
            items: vec![Value::Int(1), Value::Null],
        });
        assert_eq!(render(&untyped), "[1,null]");
    }
}
