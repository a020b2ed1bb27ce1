//! A provider's Dubbo answer (or the agent's own failure) as the JSON API's answer: status, JSON body
//! (`Content-Type: application/json`) and the answer's attachments as `x-dubbo-attachment-<name>` headers.
//!
//! | answer | HTTP | body |
//! |---|---|---|
//! | a value | 200 | the value as JSON ([`mesh_generic::to_json()`]) |
//! | null | 200 | `null` |
//! | the service threw | 500 | `{"status": 500, "exception": "<class>", "message": "<detailMessage>" \| null}` |
//! | status 100 or 60 / 31 or 30 / other error status | 503 / 504 / 502 | `{"status": <http>, "dubboStatus": <n>, "message": "..."}` |
//! | undecodable, unexpected, or too large to render | 502 | `{"status": 502, "message": "..."}` |
//! | the agent's own failure (no provider, timeout, ...) | its status | `{"status": <http>, "message": "..."}` ([`failure`]) |

use mesh_dubbo::{Body, CodecError, Response, RpcResult, Value};
use mesh_generic::{text_of, text_of_within, to_json, Json, Number, RenderLimits};

use crate::answer::http_status_of;
use crate::json_call::ATTACHMENT_HEADER_PREFIX;
use crate::response::is_token;

/// Longest attachment value passed back as a header, in bytes (longer ones are left out).
pub const MAX_ATTACHMENT_HEADER_VALUE: usize = 4096;
/// Most attachments of one answer passed on as `x-dubbo-attachment-*` headers (the others are dropped): a
/// provider's answer must not make the agent write an unbounded header block.
pub const MAX_ANSWER_ATTACHMENT_HEADERS: usize = 64;

/// A JSON API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAnswer {
    pub status: u16,
    /// The JSON text.
    pub body: String,
    /// Header fields to add: the answer's attachments, `x-dubbo-attachment-<name>`.
    pub headers: Vec<(String, String)>,
}

impl JsonAnswer {
    fn new(status: u16, body: Json) -> Self {
        JsonAnswer {
            status,
            body: body.to_text(),
            headers: Vec::new(),
        }
    }
}

/// The JSON error body `{"status": .., "message": ..}`.
fn error_body(status: u16, message: String) -> Json {
    Json::Object(vec![
        ("status".into(), Json::Number(Number::Int(i64::from(status)))),
        ("message".into(), Json::String(message)),
    ])
}

/// The answer for the agent's own failure (its HTTP status and reason).
pub fn failure(status: u16, reason: &str) -> JsonAnswer {
    JsonAnswer::new(status, error_body(status, reason.to_owned()))
}

/// The answer for a decoded response body (or the error decoding it).
pub fn render_json(decoded: Result<Body<'_>, CodecError>, limits: &RenderLimits) -> JsonAnswer {
    let body = match decoded {
        Ok(b) => b,
        Err(e) => return failure(502, &format!("undecodable answer from provider: {e}")),
    };
    match body {
        Body::Response(Response::Ok { result, attachments }) => {
            let mut answer = match result {
                RpcResult::Value(v) => match to_json(&v, limits) {
                    Ok(json) => JsonAnswer::new(200, json),
                    Err(e) => failure(502, &format!("answer from provider not rendered: {e}")),
                },
                RpcResult::Null => JsonAnswer::new(200, Json::Null),
                RpcResult::Exception(e) => exception(&e),
            };
            answer.headers = attachment_headers(attachments.as_deref().unwrap_or_default(), limits);
            answer
        }
        Body::Response(Response::Error { status, message }) => {
            let code = http_status_of(status);
            JsonAnswer::new(
                code,
                Json::Object(vec![
                    ("status".into(), Json::Number(Number::Int(i64::from(code)))),
                    (
                        "dubboStatus".into(),
                        Json::Number(Number::Int(i64::from(status.0))),
                    ),
                    ("message".into(), Json::String(message.into_owned())),
                ]),
            )
        }
        other => failure(502, &format!("unexpected answer from provider: {}", kind(&other))),
    }
}

fn kind(b: &Body<'_>) -> &'static str {
    match b {
        Body::Request(_) => "a request",
        Body::Response(_) => "a response",
        Body::Event(_) => "an event",
    }
}

/// The classes of Dubbo's `GenericException`, which a provider's `GenericFilter` throws for a `$invoke`
/// whose method threw: the original class and message are its `exceptionClass` / `exceptionMessage`.
const GENERIC_EXCEPTIONS: &[&str] = &[
    "org.apache.dubbo.rpc.service.GenericException",
    "com.alibaba.dubbo.rpc.service.GenericException",
];

/// A thrown exception: its class and `detailMessage` (for a `GenericException`, the exception it wraps).
fn exception(e: &Value<'_>) -> JsonAnswer {
    let field = |o: &mesh_dubbo::Object<'_>, name: &str| {
        o.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    };
    let (class, message) = match e {
        Value::Object(o)
            if GENERIC_EXCEPTIONS.contains(&&*o.class) && field(o, "exceptionClass").is_some() =>
        {
            (
                Json::String(field(o, "exceptionClass").unwrap_or_default()),
                field(o, "exceptionMessage").map_or(Json::Null, Json::String),
            )
        }
        Value::Object(o) => (
            Json::String(o.class.to_string()),
            o.fields
                .iter()
                .find(|(k, _)| k == "detailMessage")
                .and_then(|(_, v)| v.as_str())
                .map_or(Json::Null, |m| Json::String(m.to_owned())),
        ),
        other => (Json::Null, Json::String(text_of(other).into_owned())),
    };
    JsonAnswer::new(
        500,
        Json::Object(vec![
            ("status".into(), Json::Number(Number::Int(500))),
            ("exception".into(), class),
            ("message".into(), message),
        ]),
    )
}

/// Attachments that can be header fields: a token name, a value without control characters, not too long.
/// Structured values share one rendering budget (`limits.max_nodes`), so references cannot multiply it.
fn attachment_headers(
    attachments: &[(std::borrow::Cow<'_, str>, Value<'_>)],
    limits: &RenderLimits,
) -> Vec<(String, String)> {
    let mut budget = limits.max_nodes;
    attachments
        .iter()
        .filter(|(name, _)| is_token(name) && name.len() <= crate::MAX_ATTACHMENT_NAME)
        .filter_map(|(name, value)| {
            let text = text_of_within(value, &mut budget);
            let clean = text.len() <= MAX_ATTACHMENT_HEADER_VALUE
                && text
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
            clean.then(|| (format!("{ATTACHMENT_HEADER_PREFIX}{name}"), text.into_owned()))
        })
        .take(MAX_ANSWER_ATTACHMENT_HEADERS)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mesh_dubbo::{Map, Object};
    use std::borrow::Cow;

    fn ok(result: RpcResult<'static>, attachments: Option<mesh_dubbo::Attachments<'static>>) -> JsonAnswer {
        render_json(
            Ok(Body::Response(Response::Ok { result, attachments })),
            &RenderLimits::default(),
        )
    }

    #[test]
    fn at_most_64_answer_attachments_become_headers() {
        let names: Vec<String> = (0..200).map(|i| format!("a{i}")).collect();
        let attachments: Vec<(Cow<'static, str>, Value<'static>)> = names
            .iter()
            .map(|n| (Cow::Owned(n.clone()), Value::str("v")))
            .collect();
        let headers = attachment_headers(&attachments, &RenderLimits::default());
        assert_eq!(headers.len(), MAX_ANSWER_ATTACHMENT_HEADERS);
        assert_eq!(headers[0], ("x-dubbo-attachment-a0".to_owned(), "v".to_owned()));
    }

    #[test]
    fn values_are_200_json_with_attachment_headers() {
        let map = Value::Map(Map {
            type_name: None,
            entries: vec![(Value::str("a"), Value::Long(1 << 60))],
        });
        let a = ok(
            RpcResult::Value(map),
            Some(vec![
                (Cow::Borrowed("dubbo"), Value::str("2.0.2")),
                (Cow::Borrowed("n"), Value::Int(3)),
                (Cow::Borrowed("bad name"), Value::str("x")),
                (Cow::Borrowed("crlf"), Value::str("a\r\nSet-Cookie: x")),
            ]),
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.body, r#"{"a":1152921504606846976}"#);
        assert_eq!(
            a.headers,
            [
                ("x-dubbo-attachment-dubbo".to_owned(), "2.0.2".to_owned()),
                ("x-dubbo-attachment-n".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(ok(RpcResult::Null, None), JsonAnswer::new(200, Json::Null));
        assert_eq!(ok(RpcResult::Value(Value::str("hi")), None).body, "\"hi\"");
    }

    #[test]
    fn exceptions_are_500_with_class_and_message() {
        let thrown = Value::Object(Object {
            class: Cow::Borrowed("java.lang.IllegalArgumentException"),
            fields: vec![
                (Cow::Borrowed("detailMessage"), Value::str("bad \"x\"")),
                (Cow::Borrowed("cause"), Value::Ref(0)),
            ],
        });
        let a = ok(RpcResult::Exception(thrown), None);
        assert_eq!(a.status, 500);
        assert_eq!(
            a.body,
            r#"{"status":500,"exception":"java.lang.IllegalArgumentException","message":"bad \"x\""}"#
        );
        let no_message = Value::Object(Object {
            class: Cow::Borrowed("java.lang.NullPointerException"),
            fields: vec![(Cow::Borrowed("detailMessage"), Value::Null)],
        });
        assert_eq!(
            ok(RpcResult::Exception(no_message), None).body,
            r#"{"status":500,"exception":"java.lang.NullPointerException","message":null}"#
        );
        // a $invoke's GenericException gives the exception it wraps
        let generic = Value::Object(Object {
            class: Cow::Borrowed("org.apache.dubbo.rpc.service.GenericException"),
            fields: vec![
                (
                    Cow::Borrowed("detailMessage"),
                    Value::str("java.lang.IllegalArgumentException: bad input"),
                ),
                (
                    Cow::Borrowed("exceptionClass"),
                    Value::str("java.lang.IllegalArgumentException"),
                ),
                (Cow::Borrowed("exceptionMessage"), Value::str("bad input")),
            ],
        });
        assert_eq!(
            ok(RpcResult::Exception(generic), None).body,
            r#"{"status":500,"exception":"java.lang.IllegalArgumentException","message":"bad input"}"#
        );
    }

    #[test]
    fn error_statuses_and_failures() {
        for (dubbo, http) in [(100, 503), (60, 503), (31, 504), (30, 504), (80, 502), (90, 502)] {
            let a = render_json(
                Ok(Body::Response(Response::Error {
                    status: mesh_dubbo::Status(dubbo),
                    message: Cow::Borrowed("why"),
                })),
                &RenderLimits::default(),
            );
            assert_eq!(a.status, http);
            assert_eq!(
                a.body,
                format!(r#"{{"status":{http},"dubboStatus":{dubbo},"message":"why"}}"#)
            );
        }
        let a = render_json(
            Err(CodecError::UnsupportedSerialization(9)),
            &RenderLimits::default(),
        );
        assert_eq!(a.status, 502);
        assert!(a
            .body
            .starts_with(r#"{"status":502,"message":"undecodable answer from provider: "#));
        let a = render_json(
            Ok(Body::Event(mesh_dubbo::Event::Heartbeat)),
            &RenderLimits::default(),
        );
        assert_eq!(
            a.body,
            r#"{"status":502,"message":"unexpected answer from provider: an event"}"#
        );
        assert_eq!(
            failure(404, "no provider for a.B").body,
            r#"{"status":404,"message":"no provider for a.B"}"#
        );
        // too large to render: 502, not a truncated document
        let big = Value::List(mesh_dubbo::List {
            type_name: None,
            items: vec![Value::Int(1); 10],
        });
        let a = render_json(
            Ok(Body::Response(Response::Ok {
                result: RpcResult::Value(big),
                attachments: None,
            })),
            &RenderLimits {
                max_depth: 10,
                max_nodes: 5,
                ..RenderLimits::default()
            },
        );
        assert_eq!(a.status, 502);
        assert_eq!(
            a.body,
            r#"{"status":502,"message":"answer from provider not rendered: answer larger than 5 JSON values"}"#
        );
    }
}
