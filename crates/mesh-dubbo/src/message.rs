//! The message layer: requests (RpcInvocation), responses (RpcResult), events, in hessian2 or fastjson.

use std::borrow::Cow;

use bytes::BytesMut;

use crate::descriptor;
use crate::error::CodecError;
use crate::fastjson;
use crate::frame::{self, Decoded, Header, Serialization, Status, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY};
use crate::hessian;
use crate::value::{Map, Value};

type Result<T> = std::result::Result<T, CodecError>;

/// The protocol version Java Dubbo 2.6.3+/2.7/3.x sends; it makes providers answer with attachments.
pub const DUBBO_VERSION: &str = "2.0.2";

/// Response "result flags" (the first value of an OK response body).
pub mod result_flag {
    pub const EXCEPTION: i32 = 0;
    pub const VALUE: i32 = 1;
    pub const NULL_VALUE: i32 = 2;
    pub const EXCEPTION_WITH_ATTACHMENTS: i32 = 3;
    pub const VALUE_WITH_ATTACHMENTS: i32 = 4;
    pub const NULL_VALUE_WITH_ATTACHMENTS: i32 = 5;
}

/// Invocation attachments, in wire order. Keys are strings; values may be any value.
pub type Attachments<'a> = Vec<(Cow<'a, str>, Value<'a>)>;

/// A decoded request body (Java's `RpcInvocation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    pub dubbo_version: Cow<'a, str>,
    /// The service path (normally the interface name).
    pub service: Cow<'a, str>,
    /// The service version; Java sends `"0.0.0"` when none is set, the 2018 demo sent null.
    pub version: Option<Cow<'a, str>>,
    pub method: Cow<'a, str>,
    /// Concatenated JVM descriptors, e.g. `Ljava/lang/String;`.
    pub param_types: Cow<'a, str>,
    pub args: Vec<Value<'a>>,
    pub attachments: Attachments<'a>,
}

impl<'a> Request<'a> {
    /// The first attachment with this key.
    pub fn attachment(&self, key: &str) -> Option<&Value<'a>> {
        self.attachments.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The fields before the arguments, borrowed, for [`Codec::encode_request`].
    pub fn head(&self) -> RequestHead<'_> {
        RequestHead {
            dubbo_version: &self.dubbo_version,
            service: &self.service,
            version: self.version.as_deref(),
            method: &self.method,
            param_types: &self.param_types,
        }
    }
}

fn owned_str(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

fn owned_attachments(a: Attachments<'_>) -> Attachments<'static> {
    a.into_iter()
        .map(|(k, v)| (owned_str(k), v.into_owned()))
        .collect()
}

impl Request<'_> {
    /// Detaches the request from the frame body it was decoded from.
    pub fn into_owned(self) -> Request<'static> {
        Request {
            dubbo_version: owned_str(self.dubbo_version),
            service: owned_str(self.service),
            version: self.version.map(owned_str),
            method: owned_str(self.method),
            param_types: owned_str(self.param_types),
            args: self.args.into_iter().map(Value::into_owned).collect(),
            attachments: owned_attachments(self.attachments),
        }
    }
}

impl Response<'_> {
    /// Detaches the response from the frame body it was decoded from.
    pub fn into_owned(self) -> Response<'static> {
        match self {
            Response::Ok { result, attachments } => Response::Ok {
                result: match result {
                    RpcResult::Value(v) => RpcResult::Value(v.into_owned()),
                    RpcResult::Null => RpcResult::Null,
                    RpcResult::Exception(v) => RpcResult::Exception(v.into_owned()),
                },
                attachments: attachments.map(owned_attachments),
            },
            Response::Error { status, message } => Response::Error {
                status,
                message: owned_str(message),
            },
        }
    }
}

impl Body<'_> {
    /// Detaches the body from the frame it was decoded from.
    pub fn into_owned(self) -> Body<'static> {
        match self {
            Body::Request(r) => Body::Request(r.into_owned()),
            Body::Response(r) => Body::Response(r.into_owned()),
            Body::Event(Event::Other(v)) => Body::Event(Event::Other(v.into_owned())),
            Body::Event(Event::Heartbeat) => Body::Event(Event::Heartbeat),
            Body::Event(Event::ReadOnly) => Body::Event(Event::ReadOnly),
            Body::Event(Event::Writeable) => Body::Event(Event::Writeable),
        }
    }
}

/// The fields of a request before its arguments, borrowed: what the hot path encodes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'r> {
    pub dubbo_version: &'r str,
    pub service: &'r str,
    pub version: Option<&'r str>,
    pub method: &'r str,
    pub param_types: &'r str,
}

/// The result of an invocation that reached the service (status 20).
#[derive(Debug, Clone, PartialEq)]
pub enum RpcResult<'a> {
    Value(Value<'a>),
    /// `null` or `void`.
    Null,
    /// The service threw: the Throwable, usually a Hessian object.
    Exception(Value<'a>),
}

/// A decoded response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Response<'a> {
    /// Status 20. `attachments` is `Some` for the `*_WITH_ATTACHMENTS` result flags.
    Ok {
        result: RpcResult<'a>,
        attachments: Option<Attachments<'a>>,
    },
    /// Any other status: the body is an error message.
    Error { status: Status, message: Cow<'a, str> },
}

/// An event frame's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A heartbeat (payload null), request or answer.
    Heartbeat,
    /// A provider going away: "R" (read-only: stop routing here).
    ReadOnly,
    /// "W": the provider accepts calls again.
    Writeable,
    Other(Value<'a>),
}

/// What a frame body holds, as the header says how to read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    Request(Request<'a>),
    Response(Response<'a>),
    Event(Event<'a>),
}

/// Codec settings: limits applied on both directions. The codec holds no state between frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Largest frame body accepted or produced (Dubbo's `payload`, default 8 MiB).
    pub max_body: usize,
    /// Deepest nesting of lists / maps / objects accepted.
    pub max_depth: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            max_body: frame::DEFAULT_MAX_BODY,
            max_depth: hessian::DEFAULT_MAX_DEPTH,
        }
    }
}

impl Codec {
    /// Takes one frame off the front of `buf` (see [`frame::decode_frame`]).
    pub fn decode_frame(&self, buf: &mut BytesMut) -> Result<Decoded> {
        frame::decode_frame(buf, self.max_body)
    }

    /// Decodes a body the way its header describes it.
    pub fn decode_body<'a>(&self, header: &Header, body: &'a [u8]) -> Result<Body<'a>> {
        let mut r = Reader::new(header.serialization()?, body, self.max_depth);
        if !header.is_request() && !header.status.is_ok() {
            let message = match r.value_or_end()? {
                Some(Value::String(s)) => s,
                None | Some(Value::Null) => Cow::Borrowed(""),
                Some(other) => {
                    return Err(CodecError::BadField {
                        field: "error message",
                        expected: "string",
                        found: other.kind(),
                    })
                }
            };
            return Ok(Body::Response(Response::Error {
                status: header.status,
                message,
            }));
        }
        if header.is_event() {
            return Ok(Body::Event(match r.value_or_end()? {
                None | Some(Value::Null) => Event::Heartbeat,
                Some(Value::String(s)) if s == "R" => Event::ReadOnly,
                Some(Value::String(s)) if s == "W" => Event::Writeable,
                Some(other) => Event::Other(other),
            }));
        }
        if header.is_request() {
            return decode_request(&mut r).map(Body::Request);
        }
        decode_response(&mut r).map(Body::Response)
    }

    /// Encodes a request frame: `header` from [`Header::request`], the head fields, the arguments (their
    /// count must match the descriptor) and the attachments. Nothing is added implicitly: callers put
    /// `path`, `interface`, `version`, `timeout` etc. in `attachments` themselves.
    pub fn encode_request<'x, 'v: 'x, I>(
        &self,
        buf: &mut BytesMut,
        header: Header,
        head: &RequestHead<'_>,
        args: &[Value<'_>],
        attachments: I,
    ) -> Result<()>
    where
        I: IntoIterator<Item = (&'x str, &'x Value<'v>)>,
    {
        let ser = header.serialization()?;
        let expected = descriptor::count(head.param_types)?;
        if expected != args.len() {
            return Err(CodecError::ArgumentCount {
                count: args.len(),
                expected,
            });
        }
        let header = Header {
            flag: header.flag | FLAG_REQUEST,
            ..header
        };
        frame::encode_frame(buf, header, self.max_body, |buf| {
            let mut w = Writer::new(ser, buf);
            w.str(head.dubbo_version);
            w.str(head.service);
            match head.version {
                Some(v) => w.str(v),
                None => w.null(),
            }
            w.str(head.method);
            w.str(head.param_types);
            for a in args {
                w.value(a)?;
            }
            w.attachments(attachments)
        })
    }

    /// Encodes a whole [`Request`] (a convenience over [`Codec::encode_request`]).
    pub fn encode_request_message(
        &self,
        buf: &mut BytesMut,
        header: Header,
        req: &Request<'_>,
    ) -> Result<()> {
        let atts = req.attachments.iter().map(|(k, v)| (k.as_ref(), v));
        self.encode_request(buf, header, &req.head(), &req.args, atts)
    }

    /// Encodes a response frame for request `id`.
    pub fn encode_response(
        &self,
        buf: &mut BytesMut,
        id: u64,
        ser: Serialization,
        resp: &Response<'_>,
    ) -> Result<()> {
        let status = match resp {
            Response::Ok { .. } => Status::OK,
            Response::Error { status, .. } => *status,
        };
        frame::encode_frame(buf, Header::response(id, ser, status), self.max_body, |buf| {
            let mut w = Writer::new(ser, buf);
            match resp {
                Response::Error { message, .. } => w.str(message),
                Response::Ok { result, attachments } => {
                    let with = attachments.is_some();
                    let (flag, value) = match result {
                        RpcResult::Value(v) => (result_flag::VALUE, Some(v)),
                        RpcResult::Null => (result_flag::NULL_VALUE, None),
                        RpcResult::Exception(v) => (result_flag::EXCEPTION, Some(v)),
                    };
                    w.int(if with { flag + 3 } else { flag });
                    if let Some(v) = value {
                        w.value(v)?;
                    }
                    if let Some(atts) = attachments {
                        w.attachments(atts.iter().map(|(k, v)| (k.as_ref(), v)))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Encodes a heartbeat: a two-way event request, or the answer to one (`id` echoed).
    pub fn encode_heartbeat(&self, buf: &mut BytesMut, id: u64, ser: Serialization, request: bool) {
        let header = if request {
            Header {
                flag: FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | ser.id(),
                ..Header::request(id, ser, true)
            }
        } else {
            Header {
                flag: FLAG_EVENT | ser.id(),
                ..Header::response(id, ser, Status::OK)
            }
        };
        // A null body is a few bytes: it cannot fail or exceed any limit.
        let _ = self.encode_event(buf, header, &Event::Heartbeat);
    }

    /// Encodes an event frame with the given header (the event flag is set here).
    pub fn encode_event(&self, buf: &mut BytesMut, header: Header, event: &Event<'_>) -> Result<()> {
        let ser = header.serialization()?;
        let header = Header {
            flag: header.flag | FLAG_EVENT,
            ..header
        };
        frame::encode_frame(buf, header, self.max_body, |buf| {
            let mut w = Writer::new(ser, buf);
            match event {
                Event::Heartbeat => w.null(),
                Event::ReadOnly => w.str("R"),
                Event::Writeable => w.str("W"),
                Event::Other(v) => w.value(v)?,
            }
            Ok(())
        })
    }
}

fn decode_request<'a>(r: &mut Reader<'a>) -> Result<Request<'a>> {
    let dubbo_version = r.string("dubbo version")?;
    let service = r.string("service path")?;
    let version = r.nullable_string("service version")?;
    let method = r.string("method")?;
    let param_types = r.nullable_string("parameter types")?.unwrap_or(Cow::Borrowed(""));
    let n = descriptor::count(&param_types)?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        args.push(r.value()?);
    }
    let attachments = match r.value_or_end()? {
        None => Vec::new(),
        Some(v) => attachments(v)?,
    };
    Ok(Request {
        dubbo_version,
        service,
        version,
        method,
        param_types,
        args,
        attachments,
    })
}

fn decode_response<'a>(r: &mut Reader<'a>) -> Result<Response<'a>> {
    let flag = match r.value()? {
        Value::Int(i) => i64::from(i),
        Value::Long(l) => l,
        other => {
            return Err(CodecError::BadField {
                field: "result flag",
                expected: "int",
                found: other.kind(),
            })
        }
    };
    let result = match flag {
        0 | 3 => RpcResult::Exception(r.value()?),
        1 | 4 => RpcResult::Value(r.value()?),
        2 | 5 => RpcResult::Null,
        other => return Err(CodecError::BadResultFlag(other)),
    };
    let attachments = if flag >= 3 {
        Some(attachments(r.value()?)?)
    } else {
        None
    };
    Ok(Response::Ok { result, attachments })
}

fn attachments(v: Value<'_>) -> Result<Attachments<'_>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Map(Map { entries, .. }) => entries
            .into_iter()
            .map(|(k, v)| match k {
                Value::String(k) => Ok((k, v)),
                other => Err(CodecError::BadField {
                    field: "attachment key",
                    expected: "string",
                    found: other.kind(),
                }),
            })
            .collect(),
        other => Err(CodecError::BadField {
            field: "attachments",
            expected: "map",
            found: other.kind(),
        }),
    }
}

/// Reads the fields of a body in either serialization.
enum Reader<'a> {
    Hessian(hessian::Decoder<'a>),
    Json(fastjson::Reader<'a>),
}

impl<'a> Reader<'a> {
    fn new(ser: Serialization, body: &'a [u8], max_depth: usize) -> Self {
        match ser {
            Serialization::Hessian2 => Reader::Hessian(hessian::Decoder::with_max_depth(body, max_depth)),
            Serialization::FastJson => Reader::Json(fastjson::Reader::new(body)),
        }
    }

    fn value(&mut self) -> Result<Value<'a>> {
        match self {
            Reader::Hessian(d) => d.read_value(),
            Reader::Json(j) => j.read_value(),
        }
    }

    fn value_or_end(&mut self) -> Result<Option<Value<'a>>> {
        let empty = match self {
            Reader::Hessian(d) => d.is_empty(),
            Reader::Json(j) => j.is_empty(),
        };
        if empty {
            Ok(None)
        } else {
            self.value().map(Some)
        }
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<Cow<'a, str>>> {
        match self.value()? {
            Value::String(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(CodecError::BadField {
                field,
                expected: "string",
                found: other.kind(),
            }),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<Cow<'a, str>> {
        match self.value()? {
            Value::String(s) => Ok(s),
            other => Err(CodecError::BadField {
                field,
                expected: "string",
                found: other.kind(),
            }),
        }
    }
}

/// Writes the fields of a body in either serialization.
enum Writer<'b> {
    Hessian(hessian::Encoder<'b>),
    Json(&'b mut BytesMut),
}

impl<'b> Writer<'b> {
    fn new(ser: Serialization, buf: &'b mut BytesMut) -> Self {
        match ser {
            Serialization::Hessian2 => Writer::Hessian(hessian::Encoder::new(buf)),
            Serialization::FastJson => Writer::Json(buf),
        }
    }

    fn str(&mut self, s: &str) {
        match self {
            Writer::Hessian(e) => e.write_str(s),
            Writer::Json(b) => fastjson::write_str(b, s),
        }
    }

    fn null(&mut self) {
        match self {
            Writer::Hessian(e) => e.write_null(),
            Writer::Json(b) => b.extend_from_slice(b"null\n"),
        }
    }

    fn int(&mut self, i: i32) {
        match self {
            Writer::Hessian(e) => e.write_int(i),
            Writer::Json(b) => {
                let _ = fastjson::write_value(b, &Value::Int(i));
            }
        }
    }

    fn value(&mut self, v: &Value<'_>) -> Result<()> {
        match self {
            Writer::Hessian(e) => e.write_value(v),
            Writer::Json(b) => fastjson::write_value(b, v),
        }
    }

    fn attachments<'x, 'v: 'x, I>(&mut self, atts: I) -> Result<()>
    where
        I: IntoIterator<Item = (&'x str, &'x Value<'v>)>,
    {
        match self {
            Writer::Hessian(e) => {
                e.write_map_begin();
                for (k, v) in atts {
                    e.write_str(k);
                    e.write_value(v)?;
                }
                e.write_end();
                Ok(())
            }
            Writer::Json(b) => fastjson::write_object(b, atts),
        }
    }
}

/// Does Java answer with attachments (result flags 3 to 5) for this protocol version? Dubbo's
/// `Version.isSupportResponseAttachment`: 2.0.2 ..= 2.0.99, where `getIntVersion` reads each part as two
/// digits and scales a three-part version by another 100.
pub fn supports_response_attachments(version: &str) -> bool {
    let mut v: i64 = 0;
    let mut parts = 0;
    for p in version.split('.') {
        let Ok(n) = p.parse::<i64>() else { return false };
        v = v * 100 + n;
        parts += 1;
        if parts > 4 {
            return false;
        }
    }
    if parts == 3 {
        v *= 100;
    }
    (2_000_200..=2_009_900).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::supports_response_attachments;

    #[test]
    fn response_attachment_versions() {
        for (v, want) in [
            ("2.0.2", true),
            ("2.0.10", true),
            ("2.0.99", true),
            ("2.0.1", false),
            ("2.0.100", false),
            ("2.7.0", false),
            ("2.6.2", false),
            ("", false),
            ("abc", false),
            ("1.2.3.4.5", false),
        ] {
            assert_eq!(supports_response_attachments(v), want, "{v}");
        }
    }
}
