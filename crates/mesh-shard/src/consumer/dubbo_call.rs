//! A Dubbo client's request frame as a [`CallRequest`]: its service key (`group/interface:version` from
//! the request head and its `group` attachment, as the HTTP form's), what the routers see of it (method,
//! arguments, attachments, `dubbo.tag`), and the frame for the upstream connection: the client's bytes
//! passed through with only the request id rewritten, plus the attachments the agent adds (`timeout` when
//! the client sent none, the provider's `token`) spliced into the attachment map without re-encoding the
//! rest. Only when the body cannot be spliced (fastjson, or the client sent a different `token`) is the
//! request encoded again, in the client's serialization.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mesh_dubbo::frame::encode_frame;
use mesh_dubbo::hessian::{Decoder, Encoder};
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{descriptor, Body, Codec, CodecError, Frame, Header, Request, Serialization, Status, Value};

use super::form_call::join_service_key;
use super::request::CallRequest;
use super::routes::Call as RouteCall;

/// Dubbo's "no version": Java consumers send it when none is set, and providers drop it from the key
/// (`ProtocolUtils.serviceKey`).
const NO_VERSION: &str = "0.0.0";

/// A decoded client request, borrowing from its frame's body.
#[derive(Debug)]
pub(super) struct DubboCall<'a> {
    /// The client's header: its request id, serialization and flags.
    header: Header,
    body: &'a [u8],
    /// The request's fields (the service path is field 2: the interface).
    request: Request<'a>,
    /// The arguments as condition rules compare them (Java's `String.valueOf`).
    arg_texts: Vec<Cow<'a, str>>,
    /// The attachment values as condition rules compare them, parallel to `request.attachments`.
    attachment_texts: Vec<Cow<'a, str>>,
    /// Where the agent's attachments go into the body, when it can be passed through (hessian2).
    splice: Option<Splice>,
}

/// How to insert attachments into a hessian2 request body without re-encoding it: copy `body[..cut]`, write
/// the new entries (inside a new `H … Z` map when `open_map`), copy `body[resume..]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Splice {
    cut: usize,
    resume: usize,
    open_map: bool,
}

impl<'a> DubboCall<'a> {
    /// Decodes the request in `frame` (a request, not an event), with `codec`'s limits.
    pub(super) fn decode(codec: &Codec, frame: &'a Frame) -> Result<Self, CodecError> {
        let header = frame.header;
        let body: &'a [u8] = &frame.body;
        let (request, splice) = match header.serialization()? {
            Serialization::Hessian2 => {
                let (request, at) = decode_hessian(body, codec.max_depth)?;
                (request, Some(at))
            }
            Serialization::FastJson => match codec.decode_body(&header, body)? {
                Body::Request(r) => (r, None),
                _ => return Err(CodecError::Unencodable("a non-request frame")),
            },
        };
        // Back-references let a small body render large many times over: the texts share a budget.
        let mut budget = TEXT_BUDGET_PER_BODY_BYTE * body.len() + TEXT_BUDGET_BASE;
        let arg_texts = request.args.iter().map(|v| text_of(v, &mut budget)).collect();
        let attachment_texts = request
            .attachments
            .iter()
            .map(|(_, v)| text_of(v, &mut budget))
            .collect();
        Ok(DubboCall {
            header,
            body,
            request,
            arg_texts,
            attachment_texts,
            splice,
        })
    }

    fn attachment(&self, key: &str) -> Option<&Value<'a>> {
        self.request
            .attachments
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn attachment_str(&self, key: &str) -> Option<&str> {
        self.attachment(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Dubbo's service key of the call, `group/interface:version`, as the HTTP form builds it: the `group`
    /// attachment, the service path, the version (none when empty or `0.0.0`). Borrowed when it is just
    /// the interface.
    pub(super) fn service_key(&self) -> Cow<'a, str> {
        let group = self.attachment_str("group");
        let version = self
            .request
            .version
            .as_deref()
            .filter(|v| !v.is_empty() && *v != NO_VERSION);
        match (group, version) {
            (None, None) => self.request.service.clone(),
            (group, version) => Cow::Owned(join_service_key(group, &self.request.service, version)),
        }
    }
}

/// Reads a hessian2 request body field by field, noting where its attachment map starts and ends.
fn decode_hessian(body: &[u8], max_depth: usize) -> Result<(Request<'_>, Splice), CodecError> {
    let mut d = Decoder::with_max_depth(body, max_depth);
    let dubbo_version = string(d.read_value()?, "dubbo version")?;
    let service = string(d.read_value()?, "service path")?;
    let version = nullable_string(d.read_value()?, "service version")?;
    let method = string(d.read_value()?, "method")?;
    let param_types = nullable_string(d.read_value()?, "parameter types")?.unwrap_or_default();
    let n = descriptor::count(&param_types)?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        args.push(d.read_value()?);
    }
    let start = d.position();
    let (attachments, splice) = if d.is_empty() {
        let at = Splice {
            cut: start,
            resume: start,
            open_map: true,
        };
        (Vec::new(), at)
    } else {
        let v = d.read_value()?;
        let end = d.position();
        match v {
            Value::Null => {
                let at = Splice {
                    cut: start,
                    resume: end,
                    open_map: true,
                };
                (Vec::new(), at)
            }
            Value::Map(m) => {
                // Every Hessian map ends with `Z`: new entries go just before it.
                let at = Splice {
                    cut: end - 1,
                    resume: end - 1,
                    open_map: false,
                };
                if body.get(end - 1) != Some(&b'Z') {
                    return Err(CodecError::UnexpectedTag {
                        tag: body.get(end - 1).copied().unwrap_or(0),
                        at: end - 1,
                        what: "end of attachments",
                    });
                }
                let entries = m
                    .entries
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::String(k) => Ok((k, v)),
                        other => Err(CodecError::BadField {
                            field: "attachment key",
                            expected: "string",
                            found: other.kind(),
                        }),
                    })
                    .collect::<Result<_, _>>()?;
                (entries, at)
            }
            other => {
                return Err(CodecError::BadField {
                    field: "attachments",
                    expected: "map",
                    found: other.kind(),
                })
            }
        }
    };
    let request = Request {
        dubbo_version,
        service,
        version,
        method,
        param_types,
        args,
        attachments,
    };
    Ok((request, splice))
}

fn string<'a>(v: Value<'a>, field: &'static str) -> Result<Cow<'a, str>, CodecError> {
    match nullable_string(v, field)? {
        Some(s) => Ok(s),
        None => Err(CodecError::BadField {
            field,
            expected: "string",
            found: "null",
        }),
    }
}

fn nullable_string<'a>(v: Value<'a>, field: &'static str) -> Result<Option<Cow<'a, str>>, CodecError> {
    match v {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        other => Err(CodecError::BadField {
            field,
            expected: "string",
            found: other.kind(),
        }),
    }
}

/// Bytes of JSON text the routing view of a request's structured arguments and attachments may take, per
/// byte of its body (JSON is longer than Hessian: `"a":` for `01 61`, base64 for binary), plus a base.
const TEXT_BUDGET_PER_BODY_BYTE: usize = 4;
const TEXT_BUDGET_BASE: usize = 4096;

/// A value as Java's `String.valueOf` spells the common ones: strings as they are, numbers in decimal,
/// `null`; structures as JSON while `budget` lasts, then as their kind.
fn text_of<'a>(v: &Value<'a>, budget: &mut usize) -> Cow<'a, str> {
    match v {
        Value::String(s) => s.clone(),
        // The same text the form's typed arguments show the routers.
        other => Cow::Owned(mesh_http::generic::text_of_within(other, budget).into_owned()),
    }
}

impl CallRequest for DubboCall<'_> {
    fn interface(&self) -> &str {
        &self.request.service
    }

    fn method(&self) -> &str {
        &self.request.method
    }

    fn route<T>(&self, service: &str, exclude: &[SocketAddr], route: impl FnOnce(&RouteCall<'_>) -> T) -> T {
        let args: Vec<&str> = self.arg_texts.iter().map(|a| a.as_ref()).collect();
        let attachments: Vec<(&str, &str)> = self
            .request
            .attachments
            .iter()
            .zip(&self.attachment_texts)
            .map(|((k, _), v)| (k.as_ref(), v.as_ref()))
            .collect();
        route(&RouteCall {
            service,
            method: &self.request.method,
            tag: self.attachment_str("dubbo.tag"),
            force_tag: self.attachment_str("dubbo.force.tag") == Some("true"),
            args: &args,
            attachments: &attachments,
            exclude,
        })
    }

    fn encode(
        &self,
        codec: &Codec,
        buf: &mut BytesMut,
        id: u64,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), CodecError> {
        let mut ms = itoa::Buffer::new();
        let ms = ms.format(timeout.as_millis() as u64);
        // The provider agent bounds its wait by `timeout`; the client's own is kept when it sent one.
        let timeout = self.attachment("timeout").is_none().then_some(("timeout", ms));
        let clients_token = self.attachment("token");
        let token = token.filter(|t| clients_token.and_then(Value::as_str) != Some(*t));
        let header = Header {
            id,
            status: Status(0),
            body_len: 0,
            ..self.header
        };
        match self.splice {
            // A token the client set differently is replaced: the body is written again.
            Some(at) if token.is_none() || clients_token.is_none() => {
                let extra = [timeout, token.map(|t| ("token", t))];
                splice(codec, buf, header, self.body, at, extra.iter().flatten().copied())
            }
            _ => {
                let mut head = self.request.head();
                if head.dubbo_version.is_empty() {
                    head.dubbo_version = DUBBO_VERSION;
                }
                let (ms, token) = (timeout.map(|(_, ms)| Value::str(ms)), token.map(Value::str));
                let kept = self
                    .request
                    .attachments
                    .iter()
                    .filter(|(k, _)| token.is_none() || k != "token")
                    .map(|(k, v)| (k.as_ref(), v));
                let added = [
                    ms.as_ref().map(|v| ("timeout", v)),
                    token.as_ref().map(|v| ("token", v)),
                ];
                codec.encode_request(
                    buf,
                    header,
                    &head,
                    &self.request.args,
                    kept.chain(added.into_iter().flatten()),
                )
            }
        }
    }
}

/// Writes `header` and `body` with the string attachments `extra` inserted at `at`.
fn splice<'x>(
    codec: &Codec,
    buf: &mut BytesMut,
    header: Header,
    body: &[u8],
    at: Splice,
    extra: impl Iterator<Item = (&'x str, &'x str)> + Clone,
) -> Result<(), CodecError> {
    encode_frame(buf, header, codec.max_body, |buf| {
        if extra.clone().next().is_none() {
            buf.put_slice(body);
            return Ok(());
        }
        buf.put_slice(&body[..at.cut]);
        let mut e = Encoder::new(buf);
        if at.open_map {
            e.write_map_begin();
        }
        for (k, v) in extra {
            e.write_str(k);
            e.write_str(v);
        }
        if at.open_map {
            e.write_end();
        }
        buf.put_slice(&body[at.resume..]);
        Ok(())
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use mesh_dubbo::Decoded;

    /// The whole frame at the start of `buf`.
    pub(in crate::consumer) fn frame_of(buf: &mut BytesMut) -> Frame {
        match Codec::default().decode_frame(buf).unwrap() {
            Decoded::Frame(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn request(
        ser: Serialization,
        version: Option<&'static str>,
        attachments: Vec<(&'static str, Value<'static>)>,
    ) -> Frame {
        let req = Request {
            dubbo_version: "2.0.2".into(),
            service: "com.example.Hello".into(),
            version: version.map(Into::into),
            method: "hash".into(),
            param_types: "Ljava/lang/String;I".into(),
            args: vec![Value::str("abc"), Value::Int(7)],
            attachments: attachments.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        };
        let mut buf = BytesMut::new();
        Codec::default()
            .encode_request_message(&mut buf, Header::request(0x1234_5678_9abc, ser, true), &req)
            .unwrap();
        frame_of(&mut buf)
    }

    fn decoded(f: &Frame) -> DubboCall<'_> {
        DubboCall::decode(&Codec::default(), f).unwrap()
    }

    /// The upstream frame for `f` with id `id`, decoded.
    fn upstream(f: &Frame, id: u64, token: Option<&str>) -> (Frame, Request<'static>) {
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        decoded(f)
            .encode(&codec, &mut buf, id, token, Duration::from_millis(1500))
            .unwrap();
        let up = frame_of(&mut buf);
        let Body::Request(req) = codec.decode_body(&up.header, &up.body).unwrap() else {
            panic!("a request");
        };
        let req = req.into_owned();
        (up, req)
    }

    fn attachments(req: &Request<'_>) -> Vec<(String, String)> {
        req.attachments
            .iter()
            .map(|(k, v)| (k.to_string(), mesh_http::generic::text_of(v).into_owned()))
            .collect()
    }

    #[test]
    fn the_service_key_comes_from_the_path_the_group_attachment_and_the_version() {
        let key = |version, group: Option<&'static str>| {
            let atts = group.map(|g| vec![("group", Value::str(g))]).unwrap_or_default();
            let f = request(Serialization::Hessian2, version, atts);
            decoded(&f).service_key().into_owned()
        };
        assert_eq!(key(Some("1.0"), Some("g")), "g/com.example.Hello:1.0");
        assert_eq!(key(Some("1.0"), None), "com.example.Hello:1.0");
        assert_eq!(key(None, Some("g")), "g/com.example.Hello");
        // Java's "no version" and an empty one are none, as on a Dubbo provider.
        assert_eq!(key(Some("0.0.0"), None), "com.example.Hello");
        assert_eq!(key(Some(""), Some("")), "com.example.Hello");
        let f = request(Serialization::Hessian2, None, vec![]);
        assert!(matches!(
            decoded(&f).service_key(),
            Cow::Borrowed("com.example.Hello")
        ));
    }

    #[test]
    fn the_routers_see_method_arguments_attachments_and_the_tag() {
        let f = request(
            Serialization::Hessian2,
            Some("1.0"),
            vec![
                ("dubbo.tag", Value::str("blue")),
                ("dubbo.force.tag", Value::str("true")),
                ("user", Value::str("ann")),
                ("n", Value::Int(3)),
            ],
        );
        let call = decoded(&f);
        let (method, tag, force, args, atts) = call.route("k", &[], |c| {
            (
                c.method.to_owned(),
                c.tag.map(str::to_owned),
                c.force_tag,
                c.args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                c.attachments
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(method, "hash");
        assert_eq!(tag.as_deref(), Some("blue"));
        assert!(force);
        assert_eq!(args, ["abc", "7"]);
        assert_eq!(
            atts,
            ["dubbo.tag=blue", "dubbo.force.tag=true", "user=ann", "n=3"]
        );
    }

    #[test]
    fn a_hessian_request_passes_through_with_the_new_id_and_the_agents_attachments_spliced_in() {
        let f = request(
            Serialization::Hessian2,
            Some("1.0"),
            vec![
                ("path", Value::str("com.example.Hello")),
                ("timeout", Value::str("900")),
            ],
        );
        // Nothing to add: the body is the client's, byte for byte.
        let (up, _) = upstream(&f, 9, None);
        assert_eq!(up.header.id, 9);
        assert_eq!(up.header.flag, f.header.flag);
        assert_eq!(up.body, f.body);
        // A token to add: the client's bytes up to the map's end, then the token, then `Z`.
        let (up, req) = upstream(&f, 10, Some("s3cret"));
        let n = f.body.len() - 1;
        assert_eq!(&up.body[..n], &f.body[..n]);
        assert_eq!(up.body.last(), Some(&b'Z'));
        assert_eq!(
            attachments(&req),
            [
                ("path".to_owned(), "com.example.Hello".to_owned()),
                ("timeout".to_owned(), "900".to_owned()),
                ("token".to_owned(), "s3cret".to_owned()),
            ]
        );
        assert_eq!(req.args, [Value::str("abc"), Value::Int(7)]);
        assert_eq!(req.version.as_deref(), Some("1.0"));
    }

    #[test]
    fn a_request_without_attachments_or_with_null_gets_a_map_of_the_agents() {
        let f = request(Serialization::Hessian2, None, vec![]);
        // Encoded with an empty map; cut it off, then replace it with null.
        let map_len = 2; // `H Z`
        let bare = f.body.slice(..f.body.len() - map_len);
        let mut null = bare.to_vec();
        null.push(b'N');
        for body in [bare, bytes::Bytes::from(null)] {
            let f = Frame {
                header: Header {
                    body_len: body.len() as u32,
                    ..f.header
                },
                body,
            };
            let (up, req) = upstream(&f, 11, Some("t"));
            assert_eq!(up.header.id, 11);
            assert_eq!(
                attachments(&req),
                [
                    ("timeout".to_owned(), "1500".to_owned()),
                    ("token".to_owned(), "t".to_owned())
                ]
            );
            assert_eq!(req.args.len(), 2);
        }
    }

    #[test]
    fn a_different_client_token_is_replaced_and_fastjson_is_written_again_in_fastjson() {
        let f = request(Serialization::Hessian2, None, vec![("token", Value::str("mine"))]);
        let (_, req) = upstream(&f, 12, Some("theirs"));
        assert_eq!(
            attachments(&req),
            [
                ("timeout".to_owned(), "1500".to_owned()),
                ("token".to_owned(), "theirs".to_owned())
            ]
        );
        // The same token: passed through.
        let (up, _) = upstream(&f, 12, Some("mine"));
        assert_eq!(up.body.len(), f.body.len() + "timeout".len() + "1500".len() + 2);
        let f = request(
            Serialization::FastJson,
            Some("2"),
            vec![("group", Value::str("g"))],
        );
        let (up, req) = upstream(&f, 13, Some("t"));
        assert_eq!(up.header.serialization().unwrap(), Serialization::FastJson);
        assert_eq!(up.header.id, 13);
        assert_eq!(decoded(&f).service_key(), "g/com.example.Hello:2");
        assert_eq!(
            attachments(&req),
            [
                ("group".to_owned(), "g".to_owned()),
                ("timeout".to_owned(), "1500".to_owned()),
                ("token".to_owned(), "t".to_owned())
            ]
        );
    }

    #[test]
    fn back_references_cannot_multiply_the_routing_text_work() {
        // An attachment of a few hundred bytes whose 300 references to a list of 300 ints would render as
        // 90,000 JSON values; 20 of them would be 20 times that. The texts share a budget of the order of
        // the body's size instead.
        let inner = Value::List(mesh_dubbo::List {
            type_name: None,
            items: (0..300).map(Value::Int).collect(),
        });
        let mut items = vec![inner];
        // Index 1 in the wire's numbering (the attachment map is 0) and in the value's own (this list is 0).
        items.extend((0..300).map(|_| Value::Ref(1)));
        let bomb = Value::List(mesh_dubbo::List {
            type_name: None,
            items,
        });
        let names: Vec<&'static str> = (0..20)
            .map(|i| &*Box::leak(format!("a{i}").into_boxed_str()))
            .collect();
        let small = Value::List(mesh_dubbo::List {
            type_name: None,
            items: vec![Value::Int(1)],
        });
        let mut atts = vec![("small", small)];
        atts.extend(names.iter().map(|n| (*n, bomb.clone())));
        let f = request(Serialization::Hessian2, None, atts);
        assert!(f.body.len() < 40_000, "{}", f.body.len());
        let call = decoded(&f);
        assert_eq!(call.attachment_texts[0], "[1]");
        // The first may fit the budget (its values are counted, its text is charged); it spends it all.
        let rendered = call.attachment_texts[1..].iter().filter(|t| *t != "list").count();
        assert!(rendered <= 1, "{rendered} of 20 rendered");
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let f = request(Serialization::Hessian2, None, vec![]);
        for cut in 0..f.body.len() - 2 {
            let mut broken = f.clone();
            broken.body = f.body.slice(..cut);
            assert!(
                DubboCall::decode(&Codec::default(), &broken).is_err(),
                "cut at {cut}"
            );
        }
        let mut attachments_not_a_map = f.body.slice(..f.body.len() - 2).to_vec();
        attachments_not_a_map.push(0x91); // int 1
        let bad = Frame {
            body: attachments_not_a_map.into(),
            ..f.clone()
        };
        assert!(DubboCall::decode(&Codec::default(), &bad).is_err());
        let unknown = Frame {
            header: Header {
                flag: f.header.flag & !0x1f | 9,
                ..f.header
            },
            ..f
        };
        assert!(DubboCall::decode(&Codec::default(), &unknown).is_err());
    }
}
